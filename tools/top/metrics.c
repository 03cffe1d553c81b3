// SPDX-License-Identifier: MIT
/*
 * pycds-top --listen: the per-process counters as Prometheus metrics.
 *
 * Counters survive processes: when a process exits, its last counts are
 * folded into per-label totals, so rates stay right across a fleet of
 * short-lived processes.  Labels are low-cardinality (archive, result,
 * relocated, where); --per-process adds pid.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/types.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>

#include <bpf/bpf.h>
#include <microhttpd.h>

#include "pycds/probes.h"
#include "pycds/reader.h"
#include "top.h"

#define MAX_LABELS 256
#define MAX_LIVE 8192

/* Totals of exited processes, per archive label. */
struct agg {
	char archive[PYCDS_PATH_LEN];
	__u32 relocated;
	__u64 exits;
	struct pycds_proc sum;
};

/* Modules served per layer, whichever process: exited ones folded. */
struct layer_hits {
	char layer[PYCDS_PATH_LEN];
	__u64 hits;
};

static struct {
	pthread_mutex_t lock;
	int fd;
	int per_process;
	const char *archives;		/* --mount: the published archives */
	struct agg dead[MAX_LABELS];
	int ndead;
	struct layer_hits dead_layers[MAX_LABELS];
	int ndead_layers;
	struct { __u32 pid; struct pycds_proc s; } live[MAX_LIVE];
	int nlive;
	__u64 scrapes, collections;
} m = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const char *label_of(const struct pycds_proc *s)
{
	return s->base ? s->archive : "none";
}

static void add(struct pycds_proc *to, const struct pycds_proc *from)
{
	int i;

	to->hits += from->hits;
	to->misses += from->misses;
	to->stale += from->stale;
	to->imports += from->imports;
	to->import_ns += from->import_ns;
	to->import_ns_sum += from->import_ns_sum;
	to->faults_in += from->faults_in;
	to->faults_out += from->faults_out;
	for (i = 0; i < PYCDS_HIST_SLOTS; i++)
		to->hist_cum[i] += from->hist_cum[i];
}

static struct agg *agg_for(struct agg *tab, int *n, const struct pycds_proc *s)
{
	int i;

	for (i = 0; i < *n; i++)
		if (!strcmp(tab[i].archive, label_of(s)) &&
		    tab[i].relocated == s->relocated)
			return &tab[i];
	if (*n == MAX_LABELS)
		return &tab[MAX_LABELS - 1];	/* overflow bucket */
	memset(&tab[*n], 0, sizeof(tab[*n]));
	snprintf(tab[*n].archive, sizeof(tab[*n].archive), "%s", label_of(s));
	tab[*n].relocated = s->relocated;
	return &tab[(*n)++];
}

/* @s's hits per layer, added to @tab. */
static void add_layers(struct layer_hits *tab, int *n, int max,
		       const struct pycds_proc *s)
{
	unsigned int i;
	int j;

	for (i = 0; i < s->nr_layers && i < PYCDS_TOP_LAYERS; i++) {
		const struct pycds_layer_seen *l = &s->layer[i];

		for (j = 0; j < *n; j++)
			if (!strcmp(tab[j].layer, l->archive))
				break;
		if (j == *n) {
			if (*n == max)
				continue;
			snprintf(tab[j].layer, sizeof(tab[j].layer), "%s",
				 l->archive);
			tab[j].hits = 0;
			(*n)++;
		}
		tab[j].hits += l->hits;
	}
}

/* Read the map: live processes are kept, exited ones folded and deleted. */
static void collect_locked(void)
{
	__u32 key, next, *prev = NULL;
	__u32 dead[1024];
	int ndead = 0, i;

	m.nlive = 0;
	while (!bpf_map_get_next_key(m.fd, prev, &next)) {
		struct pycds_proc s;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(m.fd, &key, &s))
			continue;
		if (top_pid_alive(key)) {
			if (m.nlive < MAX_LIVE) {
				m.live[m.nlive].pid = key;
				m.live[m.nlive++].s = s;
			}
			continue;
		}
		struct agg *a = agg_for(m.dead, &m.ndead, &s);

		add(&a->sum, &s);
		add_layers(m.dead_layers, &m.ndead_layers, MAX_LABELS, &s);
		a->exits++;
		if (ndead < 1024)
			dead[ndead++] = key;
	}
	for (i = 0; i < ndead; i++)
		bpf_map_delete_elem(m.fd, &dead[i]);
	m.collections++;
}

