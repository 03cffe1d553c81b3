/* SPDX-License-Identifier: MIT */
/*
 * What the library's files share, and nothing outside it sees.
 */
#ifndef PYCDS_LIB_INTERNAL_H
#define PYCDS_LIB_INTERNAL_H

#include <stdint.h>
#include <stddef.h>

#include "pycds/reader.h"

/* Describe a problem in the caller's buffer; returns -EINVAL. */
int pycds__fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define fail pycds__fail

/* Is [off, off + len) inside [0, size)?  Overflow-safe. */
static inline int in_file(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

/* Does a table of @count entries of @esize bytes at @off fit in @size? */
static inline int table_fits(uint64_t off, uint64_t count, uint64_t esize,
		      uint64_t size)
{
	if (off > size || off % 8)
		return 0;
	return count <= (size - off) / esize;
}

/* Bounds and fields of module entry @idx (header.c). */
int pycds__module_entry_check(const struct pycds_archive *ar, uint32_t idx,
			      char *err, size_t errlen);

#endif /* PYCDS_LIB_INTERNAL_H */
