// SPDX-License-Identifier: MIT
/*
 * pycds-loader: keep pycds archives on a hugepage-backed tmpfs.
 *
 * Mounts (or reuses) a tmpfs with huge=within_size, stages every *.pycds
 * from a source directory into it with io_uring, checks each copy with the
 * runtime's validator and publishes it with an atomic rename.  With
 * --foreground it keeps watching the source and republishes on change.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "loader.h"
#include "pycds/reader.h"

#define DEFAULT_MOUNT	"/run/pycds"
#define DEFAULT_SOURCE	"/var/lib/pycds"
#define LOCK_NAME	".pycds-loader.lock"
#define MIB		(1ULL << 20)
#define HUGE		(2ULL << 20)

static const char usage_text[] =
	"usage: pycds-loader --mount DIR [--source SRC] [--size SIZE]\n"
	"                    [--foreground [--heal SECS] [--pycds PATH]]\n"
	"       pycds-loader --status [--mount DIR] [--json]\n"
	"       pycds-loader --unmount [--mount DIR]\n";

static const char help_text[] =
	"\n"
	"Mount (or reuse) a tmpfs with transparent huge pages at DIR, copy every\n"
	"*.pycds from SRC into it with io_uring, check each copy and publish it\n"
	"with an atomic rename.  Processes that have an archive mapped keep it;\n"
	"new processes get the new one.  A copy that fails its checks, a source\n"
	"that changes while it is read or a full tmpfs is reported in one line\n"
	"and the archive already published stays.\n"
	"\n"
	"  --mount DIR     the tmpfs (default " DEFAULT_MOUNT ")\n"
	"  --source SRC    where archives come from (default " DEFAULT_SOURCE ")\n"
	"  --size SIZE     tmpfs size limit, e.g. 512M (default: twice the\n"
	"                  archives' total plus 64M, so each can be restaged)\n"
	"  --foreground    keep running: republish on change in SRC, rescan on\n"
	"                  SIGHUP, exit on SIGTERM or SIGINT\n"
	"  --heal SECS     with --foreground: at start, on SIGHUP and every SECS\n"
	"                  seconds (default 300; 0: never), rebuild each archive\n"
	"                  in SRC that no longer fits the installed interpreter\n"
	"                  or has stale modules, with pycds rebuild; a failed\n"
	"                  rebuild keeps the published archive\n"
	"  --pycds PATH    the pycds tool for --heal (default: the one beside\n"
	"                  pycds-loader, else pycds on PATH)\n"
	"  --status        list published archives: size, interpreter, huge\n"
	"                  page backing, processes mapping them, publish time,\n"
	"                  and the published layer each was built on (--on)\n"
	"  --json          with --status: JSON\n"
	"  --unmount       detach the tmpfs (mapped archives stay valid)\n"
	"\n"
	"Exit status: 0 success, 1 failure, 2 usage error.\n";

static int usage(void)
{
	fputs(usage_text, stderr);
	return 2;
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logf_(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("pycds-loader: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- mounts ---- */

struct mountinfo {
	int found;
	char fstype[32];
	char opts[256];		/* per-mount options */
	char super[512];	/* superblock options */
};

static int mount_lookup(const char *dir, struct mountinfo *mi)
{
	char line[4096];
	FILE *f = fopen("/proc/self/mountinfo", "re");

	memset(mi, 0, sizeof(*mi));
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char mnt[PATH_MAX], opts[256], *dash;
		char fstype[32], source[256], super[512];

		if (sscanf(line, "%*s %*s %*s %*s %4095s %255s", mnt, opts) != 2)
			continue;
		if (strcmp(mnt, dir))
			continue;
		dash = strstr(line, " - ");
		if (!dash || sscanf(dash + 3, "%31s %255s %511s", fstype, source,
				    super) != 3)
			continue;
		/* The last mount on top wins. */
		mi->found = 1;
		snprintf(mi->fstype, sizeof(mi->fstype), "%s", fstype);
		snprintf(mi->opts, sizeof(mi->opts), "%s", opts);
		snprintf(mi->super, sizeof(mi->super), "%s", super);
	}
	fclose(f);
	return 0;
}