struct buf {
	char *p;
	size_t len, cap;
};

static void put(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < b->cap - b->len) {
			b->len += n;
			return;
		}
		b->cap = b->cap * 2 + 4096;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
}

/* Prometheus label values: escape backslash, quote and newline. */
static void put_label(struct buf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			put(b, "\\%c", *v);
		else if (*v == '\n')
			put(b, "\\n");
		else
			put(b, "%c", *v);
	}
}

/* One series per label set: totals of exited processes plus live ones. */
struct series {
	char archive[PYCDS_PATH_LEN];
	__u32 relocated;
	__u32 pid;			/* with --per-process */
	__u64 live;
	__u64 exits;
	struct pycds_proc sum;
};

static int build_series(struct series *out, int max)
{
	int n = 0, i, j;

	for (i = 0; i < m.ndead && n < max; i++, n++) {
		memset(&out[n], 0, sizeof(out[n]));
		snprintf(out[n].archive, sizeof(out[n].archive), "%s",
			 m.dead[i].archive);
		out[n].relocated = m.dead[i].relocated;
		out[n].exits = m.dead[i].exits;
		out[n].sum = m.dead[i].sum;
	}
	for (i = 0; i < m.nlive; i++) {
		const struct pycds_proc *s = &m.live[i].s;
		struct series *t = NULL;

		for (j = 0; j < n && !m.per_process; j++)
			if (!strcmp(out[j].archive, label_of(s)) &&
			    out[j].relocated == s->relocated)
				t = &out[j];
		if (!t) {
			if (n == max)
				continue;
			t = &out[n++];
			memset(t, 0, sizeof(*t));
			snprintf(t->archive, sizeof(t->archive), "%s",
				 label_of(s));
			t->relocated = s->relocated;
			if (m.per_process)
				t->pid = m.live[i].pid;
		}
		t->live++;
		add(&t->sum, s);
	}
	return n;
}

static void put_labels(struct buf *b, const struct series *s,
		       const char *extra_k, const char *extra_v)
{
	put(b, "{archive=\"");
	put_label(b, s->archive);
	put(b, "\",relocated=\"%s\"", s->relocated ? "yes" : "no");
	if (s->pid)
		put(b, ",pid=\"%u\"", s->pid);
	if (extra_k)
		put(b, ",%s=\"%s\"", extra_k, extra_v);
}

/* Each published archive in --mount's directory: does it fit the
 * interpreter installed now, and how many of its modules' sources
 * changed since it was built (an upgrade not yet rebuilt for). */
static void put_archives(struct buf *b)
{
	static struct {
		char path[PYCDS_PATH_LEN];
		struct pycds_health h;
	} a[MAX_LABELS];
	struct dirent **list;
	int n, i, k = 0;

	n = m.archives ? scandir(m.archives, &list, NULL, alphasort) : -1;
	for (i = 0; i < n; i++) {
		const char *name = list[i]->d_name;
		size_t l = strlen(name);

		if (k < MAX_LABELS && name[0] != '.' && l > 6 &&
		    !strcmp(name + l - 6, ".pycds")) {
			snprintf(a[k].path, sizeof(a[k].path), "%s/%s",
				 m.archives, name);
			pycds_health_file(a[k].path, &a[k].h);
			k++;
		}
		free(list[i]);
	}
	if (n >= 0)
		free(list);
	put(b, "# HELP pycds_archive_fits Whether a published archive fits "
		"the interpreter installed now (1), or was built for another "
		"build of it and serves nothing (0); absent when it cannot "
		"tell.\n# TYPE pycds_archive_fits gauge\n");
	for (i = 0; i < k; i++) {
		if (a[i].h.fits < 0)
			continue;
		put(b, "pycds_archive_fits{archive=\"");
		put_label(b, a[i].path);
		put(b, "\"} %d\n", a[i].h.fits);
	}
	put(b, "# HELP pycds_archive_modules Modules a published archive "
		"holds.\n# TYPE pycds_archive_modules gauge\n");
	for (i = 0; i < k; i++) {
		put(b, "pycds_archive_modules{archive=\"");
		put_label(b, a[i].path);
		put(b, "\"} %u\n", a[i].h.modules);
	}
	put(b, "# HELP pycds_archive_stale_modules Modules of a published "
		"archive whose source changed or is gone since it was built: "
		"processes import them stock.\n"
		"# TYPE pycds_archive_stale_modules gauge\n");
	for (i = 0; i < k; i++) {
		put(b, "pycds_archive_stale_modules{archive=\"");
		put_label(b, a[i].path);
		put(b, "\"} %u\n", a[i].h.stale);
	}
}

