// SPDX-License-Identifier: MIT
/*
 * Checksums (include/pycds/sum.h): the one definition of what each
 * covers.
 */
#include <string.h>

/* libxxhash's header-only build: no extra shared object to load at
 * interpreter start-up. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "internal.h"
#include "pycds/sum.h"
#include "xxh.h"

#ifdef PYCDS_XXH_AVX2
/* glibc's own record of the CPU's features (2.33 and later): asking
 * with __builtin_cpu_supports() runs CPUID, which a virtual machine
 * traps (about 80 us per process on the development host). */
#include <sys/platform/x86.h>
#endif

/*
 * XXH3_64bits_update() for the large inputs of checksums: with the AVX2
 * kernel where the build has it (PYCDS_XXH_AVX2, x86-64) and the CPU too,
 * else the SSE2 one this file is built with.  Same result either way.
 */
static void sum_update(XXH3_state_t *st, const void *p, size_t n)
{
#ifdef PYCDS_XXH_AVX2
	static int avx2 = -1;

	if (avx2 < 0)
		avx2 = CPU_FEATURE_ACTIVE(AVX2) ? 1 : 0;
	if (avx2 && n >= 1024) {
		pycds_xxh3_update_avx2(st, p, n);
		return;
	}
#endif
	XXH3_64bits_update(st, p, n);
}

uint64_t pycds_sum_bytes(const void *p, size_t n)
{
	return XXH3_64bits(p, n);
}

uint64_t pycds_name_hash(const char *name, size_t len)
{
	return XXH3_64bits(name, len);
}

uint64_t pycds_sum_header(const struct pycds_header *h)
{
	struct pycds_header copy;

	memcpy(&copy, h, sizeof(copy));
	copy.header_checksum = 0;
	return XXH3_64bits(&copy, sizeof(copy));
}

/* Hash [off, off + len) of the file, if it lies inside. */
static int sum_range(XXH3_state_t *st, const uint8_t *base, uint64_t size,
		     uint64_t off, uint64_t len)
{
	if (!in_file(off, len, size))
		return -1;
	sum_update(st, base + off, (size_t)len);
	return 0;
}

int pycds_sum_meta(const uint8_t *base, uint64_t size, uint64_t *out)
{
	const struct pycds_header *h = (const void *)base;
	XXH3_state_t st;

	if (size < sizeof(*h))
		return -1;
	XXH3_64bits_reset(&st);
	if (sum_range(&st, base, size, h->modules_off,
		      (uint64_t)h->nr_modules * sizeof(struct pycds_module)) ||
	    sum_range(&st, base, size, h->buckets_off,
		      (uint64_t)h->nr_buckets * 4) ||
	    sum_range(&st, base, size, h->names.off, h->names.size))
		return -1;
	*out = XXH3_64bits_digest(&st);
	return 0;
}

int pycds_sum_module(const uint8_t *base, uint64_t size,
		     const struct pycds_module *m, uint64_t *out)
{
	const struct pycds_header *h = (const void *)base;
	XXH3_state_t st;
	unsigned int r;

	if (size < sizeof(*h))
		return -1;
	XXH3_64bits_reset(&st);
	for (r = 0; r < PYCDS_NR_REGIONS; r++)
		if (sum_range(&st, base, size, m->span_off[r], m->span_size[r]))
			return -1;
	if (sum_range(&st, base, size,
		      h->relocs_off + (uint64_t)m->reloc_first * 4,
		      (uint64_t)m->reloc_count * 4) ||
	    sum_range(&st, base, size,
		      h->images_off + (uint64_t)m->image_first * 8,
		      (uint64_t)m->image_count * 8) ||
	    sum_range(&st, base, size,
		      h->interns_off + (uint64_t)m->intern_first * 8,
		      (uint64_t)m->intern_count * 8) ||
	    sum_range(&st, base, size,
		      h->fsets_off + (uint64_t)m->fset_first * 8,
		      (uint64_t)m->fset_count * 8))
		return -1;
	*out = XXH3_64bits_digest(&st);
	return 0;
}

void pycds_seal(uint8_t *base, uint64_t size)
{
	struct pycds_header *h = (void *)base;
	struct pycds_module *m;
	struct pycds_name *n;
	uint64_t i, sum, off, count;

	if (size < sizeof(*h))
		return;
	/*
	 * The tables' bounds are read once: in a damaged file (the fuzzer
	 * seals those too) a table may overlap the header, and a checksum
	 * written into it must not move the bounds of the loop writing it.
	 */
	off = h->modules_off;
	count = h->nr_modules;
	if (table_fits(off, count, sizeof(*m), size)) {
		m = (void *)(base + off);
		for (i = 0; i < count; i++)
			if (!pycds_sum_module(base, size, &m[i], &sum))
				m[i].checksum = sum;
	}
	off = h->names_index_off;
	count = h->nr_names;
	if (table_fits(off, count, sizeof(*n), size)) {
		n = (void *)(base + off);
		for (i = 0; i < count; i++)
			if (in_file(n[i].off, n[i].size, size))
				n[i].hash = XXH3_64bits(base + n[i].off,
							n[i].size);
	}
	if (!pycds_sum_meta(base, size, &sum))
		h->meta_checksum = sum;
	h->header_checksum = pycds_sum_header(h);
}
