// SPDX-License-Identifier: MIT
/*
 * Staging: copy one archive into the mount with io_uring, check it with the
 * runtime's validator, and publish it under its final name atomically.
 *
 * The copy goes to an unnamed O_TMPFILE inode sized with ftruncate first,
 * so that a huge=within_size tmpfs backs it with 2 MiB pages; io_uring
 * reads the source straight into a shared mapping of it.  Nothing
 * is visible under any name until it has been checked.  It is then linked
 * to a hidden temporary name and renamed over the final one: a process
 * that has the old archive mapped keeps the old inode.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "loader.h"
#include "pycds/reader.h"

#define CHUNK		(2u << 20)	/* bytes per read */
#define DEPTH		8		/* reads in flight */

static int fail(char *err, size_t len, int e, const char *what)
{
	snprintf(err, len, "%s: %s", what, strerror(e));
	return -e;
}

/*
 * Fill @dst (a shared mapping of the new file) from @in with io_uring:
 * CHUNK-sized reads straight into the destination's page cache, DEPTH in
 * flight, no bounce buffer.  A short read means the source changed (or
 * shrank) while it was read, which fails the copy.
 */
static int uring_copy(int in, uint8_t *dst, uint64_t size, char *err,
		      size_t errlen)
{
	struct io_uring ring;
	uint64_t next = 0, done = 0;
	unsigned int inflight = 0;
	int ret;

	ret = io_uring_queue_init(DEPTH, &ring, 0);
	if (ret)
		return fail(err, errlen, -ret, "io_uring_queue_init");
	while (done < size && !ret) {
		while (next < size && inflight < DEPTH) {
			struct io_uring_sqe *r = io_uring_get_sqe(&ring);
			unsigned int len = size - next < CHUNK ? (unsigned int)(size - next)
							       : CHUNK;

			io_uring_prep_read(r, in, dst + next, len, next);
			io_uring_sqe_set_data64(r, len);
			next += len;
			inflight++;
		}
		ret = io_uring_submit(&ring);
		if (ret < 0) {
			fail(err, errlen, -ret, "io_uring_submit");
			break;
		}
		ret = 0;
		do {
			struct io_uring_cqe *cqe;
			uint64_t want;
			int res;

			ret = io_uring_wait_cqe(&ring, &cqe);
			if (ret) {
				fail(err, errlen, -ret, "io_uring_wait_cqe");
				break;
			}
			want = io_uring_cqe_get_data64(cqe);
			res = cqe->res;
			io_uring_cqe_seen(&ring, cqe);
			inflight--;
			if (res < 0) {
				ret = fail(err, errlen, -res, "read");
				break;
			}
			if ((uint64_t)res != want) {
				snprintf(err, errlen,
					 "short read: the source changed while it was read");
				ret = -EIO;
				break;
			}
			done += (uint64_t)res;
		} while (io_uring_cq_ready(&ring));
	}
	/* On error, let what is in flight land before unmapping. */
	while (inflight) {
		struct io_uring_cqe *cqe;

		if (io_uring_wait_cqe(&ring, &cqe))
			break;
		io_uring_cqe_seen(&ring, cqe);
		inflight--;
	}
	io_uring_queue_exit(&ring);
	return ret;
}

/*
 * Give back the memory of every page-aligned run of zeros at least
 * HOLE_MIN long: the padding a build leaves before the written regions
 * (a hole in the file it writes, but read back as zeros by the copy).
 * Punching keeps the content, and it splits the huge page it falls in,
 * so that no process maps the padding with a PMD (which would count it
 * in every process's memory).  Advice only: without hole punching the
 * zeros stay.  Returns the bytes given back.
 */
#define HOLE_MIN	(64u << 10)

static uint64_t punch_zeros(int fd, const uint8_t *p, uint64_t size)
{
	uint64_t off = 0, run = 0, freed = 0;

	for (;; off += PYCDS_PAGE_SIZE) {
		if (off + PYCDS_PAGE_SIZE <= size &&
		    pycds_first_nonzero(p, off, off + PYCDS_PAGE_SIZE) ==
			    off + PYCDS_PAGE_SIZE) {
			run += PYCDS_PAGE_SIZE;
			continue;
		}
		if (run >= HOLE_MIN &&
		    !fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       (off_t)(off - run), (off_t)run))
			freed += run;
		run = 0;
		if (off + PYCDS_PAGE_SIZE > size)
			break;
	}
	return freed;
}