static char *render(size_t *len)
{
	static struct series ser[MAX_LABELS + MAX_LIVE];
	struct buf b = { 0 };
	int n, i, j;

	n = build_series(ser, MAX_LABELS + MAX_LIVE);
	put(&b, "# HELP pycds_imports_total Imports a pycds archive was asked "
		"for, by result.\n# TYPE pycds_imports_total counter\n");
	for (i = 0; i < n; i++) {
		static const char *const res[] = { "hit", "miss", "stale" };
		__u64 v[] = { ser[i].sum.hits, ser[i].sum.misses,
			      ser[i].sum.stale };

		for (j = 0; j < 3; j++) {
			put(&b, "pycds_imports_total");
			put_labels(&b, &ser[i], "result", res[j]);
			put(&b, "} %llu\n", (unsigned long long)v[j]);
		}
	}
	{
		/* Per layer: exited processes' hits, then live ones'. */
		static struct layer_hits lt[MAX_LABELS];
		int nl = m.ndead_layers;

		memcpy(lt, m.dead_layers, sizeof(lt[0]) * (size_t)nl);
		for (i = 0; i < m.nlive; i++)
			add_layers(lt, &nl, MAX_LABELS, &m.live[i].s);
		put(&b, "# HELP pycds_layer_hits_total Modules a layer served "
			"(PYCDS_ARCHIVE=A:B:...: the layer that served each), "
			"over every process.\n"
			"# TYPE pycds_layer_hits_total counter\n");
		for (i = 0; i < nl; i++) {
			put(&b, "pycds_layer_hits_total{layer=\"");
			put_label(&b, lt[i].layer);
			put(&b, "\"} %llu\n", (unsigned long long)lt[i].hits);
		}
	}
	put(&b, "# HELP pycds_import_duration_seconds Time of each import "
		"through the import system, nested imports included.\n"
		"# TYPE pycds_import_duration_seconds histogram\n");
	for (i = 0; i < n; i++) {
		__u64 acc = 0;
		int k = 0;

		/* Buckets at 2^10..2^30 ns, every second log2 slot. */
		for (j = 0; j < PYCDS_HIST_SLOTS; j++) {
			acc += ser[i].sum.hist_cum[j];
			if (j < 9 || j > 29 || (j - 9) % 2)
				continue;
			put(&b, "pycds_import_duration_seconds_bucket");
			put_labels(&b, &ser[i], NULL, NULL);
			put(&b, ",le=\"%.9g\"} %llu\n",
			    (double)(2ULL << j) / 1e9, (unsigned long long)acc);
			k++;
		}
		for (; j < PYCDS_HIST_SLOTS; j++)
			acc += ser[i].sum.hist_cum[j];
		put(&b, "pycds_import_duration_seconds_bucket");
		put_labels(&b, &ser[i], NULL, NULL);
		put(&b, ",le=\"+Inf\"} %llu\n", (unsigned long long)acc);
		put(&b, "pycds_import_duration_seconds_sum");
		put_labels(&b, &ser[i], NULL, NULL);
		put(&b, "} %.9f\n", ser[i].sum.import_ns_sum / 1e9);
		put(&b, "pycds_import_duration_seconds_count");
		put_labels(&b, &ser[i], NULL, NULL);
		put(&b, "} %llu\n", (unsigned long long)acc);
		(void)k;
	}
	put(&b, "# HELP pycds_page_faults_total User page faults of Python "
		"processes, inside the archive mapping or elsewhere.\n"
		"# TYPE pycds_page_faults_total counter\n");
	for (i = 0; i < n; i++) {
		put(&b, "pycds_page_faults_total");
		put_labels(&b, &ser[i], "where", "archive");
		put(&b, "} %llu\n", (unsigned long long)ser[i].sum.faults_in);
		put(&b, "pycds_page_faults_total");
		put_labels(&b, &ser[i], "where", "other");
		put(&b, "} %llu\n", (unsigned long long)ser[i].sum.faults_out);
	}
	put(&b, "# HELP pycds_processes Python processes running now.\n"
		"# TYPE pycds_processes gauge\n");
	for (i = 0; i < n; i++) {
		put(&b, "pycds_processes");
		put_labels(&b, &ser[i], NULL, NULL);
		put(&b, "} %llu\n", (unsigned long long)ser[i].live);
	}
	put(&b, "# HELP pycds_process_exits_total Python processes that "
		"exited, their counts folded into the totals.\n"
		"# TYPE pycds_process_exits_total counter\n");
	for (i = 0; i < n; i++) {
		if (ser[i].pid)
			continue;
		put(&b, "pycds_process_exits_total");
		put_labels(&b, &ser[i], NULL, NULL);
		put(&b, "} %llu\n", (unsigned long long)ser[i].exits);
	}
	put_archives(&b);
	put(&b, "# HELP pycds_top_scrapes_total Scrapes served.\n"
		"# TYPE pycds_top_scrapes_total counter\n"
		"pycds_top_scrapes_total %llu\n",
		(unsigned long long)m.scrapes);
	*len = b.len;
	return b.p;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int code,
			     const char *type, char *body, size_t len,
			     enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, body, mode);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, "Allow", "GET, HEAD");
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *data,
			      size_t *size, void **state)
{
	static char not_found[] = "not found: try /metrics\n";
	static char bad_method[] = "method not allowed\n";
	static char index_page[] = "pycds-top: metrics at /metrics\n";
	char *body;
	size_t len;

	(void)cls;
	(void)version;
	(void)data;
	if (!*state) {
		/* First call for this request: headers only. */
		*state = (void *)1;
		return MHD_YES;
	}
	if (*size) {
		*size = 0;		/* ignore any body */
		return MHD_YES;
	}
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
			     bad_method, sizeof(bad_method) - 1,
			     MHD_RESPMEM_PERSISTENT);
	if (!strcmp(url, "/"))
		return reply(c, MHD_HTTP_OK, "text/plain", index_page,
			     sizeof(index_page) - 1, MHD_RESPMEM_PERSISTENT);
	if (strcmp(url, "/metrics"))
		return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", not_found,
			     sizeof(not_found) - 1, MHD_RESPMEM_PERSISTENT);
	pthread_mutex_lock(&m.lock);
	collect_locked();
	m.scrapes++;
	body = render(&len);
	pthread_mutex_unlock(&m.lock);
	return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
		     body, len, MHD_RESPMEM_MUST_FREE);
}

