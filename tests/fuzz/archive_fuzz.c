// SPDX-License-Identifier: MIT
/*
 * libFuzzer target over the archive validator: whatever the bytes, the
 * checks must not read outside them, and whatever they accept must be
 * safe to look up and relocate.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "pycds/reader.h"

static int fits(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

static void seal_header(uint8_t *buf)
{
	struct pycds_header *h = (void *)buf;

	h->header_checksum = 0;
	h->header_checksum = XXH3_64bits(h, sizeof(*h));
}

/*
 * Make the checksums match the mutated bytes, so that the structural
 * checks behind them are what gets fuzzed, not XXH3.  Every range is
 * bounds-checked here before it is hashed.
 */
static void reseal(uint8_t *buf, size_t size)
{
	struct pycds_header *h = (void *)buf;
	struct pycds_module *m;
	struct pycds_name *n;
	XXH3_state_t st;
	char err[PYCDS_ERR_LEN];
	uint32_t i, r;

	if (size < sizeof(*h))
		return;
	h->file_size = size;
	seal_header(buf);
	if (pycds_header_check(buf, size, err, sizeof(err)))
		return;
	m = (void *)(buf + h->modules_off);
	for (i = 0; i < h->nr_modules; i++) {
		int ok = 1;

		XXH3_64bits_reset(&st);
		for (r = 0; r < PYCDS_NR_REGIONS; r++) {
			ok &= fits(m[i].span_off[r], m[i].span_size[r], size);
			if (ok)
				XXH3_64bits_update(&st, buf + m[i].span_off[r],
						   m[i].span_size[r]);
		}
		ok &= fits(h->relocs_off + m[i].reloc_first * 4ULL,
			   m[i].reloc_count * 4ULL, size) &&
		      fits(h->images_off + m[i].image_first * 8ULL,
			   m[i].image_count * 8ULL, size) &&
		      fits(h->interns_off + m[i].intern_first * 8ULL,
			   m[i].intern_count * 8ULL, size) &&
		      fits(h->fsets_off + m[i].fset_first * 8ULL,
			   m[i].fset_count * 8ULL, size);
		if (!ok)
			continue;
		XXH3_64bits_update(&st, buf + h->relocs_off + m[i].reloc_first * 4ULL,
				   m[i].reloc_count * 4ULL);
		XXH3_64bits_update(&st, buf + h->images_off + m[i].image_first * 8ULL,
				   m[i].image_count * 8ULL);
		XXH3_64bits_update(&st, buf + h->interns_off + m[i].intern_first * 8ULL,
				   m[i].intern_count * 8ULL);
		XXH3_64bits_update(&st, buf + h->fsets_off + m[i].fset_first * 8ULL,
				   m[i].fset_count * 8ULL);
		m[i].checksum = XXH3_64bits_digest(&st);
	}
	n = (void *)(buf + h->names_index_off);
	for (i = 0; i < h->nr_names; i++)
		if (fits(n[i].off, n[i].size, size))
			n[i].hash = XXH3_64bits(buf + n[i].off, n[i].size);
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, m, (size_t)h->nr_modules * sizeof(*m));
	XXH3_64bits_update(&st, buf + h->buckets_off, (size_t)h->nr_buckets * 4);
	XXH3_64bits_update(&st, buf + h->names.off, h->names.size);
	h->meta_checksum = XXH3_64bits_digest(&st);
	seal_header(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pycds_archive ar = { 0 };
	char err[PYCDS_ERR_LEN];
	uint8_t *buf;
	uint32_t i;
	int ok = 1;

	/* The runtime maps archives page-aligned; mimic the alignment. */
	buf = aligned_alloc(4096, (size + 4095) & ~(size_t)4095);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	/* Half the inputs are taken as they are, half resealed. */
	if (size && (data[size - 1] & 1))
		reseal(buf, size);
	if (pycds_header_check(buf, size, err, sizeof(err)))
		goto out;
	ar.base = buf;
	ar.size = size;
	ar.hdr = (const struct pycds_header *)buf;
	if (pycds_meta_check(&ar, err, sizeof(err)))
		goto out;
	(void)pycds_padding_check(&ar, -1, err, sizeof(err));
	for (i = 0; i < ar.hdr->nr_modules; i++) {
		const struct pycds_module *m = pycds_module_get(&ar, i);
		size_t len;
		const char *name = pycds_module_name(&ar, m, &len);

		/* Every listed name must be found, or the lookup must fail
		 * cleanly (duplicates, broken chains). */
		(void)pycds_index_lookup(&ar, name, len);
		if (pycds_module_check(&ar, i, NULL, err, sizeof(err)) ||
		    pycds_module_check_deep(&ar, i, err, sizeof(err))) {
			ok = 0;
			continue;
		}
		ar.delta = 0x10000;
		pycds_module_relocate(&ar, i, 0x1000);
		ar.delta = -0x10000;
		pycds_module_relocate(&ar, i, (uint64_t)-0x1000);
	}
	for (i = 0; i < ar.hdr->nr_names; i++)
		if (pycds_name_check(&ar, i, NULL, err, sizeof(err)) == 0)
			(void)pycds_name_entry(&ar, i);
	(void)pycds_index_lookup(&ar, "json", 4);
	(void)ok;
out:
	free(buf);
	return 0;
}
