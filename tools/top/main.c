// SPDX-License-Identifier: MIT
/*
 * pycds-top: per-process Python import latency, archive hits and page
 * faults, from BPF programs on CPython's and pycds's USDT probes and the
 * page_fault_user tracepoint.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <limits.h>
#include <linux/types.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <ncurses.h>

#include "pycds/probes.h"
#include "pycds/reader.h"
#include "pycdstop.skel.h"
#include "top.h"

#define DEFAULT_PYTHON "/usr/bin/python3"
#define DEFAULT_MOUNT "/run/pycds"
#define MAX_ROWS 4096

static const char usage_text[] =
	"usage: pycds-top [-p PID] [-d SECS] [-b] [-n COUNT] [--json]\n"
	"                 [--python PATH] [--pycds-lib PATH]\n"
	"       pycds-top --listen ADDR:PORT [--per-process] [--mount DIR]\n"
	"                 [-d SECS] [...]\n";

static const char help_text[] =
	"\n"
	"One row per Python process: archive in use, relocation, imports, archive\n"
	"hits, misses and stale modules, import latency p50/p99, page faults inside\n"
	"and outside the archive mapping, and the archive mapping's clean (shared)\n"
	"and dirty (copied) kB.  Processes without an archive are shown too.\n"
	"Probes attach by binary, so processes started earlier are seen from now on.\n"
	"\n"
	"  -p PID          only this process\n"
	"  -d SECS         refresh interval (default 1)\n"
	"  -b              batch: plain text, no terminal control\n"
	"  -n COUNT        stop after COUNT refreshes\n"
	"  --json          JSON, one document per refresh (implies -b)\n"
	"  --python PATH   interpreter whose probes to use (default " DEFAULT_PYTHON ")\n"
	"  --pycds-lib P   the _pycds extension (default: found in the site\n"
	"                  directories of PATH, its venv's first)\n"
	"  --listen A:P    no view: serve Prometheus metrics on http://A:P/metrics\n"
	"  --per-process   with --listen: a pid label on every series\n"
	"  --mount DIR     with --listen: report whether each archive\n"
	"                  published in DIR fits the installed interpreter\n"
	"                  and how many of its modules are stale (default\n"
	"                  " DEFAULT_MOUNT ")\n"
	"\n"
	"Keys: i imports, t import time, h hits, f faults, p pid (sort);\n"
	"      H histogram of import latency; q quit.\n";

struct row {
	__u32 pid;
	char comm[32];
	struct pycds_proc s;
	long long clean_kb, dirty_kb;
	double p50_us, p99_us;
	int fits;		/* its (first) archive fits the interpreter
				 * installed now: 1, 0, -1 unknown */
	unsigned int stale_now;	/* that archive's stale modules now */
};

static volatile sig_atomic_t stop;

/* With --listen, counts must survive a process's exit: count with probes.
 * Otherwise read the runtime's counters from the process when shown. */
static int counting_probes;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt,
			va_list ap)
{
	if (level == LIBBPF_WARN && getenv("PYCDS_TOP_DEBUG"))
		return vfprintf(stderr, fmt, ap);
	return 0;
}

/*
 * The _pycds extension an interpreter would import, found from files
 * alone (no interpreter is run): the site directories its prefix and
 * version give, a venv's first when @python is inside one (PEP 405: a
 * pyvenv.cfg next to the executable or one directory up).  @python is the
 * path as given, @real its resolved path, named pythonX.Y.
 */