int top_listen(int fd, const char *addr, int per_process,
	       const char *archives, double interval,
	       volatile sig_atomic_t *stop)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct MHD_Daemon *d;
	char host[64];
	const char *colon = strrchr(addr, ':');
	long port;

	if (!colon || colon - addr >= (long)sizeof(host)) {
		fprintf(stderr, "pycds-top: --listen wants ADDR:PORT\n");
		return 2;
	}
	memcpy(host, addr, colon - addr);
	host[colon - addr] = '\0';
	port = strtol(colon + 1, NULL, 10);
	if (port <= 0 || port > 65535 ||
	    inet_pton(AF_INET, *host ? host : "0.0.0.0", &sa.sin_addr) != 1) {
		fprintf(stderr, "pycds-top: bad --listen address '%s'\n", addr);
		return 2;
	}
	sa.sin_port = htons((uint16_t)port);
	m.fd = fd;
	m.per_process = per_process;
	m.archives = archives;
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
			     (uint16_t)port, NULL, NULL, handle, NULL,
			     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
			     /* Slow or hostile clients: bounded time, memory
			      * and connections; collection goes on. */
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64,
			     MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)16,
			     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
			     MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "pycds-top: failed to listen on %s: %s\n", addr,
			strerror(errno));
		return 1;
	}
	fprintf(stderr, "pycds-top: serving metrics on http://%s/metrics\n",
		addr);
	while (!*stop) {
		struct timespec ts = {
			.tv_sec = (time_t)interval,
			.tv_nsec = (long)((interval - (time_t)interval) * 1e9),
		};

		nanosleep(&ts, NULL);
		pthread_mutex_lock(&m.lock);
		collect_locked();	/* fold exits even without scrapes */
		pthread_mutex_unlock(&m.lock);
	}
	MHD_stop_daemon(d);
	return 0;
}
