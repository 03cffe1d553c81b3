// SPDX-License-Identifier: MIT
/*
 * XXH3 with its AVX2 kernel.  This file alone is built with -mavx2;
 * archive.c calls it only where the CPU has AVX2 (about twice the SSE2
 * kernel's speed on the megabytes a module's checksum covers).
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "xxh.h"

void pycds_xxh3_update_avx2(XXH3_state_t *st, const void *p, size_t n)
{
	XXH3_64bits_update(st, p, n);
}
