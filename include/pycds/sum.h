/* SPDX-License-Identifier: MIT */
/*
 * The archive's checksums, defined once: what each covers, for the
 * reader that checks them and every writer that seals a file (the build,
 * the tests, the fuzzer).  XXH3-64 throughout.
 */
#ifndef PYCDS_SUM_H
#define PYCDS_SUM_H

#include <stddef.h>
#include <stdint.h>

#include "pycds/archive.h"

/* XXH3-64 of @n bytes: names pool entries, and module names as the bucket
 * table hashes them. */
uint64_t pycds_sum_bytes(const void *p, size_t n);

/* The header, its header_checksum field taken as zero. */
uint64_t pycds_sum_header(const struct pycds_header *h);

/* The index: the module table, the buckets and the names blob, where the
 * header at @base places them.  0, or -1 if one lies outside @size. */
int pycds_sum_meta(const uint8_t *base, uint64_t size, uint64_t *out);

/* Module @m: its four region spans, then its slices of the relocation,
 * image, intern and frozenset tables.  0, or -1 if one lies outside. */
int pycds_sum_module(const uint8_t *base, uint64_t size,
		     const struct pycds_module *m, uint64_t *out);

/*
 * Recompute every checksum of the file at @base (@size bytes), in the
 * order they cover each other: modules, names pool entries, the index,
 * the header.  Entries whose ranges lie outside the file keep what they
 * hold, so any bytes can be sealed.
 */
void pycds_seal(uint8_t *base, uint64_t size);

#endif /* PYCDS_SUM_H */
