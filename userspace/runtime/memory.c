// SPDX-License-Identifier: MIT
/*
 * What a process copies of the archive, and when: prefaulting the spans
 * it will write, private huge pages for chunks it writes almost whole, and
 * keeping the padding a hole.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"

/*
 * The names pool, code and data regions hold what the build found a
 * process writes (see the writer's placement): on 3.11 every object it
 * touches, whose refcount it writes; on 3.12+, where refcounts no longer
 * write, the names it interns (the interned state lives in the str), the
 * code that runs (its adaptive counters), and every tuple holding a slot
 * redirected to a name the process had interned already.  Measured on
 * Debian 13's 3.13.5 after stdlib6: 797 of the 904 pages of those regions
 * were copied on write (names 172 of 172, code 345 of 443, data 280 of
 * 289); on 3.11, 99%.  Taking one private copy of those spans with a
 * single MADV_POPULATE_WRITE costs about 1 us a page here against about
 * 16 us for each write fault, and a whole 2 MiB chunk in one huge page
 * less still.  Cold and idle spans are only mapped, read-only, unless
 * the archive is relocated.
 */

static void populate(struct pycds_session *rt, uint64_t off, uint64_t size,
		     int write)
{
	uintptr_t lo, hi;

	lo = ((uintptr_t)rt->ar.base + off) & ~(uintptr_t)(PYCDS_PAGE_SIZE - 1);
	hi = ((uintptr_t)rt->ar.base + off + size + PYCDS_PAGE_SIZE - 1) &
	     ~(uintptr_t)(PYCDS_PAGE_SIZE - 1);
	/* Advice only: on failure the pages fault in one by one. */
	madvise((void *)lo, hi - lo,
		write && rt->prefault >= PF_WRITE ? MADV_POPULATE_WRITE
						: MADV_POPULATE_READ);
}

/* Is region @r written in every page a process uses? */
static int region_written(struct pycds_session *rt, int r)
{
	switch (r) {
	case PYCDS_REGION_NAMES:
	case PYCDS_REGION_CODE:
	case PYCDS_REGION_DATA:
		return 1;
	default:
		return rt->ar.delta || rt->ctx.bias;
	}
}

/* Worth a huge page: inside the file, aligned, and at least 15/16 of it
 * spans that would be copied on write anyway.  A huge page is 2 MiB of
 * the process's own memory however little of it is used: with 3/4, the
 * chunk where the written spans end and the tables begin was copied whole
 * (stdlib6: 464 KiB of tables in each process, 1.1% of PSS saved against
 * 4.3% with `write`); that chunk's pages are copied one by one instead. */
static int chunk_eligible(struct pycds_session *rt, uint64_t c)
{
	uint64_t lo = c * HUGE_CHUNK, hi = lo + HUGE_CHUNK, hot = 0;
	int r;

	if (hi > rt->map_size || ((uintptr_t)rt->map + lo) % HUGE_CHUNK)
		return 0;
	for (r = 0; r < PYCDS_NR_ALL_REGIONS; r++) {
		const struct pycds_span *s = &rt->ar.hdr->regions[r];
		uint64_t a = s->off > lo ? s->off : lo;
		uint64_t b = s->off + s->size < hi ? s->off + s->size : hi;

		if (region_written(rt, r) && b > a)
			hot += b - a;
	}
	return hot >= HUGE_CHUNK / 16 * 15;
}

/*
 * Pages of the chunk at @addr this process holds a copy of (anonymous, or
 * swapped out): they may differ from the file.  One bit per page in @own.
 * Returns 0, or -1 if /proc/self/pagemap cannot say.
 */
