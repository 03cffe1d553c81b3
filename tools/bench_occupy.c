// SPDX-License-Identifier: MIT
/*
 * LD_PRELOAD=bench-occupy.so PYCDS_BENCH_OCCUPY=ADDR: one inaccessible
 * page mapped at ADDR before the interpreter starts, so that an archive
 * whose preferred base covers ADDR must be mapped elsewhere and
 * relocated (tools/bench.py, the relocated start).  With ADDR outside
 * the archive's range it costs a process the same and changes nothing.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

__attribute__((constructor)) static void occupy(void)
{
	const char *s = getenv("PYCDS_BENCH_OCCUPY");
	unsigned long a;
	void *p;

	if (!s || !*s)
		return;
	a = strtoul(s, NULL, 0) & ~4095ul;
	p = mmap((void *)a, 4096, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p != (void *)a) {
		fprintf(stderr, "bench-occupy: cannot map a page at %#lx\n", a);
		_exit(3);
	}
}