static int has_opt(const char *list, const char *opt)
{
	size_t n = strlen(opt);
	const char *p = list;

	while ((p = strstr(p, opt))) {
		if ((p == list || p[-1] == ',') && (p[n] == ',' || !p[n]))
			return 1;
		p += n;
	}
	return 0;
}

static uint64_t sources_size(const char *src)
{
	uint64_t total = 0;
	struct dirent *e;
	struct stat st;
	DIR *d = opendir(src);
	int fd;

	if (!d)
		return 0;
	fd = dirfd(d);
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);

		if (n > 6 && !strcmp(e->d_name + n - 6, ".pycds") &&
		    !fstatat(fd, e->d_name, &st, 0) && S_ISREG(st.st_mode))
			total += st.st_size;
	}
	closedir(d);
	return total;
}

static int ensure_mount(const char *dir, const char *src, uint64_t size)
{
	struct mountinfo mi;
	char opts[128];
	int ret;

	ret = mount_lookup(dir, &mi);
	if (ret) {
		logf_("failed to read /proc/self/mountinfo: %s", strerror(-ret));
		return -1;
	}
	if (mi.found) {
		if (strcmp(mi.fstype, "tmpfs") || !has_opt(mi.super, "huge=within_size") ||
		    !has_opt(mi.opts, "nosuid") || !has_opt(mi.opts, "nodev") ||
		    !has_opt(mi.opts, "noexec")) {
			logf_("%s is mounted as %s (%s, %s), not a tmpfs with huge=within_size,nosuid,nodev,noexec; refusing to use it",
			      dir, mi.fstype, mi.opts, mi.super);
			return -1;
		}
		if (size) {
			snprintf(opts, sizeof(opts), "size=%llu",
				 (unsigned long long)size);
			if (mount(NULL, dir, NULL,
				  MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC,
				  opts)) {
				logf_("failed to resize %s: %s", dir, strerror(errno));
				return -1;
			}
		}
		return 0;
	}
	if (!size)
		size = (sources_size(src) * 2 + 64 * MIB + MIB - 1) & ~(MIB - 1);
	if (mkdir(dir, 0755) && errno != EEXIST) {
		logf_("failed to create %s: %s", dir, strerror(errno));
		return -1;
	}
	snprintf(opts, sizeof(opts), "huge=within_size,mode=0755,uid=0,gid=0,size=%llu",
		 (unsigned long long)size);
	if (mount("pycds", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts)) {
		logf_("failed to mount a tmpfs at %s: %s", dir, strerror(errno));
		return -1;
	}
	logf_("mounted tmpfs at %s (%s)", dir, opts);
	return 0;
}

/* ---- staging ---- */

static int is_archive_name(const char *name)
{
	size_t n = strlen(name);

	return name[0] != '.' && n > 6 && !strcmp(name + n - 6, ".pycds");
}

