// SPDX-License-Identifier: MIT
/*
 * The runtime: map an archive at its preferred base, check it, and serve
 * imports from it through a meta-path finder placed just before the path
 * finder.  Any problem with the archive is one "pycds:" line on stderr and
 * the process goes on with normal imports.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <sys/sdt.h>
#include <liburing.h>

#include "pycds_py.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif

/*
 * Without immortal objects (before 3.12, PYCDS_WRITES_EVERY_TOUCHED_OBJECT)
 * the interpreter writes the refcount of every object it touches, so the
 * code, data and names pages of an imported module are all copied on write
 * (measured: 99% of them after stdlib6; the cold pages stay shared).
 * Taking one private copy of those spans with a single MADV_POPULATE_WRITE
 * costs about 1 us a page here against about 16 us for each write fault,
 * and copies nothing the process would not have copied anyway.  Cold spans
 * are only mapped, read-only.
 */

enum mod_state { MOD_NEW = 0, MOD_READY, MOD_BAD };

/* PYCDS_PREFETCH policies. */
enum prefetch { PREFETCH_NONE = 0, PREFETCH_SYNC, PREFETCH_URING };

/* PYCDS_PREFAULT policies. */
enum prefault { PF_NONE = 0, PF_READ, PF_WRITE, PF_HUGE };

/*
 * The unit of a huge page.  Where a 2 MiB chunk of the archive is mostly
 * spans the process writes anyway, one private huge page holding a copy of
 * it costs about 0.2 ms here (read straight from the page cache into it),
 * against about 3.7 ms for the same 512 pages copied on write one by one
 * by MADV_POPULATE_WRITE and then touched (measured on this kind of
 * machine, where each new 4 KiB mapping costs a few microseconds).
 */
#define HUGE_CHUNK (2u << 20)

static void prefetch_end(void);
static int thp_available(void);

enum chunk_state { CHUNK_UNSEEN = 0, CHUNK_PENDING, CHUNK_COPIED, CHUNK_MAPPED };

static struct {
	int enabled;			/* mapped and checked at start */
	int damaged;			/* a module failed its checks */
	int verbose;
	char *path;
	struct pycds_archive ar;
	uint8_t *map;
	size_t map_size;
	uint8_t *state;			/* enum mod_state, per module */
	uint8_t *chunks;		/* names pool chunks prefaulted */
	int prefault;			/* enum prefault */
	int thp;			/* huge pages: -1 not asked yet, 0, 1 */
	dev_t dev;
	ino_t ino;
	uint8_t *huge;			/* enum chunk_state, per 2 MiB */
	uint32_t *asked;		/* bytes prefaulted, per 2 MiB */
	struct io_uring ring;		/* the prefetch in flight, if ring_live */
	int ring_live;
	pid_t ring_pid;			/* the process that submitted it */
	int prefetch;			/* enum prefetch actually used */
	/* Pool entries resolved: one bit each.  A resolved entry that is
	 * interned is the canonical string; the others, found interned
	 * already, point to it through the redirects (few: a few kB where
	 * a pointer per entry cost each process 70 kB for stdlib6). */
	uint8_t *resolved;
	struct redirect {
		uint32_t idx;
		PyObject *to;
	} *redirects;			/* open addressing, idx + 1 as key */
	size_t nr_redirects, cap_redirects;
	struct pycds_image image;
	struct pycds_image_ctx ctx;
	/* In this order: pycds-top may read them from the process's memory
	 * (their address is the last argument of archive__mapped). */
	unsigned long long hits, misses, stale, rejected;
	unsigned long long interned, redirected, prepare_ns;
	unsigned long long huge_chunks;	/* chunks copied into huge pages */
	PyObject *error;		/* str, or NULL while in use */
	PyObject *source_loader;	/* SourceFileLoader */
	PyObject *base_get_code;	/* its stock get_code */
	PyObject *pyc_loader;		/* SourcelessFileLoader */
	PyObject *pyc_get_code;		/* its stock get_code */
	PyObject *module;		/* _pycds */
	PyObject *served;		/* list of the names served, or NULL */
	uint8_t *served_bits;		/* one bit per module: in served */
} g;

/* One line on stderr, prefixed and naming the archive. */
static void report(const char *path, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void report(const char *path, const char *fmt, ...)
{
	char msg[PYCDS_ERR_LEN + 128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "pycds: %s: %s\n", path, msg);
	fflush(stderr);
}

static void set_error(const char *path, const char *msg)
{
	report(path, "%s", msg);
	STAP_PROBE2(pycds, archive__rejected, path, msg);
	Py_XDECREF(g.error);
	g.error = PyUnicode_FromString(msg);
	if (!g.error)
		PyErr_Clear();
}

/* ---- mapping and checking ---- */

#define PYCDS_FUSE_MAGIC 0x65735546

static int trust_check(int fd, char *err, size_t errlen)
{
	struct statfs sfs;
	struct stat st;

	if (fstat(fd, &st)) {
		snprintf(err, errlen, "cannot stat: %s", strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "not a regular file");
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(err, errlen,
			 "owned by uid %u, neither root nor this user",
			 (unsigned int)st.st_uid);
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "writable by group or others (mode %04o)",
			 (unsigned int)(st.st_mode & 07777));
		return -1;
	}
	/* FUSE file systems can be mounted by unprivileged users and report
	 * any owner they like: an archive there proves nothing. */
	if (!fstatfs(fd, &sfs) && sfs.f_type == PYCDS_FUSE_MAGIC) {
		snprintf(err, errlen,
			 "on a FUSE file system, which unprivileged users can mount");
		return -1;
	}
	if ((uint64_t)st.st_size < sizeof(struct pycds_header)) {
		snprintf(err, errlen, "file too short for a header (%lld bytes)",
			 (long long)st.st_size);
		return -1;
	}
	return 0;
}

/*
 * Open, check ownership, and map @path.  With @fixed, try the preferred
 * base first.  Fills @ar (base, size, hdr, delta).  Returns the mapping;
 * with @keep_fd, the open file is left in *keep_fd and its status in
 * *kept.
 */
static void *archive_map(const char *path, int fixed, int prot,
			 struct pycds_archive *ar, int *keep_fd,
			 struct stat *kept, char *err, size_t errlen)
{
	struct pycds_header hdr;
	struct stat st;
	void *p = MAP_FAILED, *want;
	int fd;

