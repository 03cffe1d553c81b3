// SPDX-License-Identifier: MIT
/*
 * Read-ahead of the archive into the page cache.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <liburing.h>

#include "runtime.h"

/*
 * Read-ahead of the archive into the page cache, for archives on a disk
 * whose pages may have been evicted.  "uring" hands POSIX_FADV_WILLNEED to
 * io_uring, which runs it in a kernel worker while start-up goes on;
 * "sync" calls posix_fadvise(), which queues the reads itself before
 * returning; "auto" is uring on a disk, none on a tmpfs.  Either way the
 * read-ahead overlaps the archive's checks, and the ring is gone before
 * the program runs (it holds a descriptor).  The default is
 * none: measured cold starts from ext4 gained nothing from either, and
 * setting up a ring cost python -c pass about 0.5 ms.
 */
#define PYCDS_TMPFS_MAGIC 0x01021994
#define PYCDS_RAMFS_MAGIC 0x858458f6

#define PREFETCH_AUTO (PREFETCH_URING + 1)

static int prefetch_policy(struct pycds_session *rt, int fd)
{
	static const char *const names[] = {
		[PREFETCH_NONE] = "none", [PREFETCH_SYNC] = "sync",
		[PREFETCH_URING] = "uring", [PREFETCH_AUTO] = "auto", NULL,
	};
	int p = env_choice(rt->path, "PYCDS_PREFETCH", names, PREFETCH_NONE);
	struct statfs sfs;

	if (p != PREFETCH_AUTO)
		return p;
	/* auto: on a disk only; on a tmpfs the file is memory. */
	if (fstatfs(fd, &sfs) || sfs.f_type == PYCDS_TMPFS_MAGIC ||
	    sfs.f_type == (typeof(sfs.f_type))PYCDS_RAMFS_MAGIC)
		return PREFETCH_NONE;
	return PREFETCH_URING;
}

void prefetch_start(struct pycds_session *rt, int fd, size_t size)
{
	struct io_uring_sqe *sqe;
	struct io_uring *ring;

	rt->prefetch = prefetch_policy(rt, fd);
	if (rt->prefetch == PREFETCH_SYNC) {
		posix_fadvise(fd, 0, size, POSIX_FADV_WILLNEED);
		return;
	}
	if (rt->prefetch != PREFETCH_URING)
		return;
	ring = calloc(1, sizeof(*ring));
	if (!ring)
		goto sync;
	if (io_uring_queue_init(2, ring, 0))
		goto sync_free;
	sqe = io_uring_get_sqe(ring);
	if (!sqe)
		goto sync_exit;
	io_uring_prep_fadvise(sqe, fd, 0, size, POSIX_FADV_WILLNEED);
	if (io_uring_submit(ring) != 1)
		goto sync_exit;
	rt->ring = ring;
	rt->ring_pid = getpid();
	return;
sync_exit:
	io_uring_queue_exit(ring);
sync_free:
	free(ring);
sync:
	/* No io_uring (seccomp, io_uring_disabled, old kernel). */
	rt->prefetch = PREFETCH_SYNC;
	posix_fadvise(fd, 0, size, POSIX_FADV_WILLNEED);
}

/* Reap the prefetch and drop the ring: the read-ahead it queued goes on
 * without it. */
void prefetch_end(struct pycds_session *rt)
{
	struct io_uring_cqe *cqe;

	if (!rt->ring)
		return;
	/* A child of fork() shares the ring's memory with its parent: it
	 * leaves the completion to the parent and only drops its copy. */
	if (getpid() == rt->ring_pid && !io_uring_wait_cqe(rt->ring, &cqe))
		io_uring_cqe_seen(rt->ring, cqe);
	io_uring_queue_exit(rt->ring);
	free(rt->ring);
	rt->ring = NULL;
}
