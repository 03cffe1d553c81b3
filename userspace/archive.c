// SPDX-License-Identifier: MIT
/*
 * Archive reader and validator.  Every offset, length and table entry is
 * checked against the bytes available before it is used.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* libxxhash's header-only build: no extra shared object to load at
 * interpreter start-up. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "pycds/reader.h"
#include "pycds/xxh.h"

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

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Is [off, off + len) inside [0, size)?  Overflow-safe. */
static int in_file(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

/* Does a table of @count entries of @esize bytes at @off fit in @size? */
static int table_fits(uint64_t off, uint64_t count, uint64_t esize,
		      uint64_t size)
{
	if (off > size || off % 8)
		return 0;
	return count <= (size - off) / esize;
}

uint64_t pycds_name_hash(const char *name, size_t len)
{
	return XXH3_64bits(name, len);
}

static uint64_t header_sum(const struct pycds_header *h)
{
	struct pycds_header copy;

	memcpy(&copy, h, sizeof(copy));
	copy.header_checksum = 0;
	return XXH3_64bits(&copy, sizeof(copy));
}

int pycds_header_check(const void *base, size_t size, char *err,
		       size_t errlen)
{
	const struct pycds_header *h = base;
	unsigned int i;

	if (size < sizeof(*h))
		return fail(err, errlen, "file too short for a header (%zu bytes)",
			    size);
	if (memcmp(h->magic, PYCDS_MAGIC, PYCDS_MAGIC_LEN))
		return fail(err, errlen, "not a pycds archive (bad magic)");
	if (h->version != PYCDS_FORMAT_VERSION)
		return fail(err, errlen, "format version %u, expected %u",
			    h->version, PYCDS_FORMAT_VERSION);
	if (h->header_size != sizeof(*h))
		return fail(err, errlen, "header size %u, expected %zu",
			    h->header_size, sizeof(*h));
	/* Reserved means zero: a later format may give them meaning. */
	if (h->reserved0 || h->reserved1)
		return fail(err, errlen, "reserved header fields not zero");
	if (h->hash_flags & ~PYCDS_HASHES_STORED)
		return fail(err, errlen, "unknown hash flags 0x%x",
			    h->hash_flags);
	if (!h->hash_flags && (h->hash_seed || h->hash_probe))
		return fail(err, errlen, "hash seed fields set without stored hashes");
	if (h->file_size != size)
		return fail(err, errlen,
			    "file is %zu bytes, header says %llu (truncated?)",
			    size, (unsigned long long)h->file_size);
	if (header_sum(h) != h->header_checksum)
		return fail(err, errlen, "header checksum mismatch");
	if (!h->preferred_base || h->preferred_base % PYCDS_PAGE_SIZE ||
	    h->preferred_base >= (1ULL << 47) ||
	    h->file_size > (1ULL << 47) - h->preferred_base)
		return fail(err, errlen, "bad preferred base 0x%llx",
			    (unsigned long long)h->preferred_base);
	for (i = 0; i < PYCDS_NR_ALL_REGIONS; i++) {
		const struct pycds_span *r = &h->regions[i];

		if (!in_file(r->off, r->size, size) || r->off % PYCDS_PAGE_SIZE)
			return fail(err, errlen, "region %s out of bounds",
				    pycds_region_name(i));
		if (r->off < sizeof(*h) && r->size)
			return fail(err, errlen, "region %s overlaps the header",
				    pycds_region_name(i));
	}
	if (!table_fits(h->modules_off, h->nr_modules,
			sizeof(struct pycds_module), size))
		return fail(err, errlen, "module table out of bounds");
	if (!h->nr_buckets || h->nr_buckets & (h->nr_buckets - 1) ||
	    h->nr_buckets <= h->nr_modules ||
	    !table_fits(h->buckets_off, h->nr_buckets, sizeof(uint32_t), size))
		return fail(err, errlen, "bucket table malformed");
	if (!in_file(h->names.off, h->names.size, size) ||
	    h->names.size > UINT32_MAX)
		return fail(err, errlen, "names blob out of bounds");
	if (!table_fits(h->relocs_off, h->nr_relocs, sizeof(uint32_t), size))
		return fail(err, errlen, "relocation table out of bounds");
	if (!table_fits(h->images_off, h->nr_images,
			sizeof(struct pycds_image_reloc), size))
		return fail(err, errlen, "image table out of bounds");
	if (!table_fits(h->interns_off, h->nr_interns,
			sizeof(struct pycds_fixup), size) ||
	    !table_fits(h->fsets_off, h->nr_fsets, sizeof(struct pycds_fixup),
			size))
		return fail(err, errlen, "fixup table out of bounds");
	if (!table_fits(h->names_index_off, h->nr_names,
			sizeof(struct pycds_name), size))
		return fail(err, errlen, "names index out of bounds");
	return 0;
}

int pycds_interp_check(const struct pycds_header *hdr,
		       const struct pycds_interp *want, char *err,
		       size_t errlen)
{
	const struct pycds_interp *have = &hdr->interp;

	if (have->hexversion != want->hexversion)
		return fail(err, errlen,
			    "built for Python %08x, this is %08x",
			    have->hexversion, want->hexversion);
	if (have->pyc_magic != want->pyc_magic)
		return fail(err, errlen, "bytecode magic %08x, expected %08x",
			    have->pyc_magic, want->pyc_magic);
	if (memcmp(have->cache_tag, want->cache_tag, sizeof(have->cache_tag)))
		return fail(err, errlen, "built for cache tag %.16s, this is %.16s",
			    have->cache_tag, want->cache_tag);
	if (memcmp(have->abiflags, want->abiflags, sizeof(have->abiflags)))
		return fail(err, errlen, "built for ABI flags '%.8s', this is '%.8s'",
			    have->abiflags, want->abiflags);
	if (have->build_id_len != want->build_id_len ||
	    have->build_id_len > sizeof(have->build_id) ||
	    memcmp(have->build_id, want->build_id, have->build_id_len))
		return fail(err, errlen,
			    "built for another interpreter binary (build ID differs)");
	if (have->layout != want->layout)
		return fail(err, errlen, "object layout differs from this build");
	if (have->runtime_addr != want->runtime_addr)
		return fail(err, errlen, "interpreter image layout differs");
	if (have->optimize != want->optimize)
		return fail(err, errlen,
			    "compiled at optimization level %u, process runs at %u",
			    have->optimize, want->optimize);
	return 0;
}

const struct pycds_module *pycds_module_get(const struct pycds_archive *ar,
					    uint32_t idx)
{
	const struct pycds_module *mods = pycds_ptr(ar, ar->hdr->modules_off);

	if (idx >= ar->hdr->nr_modules)
		return NULL;
	return &mods[idx];
}

const char *pycds_module_name(const struct pycds_archive *ar,
			      const struct pycds_module *m, size_t *len)
{
	*len = m->name_len;
	return pycds_ptr(ar, ar->hdr->names.off + m->name_off);
}

const char *pycds_module_origin(const struct pycds_archive *ar,
				const struct pycds_module *m, size_t *len)
{
	*len = m->origin_len;
	return pycds_ptr(ar, ar->hdr->names.off + m->origin_off);
}

static int module_entry_check(const struct pycds_archive *ar, uint32_t idx,
			      char *err, size_t errlen)
{
	const struct pycds_header *h = ar->hdr;
	const struct pycds_module *m = pycds_module_get(ar, idx);
	unsigned int r;

	if (!in_file(m->name_off, m->name_len, h->names.size) || !m->name_len)
		return fail(err, errlen, "module %u: name out of bounds", idx);
	if (!in_file(m->origin_off, m->origin_len, h->names.size) ||
	    !m->origin_len)
		return fail(err, errlen, "module %u: origin out of bounds", idx);
	if (m->reserved)
		return fail(err, errlen, "module %u: reserved field not zero", idx);
	if (m->flags & ~(PYCDS_MOD_PACKAGE | PYCDS_MOD_SOURCELESS))
		return fail(err, errlen, "module %u: unknown flags 0x%x", idx,
			    m->flags);
	for (r = 0; r < PYCDS_NR_REGIONS; r++) {
		const struct pycds_span *reg = &h->regions[r];

		if (!m->span_size[r])
			continue;
		if (m->span_off[r] < reg->off || m->span_off[r] % 8 ||
		    !in_file(m->span_off[r] - reg->off, m->span_size[r],
			     reg->size))
			return fail(err, errlen,
				    "module %u: %s span outside its region", idx,
				    pycds_region_name(r));
	}
	if (!in_file(m->reloc_first, m->reloc_count, h->nr_relocs) ||
	    !in_file(m->image_first, m->image_count, h->nr_images) ||
	    !in_file(m->intern_first, m->intern_count, h->nr_interns) ||
	    !in_file(m->fset_first, m->fset_count, h->nr_fsets))
		return fail(err, errlen, "module %u: table slice out of bounds",
			    idx);
	/* In its code span, or its idle span (a body processes copy). */
	if (m->root % 8 ||
	    ((m->root < m->span_off[PYCDS_REGION_CODE] ||
	      m->root - m->span_off[PYCDS_REGION_CODE] >=
		      m->span_size[PYCDS_REGION_CODE]) &&
	     (m->root < m->span_off[PYCDS_REGION_IDLE] ||
	      m->root - m->span_off[PYCDS_REGION_IDLE] >=
		      m->span_size[PYCDS_REGION_IDLE])))
		return fail(err, errlen, "module %u: code object out of bounds",
			    idx);
	return 0;
}

int pycds_meta_check(const struct pycds_archive *ar, char *err,
		     size_t errlen)
{
	const struct pycds_header *h = ar->hdr;
	const uint32_t *buckets = pycds_ptr(ar, h->buckets_off);
	XXH3_state_t st;
	uint32_t i;
	int ret;

	XXH3_64bits_reset(&st);
	sum_update(&st, pycds_ptr(ar, h->modules_off),
		   (size_t)h->nr_modules * sizeof(struct pycds_module));
	sum_update(&st, buckets, (size_t)h->nr_buckets * 4);
	sum_update(&st, pycds_ptr(ar, h->names.off), h->names.size);
	if (XXH3_64bits_digest(&st) != h->meta_checksum)
		return fail(err, errlen, "index checksum mismatch");
	for (i = 0; i < h->nr_buckets; i++)
		if (buckets[i] > h->nr_modules)
			return fail(err, errlen, "bucket %u out of range", i);
	for (i = 0; i < h->nr_modules; i++) {
		ret = module_entry_check(ar, i, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

long pycds_index_lookup(const struct pycds_archive *ar, const char *name,
			size_t len)
{
	const struct pycds_header *h = ar->hdr;
	const uint32_t *buckets = pycds_ptr(ar, h->buckets_off);
	uint32_t mask = h->nr_buckets - 1;
	uint32_t pos = (uint32_t)pycds_name_hash(name, len) & mask;
	uint32_t n;

	for (n = 0; n < h->nr_buckets; n++, pos = (pos + 1) & mask) {
		const struct pycds_module *m;
		const char *mname;
		size_t mlen;
		uint32_t v = buckets[pos];

		if (!v)
			return -1;
		m = pycds_module_get(ar, v - 1);
		if (!m)
			return -1;
		mname = pycds_module_name(ar, m, &mlen);
		if (mlen == len && !memcmp(mname, name, len))
			return v - 1;
	}
	return -1;
}

/* Index of the module span holding [off, off + len), or -1. */
static int span_of(const struct pycds_module *m, uint64_t off, uint64_t len)
{
	unsigned int r;

	for (r = 0; r < PYCDS_NR_REGIONS; r++)
		if (off >= m->span_off[r] &&
		    in_file(off - m->span_off[r], len, m->span_size[r]))
			return r;
	return -1;
}

static uint64_t load_slot(const struct pycds_archive *ar, uint32_t slot)
{
	uint64_t v;

	memcpy(&v, ar->base + slot, sizeof(v));
	return v;
}

static int static_check(const struct pycds_image_ctx *img, uint64_t addr);

/* static_check(), through the context's cache of accepted addresses if it
 * has one: modules point to the same few hundred static objects (small
 * ints, one-character strings, empty singletons) tens of thousands of
 * times. */
static int static_ok(const struct pycds_image_ctx *img, uint64_t addr)
{
	uint64_t *seen = img->static_seen;
	unsigned int i = (unsigned int)((addr * 0x9e3779b97f4a7c15ULL) >> 32) %
			 PYCDS_STATIC_SEEN;

	if (seen && addr && seen[i] == addr)
		return 1;
	if (!static_check(img, addr))
		return 0;
	if (seen)
		seen[i] = addr;
	return 1;
}

static int static_check(const struct pycds_image_ctx *img, uint64_t addr)
{
	uint64_t type;
	unsigned int i, j;

	if (addr % 8)
		return 0;
	for (i = 0; i < img->nr_static; i++) {
		if (addr < img->static_lo[i] || addr >= img->static_hi[i] ||
		    img->static_hi[i] - addr < 16)
			continue;
		memcpy(&type, (const void *)(uintptr_t)(addr + 8), sizeof(type));
		for (j = 0; j < img->nr_static_types; j++)
			if (type == img->static_types[j])
				return 1;
		return 0;
	}
	return 0;
}

static uint64_t module_sum(const struct pycds_archive *ar,
			   const struct pycds_module *m)
{
	const struct pycds_header *h = ar->hdr;
	XXH3_state_t st;
	unsigned int r;

	XXH3_64bits_reset(&st);
	for (r = 0; r < PYCDS_NR_REGIONS; r++)
		sum_update(&st, ar->base + m->span_off[r], m->span_size[r]);
	sum_update(&st, ar->base + h->relocs_off +
				(uint64_t)m->reloc_first * 4,
		   (size_t)m->reloc_count * 4);
	sum_update(&st, ar->base + h->images_off +
				(uint64_t)m->image_first * 8,
		   (size_t)m->image_count * 8);
	sum_update(&st, ar->base + h->interns_off +
				(uint64_t)m->intern_first * 8,
		   (size_t)m->intern_count * 8);
	sum_update(&st, ar->base + h->fsets_off +
				(uint64_t)m->fset_first * 8,
		   (size_t)m->fset_count * 8);
	return XXH3_64bits_digest(&st);
}

/*
 * The module's spans as bounds for a branch-free test: an 8-byte slot at
 * @off lies in span r when off - lo[r] < lim8[r] (unsigned: an @off below
 * lo[r] wraps to more than any file size), a 16-byte object when off -
 * lo[r] < lim16[r].  The same answers as span_of() >= 0.
 */
struct spans {
	uint64_t lo[PYCDS_NR_REGIONS];
	uint64_t lim8[PYCDS_NR_REGIONS], lim16[PYCDS_NR_REGIONS];
};

static void spans_init(struct spans *sp, const struct pycds_module *m)
{
	unsigned int r;

	for (r = 0; r < PYCDS_NR_REGIONS; r++) {
		sp->lo[r] = m->span_off[r];
		sp->lim8[r] = m->span_size[r] >= 8 ? m->span_size[r] - 7 : 0;
		sp->lim16[r] = m->span_size[r] >= 16 ? m->span_size[r] - 15 : 0;
	}
}

static inline unsigned int in_spans(const uint64_t *lo, const uint64_t *lim,
				    uint64_t off)
{
	return (off - lo[0] < lim[0]) | (off - lo[1] < lim[1]) |
	       (off - lo[2] < lim[2]) | (off - lo[3] < lim[3]);
}

/*
 * The relocation, image and intern checks of pycds_module_check() in one
 * pass without early exits, so that a sound module (every module, in
 * practice) costs no mispredicted branches.  Returns 1 if every entry
 * passes; 0 sends the caller to the checks that name the first failure.
 * A slot is loaded only once its own bounds passed (else the header's
 * first bytes are read, harmlessly).
 */
static int module_slots_sound(const struct pycds_archive *ar,
			      const struct pycds_module *m,
			      const struct pycds_image_ctx *img)
{
	const struct pycds_header *h = ar->hdr;
	const uint64_t base = h->preferred_base;
	const uint32_t *relocs = pycds_ptr(ar, h->relocs_off);
	const struct pycds_image_reloc *images = pycds_ptr(ar, h->images_off);
	const struct pycds_fixup *fx = pycds_ptr(ar, h->interns_off);
	const struct pycds_name *names = pycds_ptr(ar, h->names_index_off);
	struct spans sp;
	unsigned int ok, bad = 0;
	uint32_t i;

	spans_init(&sp, m);
	relocs += m->reloc_first;
	for (i = 0; i < m->reloc_count; i++) {
		uint64_t s = relocs[i], v, t;

		ok = ((s & 7) == 0) & in_spans(sp.lo, sp.lim8, s);
		v = load_slot(ar, ok ? s : 0);
		t = v - base;
		ok &= (v >= base) & ((t & 7) == 0) & in_spans(sp.lo, sp.lim16, t);
		bad |= !ok;
	}
	images += m->image_first;
	for (i = 0; i < m->image_count; i++) {
		uint64_t s = images[i].slot, v;
		uint32_t kind = images[i].kind;

		ok = ((s & 7) == 0) & in_spans(sp.lo, sp.lim8, s) & (kind != 0) &
		     (kind < PYCDS_IMG_NR_KINDS);
		if (img) {
			v = load_slot(ar, ok ? s : 0) + img->bias;
			if (kind == PYCDS_IMG_STATIC)
				ok &= ok && static_ok(img, v);
			else
				ok &= v == img->expect[ok ? kind : 0];
		}
		bad |= !ok;
	}
	if (m->intern_count && !h->nr_names)
		return 0;
	fx += m->intern_first;
	for (i = 0; i < m->intern_count; i++) {
		uint64_t s = fx[i].slot, v;
		uint32_t a = fx[i].arg;

		ok = ((s & 7) == 0) & in_spans(sp.lo, sp.lim8, s) & (a < h->nr_names);
		v = load_slot(ar, ok ? s : 0);
		ok &= v == base + names[a < h->nr_names ? a : 0].off;
		bad |= !ok;
	}
	return !bad;
}

/* The same checks one entry at a time, naming the first that fails. */
static int module_slots_detail(const struct pycds_archive *ar,
			       const struct pycds_module *m, uint32_t idx,
			       const struct pycds_image_ctx *img, char *err,
			       size_t errlen)
{
	const struct pycds_header *h = ar->hdr;
	const uint32_t *relocs;
	const struct pycds_image_reloc *images;
	const struct pycds_fixup *fixups;
	const struct pycds_name *names;
	uint32_t i;

	relocs = pycds_ptr(ar, h->relocs_off);
	relocs += m->reloc_first;
	for (i = 0; i < m->reloc_count; i++) {
		uint64_t v, target;

		if (relocs[i] % 8 || span_of(m, relocs[i], 8) < 0)
			return fail(err, errlen,
				    "module %u: relocation %u slot outside the module",
				    idx, i);
		v = load_slot(ar, relocs[i]);
		target = v - h->preferred_base;
		if (v < h->preferred_base || target % 8 ||
		    span_of(m, target, 16) < 0)
			return fail(err, errlen,
				    "module %u: relocation %u points outside the module",
				    idx, i);
	}

	images = pycds_ptr(ar, h->images_off);
	images += m->image_first;
	for (i = 0; i < m->image_count; i++) {
		uint32_t kind = images[i].kind;
		uint64_t v;

		if (images[i].slot % 8 || span_of(m, images[i].slot, 8) < 0)
			return fail(err, errlen,
				    "module %u: image slot %u outside the module",
				    idx, i);
		if (!kind || kind >= PYCDS_IMG_NR_KINDS)
			return fail(err, errlen,
				    "module %u: image slot %u has unknown kind %u",
				    idx, i, kind);
		if (!img)
			continue;
		v = load_slot(ar, images[i].slot) + img->bias;
		if (kind == PYCDS_IMG_STATIC ? !static_ok(img, v)
					     : v != img->expect[kind])
			return fail(err, errlen,
				    "module %u: image slot %u does not point to a %s",
				    idx, i, pycds_image_kind_name(kind));
	}

	/* Pool references are not in the relocation table: each one is an
	 * intern fixup that names its pool entry, and must point at it. */
	names = pycds_ptr(ar, h->names_index_off);
	fixups = pycds_ptr(ar, h->interns_off);
	fixups += m->intern_first;
	for (i = 0; i < m->intern_count; i++) {
		if (fixups[i].slot % 8 || span_of(m, fixups[i].slot, 8) < 0)
			return fail(err, errlen,
				    "module %u: intern fixup %u slot outside the module",
				    idx, i);
		if (fixups[i].arg >= h->nr_names ||
		    load_slot(ar, fixups[i].slot) !=
			    h->preferred_base + names[fixups[i].arg].off)
			return fail(err, errlen,
				    "module %u: intern fixup %u does not match the names pool",
				    idx, i);
	}
	return 0;
}

int pycds_module_check(const struct pycds_archive *ar, uint32_t idx,
		       const struct pycds_image_ctx *img, char *err,
		       size_t errlen)
{
	const struct pycds_header *h = ar->hdr;
	const struct pycds_module *m = pycds_module_get(ar, idx);
	const struct pycds_fixup *fixups;
	uint32_t i;
	int ret, sound;

	if (!m)
		return fail(err, errlen, "module %u does not exist", idx);
	ret = module_entry_check(ar, idx, err, errlen);
	if (ret)
		return ret;
	if (module_sum(ar, m) != m->checksum)
		return fail(err, errlen, "module %u: checksum mismatch", idx);
	sound = module_slots_sound(ar, m, img);
#ifdef PYCDS_CHECK_BOTH
	/* Fuzzing: the one-pass checks must agree with these. */
	if (sound != !module_slots_detail(ar, m, idx, img, NULL, 0))
		abort();
#endif
	if (!sound) {
		ret = module_slots_detail(ar, m, idx, img, err, errlen);
		if (ret)
			return ret;
	}
	fixups = pycds_ptr(ar, h->fsets_off);
	fixups += m->fset_first;
	for (i = 0; i < m->fset_count; i++) {
		uint64_t v, target;

		if (fixups[i].slot % 8 || span_of(m, fixups[i].slot, 8) < 0 ||
		    fixups[i].arg)
			return fail(err, errlen,
				    "module %u: frozenset fixup %u malformed", idx, i);
		v = load_slot(ar, fixups[i].slot);
		target = v - h->preferred_base;
		if (v < h->preferred_base || span_of(m, target, 16) < 0)
			return fail(err, errlen,
				    "module %u: frozenset fixup %u points outside the module",
				    idx, i);
	}
	return 0;
}

int pycds_name_check(const struct pycds_archive *ar, uint32_t i,
		     const struct pycds_image_ctx *img, char *err,
		     size_t errlen)
{
	const struct pycds_span *pool = &ar->hdr->regions[PYCDS_REGION_NAMES];
	const struct pycds_name *n;

	if (i >= ar->hdr->nr_names)
		return fail(err, errlen, "names pool entry %u does not exist", i);
	n = pycds_name_get(ar, i);
	if (n->off % 8 || n->size % 8 || n->size < PYCDS_MIN_STR_SIZE ||
	    n->off < pool->off ||
	    !in_file(n->off - pool->off, n->size, pool->size))
		return fail(err, errlen, "names pool entry %u out of bounds", i);
	if (XXH3_64bits(ar->base + n->off, n->size) != n->hash)
		return fail(err, errlen, "names pool entry %u: checksum mismatch",
			    i);
	if (img && load_slot(ar, n->off + 8) + img->bias !=
			   img->expect[PYCDS_IMG_TYPE_STR])
		return fail(err, errlen, "names pool entry %u is not a str", i);
	return 0;
}

void pycds_name_relocate(const struct pycds_archive *ar, uint32_t i,
			 uint64_t bias)
{
	if (bias)
		*(uint64_t *)(ar->base + pycds_name_get(ar, i)->off + 8) += bias;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Kind of the image slot at file offset @slot in a sorted index, or 0. */
static uint32_t kind_at(const uint32_t *slots, const uint32_t *kinds,
			uint32_t n, uint64_t slot)
{
	uint32_t lo = 0, hi = n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (slots[mid] < slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && slots[lo] == slot ? kinds[lo] : 0;
}

static int is_type_kind(uint32_t k)
{
	return k >= PYCDS_IMG_TYPE_STR && k <= PYCDS_IMG_TYPE_CODE;
}

static int cmp_span(const void *a, const void *b)
{
	const struct pycds_span *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

uint64_t pycds_first_nonzero(const uint8_t *base, uint64_t at, uint64_t end)
{
	for (; at + 8 <= end; at += 8) {
		uint64_t v;

		memcpy(&v, base + at, 8);
		if (v)
			break;
	}
	for (; at < end; at++)
		if (base[at])
			return at;
	return end;
}

int pycds_next_data(int fd, uint64_t at, uint64_t end, uint64_t *data,
		    uint64_t *hole)
{
	off_t d, h;

	if (fd < 0)
		return -1;
	d = lseek(fd, (off_t)at, SEEK_DATA);
	if (d < 0)
		return errno == ENXIO ? 0 : -1;
	if ((uint64_t)d >= end)
		return 0;
	h = lseek(fd, d, SEEK_HOLE);
	/* Past @end, unknown, or no progress: data up to @end. */
	if (h <= d || (uint64_t)h > end)
		h = (off_t)end;
	*data = (uint64_t)d;
	*hole = (uint64_t)h;
	return 1;
}

/* The first non-zero byte of [at, end) outside the holes of @fd, or @end. */
static uint64_t first_nonzero_data(const uint8_t *base, int fd, uint64_t at,
				   uint64_t end)
{
	uint64_t data, hole, nz;
	int r;

	while (at < end) {
		r = pycds_next_data(fd, at, end, &data, &hole);
		if (r == 0)
			return end;
		if (r < 0)
			return pycds_first_nonzero(base, at, end);
		nz = pycds_first_nonzero(base, data, hole);
		if (nz < hole)
			return nz;
		at = hole;
	}
	return end;
}

int pycds_padding_check(const struct pycds_archive *ar, int fd, char *err,
			size_t errlen)
{
	const struct pycds_header *h = ar->hdr;
	struct pycds_span s[9 + PYCDS_NR_ALL_REGIONS];
	uint64_t at = 0, end;
	unsigned int n = 0, i, r;

	s[n++] = (struct pycds_span){ 0, h->header_size };
	s[n++] = (struct pycds_span){ h->modules_off,
				      (uint64_t)h->nr_modules *
					      sizeof(struct pycds_module) };
	s[n++] = (struct pycds_span){ h->buckets_off, (uint64_t)h->nr_buckets * 4 };
	s[n++] = h->names;
	s[n++] = (struct pycds_span){ h->relocs_off, h->nr_relocs * 4 };
	s[n++] = (struct pycds_span){ h->images_off, h->nr_images * 8 };
	s[n++] = (struct pycds_span){ h->interns_off, h->nr_interns * 8 };
	s[n++] = (struct pycds_span){ h->fsets_off, h->nr_fsets * 8 };
	s[n++] = (struct pycds_span){ h->names_index_off,
				      (uint64_t)h->nr_names *
					      sizeof(struct pycds_name) };
	for (r = 0; r < PYCDS_NR_ALL_REGIONS && n < sizeof(s) / sizeof(s[0]); r++)
		s[n++] = h->regions[r];
	qsort(s, n, sizeof(s[0]), cmp_span);
	for (i = 0; i <= n; i++) {
		/* Offsets were checked against the file; clamp anyway. */
		end = i < n ? s[i].off : ar->size;
		if (end > ar->size)
			end = ar->size;
		if (end > at &&
		    (at = first_nonzero_data(ar->base, fd, at, end)) < end)
			return fail(err, errlen,
				    "non-zero byte in padding at offset %llu",
				    (unsigned long long)at);
		if (i < n && s[i].off + s[i].size > at)
			at = s[i].off + s[i].size;
	}
	return 0;
}

int pycds_module_check_deep(const struct pycds_archive *ar, uint32_t idx,
			    char *err, size_t errlen)
{
	const struct pycds_header *h = ar->hdr;
	const struct pycds_module *m = pycds_module_get(ar, idx);
	const struct pycds_image_reloc *images;
	const struct pycds_fixup *f;
	const uint32_t *relocs;
	uint32_t *pairs, *slots, *kinds, i, n;
	int ret = 0;

	if (!m)
		return fail(err, errlen, "module %u does not exist", idx);
	images = pycds_ptr(ar, h->images_off);
	images += m->image_first;
	n = m->image_count;
	pairs = malloc(((size_t)n + 1) * 2 * sizeof(uint32_t));
	slots = malloc(((size_t)n + 1) * sizeof(uint32_t));
	kinds = malloc(((size_t)n + 1) * sizeof(uint32_t));
	if (!pairs || !slots || !kinds) {
		ret = fail(err, errlen, "out of memory");
		goto out;
	}
	/* Sort (slot, kind) pairs by slot: qsort on 8-byte records keyed by
	 * their first word. */
	for (i = 0; i < n; i++) {
		pairs[2 * i] = images[i].slot;
		pairs[2 * i + 1] = images[i].kind;
	}
	qsort(pairs, n, 2 * sizeof(uint32_t), cmp_u32);
	for (i = 0; i < n; i++) {
		slots[i] = pairs[2 * i];
		kinds[i] = pairs[2 * i + 1];
		if (i && slots[i] == slots[i - 1]) {
			ret = fail(err, errlen,
				   "module %u: image slot %u listed twice", idx,
				   slots[i]);
			goto out;
		}
	}
	/* Every object a pointer reaches starts with a type the archive
	 * may hold, and the root is a code object. */
	relocs = pycds_ptr(ar, h->relocs_off);
	relocs += m->reloc_first;
	for (i = 0; i < m->reloc_count; i++) {
		uint64_t target = load_slot(ar, relocs[i]) - h->preferred_base;

		/* The one pointer to a non-object: a frozenset's table, to
		 * its own small table or to the array after it. */
		if (kind_at(slots, kinds, n,
			    (uint64_t)relocs[i] - PYCDS_SET_TABLE_OFF + 8) ==
		    PYCDS_IMG_TYPE_FROZENSET)
			continue;
		/* And a 3.11 str's wchar_t view, to its own data. */
		if (h->interp.hexversion < 0x030c0000 &&
		    kind_at(slots, kinds, n,
			    (uint64_t)relocs[i] - PYCDS_STR311_WSTR_OFF + 8) ==
			    PYCDS_IMG_TYPE_STR &&
		    target == (uint64_t)relocs[i] - PYCDS_STR311_WSTR_OFF +
				      PYCDS_STR311_COMPACT_SIZE)
			continue;
		if (!is_type_kind(kind_at(slots, kinds, n, target + 8))) {
			ret = fail(err, errlen,
				   "module %u: relocation %u does not point to an object",
				   idx, i);
			goto out;
		}
	}
	if (kind_at(slots, kinds, n, m->root + 8) != PYCDS_IMG_TYPE_CODE) {
		ret = fail(err, errlen, "module %u: root is not a code object",
			   idx);
		goto out;
	}
	f = pycds_ptr(ar, h->fsets_off);
	f += m->fset_first;
	for (i = 0; i < m->fset_count; i++) {
		uint64_t target = load_slot(ar, f[i].slot) - h->preferred_base;

		if (kind_at(slots, kinds, n, target + 8) !=
		    PYCDS_IMG_TYPE_FROZENSET) {
			ret = fail(err, errlen,
				   "module %u: frozenset fixup %u does not point to a frozenset",
				   idx, i);
			goto out;
		}
	}
out:
	free(pairs);
	free(slots);
	free(kinds);
	return ret;
}

void pycds_module_relocate(const struct pycds_archive *ar, uint32_t idx,
			   uint64_t bias)
{
	const struct pycds_header *h = ar->hdr;
	const struct pycds_module *m = pycds_module_get(ar, idx);
	uint8_t *base = (uint8_t *)ar->base;
	uint64_t delta = (uint64_t)ar->delta;
	const uint32_t *relocs = pycds_ptr(ar, h->relocs_off);
	const struct pycds_image_reloc *images = pycds_ptr(ar, h->images_off);
	uint32_t i;

	if (delta) {
		relocs += m->reloc_first;
		for (i = 0; i < m->reloc_count; i++)
			*(uint64_t *)(base + relocs[i]) += delta;
	}
	if (bias) {
		images += m->image_first;
		for (i = 0; i < m->image_count; i++)
			*(uint64_t *)(base + images[i].slot) += bias;
	}
}

const char *pycds_region_name(unsigned int id)
{
	static const char *const names[PYCDS_NR_ALL_REGIONS] = {
		[PYCDS_REGION_CODE] = "code",
		[PYCDS_REGION_DATA] = "data",
		[PYCDS_REGION_COLD] = "cold",
		[PYCDS_REGION_IDLE] = "idle",
		[PYCDS_REGION_NAMES] = "names",
	};

	return id < PYCDS_NR_ALL_REGIONS ? names[id] : "?";
}

const char *pycds_image_kind_name(unsigned int kind)
{
	static const char *const names[PYCDS_IMG_NR_KINDS] = {
		[PYCDS_IMG_TYPE_STR] = "str type",
		[PYCDS_IMG_TYPE_BYTES] = "bytes type",
		[PYCDS_IMG_TYPE_INT] = "int type",
		[PYCDS_IMG_TYPE_FLOAT] = "float type",
		[PYCDS_IMG_TYPE_COMPLEX] = "complex type",
		[PYCDS_IMG_TYPE_TUPLE] = "tuple type",
		[PYCDS_IMG_TYPE_FROZENSET] = "frozenset type",
		[PYCDS_IMG_TYPE_CODE] = "code type",
		[PYCDS_IMG_NONE] = "None",
		[PYCDS_IMG_TRUE] = "True",
		[PYCDS_IMG_FALSE] = "False",
		[PYCDS_IMG_ELLIPSIS] = "Ellipsis",
		[PYCDS_IMG_STATIC] = "static object",
	};

	return kind && kind < PYCDS_IMG_NR_KINDS ? names[kind] : "?";
}

void *pycds_map_aligned(int fd, size_t size, int prot, int flags,
			size_t align)
{
	size_t span = (size + PYCDS_PAGE_SIZE - 1) &
		      ~(size_t)(PYCDS_PAGE_SIZE - 1);
	uint8_t *raw, *p;
	int e;

	raw = mmap(NULL, span + align, PROT_NONE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	p = (uint8_t *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
	if (mmap(p, size, prot, flags | MAP_FIXED | (fd < 0 ? MAP_ANONYMOUS : 0),
		 fd, 0) == MAP_FAILED) {
		e = errno;
		munmap(raw, span + align);
		errno = e;
		return NULL;
	}
	if (p > raw)
		munmap(raw, p - raw);
	if (raw + span + align > p + span)
		munmap(p + span, raw + span + align - (p + span));
	return p;
}
