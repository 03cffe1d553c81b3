// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include <string.h>

#include "table.h"

static size_t stride(const struct pycds_table *t)
{
	return sizeof(uintptr_t) + ((t->val_size + 7) & ~(size_t)7);
}

static uintptr_t *key_at(const struct pycds_table *t, size_t i)
{
	return (uintptr_t *)(t->e + i * stride(t));
}

/* Fibonacci hashing: keys are addresses (16-byte aligned) and small
 * indices, both badly spread in their low bits. */
static size_t home(const struct pycds_table *t, uintptr_t key)
{
	return (size_t)(((uint64_t)key * 0x9e3779b97f4a7c15ULL) >> 20) &
	       (t->cap - 1);
}

/* The slot of @key, or of the empty entry where it would go. */
static size_t probe(const struct pycds_table *t, uintptr_t key)
{
	size_t i = home(t, key);

	while (*key_at(t, i) && *key_at(t, i) != key)
		i = (i + 1) & (t->cap - 1);
	return i;
}

void *pycds_table_find(const struct pycds_table *t, uintptr_t key)
{
	size_t i;

	if (!t->cap)
		return NULL;
	i = probe(t, key);
	return *key_at(t, i) ? key_at(t, i) + 1 : NULL;
}

static int grow(struct pycds_table *t)
{
	struct pycds_table n = *t;
	size_t i;

	n.cap = t->cap ? t->cap * 2 : 1024;
	n.e = calloc(n.cap, stride(t));
	if (!n.e)
		return -1;
	for (i = 0; i < t->cap; i++) {
		uintptr_t k = *key_at(t, i);

		if (k)
			memcpy(key_at(&n, probe(&n, k)), key_at(t, i),
			       stride(t));
	}
	free(t->e);
	*t = n;
	return 0;
}

void *pycds_table_put(struct pycds_table *t, uintptr_t key)
{
	uintptr_t *k;

	if ((t->used + 1) * 2 > t->cap && grow(t))
		return NULL;
	k = key_at(t, probe(t, key));
	if (!*k) {
		*k = key;
		t->used++;
	}
	return k + 1;
}

void pycds_table_clear(struct pycds_table *t)
{
	if (t->e)
		memset(t->e, 0, t->cap * stride(t));
	t->used = 0;
}