static int verify_map(const uint8_t *p, uint64_t size, char *err,
		      size_t errlen)
{
	struct pycds_archive ar = { .base = p, .size = size };

	ar.hdr = (const struct pycds_header *)p;
	return pycds_verify_all(&ar, -1, NULL, err, errlen);
}

int loader_verify_fd(int fd, uint64_t size, char *err, size_t errlen)
{
	uint8_t *p;
	int ret;

	if (size < sizeof(struct pycds_header)) {
		snprintf(err, errlen, "file too short for a header");
		return -EINVAL;
	}
	/* 2 MiB-aligned: a huge=within_size tmpfs maps it with PMDs and
	 * reading it costs one fault per 2 MiB. */
	p = pycds_map_aligned(fd, size, PROT_READ, MAP_SHARED,
			      PYCDS_REGION_ALIGN);
	if (!p)
		return fail(err, errlen, errno, "mmap");
	ret = verify_map(p, size, err, errlen);
	munmap(p, size);
	return ret;
}

int loader_stage(int dirfd, const char *src, const char *name, char *err,
		 size_t errlen)
{
	char tmpname[NAME_MAX + 32], fdpath[64];
	struct stat st;
	uint8_t *dst;
	int in, out, ret;

	in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (in < 0)
		return fail(err, errlen, errno, "open");
	if (fstat(in, &st)) {
		ret = fail(err, errlen, errno, "fstat");
		goto out_in;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "not a regular file");
		ret = -EINVAL;
		goto out_in;
	}
	out = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (out < 0) {
		ret = fail(err, errlen, errno, "create a temporary file");
		goto out_in;
	}
	/* Size first, so huge=within_size backs it with huge pages. */
	if (ftruncate(out, st.st_size)) {
		ret = fail(err, errlen, errno, "ftruncate");
		goto out_out;
	}
	if (st.st_size) {
		/* tmpfs allocates on write: make ENOSPC show now, not as a
		 * SIGBUS in a process later. */
		ret = fallocate(out, 0, 0, st.st_size);
		if (ret && errno != EOPNOTSUPP) {
			ret = fail(err, errlen, errno, "allocate");
			goto out_out;
		}
	}
	if (st.st_size < (off_t)sizeof(struct pycds_header)) {
		snprintf(err, errlen, "file too short for a header");
		ret = -EINVAL;
		goto out_out;
	}
	dst = pycds_map_aligned(out, st.st_size, PROT_READ | PROT_WRITE,
				MAP_SHARED, PYCDS_REGION_ALIGN);
	if (!dst) {
		ret = fail(err, errlen, errno, "mmap");
		goto out_out;
	}
	ret = uring_copy(in, dst, st.st_size, err, errlen);
	/* Check the copy, not the source: what is published is what was
	 * checked. */
	if (!ret)
		ret = verify_map(dst, st.st_size, err, errlen);
	if (!ret)
		punch_zeros(out, dst, st.st_size);
	munmap(dst, st.st_size);
	if (ret)
		goto out_out;
	if (fsync(out)) {
		ret = fail(err, errlen, errno, "fsync");
		goto out_out;
	}
	if (fchmod(out, 0444) || fchown(out, 0, 0)) {
		ret = fail(err, errlen, errno, "set owner and mode");
		goto out_out;
	}
	snprintf(tmpname, sizeof(tmpname), ".%s.%d.new", name, getpid());
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", out);
	unlinkat(dirfd, tmpname, 0);
	if (linkat(AT_FDCWD, fdpath, dirfd, tmpname, AT_SYMLINK_FOLLOW)) {
		ret = fail(err, errlen, errno, "link");
		goto out_out;
	}
	if (renameat(dirfd, tmpname, dirfd, name)) {
		ret = fail(err, errlen, errno, "rename");
		unlinkat(dirfd, tmpname, 0);
		goto out_out;
	}
	fsync(dirfd);
	ret = 0;
out_out:
	close(out);
out_in:
	close(in);
	return ret;
}

/* Remove hidden leftovers of a loader killed between link and rename. */
void loader_clean_stale(int dirfd)
{
	DIR *d;
	struct dirent *e;
	int fd = dup(dirfd);

	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);

		if (e->d_name[0] == '.' && n > 4 &&
		    !strcmp(e->d_name + n - 4, ".new"))
			unlinkat(dirfd, e->d_name, 0);
	}
	closedir(d);
}
