/* SPDX-License-Identifier: MIT */
/*
 * An open-addressing table on non-zero integer keys (an object's address,
 * an index plus one), each entry holding @val_size bytes of value.  Used
 * by the writer (objects emitted, objects a process writes) and the
 * runtime (names found interned already).  Plain C, part of libpycds.a
 * for its users inside the tree, not of the reader API.
 */
#ifndef PYCDS_TABLE_H
#define PYCDS_TABLE_H

#include <stddef.h>
#include <stdint.h>

struct pycds_table {
	uint8_t *e;		/* cap entries: key, then the value */
	size_t cap, used;
	size_t val_size;	/* set before first use */
};

/* The value of @key, or NULL. */
void *pycds_table_find(const struct pycds_table *t, uintptr_t key);
/* The value of @key, a new zeroed one if it was absent; NULL when out of
 * memory (the table is unchanged). */
void *pycds_table_put(struct pycds_table *t, uintptr_t key);
/* Empty it, keeping its memory. */
void pycds_table_clear(struct pycds_table *t);

#endif /* PYCDS_TABLE_H */