static int own_pages(const uint8_t *addr, uint64_t *own)
{
	uint64_t ent[HUGE_CHUNK / PYCDS_PAGE_SIZE];
	size_t i, n = HUGE_CHUNK / PYCDS_PAGE_SIZE;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	ssize_t got;

	if (fd < 0)
		return -1;
	got = pread(fd, ent, sizeof(ent),
		    (off_t)((uintptr_t)addr / PYCDS_PAGE_SIZE * 8));
	close(fd);
	if (got != (ssize_t)sizeof(ent))
		return -1;
	memset(own, 0, n / 8);
	for (i = 0; i < n; i++) {
		int present = ent[i] >> 63 & 1, swapped = ent[i] >> 62 & 1;
		int file = ent[i] >> 61 & 1;

		if (swapped || (present && !file))
			own[i / 64] |= 1ULL << (i % 64);
	}
	return 0;
}

/*
 * Replace chunk @c of the mapping by a private huge page holding the same
 * bytes as the process sees there now.  The copy is assembled aside and
 * moved into place with one mremap(), so the range always holds the
 * archive.  Called with the GIL held: no Python code runs meanwhile, so
 * nothing writes to the chunk between the copy and the move.
 * Returns 0, or -1 with the mapping unchanged.
 */
static int chunk_copy(struct pycds_session *rt, uint64_t c)
{
	uint8_t *dst = rt->map + c * HUGE_CHUNK, *tmp;
	uint64_t own[HUGE_CHUNK / PYCDS_PAGE_SIZE / 64];
	size_t done = 0, i;
	struct stat st;
	int from_fd, fd;

	tmp = pycds_map_aligned(-1, HUGE_CHUNK, PROT_READ | PROT_WRITE,
				MAP_PRIVATE, HUGE_CHUNK);
	if (!tmp)
		return -1;
	madvise(tmp, HUGE_CHUNK, MADV_HUGEPAGE);
	/*
	 * Pages still shared with the page cache are read by the kernel
	 * straight from it, through a descriptor opened for this copy only
	 * (the process keeps none of pycds's), if the path still names the
	 * file mapped (a publish may have replaced it); pages this process
	 * already copied (prepared modules) are taken from the mapping.
	 * Failing either, the whole chunk is copied from the mapping, which
	 * is always right.
	 */
	fd = own_pages(dst, own) ? -1 : open(rt->path, O_RDONLY | O_CLOEXEC |
						      O_NONBLOCK | O_NOCTTY);
	from_fd = fd >= 0 && !fstat(fd, &st) && st.st_dev == rt->dev &&
		  st.st_ino == rt->ino;
	while (from_fd && done < HUGE_CHUNK) {
		ssize_t n = pread(fd, tmp + done, HUGE_CHUNK - done,
				  c * HUGE_CHUNK + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += n;
	}
	if (fd >= 0)
		close(fd);
	if (from_fd && done == HUGE_CHUNK) {
		for (i = 0; i < HUGE_CHUNK / PYCDS_PAGE_SIZE; i++)
			if (own[i / 64] >> (i % 64) & 1)
				memcpy(tmp + i * PYCDS_PAGE_SIZE,
				       dst + i * PYCDS_PAGE_SIZE, PYCDS_PAGE_SIZE);
	} else {
		/* Fails where a page cannot be read (the file shrank under
		 * the mapping, an old kernel): then no copy at all. */
		if (madvise(dst, HUGE_CHUNK, MADV_POPULATE_READ)) {
			munmap(tmp, HUGE_CHUNK);
			return -1;
		}
		memcpy(tmp, dst, HUGE_CHUNK);
	}
	if (mremap(tmp, HUGE_CHUNK, HUGE_CHUNK, MREMAP_MAYMOVE | MREMAP_FIXED,
		   dst) != (void *)dst) {
		munmap(tmp, HUGE_CHUNK);
		return -1;
	}
	rt->huge_chunks++;
	return 0;
}

/* Transparent huge pages for anonymous memory, always or on request? */
static int thp_available(void)
{
	char buf[128] = "";
	ssize_t n;
	int fd;

	fd = open("/sys/kernel/mm/transparent_hugepage/enabled",
		  O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return strstr(buf, "[always]") || strstr(buf, "[madvise]");
}

/*
 * Is chunk @c a private huge page now?  Called before @need more bytes of
 * it are copied.  A chunk is copied whole once the process has asked for
 * HUGE_AFTER bytes of it: by then the rest of it is mostly what comes next
 * in import order, and a small program does not pay 2 MiB for a few
 * modules.
 */
#define HUGE_AFTER (256u << 10)
/* A standard-library layer is shared by programs that each use a part of
 * it (PYCDS_ARCHIVE_STDLIB): its chunks are copied whole only when most
 * of one was asked for.  Measured on Debian 13's 3.13.5, rich_app on the
 * layer built from five workloads: three chunks copied whole at 926, 390
 * and 658 kB asked, 6 MiB for 2 MiB of spans; a fleet of 20 processes of
 * five workloads then had 21% more PSS than stock. */
#define HUGE_AFTER_SPARSE (1536u << 10)

static int chunk_ready(struct pycds_session *rt, uint64_t c, uint64_t need)
{
	if (rt->huge[c] == CHUNK_UNSEEN)
		rt->huge[c] = chunk_eligible(rt, c) ? CHUNK_PENDING
						    : CHUNK_MAPPED;
	rt->asked[c] += need;
	if (rt->huge[c] == CHUNK_PENDING &&
	    rt->asked[c] >= (rt->ar.hdr->flags & PYCDS_ARCHIVE_STDLIB
				     ? HUGE_AFTER_SPARSE
				     : HUGE_AFTER)) {
		/* Asked only now: reading sysfs costs a small program
		 * 40-100 us here. */
		if (rt->thp < 0)
			rt->thp = thp_available();
		rt->huge[c] = rt->thp && !chunk_copy(rt, c) ? CHUNK_COPIED
						    : CHUNK_MAPPED;
	}
	return rt->huge[c] == CHUNK_COPIED;
}

/* Fault in [off, off + size) before a module's first use: @write when the
 * process will write those pages anyway. */
void prefault(struct pycds_session *rt, uint64_t off, uint64_t size, int write)
{
	uint64_t end = off + size, c, next;

	if (rt->prefault == PF_NONE || !size)
		return;
	if (!write || rt->prefault != PF_HUGE || !rt->huge) {
		populate(rt, off, size, write);
		return;
	}
	while (off < end) {
		c = off / HUGE_CHUNK;
		next = (c + 1) * HUGE_CHUNK < end ? (c + 1) * HUGE_CHUNK : end;
		if (!chunk_ready(rt, c, next - off))
			populate(rt, off, next - off, write);
		off = next;
	}
}

/* PYCDS_PREFAULT: huge (the default where the kernel has transparent huge
 * pages), write, read or none.  Whether the kernel has huge pages is asked
 * on first need. */
int prefault_policy(struct pycds_session *rt)
{
	static const char *const names[] = {
		[PF_NONE] = "none", [PF_READ] = "read", [PF_WRITE] = "write",
		[PF_HUGE] = "huge", NULL,
	};

	return env_choice(rt->path, "PYCDS_PREFAULT", names, PF_HUGE);
}

/*
 * The padding a build leaves before the written regions is a hole in the
 * file (see pycds-loader).  A process never reads it, but khugepaged,
 * finding the rest of that 2 MiB extent in memory while the archive is
 * mapped, would collapse it into a huge page and fill the hole (688 kB of
 * stdlib6's archive, after about 10 s), which processes would then map
 * whole with a PMD.  Advice only: a mapping of the padding that allows no
 * huge page keeps the extent out of its reach.
 */
void padding_keep_hole(struct pycds_session *rt)
{
	const struct pycds_span *idle = &rt->ar.hdr->regions[PYCDS_REGION_IDLE];
	uint64_t lo = (idle->off + idle->size + PYCDS_PAGE_SIZE - 1) &
		      ~(uint64_t)(PYCDS_PAGE_SIZE - 1);
	uint64_t hi = rt->ar.hdr->regions[PYCDS_REGION_NAMES].off;

	if (lo < hi && hi - lo >= (64u << 10) && hi <= rt->map_size &&
	    hi % PYCDS_PAGE_SIZE == 0)
		madvise(rt->map + lo, hi - lo, MADV_NOHUGEPAGE);
}