	/* Non-blocking: a FIFO or device must not stall the process; the
	 * trust check then refuses anything but a regular file. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
		return NULL;
	}
	if (trust_check(fd, err, errlen) || fstat(fd, &st))
		goto out_close;
	if (pread(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
		snprintf(err, errlen, "cannot read the header");
		goto out_close;
	}
	if (memcmp(hdr.magic, PYCDS_MAGIC, PYCDS_MAGIC_LEN)) {
		snprintf(err, errlen, "not a pycds archive (bad magic)");
		goto out_close;
	}
	want = (void *)(uintptr_t)hdr.preferred_base;
	if (fixed && hdr.preferred_base &&
	    hdr.preferred_base % PYCDS_PAGE_SIZE == 0 &&
	    hdr.preferred_base < PYCDS_BASE_LIMIT) {
		p = mmap(want, st.st_size, prot, MAP_PRIVATE | MAP_FIXED_NOREPLACE,
			 fd, 0);
		if (p != MAP_FAILED && p != want) {
			/* A kernel that ignores the flag placed it elsewhere. */
			munmap(p, st.st_size);
			p = MAP_FAILED;
		}
	}
	if (p == MAP_FAILED) {
		/* Elsewhere, at a 2 MiB boundary of our choosing, so that the
		 * file's 2 MiB extents still line up with PMDs (huge-page
		 * tmpfs, chunk_copy()); failing that, where the kernel puts it. */
		p = pycds_map_aligned(fd, st.st_size, prot, MAP_PRIVATE,
				      HUGE_CHUNK);
		if (!p)
			p = mmap(NULL, st.st_size, prot, MAP_PRIVATE, fd, 0);
	}
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "cannot map: %s", strerror(errno));
		goto out_close;
	}
	if (keep_fd) {
		*keep_fd = fd;
		*kept = st;
	} else
		close(fd);
	ar->base = p;
	ar->size = st.st_size;
	ar->hdr = p;
	ar->delta = (int64_t)((uintptr_t)p - (uintptr_t)hdr.preferred_base);
	return p;
out_close:
	close(fd);
	return NULL;
}

/* Header, interpreter identity and index.  Returns 0 or -1 with @err. */
static int archive_check(const struct pycds_archive *ar,
			 const struct pycds_image *img, char *err,
			 size_t errlen)
{
	struct pycds_interp want;

	if (pycds_header_check(ar->base, ar->size, err, errlen))
		return -1;
	if (pycds_interp_fill(&want, img)) {
		PyErr_Clear();
		snprintf(err, errlen, "cannot identify this interpreter");
		return -1;
	}
	if (pycds_interp_check(ar->hdr, &want, err, errlen))
		return -1;
	return pycds_meta_check(ar, err, errlen) ? -1 : 0;
}

/* ---- preparing a module on first use ---- */

static void populate(uint64_t off, uint64_t size, int write)
{
	uintptr_t lo, hi;

	lo = ((uintptr_t)g.ar.base + off) & ~(uintptr_t)(PYCDS_PAGE_SIZE - 1);
	hi = ((uintptr_t)g.ar.base + off + size + PYCDS_PAGE_SIZE - 1) &
	     ~(uintptr_t)(PYCDS_PAGE_SIZE - 1);
	/* Advice only: on failure the pages fault in one by one. */
	madvise((void *)lo, hi - lo,
		write && g.prefault >= PF_WRITE ? MADV_POPULATE_WRITE
						: MADV_POPULATE_READ);
}

/* Is region @r written in every page a process uses? */
static int region_written(int r)
{
	int relocating = g.ar.delta || g.ctx.bias;

	switch (r) {
	case PYCDS_REGION_NAMES:
		return PYCDS_WRITES_EVERY_TOUCHED_OBJECT || g.ctx.bias;
	case PYCDS_REGION_CODE:
	case PYCDS_REGION_DATA:
		return PYCDS_WRITES_EVERY_TOUCHED_OBJECT || relocating;
	default:
		return relocating;
	}
}

/* Worth a huge page: inside the file, aligned, and at least 15/16 of it
 * spans that would be copied on write anyway.  A huge page is 2 MiB of
 * the process's own memory however little of it is used: with 3/4, the
 * chunk where the written spans end and the tables begin was copied whole
 * (stdlib6: 464 KiB of tables in each process, 1.1% of PSS saved against
 * 4.3% with `write`); that chunk's pages are copied one by one instead. */
