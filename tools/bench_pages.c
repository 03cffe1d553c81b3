// SPDX-License-Identifier: MIT
/*
 * bench-pages: what it costs this machine to give a process its own
 * writable copy of 4 MiB of a file, the ways the runtime can take it.
 *
 *   cow      MAP_PRIVATE file mapping, MADV_POPULATE_WRITE, one write a page
 *   huge     anonymous 2 MiB-aligned memory with MADV_HUGEPAGE, pread(),
 *            one write a page (PYCDS_PREFAULT=huge)
 *   small    the same with MADV_NOHUGEPAGE (what an allocator's fresh
 *            arenas cost, as when unmarshalling)
 *   read     MAP_PRIVATE file mapping, one read a page (pages left shared)
 *
 * Usage: bench-pages FILE [ROUNDS]   (FILE at least 4 MiB; medians in ms)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pycds/reader.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define SIZE (4u << 20)
#define HUGE (2u << 20)
#define PAGE 4096u

enum method { COW, HUGEPG, SMALL, READ, NR_METHODS };
static const char *const names[] = { "cow", "huge", "small", "read" };

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Anonymous memory, or the file, at a 2 MiB boundary (so that the
 * anonymous range can be a huge page, and a huge-page tmpfs can map the
 * file with PMDs). */
static uint8_t *anon_aligned(void)
{
	return pycds_map_aligned(-1, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE,
				 HUGE);
}

static uint8_t *file_aligned(int fd)
{
	return pycds_map_aligned(fd, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE,
				 HUGE);
}

static double once(int fd, enum method m)
{
	volatile uint8_t sink = 0;
	double t0 = now_ms(), t;
	uint8_t *p;
	size_t i;

	if (m == COW || m == READ) {
		p = file_aligned(fd);
		if (!p)
			return -1;
		if (m == COW)
			madvise(p, SIZE, MADV_POPULATE_WRITE);
	} else {
		p = anon_aligned();
		if (!p)
			return -1;
		madvise(p, SIZE, m == HUGEPG ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
		if (pread(fd, p, SIZE, 0) != (ssize_t)SIZE) {
			munmap(p, SIZE);
			return -1;
		}
	}
	for (i = 0; i < SIZE; i += PAGE) {
		if (m == READ)
			sink += p[i];
		else
			p[i]++;
	}
	t = now_ms() - t0;
	munmap(p, SIZE);
	(void)sink;
	return t;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int rounds = argc > 2 ? atoi(argv[2]) : 15, fd, r, m;
	double *t[NR_METHODS];
	struct stat st;

	if (argc < 2 || rounds < 1) {
		fprintf(stderr, "usage: bench-pages FILE [ROUNDS]\n");
		return 2;
	}
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) || st.st_size < (off_t)SIZE) {
		fprintf(stderr, "bench-pages: %s: need a readable file of at least 4 MiB\n",
			argv[1]);
		return 1;
	}
	for (m = 0; m < NR_METHODS; m++) {
		t[m] = calloc(rounds, sizeof(double));
		if (!t[m])
			return 1;
	}
	/* Interleaved, so drift in the machine hits every method alike. */
	for (r = 0; r < rounds; r++)
		for (m = 0; m < NR_METHODS; m++)
			t[m][r] = once(fd, m);
	for (m = 0; m < NR_METHODS; m++) {
		qsort(t[m], rounds, sizeof(double), cmp);
		printf("%s %.3f\n", names[m], t[m][rounds / 2]);
	}
	return 0;
}