static int publish_one(int dirfd, const char *dir, const char *src,
		       const char *name)
{
	char path[PATH_MAX], err[PYCDS_ERR_LEN + 64];
	struct timespec t0, t1;
	struct stat st;
	int had = !fstatat(dirfd, name, &st, 0);

	snprintf(path, sizeof(path), "%s/%s", src, name);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (loader_stage(dirfd, path, name, err, sizeof(err))) {
		logf_("%s: %s; %s", path, err,
		      had ? "keeping the published archive" : "not published");
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (!fstatat(dirfd, name, &st, 0))
		logf_("published %s/%s (%lld bytes, %.1f ms)", dir, name,
		      (long long)st.st_size,
		      (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
	return 0;
}

static int publish_all(int dirfd, const char *dir, const char *src)
{
	struct dirent **list;
	int n, i, failed = 0;

	n = scandir(src, &list, NULL, alphasort);
	if (n < 0) {
		logf_("failed to read %s: %s", src, strerror(errno));
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (is_archive_name(list[i]->d_name) &&
		    publish_one(dirfd, dir, src, list[i]->d_name))
			failed = 1;
		free(list[i]);
	}
	free(list);
	return failed ? -1 : 0;
}

static int take_lock(int dirfd)
{
	int fd = openat(dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0) {
		logf_("failed to open the lock: %s", strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		if (errno != EWOULDBLOCK) {
			logf_("failed to lock: %s", strerror(errno));
			close(fd);
			return -1;
		}
		logf_("waiting for another pycds-loader to finish");
		if (flock(fd, LOCK_EX)) {
			logf_("failed to lock: %s", strerror(errno));
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* --heal SECS and --pycds PATH */
static int heal_every = 300;
static const char *heal_tool;

static int foreground(int dirfd, const char *dir, const char *src)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct pollfd pfd[2];
	struct timespec t0;
	time_t next_heal = 0;
	sigset_t mask;
	int in, sfd;

	in = inotify_init1(IN_CLOEXEC);
	if (in < 0 || inotify_add_watch(in, src, IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
		logf_("failed to watch %s: %s", src, strerror(errno));
		return 1;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		logf_("failed to set up signals: %s", strerror(errno));
		return 1;
	}
	logf_("watching %s", src);
	if (heal_every) {
		logf_("checking every %d s that its archives fit the interpreter and have no stale module",
		      heal_every);
		loader_heal(src, heal_tool, 1, logf_);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		next_heal = t0.tv_sec + heal_every;
	}
	pfd[0] = (struct pollfd){ .fd = in, .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	for (;;) {
		int r, wait = -1;

		if (heal_every) {
			struct timespec now;

			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec >= next_heal) {
				loader_heal(src, heal_tool, 0, logf_);
				clock_gettime(CLOCK_MONOTONIC, &now);
				next_heal = now.tv_sec + heal_every;
			}
			wait = (int)(next_heal - now.tv_sec) * 1000;
		}
		r = poll(pfd, 2, wait);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			logf_("poll: %s", strerror(errno));
			return 1;
		}
		if (!r)
			continue;
		if (pfd[1].revents) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGHUP) {
				logf_("SIGHUP: rescanning %s", src);
				publish_all(dirfd, dir, src);
				if (heal_every)
					loader_heal(src, heal_tool, 1, logf_);
				continue;
			}
			logf_("exiting on signal %u", si.ssi_signo);
			return 0;
		}
		if (pfd[0].revents) {
			ssize_t len = read(in, buf, sizeof(buf));
			char *p;

			for (p = buf; len > 0 && p < buf + len;) {
				struct inotify_event *ev = (void *)p;

				if (ev->len && is_archive_name(ev->name))
					publish_one(dirfd, dir, src, ev->name);
				p += sizeof(*ev) + ev->len;
			}
		}
	}
}

/* ---- status ---- */

/* Fault in the data of @fd mapped at @p: not its holes, which a read
 * fault on a tmpfs would fill (the padding a build leaves, see
 * Documentation/archive-format.rst). */
static void populate_data(int fd, uint8_t *p, uint64_t size)
{
	uint64_t off = 0, data, hole;
	int r;

	while (off < size && (r = pycds_next_data(fd, off, size, &data, &hole))) {
		if (r < 0) {
			data = off;
			hole = size;
		}
		data &= ~(uint64_t)(PYCDS_PAGE_SIZE - 1);	/* madvise wants pages */
		madvise(p + data, hole - data, 22 /* MADV_POPULATE_READ */);
		off = hole;
	}
}

/* Map @fd at a 2 MiB-aligned address, fault its data in read-only and read
 * how much of it the kernel maps with PMDs: the huge-page backing. */
static long long huge_kb(int fd, uint64_t size)
{
	char line[256], want[32];
	long long kb = -1;
	uint8_t *raw, *p;
	FILE *f;
	int in = 0;

	raw = mmap(NULL, size + HUGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return -1;
	p = (uint8_t *)(((uintptr_t)raw + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
	if (mmap(p, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
		goto out;
	populate_data(fd, p, size);
	snprintf(want, sizeof(want), "%lx-", (unsigned long)(uintptr_t)p);
	f = fopen("/proc/self/smaps", "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, want, strlen(want)))
			in = 1;
		else if (in && !strncmp(line, "ShmemPmdMapped:", 15)) {
			kb = atoll(line + 15);
			break;
		}
	}
	if (f)
		fclose(f);
out:
	munmap(raw, size + HUGE);
	return kb;
}

static int mappers(dev_t dev, ino_t ino)
{
	char path[300], line[512];
	struct dirent *e;
	int count = 0;
	DIR *d = opendir("/proc");

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		FILE *f;
		int hit = 0;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/maps", e->d_name);
		f = fopen(path, "re");
		while (f && !hit && fgets(line, sizeof(line), f)) {
			unsigned int maj, min;
			unsigned long inode;

			if (sscanf(line, "%*s %*s %*s %x:%x %lu", &maj, &min,
				   &inode) == 3 &&
			    inode == ino && makedev(maj, min) == dev)
				hit = 1;
		}
		if (f)
			fclose(f);
		count += hit;
	}
	closedir(d);
	return count;
}

/* The name of the published archive whose header checksum is @sum: the
 * layer an archive was built on (pycds build --on), "?" when it is not
 * published here, "-" when it was built on nothing. */
static const char on_none[] = "-", on_unknown[] = "?";

static const char *built_on(const char *dir, struct dirent **list, int n,
			    uint64_t sum)
{
	char path[PATH_MAX];
	struct pycds_header h;
	int i, fd, hit;

	if (!sum)
		return on_none;
	for (i = 0; i < n; i++) {
		if (!is_archive_name(list[i]->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
		if (fd < 0)
			continue;
		hit = pread(fd, &h, sizeof(h), 0) == sizeof(h) &&
		      !memcmp(h.magic, PYCDS_MAGIC, PYCDS_MAGIC_LEN) &&
		      h.header_checksum == sum;
		close(fd);
		if (hit)
			return list[i]->d_name;
	}
	return on_unknown;
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

static int status(const char *dir, int json)
{
	struct dirent **list;
	int n, i, first = 1;

	n = scandir(dir, &list, NULL, alphasort);
	if (n < 0) {
		logf_("failed to read %s: %s", dir, strerror(errno));
		return 1;
	}
	if (json)
		printf("[");
	else
		printf("%-28s %12s %-18s %4s %9s %10s %8s  %-20s %s\n",
		       "ARCHIVE", "BYTES", "INTERPRETER", "FITS", "STALE",
		       "HUGE_KB", "MAPPERS", "PUBLISHED", "ON");
	for (i = 0; i < n; i++) {
		struct pycds_header h = { 0 };
		struct pycds_health hl;
		const char *on;
		char path[PATH_MAX], when[32], interp[32] = "?", stale[24];
		struct stat st;
		struct tm tm;
		long long kb;
		int fd, procs;

		if (!is_archive_name(list[i]->d_name))
			goto next;
		snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
		if (fd < 0 || fstat(fd, &st)) {
			if (fd >= 0)
				close(fd);
			goto next;
		}
		if (pread(fd, &h, sizeof(h), 0) != sizeof(h) ||
		    memcmp(h.magic, PYCDS_MAGIC, PYCDS_MAGIC_LEN))
			memset(&h, 0, sizeof(h));
		else
			snprintf(interp, sizeof(interp), "%u.%u.%u %.11s",
				 h.interp.hexversion >> 24,
				 (h.interp.hexversion >> 16) & 0xff,
				 (h.interp.hexversion >> 8) & 0xff,
				 h.interp.cache_tag);
		kb = huge_kb(fd, st.st_size);
		pycds_health_file(path, &hl);
		close(fd);
		snprintf(stale, sizeof(stale), "%u/%u", hl.stale, hl.modules);
		procs = mappers(st.st_dev, st.st_ino);
		gmtime_r(&st.st_ctim.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		on = built_on(dir, list, n, h.on_checksum);
		if (json) {
			printf("%s\n {\"archive\": \"%s\", \"bytes\": %lld, \"interpreter\": \"%s\", \"fits\": %s, \"fits_why\": ",
			       first ? "" : ",", path, (long long)st.st_size,
			       interp, hl.fits > 0 ? "true" : hl.fits ? "null" : "false");
			json_string(hl.why);
			printf(", \"modules\": %u, \"stale\": %u, \"huge_kb\": %lld, \"huge\": %s, \"mappers\": %d, \"published\": \"%s\", \"on\": ",
			       hl.modules, hl.stale, kb, kb > 0 ? "true" : "false",
			       procs, when);
			if (on == on_none)
				printf("null}");
			else if (on == on_unknown)
				printf("\"?\"}");
			else
				printf("\"%s/%s\"}", dir, on);
		} else {
			printf("%-28s %12lld %-18s %4s %9s %10lld %8d  %-20s %s\n",
			       path, (long long)st.st_size, interp,
			       hl.fits > 0 ? "yes" : hl.fits ? "?" : "no", stale,
			       kb, procs, when, on);
		}
		first = 0;
next:
		free(list[i]);
	}
	free(list);
	if (json)
		printf("\n]\n");
	return 0;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	switch (*end) {
	case 'G': case 'g': v <<= 10; /* fall through */
	case 'M': case 'm': v <<= 10; /* fall through */
	case 'K': case 'k': v <<= 10; end++; break;
	case '\0': break;
	default: return -1;
	}
	if (*end || !v)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mount", required_argument, NULL, 'm' },
		{ "source", required_argument, NULL, 's' },
		{ "size", required_argument, NULL, 'z' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "heal", required_argument, NULL, 'H' },
		{ "pycds", required_argument, NULL, 'P' },
		{ "status", no_argument, NULL, 'S' },
		{ "json", no_argument, NULL, 'j' },
		{ "unmount", no_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *src = DEFAULT_SOURCE;
	int heal_set = 0, c, fg = 0, stat_ = 0, json = 0, unmount = 0, dirfd, lock, ret;
	char real[PATH_MAX];
	uint64_t size = 0;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': dir = optarg; break;
		case 's': src = optarg; break;
		case 'z':
			if (parse_size(optarg, &size)) {
				fprintf(stderr, "pycds-loader: bad --size '%s'\n", optarg);
				return 2;
			}
			break;
		case 'f': fg = 1; break;
		case 'H': {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*end || end == optarg || v < 0 || v > 86400 * 7) {
				fprintf(stderr, "pycds-loader: bad --heal '%s' (seconds, 0 for never)\n",
					optarg);
				return 2;
			}
			heal_every = (int)v;
			heal_set = 1;
			break;
		}
		case 'P': heal_tool = optarg; heal_set = 1; break;
		case 'S': stat_ = 1; break;
		case 'j': json = 1; break;
		case 'u': unmount = 1; break;
		case 'h':
			fputs(usage_text, stdout);
			fputs(help_text, stdout);
			return 0;
		default: return usage();
		}
	}
	if (optind != argc || stat_ + unmount + fg > 1 || (json && !stat_) ||
	    (heal_set && !fg))
		return usage();
	if (!dir) {
		if (!stat_ && !unmount)
			return usage();
		dir = DEFAULT_MOUNT;
	}
	if (stat_)
		return status(dir, json);
	if (unmount) {
		if (umount2(dir, MNT_DETACH)) {
			logf_("failed to unmount %s: %s", dir, strerror(errno));
			return 1;
		}
		logf_("unmounted %s", dir);
		return 0;
	}
	if (geteuid()) {
		logf_("must run as root to mount and publish");
		return 1;
	}
	/* Compare mount points by their canonical path. */
	if (mkdir(dir, 0755) && errno != EEXIST) {
		logf_("failed to create %s: %s", dir, strerror(errno));
		return 1;
	}
	if (!realpath(dir, real)) {
		logf_("failed to resolve %s: %s", dir, strerror(errno));
		return 1;
	}
	if (ensure_mount(real, src, size))
		return 1;
	dirfd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		logf_("failed to open %s: %s", real, strerror(errno));
		return 1;
	}
	lock = take_lock(dirfd);
	if (lock < 0)
		return 1;
	loader_clean_stale(dirfd);
	ret = publish_all(dirfd, real, src) ? 1 : 0;
	if (fg)
		ret = foreground(dirfd, real, src);
	close(lock);
	close(dirfd);
	return ret;
}
