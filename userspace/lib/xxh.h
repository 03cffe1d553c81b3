/* SPDX-License-Identifier: MIT */
/*
 * XXH3 kernels chosen at run time (userspace/lib/xxh_avx2.c).  Include after
 * <xxhash.h> built with XXH_INLINE_ALL.
 */
#ifndef PYCDS_XXH_H
#define PYCDS_XXH_H

#include <stddef.h>

/* XXH3_64bits_update() with the AVX2 kernel: only on a CPU with AVX2. */
void pycds_xxh3_update_avx2(XXH3_state_t *st, const void *p, size_t n);

#endif