static int chunk_eligible(uint64_t c)
{
	uint64_t lo = c * HUGE_CHUNK, hi = lo + HUGE_CHUNK, hot = 0;
	int r;

	if (hi > g.map_size || ((uintptr_t)g.map + lo) % HUGE_CHUNK)
		return 0;
	for (r = 0; r < PYCDS_NR_ALL_REGIONS; r++) {
		const struct pycds_span *s = &g.ar.hdr->regions[r];
		uint64_t a = s->off > lo ? s->off : lo;
		uint64_t b = s->off + s->size < hi ? s->off + s->size : hi;

		if (region_written(r) && b > a)
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
static int chunk_copy(uint64_t c)
{
	uint8_t *dst = g.map + c * HUGE_CHUNK, *tmp;
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
	fd = own_pages(dst, own) ? -1 : open(g.path, O_RDONLY | O_CLOEXEC |
						      O_NONBLOCK | O_NOCTTY);
	from_fd = fd >= 0 && !fstat(fd, &st) && st.st_dev == g.dev &&
		  st.st_ino == g.ino;
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
	g.huge_chunks++;
	return 0;
}

/*
 * Is chunk @c a private huge page now?  Called before @need more bytes of
 * it are copied.  A chunk is copied whole once the process has asked for
 * HUGE_AFTER bytes of it: by then the rest of it is mostly what comes next
 * in import order, and a small program does not pay 2 MiB for a few
 * modules.
 */
#define HUGE_AFTER (256u << 10)

static int chunk_ready(uint64_t c, uint64_t need)
{
	if (g.huge[c] == CHUNK_UNSEEN)
		g.huge[c] = chunk_eligible(c) ? CHUNK_PENDING : CHUNK_MAPPED;
	g.asked[c] += need;
	if (g.huge[c] == CHUNK_PENDING && g.asked[c] >= HUGE_AFTER) {
		/* Asked only now: reading sysfs costs a small program
		 * 40-100 us here. */
		if (g.thp < 0)
			g.thp = thp_available();
		g.huge[c] = g.thp && !chunk_copy(c) ? CHUNK_COPIED
						    : CHUNK_MAPPED;
	}
	return g.huge[c] == CHUNK_COPIED;
}

/* Fault in [off, off + size) before a module's first use: @write when the
 * process will write those pages anyway. */
static void prefault(uint64_t off, uint64_t size, int write)
{
	uint64_t end = off + size, c, next;

	if (g.prefault == PF_NONE || !size)
		return;
	if (!write || g.prefault != PF_HUGE || !g.huge) {
		populate(off, size, write);
		return;
	}
	while (off < end) {
		c = off / HUGE_CHUNK;
		next = (c + 1) * HUGE_CHUNK < end ? (c + 1) * HUGE_CHUNK : end;
		if (!chunk_ready(c, next - off))
			populate(off, next - off, write);
		off = next;
	}
}

/* A names pool entry must be a well-formed, uninterned compact str that
 * fits in its recorded size. */
static int name_sane(uint32_t idx, PyObject *o)
{
	PyASCIIObject *a = (PyASCIIObject *)o;
	uint64_t hdr, size, room = pycds_name_get(&g.ar, idx)->size;
	unsigned int kind = a->state.kind;

	if (Py_TYPE(o) != &PyUnicode_Type || !a->state.compact ||
	    !pycds_str_ready(a) || a->state.interned ||
	    (a->hash != -1 &&
	     !(g.ar.hdr->hash_flags & PYCDS_HASHES_STORED)) ||
	    (kind != 1 && kind != 2 && kind != 4) ||
	    (a->state.ascii && kind != 1) || a->length < 0 ||
	    (uint64_t)a->length > room)
		return 0;
	hdr = a->state.ascii ? sizeof(PyASCIIObject)
			     : sizeof(PyCompactUnicodeObject);
	size = hdr + ((uint64_t)a->length + 1) * kind;
	if (size > room)
		return 0;
	/* NUL-terminated, as CPython assumes. */
	return !memcmp((char *)o + hdr + (uint64_t)a->length * kind,
		       "\0\0\0\0", kind);
}

/* Pool pages are written by interning: copy each 16 KiB chunk of the pool
 * once, when the first entry in it is needed (one system call for four
 * pages; the pool is in the order the build's run first used its names). */
#define NAMES_CHUNK (16u << 10)

static void names_prefault(const struct pycds_name *n)
{
	uint64_t pool = g.ar.hdr->regions[PYCDS_REGION_NAMES].off;
	uint64_t first = (n->off - pool) / NAMES_CHUNK;
	uint64_t last = (n->off + n->size - 1 - pool) / NAMES_CHUNK;
	uint64_t c;

	for (c = first; c <= last; c++) {
		if (g.chunks[c / 8] & (1u << (c % 8)))
			continue;
		g.chunks[c / 8] |= 1u << (c % 8);
		prefault(pool + c * NAMES_CHUNK, NAMES_CHUNK,
			 PYCDS_WRITES_EVERY_TOUCHED_OBJECT || g.ctx.bias);
	}
}

static PyObject *redirect_find(uint32_t idx)
{
	size_t mask = g.cap_redirects - 1, i;

	if (!g.cap_redirects)
		return NULL;
	for (i = (idx * 2654435761u) & mask; g.redirects[i].idx;
	     i = (i + 1) & mask)
		if (g.redirects[i].idx == idx + 1)
			return g.redirects[i].to;
	return NULL;
}

static int redirect_add(uint32_t idx, PyObject *to)
{
	size_t mask, i;

	if ((g.nr_redirects + 1) * 2 > g.cap_redirects) {
		size_t cap = g.cap_redirects ? g.cap_redirects * 2 : 256, j;
		struct redirect *t = calloc(cap, sizeof(*t));

		if (!t)
			return -1;
		for (j = 0; j < g.cap_redirects; j++) {
			if (!g.redirects[j].idx)
				continue;
			for (i = ((g.redirects[j].idx - 1) * 2654435761u) &
				 (cap - 1);
			     t[i].idx; i = (i + 1) & (cap - 1))
				;
			t[i] = g.redirects[j];
		}
		free(g.redirects);
		g.redirects = t;
		g.cap_redirects = cap;
	}
	mask = g.cap_redirects - 1;
	for (i = (idx * 2654435761u) & mask; g.redirects[i].idx;
	     i = (i + 1) & mask)
		;
	g.redirects[i].idx = idx + 1;
	g.redirects[i].to = to;
	g.nr_redirects++;
	return 0;
}

/* The canonical string of a pool entry resolved before, or NULL. */
static PyObject *name_resolved(uint32_t idx)
{
	PyObject *o;

	if (idx >= g.ar.hdr->nr_names ||
	    !(g.resolved[idx / 8] & (1u << (idx % 8))))
		return NULL;
	o = pycds_name_entry(&g.ar, idx);
	return PyUnicode_CHECK_INTERNED(o) ? o : redirect_find(idx);
}

static PyObject *name_resolve(uint32_t idx, char *err, size_t errlen)
{
	PyObject *o, *t;

	t = name_resolved(idx);
	if (t)
		return t;
	if (pycds_name_check(&g.ar, idx, &g.ctx, err, errlen))
		return NULL;
	names_prefault(pycds_name_get(&g.ar, idx));
	pycds_name_relocate(&g.ar, idx, g.ctx.bias);
	o = pycds_name_entry(&g.ar, idx);
	if (!name_sane(idx, o)) {
		snprintf(err, errlen, "names pool entry %u is not a sound str",
			 idx);
		return NULL;
	}
	/* 3.11: a 4-byte string's wchar_t view is its own data, as the
	 * interpreter makes it (the pool holds no pointers to relocate). */
	pycds_str_share_wstr(o);
	/* The first to intern a string makes it canonical; a string some
	 * earlier code interned stays canonical and the archive uses it. */
	t = o;
	Py_INCREF(t);
	PyUnicode_InternInPlace(&t);
	if (t != o && redirect_add(idx, t)) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	g.interned++;
	g.resolved[idx / 8] |= 1u << (idx % 8);
	return t;
}

static int names_prepare(char *err, size_t errlen)
{
	const struct pycds_span *pool = &g.ar.hdr->regions[PYCDS_REGION_NAMES];

	if (g.resolved)
		return 0;
	g.resolved = calloc(g.ar.hdr->nr_names / 8 + 1, 1);
	g.chunks = calloc(pool->size / NAMES_CHUNK / 8 + 1, 1);
	if (!g.resolved || !g.chunks) {
		free(g.resolved);
		g.resolved = NULL;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int apply_interns(const struct pycds_module *m, char *err,
			 size_t errlen)
{
	const struct pycds_fixup *f = pycds_ptr(&g.ar, g.ar.hdr->interns_off);
	uint32_t i;

	f += m->intern_first;
	for (i = 0; i < m->intern_count; i++) {
		PyObject **slot = (PyObject **)pycds_ptr(&g.ar, f[i].slot);
		PyObject *c = name_resolve(f[i].arg, err, errlen);

		if (!c)
			return -1;
		/* Write only when the canonical string is not the one the
		 * slot already holds: an untouched page stays shared. */
		if (*slot != c) {
			Py_INCREF(c);
			*slot = c;
			g.redirected++;
		}
	}
	return 0;
}

static int apply_fsets(const struct pycds_module *m, char *err, size_t errlen)
{
	const struct pycds_fixup *f = pycds_ptr(&g.ar, g.ar.hdr->fsets_off);
	uint32_t i;

	f += m->fset_first;
	for (i = 0; i < m->fset_count; i++) {
		PyObject **slot = (PyObject **)pycds_ptr(&g.ar, f[i].slot);
		PyObject *keys, *t;

		if (!PyFrozenSet_CheckExact(*slot)) {
			snprintf(err, errlen, "frozenset fixup %u: not a frozenset",
				 i);
			return -1;
		}
		/* The table depends on this process's hash seed, so rehash
		 * every key: from a set, CPython would copy the archived
		 * hashes. */
		keys = PySequence_List(*slot);
		t = keys ? PyFrozenSet_New(keys) : NULL;
		Py_XDECREF(keys);
		if (!t) {
			PyErr_Clear();
			snprintf(err, errlen, "cannot rebuild frozenset %u", i);
			return -1;
		}
		*slot = t;
	}
	return 0;
}

static PyObject *module_prepare(uint32_t idx, const char *name)
{
	const struct pycds_module *m = pycds_module_get(&g.ar, idx);
	char err[PYCDS_ERR_LEN];
	struct timespec t0, t1;
	PyObject *code;
	int relocating;

	if (g.state[idx] == MOD_READY)
		return (PyObject *)pycds_ptr(&g.ar, m->root);
	if (g.state[idx] == MOD_BAD)
		return NULL;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	prefetch_end();
	/* Relocation (a taken base, or a position-independent interpreter)
	 * writes a pointer in every object: then every span is copied. */
	relocating = g.ar.delta || g.ctx.bias;
	prefault(m->span_off[PYCDS_REGION_CODE], m->span_size[PYCDS_REGION_CODE],
		 PYCDS_WRITES_EVERY_TOUCHED_OBJECT || relocating);
	prefault(m->span_off[PYCDS_REGION_DATA], m->span_size[PYCDS_REGION_DATA],
		 PYCDS_WRITES_EVERY_TOUCHED_OBJECT || relocating);
	/* Read-only spans are faulted in by the checksum below, a 64 KiB
	 * fault-around (or a PMD) at a time: populating them page by page
	 * cost stdlib6 about 0.45 ms more (median of 41 preparations). */
	if (relocating) {
		prefault(m->span_off[PYCDS_REGION_IDLE],
			 m->span_size[PYCDS_REGION_IDLE], 1);
		prefault(m->span_off[PYCDS_REGION_COLD],
			 m->span_size[PYCDS_REGION_COLD], 1);
	}
	if (pycds_module_check(&g.ar, idx, &g.ctx, err, sizeof(err)) ||
	    names_prepare(err, sizeof(err)))
		goto bad;
	pycds_module_relocate(&g.ar, idx, g.ctx.bias);
	code = (PyObject *)pycds_ptr(&g.ar, m->root);
	if (Py_TYPE(code) != &PyCode_Type) {
		snprintf(err, sizeof(err), "root is not a code object");
		goto bad;
	}
	/* Interning first: a rebuilt frozenset gets canonical names. */
	if (apply_interns(m, err, sizeof(err)) ||
	    apply_fsets(m, err, sizeof(err)))
		goto bad;
	g.state[idx] = MOD_READY;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	g.prepare_ns += (t1.tv_sec - t0.tv_sec) * 1000000000ULL +
			t1.tv_nsec - t0.tv_nsec;
	return code;
bad:
	/* A damaged module means a damaged file: say so once and stop
	 * serving from it.  Modules already served were checked and stay. */
	g.state[idx] = MOD_BAD;
	g.rejected++;
	g.damaged = 1;
	report(g.path, "module %s: %s; archive no longer used", name, err);
	Py_XDECREF(g.error);
	g.error = PyUnicode_FromFormat("module %s: %s", name, err);
	if (!g.error)
		PyErr_Clear();
	return NULL;
}

/* ---- the loader ---- */

/* A module name for a probe argument: never leaves an exception set. */
static const char *probe_name(PyObject *name)
{
	const char *s = PyUnicode_AsUTF8(name);

	if (!s) {
		PyErr_Clear();
		return "";
	}
	return s;
}

static long lookup_str(PyObject *name)
{
	Py_ssize_t len;
	const char *s = PyUnicode_AsUTF8AndSize(name, &len);

	if (!s) {
		PyErr_Clear();
		return -1;
	}
	return pycds_index_lookup(&g.ar, s, len);
}

static int origin_equal(const struct pycds_module *m, PyObject *path)
{
	Py_ssize_t len;
	size_t olen;
	const char *s, *o;

	if (!PyUnicode_Check(path))
		return 0;
	s = PyUnicode_AsUTF8AndSize(path, &len);
	if (!s) {
		PyErr_Clear();
		return 0;
	}
	o = pycds_module_origin(&g.ar, m, &olen);
	return (size_t)len == olen && !memcmp(s, o, olen);
}

/* The source is unchanged when its whole-second mtime and its size are,
 * as for a timestamp-based .pyc. */
static int source_fresh(const struct pycds_module *m)
{
	char path[4096];
	size_t len;
	const char *o = pycds_module_origin(&g.ar, m, &len);
	struct stat st;

	if (len >= sizeof(path))
		return 0;
	memcpy(path, o, len);
	path[len] = '\0';
	if (stat(path, &st))
		return 0;
	return st.st_mtim.tv_sec == m->src_mtime &&
	       (uint64_t)st.st_size == m->src_size;
}

#if PYCDS_RUNS_BODY_COPIES
/*
 * A heap copy of a module or class body (PYCDS_RUNS_BODY_COPIES): what
 * the interpreter writes as it runs one (refcounts, the warm-up counter)
 * lands in the copy, which is freed after, as the code a process without
 * an archive unmarshals is.  The copy owns copies of the tuples and byte
 * strings it points to, which the interpreter would otherwise write
 * through it; it shares the constants, each class body among them copied
 * in turn, and its names and file name, which the build lays out with
 * what processes write.
 */
static PyObject *body_copy(PyCodeObject *co, unsigned int depth);

static PyObject *tuple_copy(PyObject *t, int bodies, unsigned int depth)
{
	Py_ssize_t i, n = PyTuple_GET_SIZE(t);
	PyObject *c = PyTuple_New(n);

	for (i = 0; c && i < n; i++) {
		PyObject *v = PyTuple_GET_ITEM(t, i);

		v = bodies && PyCode_Check(v) && PYCDS_IS_BODY(v)
			    ? body_copy((PyCodeObject *)v, depth + 1)
			    : Py_NewRef(v);
		if (!v)
			Py_CLEAR(c);
		else
			PyTuple_SET_ITEM(c, i, v);
	}
	return c;
}

static PyObject *bytes_copy(PyObject *b)
{
	return PyBytes_FromStringAndSize(PyBytes_AS_STRING(b),
					 PyBytes_GET_SIZE(b));
}

static PyObject *body_copy(PyCodeObject *co, unsigned int depth)
{
	PyCodeObject *c;
	size_t size;

	/* Deeper than any compiler nests classes: run the archived one. */
	if (depth > 64)
		return Py_NewRef(co);
	c = PyObject_NewVar(PyCodeObject, &PyCode_Type, Py_SIZE(co));
	if (!c)
		return NULL;
	size = offsetof(PyCodeObject, co_code_adaptive) +
	       (size_t)Py_SIZE(co) * sizeof(_Py_CODEUNIT);
	memcpy((char *)c + sizeof(PyVarObject), (char *)co + sizeof(PyVarObject),
	       size - sizeof(PyVarObject));
	c->co_consts = c->co_names = c->co_exceptiontable = NULL;
	c->co_localsplusnames = c->co_localspluskinds = NULL;
	c->co_filename = c->co_name = c->co_qualname = NULL;
	c->co_linetable = c->co_weakreflist = NULL;
	pycds_code_reset(c);
	c->co_extra = NULL;
	c->co_consts = tuple_copy(co->co_consts, 1, depth);
	c->co_names = tuple_copy(co->co_names, 0, depth);
	c->co_localsplusnames = tuple_copy(co->co_localsplusnames, 0, depth);
	c->co_exceptiontable = bytes_copy(co->co_exceptiontable);
	c->co_localspluskinds = bytes_copy(co->co_localspluskinds);
	c->co_linetable = bytes_copy(co->co_linetable);
	c->co_filename = Py_NewRef(co->co_filename);
	c->co_name = Py_NewRef(co->co_name);
	c->co_qualname = Py_NewRef(co->co_qualname);
	if (!c->co_consts || !c->co_names || !c->co_localsplusnames ||
	    !c->co_exceptiontable || !c->co_localspluskinds ||
	    !c->co_linetable) {
		Py_DECREF(c);
		return NULL;
	}
	return (PyObject *)c;
}
#endif

/* The code object get_code() returns for a prepared module. */
static PyObject *served_code(PyObject *code)
{
#if PYCDS_RUNS_BODY_COPIES
	return body_copy((PyCodeObject *)code, 0);
#else
	return Py_NewRef(code);
#endif
}

/* Note @idx served: _pycds.stats()["served"] names each module once, in
 * the order they were first served. */
static void served_note(long idx, PyObject *name)
{
	if (g.served_bits[idx / 8] & (1u << (idx % 8)))
		return;
	if (!g.served && !(g.served = PyList_New(0)))
		goto fail;
	if (PyList_Append(g.served, name))
		goto fail;
	g.served_bits[idx / 8] |= 1u << (idx % 8);
	return;
fail:
	/* Only the list is short; the module is served all the same. */
	PyErr_Clear();
}

/*
 * get_code(self, fullname) of the stock SourceFileLoader (@sourceless 0)
 * and SourcelessFileLoader (1), as pycds answers it: the archived code
 * object when the loader is of exactly that class, for a module the
 * archive holds from the loader's very file, and that file is unchanged;
 * otherwise what the stock method returns.  The import system keeps its
 * own finders, specs and loaders, so nothing but get_code tells a served
 * module from one loaded from its .pyc.
 */
static PyObject *archive_get_code(PyObject *self, PyObject *const *args,
				  Py_ssize_t nargs, PyObject *kwnames,
				  int sourceless)
{
	PyObject *base = sourceless ? g.pyc_get_code : g.base_get_code;
	PyObject *cls = sourceless ? g.pyc_loader : g.source_loader;
	const struct pycds_module *m;
	PyObject *name, *path, *code;
	long idx;

	if (!g.enabled || g.damaged || kwnames || nargs != 1 ||
	    (PyObject *)Py_TYPE(self) != cls || !PyUnicode_Check(args[0]))
		goto fallback;
	name = args[0];
	idx = lookup_str(name);
	if (idx < 0) {
		g.misses++;
		STAP_PROBE1(pycds, module__missed, probe_name(name));
		goto fallback;
	}
	m = pycds_module_get(&g.ar, (uint32_t)idx);
	/* Archived from a source file and asked for by a sourceless loader,
	 * or the other way round: not the same module. */
	if (!(m->flags & PYCDS_MOD_SOURCELESS) != !sourceless) {
		g.misses++;
		goto fallback;
	}
	path = PyObject_GetAttrString(self, "path");
	if (!path) {
		PyErr_Clear();
		g.misses++;
		goto fallback;
	}
	if (!origin_equal(m, path)) {
		Py_DECREF(path);
		g.misses++;
		goto fallback;
	}
	Py_DECREF(path);
	if (!source_fresh(m)) {
		g.stale++;
		STAP_PROBE1(pycds, module__stale, probe_name(name));
		goto fallback;
	}
	code = module_prepare((uint32_t)idx, probe_name(name));
	if (!code) {
		g.misses++;
		goto fallback;
	}
	code = served_code(code);
	if (!code)
		return NULL;
	g.hits++;
	served_note(idx, name);
	STAP_PROBE1(pycds, module__served, probe_name(name));
	return code;
fallback:
	{
		/* The stock method, called as the caller called ours. */
		PyObject *small[4], **argv = small, *ret;
		size_t n = (size_t)nargs +
			   (kwnames ? (size_t)PyTuple_GET_SIZE(kwnames) : 0);

		if (n + 1 > sizeof(small) / sizeof(small[0])) {
			argv = PyMem_Malloc((n + 1) * sizeof(*argv));
			if (!argv)
				return PyErr_NoMemory();
		}
		argv[0] = self;
		memcpy(argv + 1, args, n * sizeof(*argv));
		ret = PyObject_Vectorcall(base, argv, (size_t)nargs + 1,
					  kwnames);
		if (argv != small)
			PyMem_Free(argv);
		return ret;
	}
}

static PyObject *source_get_code(PyObject *self, PyObject *const *args,
				 Py_ssize_t nargs, PyObject *kwnames)
{
	return archive_get_code(self, args, nargs, kwnames, 0);
}

static PyObject *pyc_get_code(PyObject *self, PyObject *const *args,
			      Py_ssize_t nargs, PyObject *kwnames)
{
	return archive_get_code(self, args, nargs, kwnames, 1);
}

static PyMethodDef source_get_code_def = {
	"get_code", (PyCFunction)(void (*)(void))source_get_code,
	METH_FASTCALL | METH_KEYWORDS,
	"Return the code object for the module: from the pycds archive when "
	"it holds this file unchanged, else compiled or read from its .pyc.",
};

static PyMethodDef pyc_get_code_def = {
	"get_code", (PyCFunction)(void (*)(void))pyc_get_code,
	METH_FASTCALL | METH_KEYWORDS,
	"Return the code object for the module: from the pycds archive when "
	"it holds this .pyc unchanged, else read from the file.",
};

/* Answer get_code on the stock loader classes, once per process.  The
 * stock methods were looked up before (import_machinery). */
static int install_get_code(void)
{
	static int installed;
	PyObject *d;
	int ret;

	if (installed)
		return 0;
	d = PyDescr_NewMethod((PyTypeObject *)g.source_loader,
			      &source_get_code_def);
	if (!d)
		return -1;
	ret = PyObject_SetAttrString(g.source_loader, "get_code", d);
	Py_DECREF(d);
	if (ret)
		return -1;
	d = PyDescr_NewMethod((PyTypeObject *)g.pyc_loader, &pyc_get_code_def);
	if (!d)
		return -1;
	ret = PyObject_SetAttrString(g.pyc_loader, "get_code", d);
	Py_DECREF(d);
	if (ret)
		return -1;
	installed = 1;
	return 0;
}

/* ---- enable ---- */

static PyObject *bootstrap_attr(const char *name)
{
	PyObject *modules = PyImport_GetModuleDict();	/* borrowed */
	PyObject *ext = PyDict_GetItemString(modules,
					     "_frozen_importlib_external");

	if (!ext) {
		PyErr_SetString(PyExc_ImportError,
				"importlib bootstrap is not loaded");
		return NULL;
	}
	return PyObject_GetAttrString(ext, name);
}

static int import_machinery(void)
{
	/* The stock methods, looked up once, before ours replace them. */
	if (g.base_get_code)
		return 0;
	g.source_loader = bootstrap_attr("SourceFileLoader");
	g.pyc_loader = bootstrap_attr("SourcelessFileLoader");
	if (!g.source_loader || !g.pyc_loader)
		return -1;
	if (!PyType_Check(g.source_loader) || !PyType_Check(g.pyc_loader)) {
		PyErr_SetString(PyExc_ImportError,
				"importlib's file loaders are not classes");
		return -1;
	}
	g.pyc_get_code = PyObject_GetAttrString(g.pyc_loader, "get_code");
	g.base_get_code = PyObject_GetAttrString(g.source_loader, "get_code");
	return g.base_get_code && g.pyc_get_code ? 0 : -1;
}

static void exit_summary(void)
{
	uint64_t c;

	if (!g.enabled)
		return;
	fprintf(stderr,
		"pycds: %s: %llu hits, %llu misses, %llu stale, %llu rejected\n",
		g.path, g.hits, g.misses, g.stale, g.rejected);
	/* Where the process's private copies come from, per 2 MiB chunk:
	 * what it asked for, and whether the chunk became a huge page. */
	for (c = 0; g.huge && c <= g.map_size / HUGE_CHUNK; c++)
		if (g.asked[c] || g.huge[c] == CHUNK_COPIED)
			fprintf(stderr, "pycds: %s: chunk %llu: %u kB asked, %s\n",
				g.path, (unsigned long long)c, g.asked[c] >> 10,
				g.huge[c] == CHUNK_COPIED ? "huge page"
				: g.huge[c] == CHUNK_PENDING ? "pages"
							     : "not eligible");
}

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

static int prefetch_policy(int fd)
{
	const char *pf = getenv("PYCDS_PREFETCH");
	struct statfs sfs;

	if (!pf || !*pf || !strcmp(pf, "none"))
		return PREFETCH_NONE;
	if (!strcmp(pf, "sync"))
		return PREFETCH_SYNC;
	if (!strcmp(pf, "uring"))
		return PREFETCH_URING;
	if (strcmp(pf, "auto")) {
		report(g.path, "PYCDS_PREFETCH=%.64s is not none, auto, uring "
			       "or sync; using none", pf);
		return PREFETCH_NONE;
	}
	/* auto: on a disk only; on a tmpfs the file is memory. */
	if (fstatfs(fd, &sfs) || sfs.f_type == PYCDS_TMPFS_MAGIC ||
	    sfs.f_type == (typeof(sfs.f_type))PYCDS_RAMFS_MAGIC)
		return PREFETCH_NONE;
	return PREFETCH_URING;
}

static void prefetch_start(int fd, size_t size)
{
	struct io_uring_sqe *sqe;

	g.prefetch = prefetch_policy(fd);
	if (g.prefetch == PREFETCH_SYNC) {
		posix_fadvise(fd, 0, size, POSIX_FADV_WILLNEED);
		return;
	}
	if (g.prefetch != PREFETCH_URING)
		return;
	if (io_uring_queue_init(2, &g.ring, 0))
		goto sync;
	sqe = io_uring_get_sqe(&g.ring);
	if (!sqe) {
		io_uring_queue_exit(&g.ring);
		goto sync;
	}
	io_uring_prep_fadvise(sqe, fd, 0, size, POSIX_FADV_WILLNEED);
	if (io_uring_submit(&g.ring) != 1) {
		io_uring_queue_exit(&g.ring);
		goto sync;
	}
	g.ring_live = 1;
	g.ring_pid = getpid();
	return;
sync:
	/* No io_uring (seccomp, io_uring_disabled, old kernel). */
	g.prefetch = PREFETCH_SYNC;
	posix_fadvise(fd, 0, size, POSIX_FADV_WILLNEED);
}

/* Reap the prefetch and drop the ring: the read-ahead it queued goes on
 * without it. */
static void prefetch_end(void)
{
	struct io_uring_cqe *cqe;

	if (!g.ring_live)
		return;
	/* A child of fork() shares the ring's memory with its parent: it
	 * leaves the completion to the parent and only drops its copy. */
	if (getpid() == g.ring_pid && !io_uring_wait_cqe(&g.ring, &cqe))
		io_uring_cqe_seen(&g.ring, cqe);
	io_uring_queue_exit(&g.ring);
	g.ring_live = 0;
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

/* PYCDS_PREFAULT: huge (the default where the kernel has transparent huge
 * pages), write, read or none. */
static int prefault_policy(void)
{
	const char *pf = getenv("PYCDS_PREFAULT");

	/* Whether the kernel has huge pages is asked on first need. */
	if (!pf || !*pf || !strcmp(pf, "huge"))
		return PF_HUGE;
	if (!strcmp(pf, "none"))
		return PF_NONE;
	if (!strcmp(pf, "read"))
		return PF_READ;
	if (!strcmp(pf, "write"))
		return PF_WRITE;
	report(g.path, "PYCDS_PREFAULT=%.64s is not huge, write, read or none; "
		       "using huge", pf);
	return PF_HUGE;
}

/* An archive with stored hashes serves only processes that hash as the
 * build did: same PYTHONHASHSEED. */
static int hash_seed_check(char *err, size_t errlen)
{
	const struct pycds_header *h = g.ar.hdr;
	Py_hash_t ph;

	if (!(h->hash_flags & PYCDS_HASHES_STORED))
		return 0;
	ph = pycds_hash_probe();
	if (ph == -1) {
		PyErr_Clear();
		snprintf(err, errlen, "cannot hash the seed probe");
		return -1;
	}
	if ((uint64_t)ph != h->hash_probe) {
		snprintf(err, errlen,
			 "built for PYTHONHASHSEED=%u (hashes stored), and this "
			 "process hashes with another seed",
			 (unsigned int)h->hash_seed);
		return -1;
	}
	return 0;
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
static void padding_keep_hole(void)
{
	const struct pycds_span *idle = &g.ar.hdr->regions[PYCDS_REGION_IDLE];
	uint64_t lo = (idle->off + idle->size + PYCDS_PAGE_SIZE - 1) &
		      ~(uint64_t)(PYCDS_PAGE_SIZE - 1);
	uint64_t hi = g.ar.hdr->regions[PYCDS_REGION_NAMES].off;

	if (lo < hi && hi - lo >= (64u << 10) && hi <= g.map_size &&
	    hi % PYCDS_PAGE_SIZE == 0)
		madvise(g.map + lo, hi - lo, MADV_NOHUGEPAGE);
}

static int enable_path(PyObject *module, const char *path)
{
	char err[PYCDS_ERR_LEN];
	struct stat st;
	int fd = -1;

	free(g.path);
	g.path = strdup(path);
	if (!g.path) {
		PyErr_NoMemory();
		return -1;
	}
	if (pycds_image_find(&g.image)) {
		set_error(path, "cannot find the interpreter image");
		return 0;
	}
	g.map = archive_map(path, 1, PROT_READ | PROT_WRITE, &g.ar, &fd, &st,
			    err, sizeof(err));
	if (!g.map) {
		set_error(path, err);
		return 0;
	}
	g.map_size = g.ar.size;
	g.dev = st.st_dev;
	g.ino = st.st_ino;
	g.prefault = prefault_policy();
	g.thp = -1;
	prefetch_start(fd, g.map_size);
	/* The process keeps no descriptor of ours: descriptor numbers, and
	 * what a program that lists its descriptors sees, are stock's. */
	close(fd);
	if (archive_check(&g.ar, &g.image, err, sizeof(err)) ||
	    hash_seed_check(err, sizeof(err)))
		goto reject;
	padding_keep_hole();
	g.state = calloc(g.ar.hdr->nr_modules ? g.ar.hdr->nr_modules : 1, 1);
	g.huge = calloc(g.map_size / HUGE_CHUNK + 1, 1);
	g.asked = calloc(g.map_size / HUGE_CHUNK + 1, sizeof(*g.asked));
	if (!g.state || !g.huge || !g.asked) {
		snprintf(err, sizeof(err), "out of memory");
		goto reject;
	}
	pycds_image_ctx_fill(&g.ctx, &g.image);
	{
		static uint64_t seen[PYCDS_STATIC_SEEN];

		g.ctx.static_seen = seen;
	}
	g.served_bits = calloc(g.ar.hdr->nr_modules / 8 + 1, 1);
	if (!g.served_bits) {
		snprintf(err, sizeof(err), "out of memory");
		goto reject;
	}
	if (import_machinery())
		return -1;
	Py_XSETREF(g.module, Py_NewRef(module));
	if (install_get_code())
		return -1;
	g.enabled = 1;
	Py_CLEAR(g.error);
	{
		/* In registers: libbpf's USDT reader does not take
		 * RIP-relative operands. */
		const char *p = g.path;
		uint64_t b = (uint64_t)(uintptr_t)g.map, sz = g.map_size;
		uint64_t ctr = (uint64_t)(uintptr_t)&g.hits;
		uint32_t rel = g.ar.delta != 0;

		__asm__ volatile("" : "+r"(p), "+r"(b), "+r"(sz), "+r"(rel),
				 "+r"(ctr));
		STAP_PROBE5(pycds, archive__mapped, p, b, sz, rel, ctr);
	}
	if (g.verbose) {
		fprintf(stderr,
			"pycds: %s: mapped at 0x%llx (%s, preferred 0x%llx), %u modules, %zu bytes\n",
			path, (unsigned long long)(uintptr_t)g.map,
			g.ar.delta ? "relocated" : "not relocated",
			(unsigned long long)g.ar.hdr->preferred_base,
			g.ar.hdr->nr_modules, g.map_size);
		Py_AtExit(exit_summary);
	}
	return 1;
reject:
	prefetch_end();
	munmap(g.map, g.map_size);
	g.map = NULL;
	memset(&g.ar, 0, sizeof(g.ar));
	set_error(path, err);
	return 0;
}

/* _pycds.enable(path) -> bool: True if the archive is in use. */
PyObject *pycds_enable(PyObject *self, PyObject *arg)
{
	PyObject *bytes;
	int ret;

	if (g.enabled) {
		PyErr_Format(PyExc_RuntimeError, "an archive is already in use: %s",
			     g.path);
		return NULL;
	}
	if (!PyUnicode_FSConverter(arg, &bytes))
		return NULL;
	ret = enable_path(self, PyBytes_AS_STRING(bytes));
	Py_DECREF(bytes);
	if (ret < 0)
		return NULL;
	return PyBool_FromLong(ret);
}

PyObject *pycds_stats(PyObject *self, PyObject *noargs)
{
	(void)self;
	(void)noargs;
	return Py_BuildValue(
		"{s:s,s:N,s:N,s:O,s:I,s:K,s:K,s:K,s:K,s:O,s:K,s:K,s:K,s:K,s:K,s:N,s:K,s:s,s:N}", "archive",
		g.path, "base",
		g.enabled ? PyLong_FromVoidPtr(g.map) : Py_NewRef(Py_None),
		"preferred_base",
		g.enabled ? PyLong_FromUnsignedLongLong(g.ar.hdr->preferred_base)
			  : Py_NewRef(Py_None),
		"relocated", g.enabled && g.ar.delta ? Py_True : Py_False,
		"modules", g.enabled ? g.ar.hdr->nr_modules : 0, "hits", g.hits,
		"misses", g.misses, "stale", g.stale, "rejected", g.rejected,
		"error", g.error ? g.error : Py_None, "size",
		(unsigned long long)g.map_size, "interned", g.interned,
		"redirected", g.redirected, "prepare_ns", g.prepare_ns,
		"image_bias", (unsigned long long)g.ctx.bias, "hash_seed",
		g.enabled && g.ar.hdr->hash_flags & PYCDS_HASHES_STORED
			? PyLong_FromUnsignedLong(g.ar.hdr->hash_seed)
			: Py_NewRef(Py_None),
		"huge_chunks",
		g.huge_chunks, "prefetch",
		g.prefetch == PREFETCH_URING  ? "uring"
		: g.prefetch == PREFETCH_SYNC ? "sync"
					      : "none",
		"served",
		g.served ? PyList_GetSlice(g.served, 0, PY_SSIZE_T_MAX)
			 : PyList_New(0));
}

/* ---- verify: every module, in-process, against this interpreter ---- */

PyObject *pycds_verify(PyObject *self, PyObject *arg)
{
	struct pycds_archive ar = { 0 };
	struct pycds_image img;
	struct pycds_image_ctx ctx;
	char err[PYCDS_ERR_LEN] = "";
	PyObject *bytes;
	struct stat st;
	void *map;
	int bad = 0, fd = -1;

	(void)self;
	if (!PyUnicode_FSConverter(arg, &bytes))
		return NULL;
	if (pycds_image_find(&img)) {
		Py_DECREF(bytes);
		PyErr_SetString(PyExc_RuntimeError,
				"cannot find the interpreter image");
		return NULL;
	}
	map = archive_map(PyBytes_AS_STRING(bytes), 0, PROT_READ, &ar, &fd, &st,
			  err, sizeof(err));
	Py_DECREF(bytes);
	if (!map)
		goto out;
	/* Mapped read-only elsewhere: checks read slots, never write.  The
	 * descriptor lets the padding check skip holes unread. */
	bad = archive_check(&ar, &img, err, sizeof(err)) != 0;
	if (!bad) {
		pycds_image_ctx_fill(&ctx, &img);
		bad = pycds_verify_all(&ar, fd, &ctx, err, sizeof(err)) != 0;
	}
	close(fd);
	munmap(map, ar.size);
	if (!bad)
		Py_RETURN_NONE;
out:
	PyErr_SetString(PyExc_ValueError, err);
	return NULL;
}

/* ---- what the layout run of `pycds build` learns ---- */

/* "~<TAB>name" for each names pool entry this process found interned
 * already (its slots were rewritten), "=<TAB>name" for each that became
 * the canonical string. */
static PyObject *layout_names(PyObject *out)
{
	uint32_t i;

	if (!g.enabled || !g.resolved)
		return out;
	for (i = 0; i < g.ar.hdr->nr_names && out; i++) {
		PyObject *t = name_resolved(i);
		const char *s;

		if (!t)
			continue;
		s = PyUnicode_AsUTF8(t);
		if (!s || strpbrk(s, "\t\n")) {
			PyErr_Clear();
			continue;
		}
		PyBytes_ConcatAndDel(&out, PyBytes_FromFormat(
			"%c\t%s\n", t == pycds_name_entry(&g.ar, i) ? '=' : '~', s));
	}
	return out;
}

/*
 * "@<TAB>file<TAB>first line<TAB>qualified name" for each archived code
 * object this process ran: its bytecode (and on 3.11 its warm-up
 * counter) no longer what the file holds.  The file is mapped again,
 * read-only, to compare: this measures what a process writes without
 * competing with the program for its trace or profile hooks.
 */
static PyObject *ran_walk(PyObject *out, PyObject *o, const uint8_t *pristine,
			  unsigned int depth)
{
	PyCodeObject *co = (PyCodeObject *)o;
	const uint8_t *p = (const uint8_t *)o;
	Py_ssize_t i;

	if (!out || depth > 64 || Py_TYPE(o) != &PyCode_Type ||
	    p < g.ar.base || p >= g.ar.base + g.ar.size)
		return out;
	if (pycds_code_ran(co, (const PyCodeObject *)(pristine +
						      (p - g.ar.base)))) {
		const char *file = PyUnicode_AsUTF8(co->co_filename);
		const char *qual = PyUnicode_AsUTF8(co->co_qualname);

		if (file && qual && !strpbrk(file, "\t\n") &&
		    !strpbrk(qual, "\t\n"))
			PyBytes_ConcatAndDel(&out, PyBytes_FromFormat(
				"@\t%s\t%d\t%s\n", file, co->co_firstlineno,
				qual));
		PyErr_Clear();
	}
	for (i = 0; out && i < PyTuple_GET_SIZE(co->co_consts); i++)
		out = ran_walk(out, PyTuple_GET_ITEM(co->co_consts, i),
			       pristine, depth + 1);
	return out;
}

static PyObject *layout_ran(PyObject *out)
{
	uint8_t *pristine;
	uint32_t i;
	int fd;

	/* A relocated copy differs from the file everywhere. */
	if (!g.enabled || g.ar.delta || !out)
		return out;
	fd = open(g.path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return out;
	pristine = mmap(NULL, g.ar.size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (pristine == MAP_FAILED)
		return out;
	for (i = 0; i < g.ar.hdr->nr_modules && out; i++)
		if (g.state[i] == MOD_READY)
			out = ran_walk(out, pycds_ptr(&g.ar,
					pycds_module_get(&g.ar, i)->root),
				       pristine, 0);
	munmap(pristine, g.ar.size);
	return out;
}

/* What a layout run appends to its record at exit; NULL with an
 * exception on error. */
PyObject *pycds_layout_lines(void)
{
	PyObject *out = PyBytes_FromStringAndSize(NULL, 0);

	out = layout_ran(out);
	return layout_names(out);
}

/* _pycds._hook(): what the .pth file calls at start-up. */
PyObject *pycds_hook(PyObject *self, PyObject *noargs)
{
	static int hooked;
	const char *archive, *record, *verbose;
	PyObject *flags, *ign;
	long ignore = 0;

	(void)noargs;
	/* Once per process, even if 00-pycds.pth is reached twice (a venv's
	 * lib64 -> lib link puts its site directory on the list twice). */
	if (hooked)
		Py_RETURN_NONE;
	hooked = 1;
	flags = PySys_GetObject("flags");
	if (flags) {
		ign = PyObject_GetAttrString(flags, "ignore_environment");
		if (ign) {
			ignore = PyObject_IsTrue(ign);
			Py_DECREF(ign);
		}
		PyErr_Clear();
	}
	/* Like CPython's own variables: not under -E/-I, not setuid. */
	if (ignore || getuid() != geteuid() || getgid() != getegid())
		Py_RETURN_NONE;
	verbose = getenv("PYCDS_VERBOSE");
	g.verbose = verbose && *verbose && strcmp(verbose, "0");
	record = getenv("PYCDS_RECORD");
	if (record && *record)
		pycds_record_start(record);
	archive = getenv("PYCDS_ARCHIVE");
	if (archive && *archive && !g.enabled) {
		if (enable_path(self, archive) < 0) {
			/* Never let a broken archive stop the interpreter. */
			PyObject *exc = PyErr_Occurred();

			report(archive, "cannot enable: %s",
			       exc ? ((PyTypeObject *)exc)->tp_name : "error");
			PyErr_Clear();
		}
	}
	/* The layout run: what this process did with the first archive. */
	if (record && *record && g.enabled && pycds_record_layout_at_exit() < 0)
		PyErr_Clear();
	/* Before the program runs: the prefetch ring's descriptor goes. */
	prefetch_end();
	Py_RETURN_NONE;
}

int pycds_runtime_init(PyObject *module)
{
	(void)module;
	return 0;
}
