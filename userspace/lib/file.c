// SPDX-License-Identifier: MIT
/*
 * The file as a whole: zeros outside the tables and regions (holes
 * skipped unread), mapping at an alignment, and the one "check
 * everything" every reader uses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

static int cmp_span(const void *a, const void *b)
{
	const struct pycds_span *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

uint64_t pycds_first_nonzero(const uint8_t *base, uint64_t at, uint64_t end)
{
	for (; at + 8 <= end; at += 8) {
		uint64_t v;

		memcpy(&v, base + at, 8);
		if (v)
			break;
	}
	for (; at < end; at++)
		if (base[at])
			return at;
	return end;
}

int pycds_next_data(int fd, uint64_t at, uint64_t end, uint64_t *data,
		    uint64_t *hole)
{
	off_t d, h;

	if (fd < 0)
		return -1;
	d = lseek(fd, (off_t)at, SEEK_DATA);
	if (d < 0)
		return errno == ENXIO ? 0 : -1;
	if ((uint64_t)d >= end)
		return 0;
	h = lseek(fd, d, SEEK_HOLE);
	/* Past @end, unknown, or no progress: data up to @end. */
	if (h <= d || (uint64_t)h > end)
		h = (off_t)end;
	*data = (uint64_t)d;
	*hole = (uint64_t)h;
	return 1;
}

/* The first non-zero byte of [at, end) outside the holes of @fd, or @end. */
static uint64_t first_nonzero_data(const uint8_t *base, int fd, uint64_t at,
				   uint64_t end)
{
	uint64_t data, hole, nz;
	int r;

	while (at < end) {
		r = pycds_next_data(fd, at, end, &data, &hole);
		if (r == 0)
			return end;
		if (r < 0)
			return pycds_first_nonzero(base, at, end);
		nz = pycds_first_nonzero(base, data, hole);
		if (nz < hole)
			return nz;
		at = hole;
	}
	return end;
}

int pycds_padding_check(const struct pycds_archive *ar, int fd, char *err,
			size_t errlen)
{
	const struct pycds_header *h = ar->hdr;
	struct pycds_span s[9 + PYCDS_NR_ALL_REGIONS];
	uint64_t at = 0, end;
	unsigned int n = 0, i, r;

	s[n++] = (struct pycds_span){ 0, h->header_size };
	s[n++] = (struct pycds_span){ h->modules_off,
				      (uint64_t)h->nr_modules *
					      sizeof(struct pycds_module) };
	s[n++] = (struct pycds_span){ h->buckets_off, (uint64_t)h->nr_buckets * 4 };
	s[n++] = h->names;
	s[n++] = (struct pycds_span){ h->relocs_off, h->nr_relocs * 4 };
	s[n++] = (struct pycds_span){ h->images_off, h->nr_images * 8 };
	s[n++] = (struct pycds_span){ h->interns_off, h->nr_interns * 8 };
	s[n++] = (struct pycds_span){ h->fsets_off, h->nr_fsets * 8 };
	s[n++] = (struct pycds_span){ h->names_index_off,
				      (uint64_t)h->nr_names *
					      sizeof(struct pycds_name) };
	for (r = 0; r < PYCDS_NR_ALL_REGIONS && n < sizeof(s) / sizeof(s[0]); r++)
		s[n++] = h->regions[r];
	qsort(s, n, sizeof(s[0]), cmp_span);
	for (i = 0; i <= n; i++) {
		/* Offsets were checked against the file; clamp anyway. */
		end = i < n ? s[i].off : ar->size;
		if (end > ar->size)
			end = ar->size;
		if (end > at &&
		    (at = first_nonzero_data(ar->base, fd, at, end)) < end)
			return fail(err, errlen,
				    "non-zero byte in padding at offset %llu",
				    (unsigned long long)at);
		if (i < n && s[i].off + s[i].size > at)
			at = s[i].off + s[i].size;
	}
	return 0;
}

void *pycds_map_aligned(int fd, size_t size, int prot, int flags,
			size_t align)
{
	size_t span = (size + PYCDS_PAGE_SIZE - 1) &
		      ~(size_t)(PYCDS_PAGE_SIZE - 1);
	uint8_t *raw, *p;
	int e;

	raw = mmap(NULL, span + align, PROT_NONE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	p = (uint8_t *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
	if (mmap(p, size, prot, flags | MAP_FIXED | (fd < 0 ? MAP_ANONYMOUS : 0),
		 fd, 0) == MAP_FAILED) {
		e = errno;
		munmap(raw, span + align);
		errno = e;
		return NULL;
	}
	if (p > raw)
		munmap(raw, p - raw);
	if (raw + span + align > p + span)
		munmap(p + span, raw + span + align - (p + span));
	return p;
}

int pycds_verify_all(const struct pycds_archive *ar, int fd,
		     const struct pycds_image_ctx *img, char *err,
		     size_t errlen)
{
	uint32_t i;
	int ret;

	ret = pycds_header_check(ar->base, ar->size, err, errlen);
	if (!ret)
		ret = pycds_meta_check(ar, err, errlen);
	if (!ret)
		ret = pycds_padding_check(ar, fd, err, errlen);
	for (i = 0; !ret && i < ar->hdr->nr_modules; i++) {
		ret = pycds_module_check(ar, i, img, err, errlen);
		if (!ret)
			ret = pycds_module_check_deep(ar, i, err, errlen);
	}
	for (i = 0; !ret && i < ar->hdr->nr_names; i++)
		ret = pycds_name_check(ar, i, img, err, errlen);
	return ret;
}
