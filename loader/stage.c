// SPDX-License-Identifier: MIT
/*
 * Staging: copy one archive into the mount with io_uring, check it with the
 * runtime's validator, and publish it under its final name atomically.
 *
 * The copy goes to an unnamed O_TMPFILE inode sized with ftruncate first,
 * so that a huge=within_size tmpfs backs it with 2 MiB pages, and nothing
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

#define CHUNK		(1u << 20)	/* bytes per read/write pair */
#define DEPTH		8		/* pairs in flight */

static int fail(char *err, size_t len, int e, const char *what)
{
	snprintf(err, len, "%s: %s", what, strerror(e));
	return -e;
}

/*
 * Copy @size bytes from @in to @out: each chunk is a read linked to the
 * write of the same buffer, DEPTH chunks in flight.  A short read means
 * the source changed under us, which fails the copy.
 */
static int uring_copy(int in, int out, uint64_t size, char *err,
		      size_t errlen)
{
	struct io_uring ring;
	uint8_t *bufs;
	uint64_t next = 0, done = 0;
	unsigned int inflight = 0, i;
	int ret;

	ret = io_uring_queue_init(DEPTH * 2, &ring, 0);
	if (ret)
		return fail(err, errlen, -ret, "io_uring_queue_init");
	bufs = aligned_alloc(4096, (size_t)CHUNK * DEPTH);
	if (!bufs) {
		io_uring_queue_exit(&ring);
		return fail(err, errlen, ENOMEM, "allocate buffers");
	}
	ret = 0;
	while (done < size && !ret) {
		/* Fill every free buffer with a read -> write pair. */
		for (i = 0; i < DEPTH && next < size && inflight < DEPTH; i++) {
			struct io_uring_sqe *r, *w;
			unsigned int slot = (unsigned int)((next / CHUNK) % DEPTH);
			unsigned int len = size - next < CHUNK ? (unsigned int)(size - next)
							       : CHUNK;
			uint8_t *buf = bufs + (size_t)slot * CHUNK;

			r = io_uring_get_sqe(&ring);
			w = io_uring_get_sqe(&ring);
			io_uring_prep_read(r, in, buf, len, next);
			r->flags |= IOSQE_IO_LINK;
			io_uring_sqe_set_data64(r, (uint64_t)len << 1);
			io_uring_prep_write(w, out, buf, len, next);
			io_uring_sqe_set_data64(w, ((uint64_t)len << 1) | 1);
			next += len;
			inflight++;
		}
		ret = io_uring_submit(&ring);
		if (ret < 0) {
			fail(err, errlen, -ret, "io_uring_submit");
			break;
		}
		ret = 0;
		/* Reap at least one write, then whatever else completed. */
		do {
			struct io_uring_cqe *cqe;
			uint64_t tag;
			int res;

			ret = io_uring_wait_cqe(&ring, &cqe);
			if (ret) {
				fail(err, errlen, -ret, "io_uring_wait_cqe");
				break;
			}
			tag = io_uring_cqe_get_data64(cqe);
			res = cqe->res;
			io_uring_cqe_seen(&ring, cqe);
			if (res < 0) {
				ret = fail(err, errlen, -res,
					   tag & 1 ? "write" : "read");
				break;
			}
			if ((uint64_t)res != tag >> 1) {
				snprintf(err, errlen,
					 "short copy: the source changed while it was read");
				ret = -EIO;
				break;
			}
			if (!(tag & 1))
				continue;	/* a read; its write follows */
			done += (uint64_t)res;
			inflight--;
		} while (!ret && io_uring_cq_ready(&ring));
	}
	/* On error, drain what is in flight before freeing the buffers. */
	while (inflight && ret) {
		struct io_uring_cqe *cqe;

		if (io_uring_wait_cqe(&ring, &cqe))
			break;
		if (io_uring_cqe_get_data64(cqe) & 1)
			inflight--;
		io_uring_cqe_seen(&ring, cqe);
	}
	io_uring_queue_exit(&ring);
	free(bufs);
	return ret;
}

int loader_verify_fd(int fd, uint64_t size, char *err, size_t errlen)
{
	struct pycds_archive ar = { 0 };
	void *p;
	uint32_t i;
	int ret;

	if (size < sizeof(struct pycds_header)) {
		snprintf(err, errlen, "file too short for a header");
		return -EINVAL;
	}
	p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return fail(err, errlen, errno, "mmap");
	ar.base = p;
	ar.size = size;
	ar.hdr = p;
	ret = pycds_header_check(p, size, err, errlen);
	if (!ret)
		ret = pycds_meta_check(&ar, err, errlen);
	for (i = 0; !ret && i < ar.hdr->nr_modules; i++)
		ret = pycds_module_check(&ar, i, NULL, err, errlen);
	for (i = 0; !ret && i < ar.hdr->nr_names; i++)
		ret = pycds_name_check(&ar, i, NULL, err, errlen);
	munmap(p, size);
	return ret;
}

int loader_stage(int dirfd, const char *src, const char *name, char *err,
		 size_t errlen)
{
	char tmpname[NAME_MAX + 32], fdpath[64];
	struct stat st;
	int in, out, ret;

	in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
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
	ret = uring_copy(in, out, st.st_size, err, errlen);
	if (ret)
		goto out_out;
	if (fsync(out)) {
		ret = fail(err, errlen, errno, "fsync");
		goto out_out;
	}
	ret = loader_verify_fd(out, st.st_size, err, errlen);
	if (ret)
		goto out_out;
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
