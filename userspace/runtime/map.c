// SPDX-License-Identifier: MIT
/*
 * Opening, trusting and mapping an archive, and the checks of its header,
 * the interpreter it was built for and the hash seed; the one-line reports.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <sys/sdt.h>

#include "runtime.h"

/* One line on stderr, prefixed and naming the archive. */

void report(const char *path, const char *fmt, ...)
{
	char msg[PYCDS_ERR_LEN + 128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "pycds: %s: %s\n", path, msg);
	fflush(stderr);
}

/*
 * The index in @names (NULL-terminated) of environment variable @var's
 * value: @dflt when it is unset or empty, and when it is none of them
 * (then one line says so).
 */
int env_choice(const char *path, const char *var, const char *const *names,
	       int dflt)
{
	const char *v = getenv(var);
	char list[128] = "";
	int i;

	if (!v || !*v)
		return dflt;
	for (i = 0; names[i]; i++)
		if (!strcmp(v, names[i]))
			return i;
	for (i = 0; names[i]; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list),
			 "%s%s", i ? (names[i + 1] ? ", " : " or ") : "",
			 names[i]);
	report(path, "%s=%.64s is not %s; using %s", var, v, list,
	       names[dflt]);
	return dflt;
}

void set_error(struct pycds_session *rt, const char *path, const char *msg)
{
	report(path, "%s", msg);
	STAP_PROBE2(pycds, archive__rejected, path, msg);
	Py_XDECREF(rt->error);
	rt->error = PyUnicode_FromString(msg);
	if (!rt->error)
		PyErr_Clear();
}

/* ---- mapping and checking ---- */

#define PYCDS_FUSE_MAGIC 0x65735546

int trust_check(int fd, char *err, size_t errlen)
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
 * The host-wide default at @path: its first line that is neither empty
 * nor a comment ('#'), blanks around it dropped; malloc'd, or NULL when
 * the file is missing, says nothing, or is not to be trusted (then one
 * line says why).  The archives' rules: a regular file, owned by root or
 * this user, writable by neither group nor others, not on FUSE.
 */
char *default_spec(const char *path)
{
	char buf[8192], err[PYCDS_ERR_LEN], *line, *next, *end;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		if (errno != ENOENT && errno != ENOTDIR)
			report(path, "cannot open: %s; ignored", strerror(errno));
		return NULL;
	}
	if (trust_check(fd, err, sizeof(err)) &&
	    strncmp(err, "file too short", 14)) {
		close(fd);
		report(path, "%s; ignored", err);
		return NULL;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		report(path, "cannot read: %s; ignored", strerror(errno));
		return NULL;
	}
	buf[n] = '\0';
	for (line = buf; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		while (*line == ' ' || *line == '\t')
			line++;
		end = line + strlen(line);
		while (end > line && (end[-1] == ' ' || end[-1] == '\t' ||
				      end[-1] == '\r'))
			*--end = '\0';
		if (*line && *line != '#')
			return strdup(line);
	}
	return NULL;
}

/*
 * Open, check ownership, and map @path.  With @fixed, try the preferred
 * base first.  Fills @ar (base, size, hdr, delta).  Returns the mapping;
 * with @keep_fd, the open file is left in *keep_fd and its status in
 * *kept.
 */
void *archive_map(const char *path, int fixed, int prot,
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
int archive_check(const struct pycds_archive *ar,
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

/* An archive with stored hashes serves only processes that hash as the
 * build did: same PYTHONHASHSEED. */
int hash_seed_check(struct pycds_session *rt, char *err, size_t errlen)
{
	const struct pycds_header *h = rt->ar.hdr;
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