static int find_pycds_lib(const char *python, const char *real, char *out,
			  size_t len)
{
	char dirs[8][PATH_MAX + 64], buf[PATH_MAX], ver[16], tag[16];
	const char *base = strrchr(real, '/');
	unsigned int major, minor, nd = 0, i;
	char *slash;

	base = base ? base + 1 : real;
	if (sscanf(base, "python%u.%u", &major, &minor) != 2)
		return -1;
	snprintf(ver, sizeof(ver), "%u.%u", major, minor);
	snprintf(tag, sizeof(tag), "%u%u", major, minor);

	/* A venv: <venv>/bin/python with <venv>/pyvenv.cfg. */
	snprintf(buf, sizeof(buf), "%s", python);
	for (i = 0; i < 2 && (slash = strrchr(buf, '/')); i++) {
		char cfg[PATH_MAX + 16];

		*slash = '\0';
		snprintf(cfg, sizeof(cfg), "%s/pyvenv.cfg", *buf ? buf : "/");
		if (!access(cfg, R_OK)) {
			snprintf(dirs[nd++], sizeof(dirs[0]),
				 "%s/lib/python%s/site-packages", buf, ver);
			break;
		}
	}
	/* The interpreter's prefix: <prefix>/bin/pythonX.Y. */
	snprintf(buf, sizeof(buf), "%s", real);
	for (i = 0; i < 2 && (slash = strrchr(buf, '/')); i++)
		*slash = '\0';
	snprintf(dirs[nd++], sizeof(dirs[0]), "%s/local/lib/python%s/dist-packages",
		 buf, ver);
	snprintf(dirs[nd++], sizeof(dirs[0]), "%s/lib/python3/dist-packages", buf);
	snprintf(dirs[nd++], sizeof(dirs[0]), "%s/lib/python%s/dist-packages", buf,
		 ver);
	snprintf(dirs[nd++], sizeof(dirs[0]), "%s/lib/python%s/site-packages", buf,
		 ver);

	for (i = 0; i < nd; i++) {
		char pat[PATH_MAX + 128];
		glob_t g;
		int found;

		if (snprintf(pat, sizeof(pat), "%s/_pycds.cpython-%s-*.so",
			     dirs[i], tag) >= (int)sizeof(pat) ||
		    glob(pat, 0, NULL, &g))
			continue;
		found = g.gl_pathc > 0 &&
			snprintf(out, len, "%s", g.gl_pathv[0]) < (int)len;
		globfree(&g);
		if (found)
			return 0;
	}
	return -1;
}

static double quantile_us(const __u64 *hist, double q)
{
	__u64 total = 0, acc = 0;
	int i;

	for (i = 0; i < PYCDS_HIST_SLOTS; i++)
		total += hist[i];
	if (!total)
		return 0;
	for (i = 0; i < PYCDS_HIST_SLOTS; i++) {
		acc += hist[i];
		if (acc >= q * total)
			/* Upper bound of the log2 bucket. */
			return (double)(2ULL << i) / 1000.0;
	}
	return 0;
}

/* How the archive at @path stands now (pycds_health_file), asked once
 * per refresh for each archive however many processes map it. */
static struct health_cache {
	char path[PYCDS_PATH_LEN];
	struct pycds_health h;
} health_cache[32];
static int nr_health;

static const struct pycds_health *health_now(const char *path)
{
	static struct pycds_health unknown = { .fits = -1 };
	int i;

	for (i = 0; i < nr_health; i++)
		if (!strcmp(health_cache[i].path, path))
			return &health_cache[i].h;
	if (nr_health == (int)(sizeof(health_cache) / sizeof(health_cache[0])))
		return &unknown;
	snprintf(health_cache[nr_health].path, PYCDS_PATH_LEN, "%s", path);
	pycds_health_file(path, &health_cache[nr_health].h);
	return &health_cache[nr_health++].h;
}

static int collect(int fd, __u32 only, struct row *rows)
{
	__u32 key, next, *prev = NULL, dead[256];
	int n = 0, ndead = 0, i;

	nr_health = 0;

	while (!bpf_map_get_next_key(fd, prev, &next) && n < MAX_ROWS) {
		struct row *r = &rows[n];
		char path[64];
		FILE *f;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &r->s))
			continue;
		if (!top_pid_alive(key)) {
			if (ndead < 256)
				dead[ndead++] = key;
			continue;
		}
		if (only && key != only)
			continue;
		r->pid = key;
		snprintf(path, sizeof(path), "/proc/%u/comm", key);
		f = fopen(path, "re");
		if (!f || !fgets(r->comm, sizeof(r->comm), f))
			snprintf(r->comm, sizeof(r->comm), "?");
		if (f)
			fclose(f);
		r->comm[strcspn(r->comm, "\n")] = '\0';
		top_smaps_archive(key, r->s.base, r->s.size, &r->clean_kb,
			      &r->dirty_kb);
		/* Every layer's range, added up. */
		for (i = 1; i < (int)r->s.nr_layers && i < PYCDS_TOP_LAYERS;
		     i++) {
			long long c, d;

			top_smaps_archive(key, r->s.layer[i].base,
					  r->s.layer[i].size, &c, &d);
			if (c >= 0 && r->clean_kb >= 0) {
				r->clean_kb += c;
				r->dirty_kb += d;
			}
		}
		if (!counting_probes && r->s.counters) {
			/* The runtime's own counters: no probe per module. */
			struct pycds_counters c;

			if (!top_read_counters(key, r->s.counters, &c)) {
				r->s.hits = c.hits;
				r->s.misses = c.misses;
				r->s.stale = c.stale;
			}
			for (i = 0; i < (int)r->s.nr_layers &&
				    i < PYCDS_TOP_LAYERS; i++)
				if (r->s.layer[i].counters &&
				    !top_read_counters(key, r->s.layer[i].counters,
						       &c))
					r->s.layer[i].hits = c.hits;
		}
		r->p50_us = quantile_us(r->s.hist_cum, 0.5);
		r->p99_us = quantile_us(r->s.hist_cum, 0.99);
		r->fits = -1;
		r->stale_now = 0;
		if (r->s.base) {
			const struct pycds_health *h = health_now(r->s.archive);

			r->fits = h->fits;
			r->stale_now = h->stale;
		}
		n++;
	}
	/* Exited processes leave the map. */
	for (i = 0; i < ndead; i++)
		bpf_map_delete_elem(fd, &dead[i]);
	return n;
}

