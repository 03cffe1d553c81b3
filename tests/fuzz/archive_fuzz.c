// SPDX-License-Identifier: MIT
/*
 * libFuzzer target over the archive validator: whatever the bytes, the
 * checks must not read outside them, and whatever they accept must be
 * safe to look up and relocate.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pycds/reader.h"
#include "pycds/sum.h"

/*
 * Make the checksums match the mutated bytes, so that the structural
 * checks behind them are what gets fuzzed, not XXH3 (pycds_seal() skips
 * what lies outside the file).
 */
static void reseal(uint8_t *buf, size_t size)
{
	struct pycds_header *h = (void *)buf;

	if (size < sizeof(*h))
		return;
	h->file_size = size;
	pycds_seal(buf, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pycds_archive ar = { 0 };
	char err[PYCDS_ERR_LEN];
	uint8_t *buf;
	uint32_t i;
	int ok = 1, all;

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
	all = pycds_verify_all(&ar, -1, NULL, err, sizeof(err));
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
	/* What verify accepts, the checks one by one accept too (before
	 * the relocations above changed the bytes). */
	if (all == 0 && !ok)
		abort();
out:
	free(buf);
	return 0;
}