static char sort_key = 't';

static int cmp_rows(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	__u64 u, v;

	switch (sort_key) {
	case 'i': u = x->s.imports; v = y->s.imports; break;
	case 'h': u = x->s.hits; v = y->s.hits; break;
	case 'f': u = x->s.faults_in + x->s.faults_out;
		  v = y->s.faults_in + y->s.faults_out; break;
	case 'p': return x->pid < y->pid ? -1 : x->pid > y->pid;
	default: u = x->s.import_ns; v = y->s.import_ns; break;
	}
	return u < v ? 1 : u > v ? -1 : 0;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

static void print_json(struct row *rows, int n)
{
	int i, j;

	printf("[");
	for (i = 0; i < n; i++) {
		struct row *r = &rows[i];

		printf("%s\n {\"pid\": %u, \"comm\": \"%s\", \"archive\": ",
		       i ? "," : "", r->pid, r->comm);
		if (r->s.base)
			printf("\"%s\"", r->s.archive);
		else
			printf("null");
		printf(", \"relocated\": %s, \"rejected\": %s, \"imports\": %llu, "
		       "\"hits\": %llu, \"misses\": %llu, \"stale\": %llu, "
		       "\"import_ms\": %.3f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
		       "\"faults_in\": %llu, \"faults_out\": %llu, "
		       "\"clean_kb\": %lld, \"dirty_kb\": %lld, \"hist_ns_log2\": [",
		       r->s.relocated ? "true" : "false",
		       r->s.rejected ? "true" : "false",
		       (unsigned long long)r->s.imports,
		       (unsigned long long)r->s.hits,
		       (unsigned long long)r->s.misses,
		       (unsigned long long)r->s.stale, r->s.import_ns / 1e6,
		       r->p50_us, r->p99_us, (unsigned long long)r->s.faults_in,
		       (unsigned long long)r->s.faults_out, r->clean_kb,
		       r->dirty_kb);
		for (j = 0; j < PYCDS_HIST_SLOTS; j++)
			printf("%s%llu", j ? ", " : "",
			       (unsigned long long)r->s.hist_cum[j]);
		printf("], \"archive_fits\": %s, \"archive_stale_modules\": %u",
		       r->fits > 0 ? "true" : r->fits ? "null" : "false",
		       r->stale_now);
		printf(", \"layers\": [");
		for (j = 0; j < (int)r->s.nr_layers && j < PYCDS_TOP_LAYERS; j++)
			printf("%s{\"archive\": \"%s\", \"hits\": %llu}",
			       j ? ", " : "", r->s.layer[j].archive,
			       (unsigned long long)r->s.layer[j].hits);
		printf("]}");
	}
	printf("\n]\n");
	fflush(stdout);
}

#define HEADER "%7s %-15s %-18s %3s %3s %7s %6s %6s %5s %9s %8s %8s %8s %8s %8s %8s\n"
#define ROW    "%7u %-15.15s %-18.18s %3s %3s %7llu %6llu %6llu %5llu %9.1f %8.0f %8.0f %8llu %8llu %8s %8s\n"

static void fmt_kb(char *buf, size_t len, long long kb)
{
	if (kb < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%lld", kb);
}

/* One table row, for batch output and the view alike. */
static void format_row(char *buf, size_t len, const struct row *r)
{
	char c[24], d[24], name[PYCDS_PATH_LEN + 16];

	fmt_kb(c, sizeof(c), r->clean_kb);
	fmt_kb(d, sizeof(d), r->dirty_kb);
	/* The first layer, and how many more. */
	if (r->s.nr_layers > 1)
		snprintf(name, sizeof(name), "%s+%u", base_name(r->s.archive),
			 r->s.nr_layers - 1);
	else
		snprintf(name, sizeof(name), "%s", base_name(r->s.archive));
	snprintf(buf, len, ROW, r->pid, r->comm,
		 r->s.base ? name : "-",
		 r->s.base ? (r->s.relocated ? "yes" : "no") : "-",
		 !r->s.base ? "-" : r->fits > 0 ? "yes" : r->fits ? "?" : "no",
		 (unsigned long long)r->s.imports,
		 (unsigned long long)r->s.hits,
		 (unsigned long long)r->s.misses,
		 (unsigned long long)r->s.stale, r->s.import_ns / 1e6,
		 r->p50_us, r->p99_us, (unsigned long long)r->s.faults_in,
		 (unsigned long long)r->s.faults_out, c, d);
}

static void print_text(struct row *rows, int n)
{
	char line[512];
	int i;

	printf(HEADER, "PID", "COMM", "ARCHIVE", "REL", "FIT", "IMPORTS", "HITS",
	       "MISSES", "STALE", "IMPORT_MS", "P50_US", "P99_US", "FLT_IN",
	       "FLT_OUT", "CLEAN_KB", "DIRTY_KB");
	for (i = 0; i < n; i++) {
		format_row(line, sizeof(line), &rows[i]);
		fputs(line, stdout);
	}
	fflush(stdout);
}

static void draw_hist(struct row *rows, int n, int y)
{
	__u64 sum[PYCDS_HIST_SLOTS] = { 0 }, max = 1;
	int i, j, w = COLS - 30;

	for (i = 0; i < n; i++)
		for (j = 0; j < PYCDS_HIST_SLOTS; j++)
			sum[j] += rows[i].s.hist_cum[j];
	for (j = 0; j < PYCDS_HIST_SLOTS; j++)
		if (sum[j] > max)
			max = sum[j];
	mvprintw(y++, 0, "import latency, %s (log2 buckets):",
		 n == 1 ? "one process" : "all processes");
	for (j = 7; j < 30 && y < LINES; j++) {
		int bar = w > 0 ? (int)(sum[j] * (__u64)w / max) : 0;

		mvprintw(y, 0, "%9.0f us %8llu |", (double)(2ULL << j) / 1000.0,
			 (unsigned long long)sum[j]);
		for (i = 0; i < bar; i++)
			addch('#');
		y++;
	}
}

static void draw(struct row *rows, int n, int hist)
{
	char line[512];
	int i, y = 2;

	erase();
	mvprintw(0, 0, "pycds-top: %d Python processes; sort: %c  "
		 "(i imports, t time, h hits, f faults, p pid, H histogram, q quit)",
		 n, sort_key);
	attron(A_REVERSE);
	mvprintw(1, 0, HEADER, "PID", "COMM", "ARCHIVE", "REL", "FIT", "IMPORTS",
		 "HITS", "MISSES", "STALE", "IMPORT_MS", "P50_US", "P99_US",
		 "FLT_IN", "FLT_OUT", "CLEAN_KB", "DIRTY_KB");
	attroff(A_REVERSE);
	for (i = 0; i < n && y < LINES - (hist ? 14 : 0); i++, y++) {
		format_row(line, sizeof(line), &rows[i]);
		mvaddstr(y, 0, line);
	}
	if (hist)
		draw_hist(rows, n, y + 1);
	refresh();
}

static int attach(struct pycdstop_bpf *skel, const char *python,
		  const char *lib)
{
	struct {
		struct bpf_program *prog;
		const char *bin, *provider, *name;
	} probes[] = {
		{ skel->progs.import_start, python, "python", "import__find__load__start" },
		{ skel->progs.import_done, python, "python", "import__find__load__done" },
		{ skel->progs.archive_mapped, lib, "pycds", "archive__mapped" },
		{ skel->progs.archive_rejected, lib, "pycds", "archive__rejected" },
		{ skel->progs.module_served, counting_probes ? lib : NULL,
		  "pycds", "module__served" },
		{ skel->progs.module_missed, counting_probes ? lib : NULL,
		  "pycds", "module__missed" },
		{ skel->progs.module_stale, counting_probes ? lib : NULL,
		  "pycds", "module__stale" },
	};
	unsigned int i;

	for (i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		struct bpf_link *l;

		if (!probes[i].bin)
			continue;
		l = bpf_program__attach_usdt(probes[i].prog, -1, probes[i].bin,
					     probes[i].provider, probes[i].name,
					     NULL);
		if (!l) {
			fprintf(stderr,
				"pycds-top: failed to attach to %s:%s in %s: %s\n",
				probes[i].provider, probes[i].name,
				probes[i].bin, strerror(errno));
			return -1;
		}
	}
	if (getenv("PYCDS_TOP_NO_FAULTS"))
		return 0;
	if (!bpf_program__attach(skel->progs.page_fault_user)) {
		fprintf(stderr,
			"pycds-top: failed to attach to page_fault_user: %s\n",
			strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "python", required_argument, NULL, 'P' },
		{ "pycds-lib", required_argument, NULL, 'L' },
		{ "listen", required_argument, NULL, 'l' },
		{ "per-process", no_argument, NULL, 'q' },
		{ "mount", required_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 },
	};
	const char *python = DEFAULT_PYTHON, *lib = NULL, *listen_addr = NULL;
	const char *mount = DEFAULT_MOUNT;
	int per_process = 0;
	char pybin[PATH_MAX], libpath[PATH_MAX];
	int c, batch = 0, json = 0, count = -1, hist = 0, fd, ret = 1, n, iter;
	double interval = 1.0;
	__u32 only = 0;
	struct pycdstop_bpf *skel;
	struct row *rows;

	while ((c = getopt_long(argc, argv, "p:d:bn:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': only = (__u32)atoi(optarg); break;
		case 'd': interval = atof(optarg); break;
		case 'b': batch = 1; break;
		case 'n': count = atoi(optarg); break;
		case 'j': json = batch = 1; break;
		case 'P': python = optarg; break;
		case 'L': lib = optarg; break;
		case 'l': listen_addr = optarg; break;
		case 'q': per_process = 1; break;
		case 'M': mount = optarg; break;
		case 'H': case 'h':
			fputs(usage_text, stdout);
			fputs(help_text, stdout);
			return 0;
		default:
			fputs(usage_text, stderr);
			return 2;
		}
	}
	if (optind != argc || interval <= 0) {
		fputs(usage_text, stderr);
		return 2;
	}
	if (!realpath(python, pybin)) {
		fprintf(stderr, "pycds-top: failed to resolve %s: %s\n", python,
			strerror(errno));
		return 1;
	}
	if (!lib && !find_pycds_lib(python, pybin, libpath, sizeof(libpath)))
		lib = libpath;
	if (!lib)
		fprintf(stderr,
			"pycds-top: _pycds not found for %s: showing imports only\n",
			pybin);
	libbpf_set_print(libbpf_quiet);
	skel = pycdstop_bpf__open();
	if (!skel) {
		fprintf(stderr, "pycds-top: failed to open BPF programs: %s\n",
			strerror(errno));
		return 1;
	}
	skel->rodata->target_tgid = only;
	if (pycdstop_bpf__load(skel)) {
		fprintf(stderr,
			"pycds-top: failed to load BPF programs (root and BTF needed): %s\n",
			strerror(errno));
		goto out;
	}
	counting_probes = listen_addr != NULL;
	if (attach(skel, pybin, lib))
		goto out;
	fprintf(stderr, "pycds-top: attached to %s%s%s\n", pybin,
		lib ? " and " : "", lib ? lib : "");
	fd = bpf_map__fd(skel->maps.procs);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (listen_addr) {
		ret = top_listen(fd, listen_addr, per_process, mount, interval,
				 &stop);
		goto out;
	}
	rows = calloc(MAX_ROWS, sizeof(*rows));
	if (!rows)
		goto out;
	if (!batch) {
		setlocale(LC_ALL, "");
		initscr();
		cbreak();
		noecho();
		curs_set(0);
		timeout((int)(interval * 1000));
	}
	for (iter = 0; !stop && (count < 0 || iter < count); iter++) {
		if (batch) {
			struct timespec ts = {
				.tv_sec = (time_t)interval,
				.tv_nsec = (long)((interval - (time_t)interval) * 1e9),
			};

			nanosleep(&ts, NULL);
		}
		n = collect(fd, only, rows);
		qsort(rows, n, sizeof(*rows), cmp_rows);
		if (json) {
			print_json(rows, n);
		} else if (batch) {
			print_text(rows, n);
			if (count < 0 || iter + 1 < count)
				printf("\n");
		} else {
			int k;

			draw(rows, n, hist);
			k = getch();
			if (k == 'q')
				break;
			if (k == 'H')
				hist = !hist;
			else if (k == 'i' || k == 't' || k == 'h' || k == 'f' ||
				 k == 'p')
				sort_key = (char)k;
		}
	}
	if (!batch)
		endwin();
	free(rows);
	ret = 0;
out:
	pycdstop_bpf__destroy(skel);
	return ret;
}
