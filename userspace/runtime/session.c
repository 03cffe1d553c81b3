// SPDX-License-Identifier: MIT
/*
 * The process's session: enabling an archive (open, check, map), its
 * statistics, the in-process verify, and the start-up hook the .pth file
 * calls.  Any problem with the archive is one "pycds:" line on stderr and
 * the process goes on with normal imports.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sys/sdt.h>

#include "runtime.h"

/* One per process: its layers are enabled at most once. */
static struct pycds_stack stack;

/*
 * The pages of the stack (with its statics cache: four pages of .bss) a
 * process with an archive writes at once, taken in one call: each first
 * touch of a page is otherwise a fault, and a fault costs 20-50 us on
 * this kind of machine (a zero page read first and copied on the write
 * after, for the cache).  Measured with `perf stat -e minor-faults
 * python3 -c pass`: 5 faults fewer.  The pages at either end may hold
 * other .bss of this module: populating them only faults them early.
 */
static void state_populate(void)
{
	uintptr_t a = (uintptr_t)&stack, ae = a + sizeof(stack);
	uintptr_t lo = a & ~(uintptr_t)(PYCDS_PAGE_SIZE - 1);
	uintptr_t hi = (ae + PYCDS_PAGE_SIZE - 1) &
		       ~(uintptr_t)(PYCDS_PAGE_SIZE - 1);

	/* Advice only: without MADV_POPULATE_WRITE (before Linux 5.14)
	 * the pages fault in as they are used. */
	madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
}

struct pycds_stack *pycds_stack(void)
{
	return &stack;
}

static void layer_summary(struct pycds_session *rt)
{
	uint64_t c;

	if (!rt->enabled)
		return;
	fprintf(stderr,
		"pycds: %s: %llu hits, %llu misses, %llu stale, %llu rejected\n",
		rt->path, rt->ctr.hits, rt->ctr.misses, rt->ctr.stale,
		rt->ctr.rejected);
	/* Where the process's private copies come from, per 2 MiB chunk:
	 * what it asked for, and whether the chunk became a huge page. */
	for (c = 0; rt->huge && c <= rt->map_size / HUGE_CHUNK; c++)
		if (rt->asked[c] || rt->huge[c] == CHUNK_COPIED)
			fprintf(stderr, "pycds: %s: chunk %llu: %u kB asked, %s\n",
				rt->path, (unsigned long long)c, rt->asked[c] >> 10,
				rt->huge[c] == CHUNK_COPIED ? "huge page"
				: rt->huge[c] == CHUNK_PENDING ? "pages"
							     : "not eligible");
}

static void exit_summary(void)
{
	unsigned int i;

	for (i = 0; i < stack.nr; i++)
		layer_summary(&stack.layer[i]);
}

/*
 * Archived code carries function versions from the top of the range
 * (PYCDS_CODE_VERSIONS): this process's own count, read from a code
 * object made now, must not have reached it, or two functions could
 * share a version and one's specialization guard pass for the other.
 */
static int versions_free(char *err, size_t errlen)
{
#if PYCDS_CODE_VERSIONS
	PyCodeObject *c = PyCode_NewEmpty("<pycds>", "<pycds>", 0);
	uint32_t v;

	if (!c) {
		PyErr_Clear();
		snprintf(err, errlen, "cannot make a code object");
		return -1;
	}
	v = c->co_version;
	Py_DECREF(c);
	if (v == 0 || v >= PYCDS_CODE_VERSION_BASE) {
		snprintf(err, errlen,
			 "this process has used function version %#x, past "
			 "the archive's range",
			 v);
		return -1;
	}
#else
	(void)err;
	(void)errlen;
#endif
	return 0;
}

/* Layers stacked in one process must not share a function version (two
 * functions with one version would pass each other's specialization
 * guards): a layer built on another (--on) takes versions after it. */
static int versions_apart(struct pycds_stack *st, struct pycds_session *rt,
			  char *err, size_t errlen)
{
	const struct pycds_header *h = rt->ar.hdr;
	unsigned int i;

#if PYCDS_CODE_VERSIONS
	/* Code here has versions: an archive must say which it uses. */
	if (h->nr_modules &&
	    (!h->versions_count || h->versions_first < PYCDS_CODE_VERSION_BASE ||
	     (uint64_t)h->versions_first + h->versions_count >
		     (uint64_t)PYCDS_CODE_VERSION_BASE + PYCDS_CODE_VERSION_ROOM)) {
		snprintf(err, errlen, "its function versions (%#x, %u) are not "
			 "in the archives' range", h->versions_first,
			 h->versions_count);
		return -1;
	}
#endif
	for (i = 0; h->versions_count && &st->layer[i] != rt; i++) {
		const struct pycds_session *lo = &st->layer[i];
		const struct pycds_header *l = lo->enabled ? lo->ar.hdr : NULL;

		if (!l || !l->versions_count)
			continue;
		if ((uint64_t)h->versions_first <
			    (uint64_t)l->versions_first + l->versions_count &&
		    (uint64_t)l->versions_first <
			    (uint64_t)h->versions_first + h->versions_count) {
			snprintf(err, errlen,
				 "its function versions overlap those of layer "
				 "%s (build it with --on that layer)",
				 lo->path);
			return -1;
		}
	}
	return 0;
}

/* The same file named twice: the second names nothing new. */
static int layer_repeated(struct pycds_stack *st, struct pycds_session *rt,
			  char *err, size_t errlen)
{
	unsigned int i;

	for (i = 0; &st->layer[i] != rt; i++)
		if (st->layer[i].enabled && st->layer[i].dev == rt->dev &&
		    st->layer[i].ino == rt->ino) {
			snprintf(err, errlen, "the same file as layer %s",
				 st->layer[i].path);
			return -1;
		}
	return 0;
}

/* Map, check and start serving layer @rt from @path: 1 in use, 0 not
 * (after its one line), -1 with an exception. */
static int enable_try(struct pycds_stack *st, struct pycds_session *rt,
		      PyObject *module, const char *path)
{
	char err[PYCDS_ERR_LEN];
	struct stat sb;
	int fd = -1;

	free(rt->path);
	rt->path = strdup(path);
	if (!rt->path) {
		PyErr_NoMemory();
		return -1;
	}
	if (!st->have_image) {
		if (pycds_image_find(&st->image)) {
			set_error(rt, path, "cannot find the interpreter image");
			return 0;
		}
		st->have_image = 1;
	}
	rt->map = archive_map(path, 1, PROT_READ | PROT_WRITE, &rt->ar, &fd,
			      &sb, err, sizeof(err));
	if (!rt->map) {
		set_error(rt, path, err);
		return 0;
	}
	rt->map_size = rt->ar.size;
	rt->dev = sb.st_dev;
	rt->ino = sb.st_ino;
	if (layer_repeated(st, rt, err, sizeof(err))) {
		close(fd);
		goto reject;
	}
	rt->prefault = prefault_policy(rt);
	rt->thp = -1;
	prefetch_start(rt, fd, rt->map_size);
	/* The process keeps no descriptor of ours: descriptor numbers, and
	 * what a program that lists its descriptors sees, are stock's. */
	close(fd);
	if (archive_check(&rt->ar, &st->image, err, sizeof(err)) ||
	    hash_seed_check(rt, err, sizeof(err)) ||
	    versions_free(err, sizeof(err)) ||
	    versions_apart(st, rt, err, sizeof(err)))
		goto reject;
	padding_keep_hole(rt);
	rt->state = calloc(rt->ar.hdr->nr_modules ? rt->ar.hdr->nr_modules
						  : 1, 1);
	rt->huge = calloc(rt->map_size / HUGE_CHUNK + 1, 1);
	rt->asked = calloc(rt->map_size / HUGE_CHUNK + 1, sizeof(*rt->asked));
	if (!rt->state || !rt->huge || !rt->asked) {
		snprintf(err, sizeof(err), "out of memory");
		goto reject;
	}
	pycds_image_ctx_fill(&rt->ctx, &st->image);
	rt->ctx.static_seen = st->static_seen;
	rt->served_bits = calloc(rt->ar.hdr->nr_modules / 8 + 1, 1);
	if (!rt->served_bits) {
		snprintf(err, sizeof(err), "out of memory");
		goto reject;
	}
	if (import_machinery(st))
		return -1;
	Py_XSETREF(st->module, Py_NewRef(module));
	if (install_get_code(st) || install_find_spec(st))
		return -1;
	if (names_keep_at_exit(rt))
		return -1;
	rt->enabled = 1;
	Py_CLEAR(rt->error);
	{
		/* In registers: libbpf's USDT reader does not take
		 * RIP-relative operands.  One event per layer; the counters
		 * are the process's. */
		const char *p = rt->path;
		uint64_t b = (uint64_t)(uintptr_t)rt->map, sz = rt->map_size;
		uint64_t ctr = (uint64_t)(uintptr_t)&st->ctr;
		uint64_t lctr = (uint64_t)(uintptr_t)&rt->ctr;
		uint32_t rel = rt->ar.delta != 0;

		__asm__ volatile("" : "+r"(p), "+r"(b), "+r"(sz), "+r"(rel),
				 "+r"(ctr), "+r"(lctr));
		STAP_PROBE6(pycds, archive__mapped, p, b, sz, rel, ctr, lctr);
	}
	if (st->verbose)
		fprintf(stderr,
			"pycds: %s: mapped at 0x%llx (%s, preferred 0x%llx), %u modules, %zu bytes\n",
			path, (unsigned long long)(uintptr_t)rt->map,
			rt->ar.delta ? "relocated" : "not relocated",
			(unsigned long long)rt->ar.hdr->preferred_base,
			rt->ar.hdr->nr_modules, rt->map_size);
	return 1;
reject:
	prefetch_end(rt);
	munmap(rt->map, rt->map_size);
	rt->map = NULL;
	memset(&rt->ar, 0, sizeof(rt->ar));
	set_error(rt, path, err);
	return 0;
}

/*
 * Enable every layer @spec names (PYCDS_ARCHIVE's syntax: paths joined by
 * ':', searched in that order; empty entries are skipped), each on its
 * own: a layer that cannot be used costs its one line and the others
 * serve.  1 if some layer is in use, 0 if none, -1 with an exception.
 * Its wall time is kept for _pycds.stats().
 */
static int enable_spec(struct pycds_stack *st, PyObject *module,
		       const char *spec)
{
	struct timespec t0, t1;
	const char *p = spec, *colon;
	unsigned int i;
	int ret = 0, r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	free(st->spec);
	st->spec = strdup(spec);
	if (!st->spec) {
		PyErr_NoMemory();
		return -1;
	}
	for (; *p; p = *colon ? colon + 1 : colon) {
		char path[4096];
		size_t len;

		colon = strchrnul(p, ':');
		len = (size_t)(colon - p);
		if (!len)
			continue;
		if (st->nr == PYCDS_MAX_LAYERS) {
			report(spec, "more than %d layers: %s and after unused",
			       PYCDS_MAX_LAYERS, p);
			break;
		}
		if (len >= sizeof(path)) {
			report(spec, "a layer's path is too long");
			continue;
		}
		memcpy(path, p, len);
		path[len] = '\0';
		r = enable_try(st, &st->layer[st->nr++], module, path);
		if (r < 0) {
			ret = -1;
			break;
		}
		ret |= r;
	}
	/* A layer in use serves even when a later one raised. */
	for (i = 0; i < st->nr; i++)
		if (st->layer[i].enabled)
			st->enabled = 1;
	if (st->enabled) {
		if (st->verbose)
			Py_AtExit(exit_summary);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	st->enable_ns = (t1.tv_sec - t0.tv_sec) * 1000000000ULL + t1.tv_nsec -
			t0.tv_nsec;
	return ret;
}

/* Layers named before, none of which could be used: forgotten, so that
 * enable() can be called again. */
static void stack_reset(struct pycds_stack *st)
{
	unsigned int i;

	for (i = 0; i < st->nr; i++) {
		struct pycds_session *rt = &st->layer[i];

		/* None is in use (else no reset): a layer left mapped by an
		 * error after its mapping goes now. */
		if (rt->map)
			munmap(rt->map, rt->map_size ? rt->map_size : rt->ar.size);
		free(rt->path);
		free(rt->state);
		free(rt->huge);
		free(rt->asked);
		free(rt->served_bits);
		Py_CLEAR(rt->error);
		Py_CLEAR(rt->served);
		memset(rt, 0, sizeof(*rt));
	}
	st->nr = 0;
}

/* _pycds.enable(spec) -> bool: True if some layer is in use. */
PyObject *pycds_enable(PyObject *self, PyObject *arg)
{
	struct pycds_stack *st = &stack;
	PyObject *bytes;
	int ret;

	if (st->enabled) {
		PyErr_Format(PyExc_RuntimeError, "an archive is already in use: %s",
			     st->spec);
		return NULL;
	}
	if (!PyUnicode_FSConverter(arg, &bytes))
		return NULL;
	stack_reset(st);
	ret = enable_spec(st, self, PyBytes_AS_STRING(bytes));
	Py_DECREF(bytes);
	if (ret < 0)
		return NULL;
	return PyBool_FromLong(ret);
}

static const char *prefetch_name(int p)
{
	return p == PREFETCH_URING ? "uring" : p == PREFETCH_SYNC ? "sync" : "none";
}

/* One layer's figures. */
static PyObject *layer_stats(struct pycds_session *rt)
{
	const struct pycds_header *h = rt->enabled ? rt->ar.hdr : NULL;

	return Py_BuildValue(
		"{s:s,s:N,s:N,s:O,s:I,s:K,s:K,s:K,s:K,s:O,s:K,s:K,s:K,s:K,"
		"s:N,s:K,s:s,s:N,s:N}",
		"archive", rt->path,
		"base", h ? PyLong_FromVoidPtr(rt->map) : Py_NewRef(Py_None),
		"preferred_base",
		h ? PyLong_FromUnsignedLongLong(h->preferred_base)
		  : Py_NewRef(Py_None),
		"relocated", h && rt->ar.delta ? Py_True : Py_False,
		"modules", h ? h->nr_modules : 0,
		"hits", rt->ctr.hits,
		"misses", rt->ctr.misses,
		"stale", rt->ctr.stale,
		"rejected", rt->ctr.rejected,
		"error", rt->error ? rt->error : Py_None,
		"size", (unsigned long long)(h ? rt->map_size : 0),
		"interned", rt->interned,
		"redirected", rt->redirected,
		"prepare_ns", rt->prepare_ns,
		"hash_seed",
		h && h->hash_flags & PYCDS_HASHES_STORED
			? PyLong_FromUnsignedLong(h->hash_seed)
			: Py_NewRef(Py_None),
		"huge_chunks", rt->huge_chunks,
		"prefetch", prefetch_name(rt->prefetch),
		"on",
		h && h->on_checksum ? PyLong_FromUnsignedLongLong(h->on_base)
				    : Py_NewRef(Py_None),
		"served",
		rt->served ? PyList_GetSlice(rt->served, 0, PY_SSIZE_T_MAX)
			   : PyList_New(0));
}

/*
 * _pycds.stats(): the process's figures, and under "layers" each layer's.
 * With one layer, the top level is that layer's.  With several, base,
 * preferred_base and prefetch are the first layer in use's, relocated
 * says whether any is, modules, size and the counts are sums over the
 * layers, and error is None only when every layer is in use.
 */
PyObject *pycds_stats(PyObject *self, PyObject *noargs)
{
	struct pycds_stack *st = &stack;
	struct pycds_session *first = NULL, *bad = NULL;
	unsigned long long size = 0, interned = 0, redirected = 0,
			   prepare_ns = 0, huge = 0, rejected = 0;
	unsigned int i, modules = 0;
	int relocated = 0;
	PyObject *layers, *error = NULL, *ret;

	(void)self;
	(void)noargs;
	layers = PyList_New(0);
	if (!layers)
		return NULL;
	for (i = 0; i < st->nr; i++) {
		struct pycds_session *rt = &st->layer[i];
		PyObject *d = layer_stats(rt);

		if (!d || PyList_Append(layers, d)) {
			Py_XDECREF(d);
			Py_DECREF(layers);
			return NULL;
		}
		Py_DECREF(d);
		rejected += rt->ctr.rejected;
		interned += rt->interned;
		redirected += rt->redirected;
		prepare_ns += rt->prepare_ns;
		huge += rt->huge_chunks;
		if (!rt->enabled || rt->error) {
			if (!bad)
				bad = rt;
			if (!rt->enabled)
				continue;
		}
		if (!first)
			first = rt;
		relocated |= rt->ar.delta != 0;
		modules += rt->ar.hdr->nr_modules;
		size += rt->map_size;
	}
	if (bad && bad->error)
		error = st->nr == 1 ? Py_NewRef(bad->error)
				    : PyUnicode_FromFormat("%s: %U", bad->path,
							   bad->error);
	else
		error = Py_NewRef(Py_None);
	if (!error) {
		Py_DECREF(layers);
		return NULL;
	}
	ret = Py_BuildValue(
		"{s:s,s:N,s:N,s:O,s:I,s:K,s:K,s:K,s:K,s:K,s:K,s:N,"
		"s:K,s:K,s:K,s:K,s:K,s:K,s:N,s:K,s:s,s:N,s:N}",
		"archive", st->spec,
		"base", first ? PyLong_FromVoidPtr(first->map) : Py_NewRef(Py_None),
		"preferred_base",
		first ? PyLong_FromUnsignedLongLong(first->ar.hdr->preferred_base)
		      : Py_NewRef(Py_None),
		"relocated", relocated ? Py_True : Py_False,
		"modules", modules,
		"hits", st->ctr.hits,
		"misses", st->ctr.misses,
		"stale", st->ctr.stale,
		"found", st->found,
		"relisted", st->find_relisted,
		"rejected", rejected,
		"error", error,
		"size", size,
		"interned", interned,
		"redirected", redirected,
		"prepare_ns", prepare_ns,
		"enable_ns", st->enable_ns,
		"image_bias", (unsigned long long)(first ? first->ctx.bias : 0),
		"hash_seed",
		first && first->ar.hdr->hash_flags & PYCDS_HASHES_STORED
			? PyLong_FromUnsignedLong(first->ar.hdr->hash_seed)
			: Py_NewRef(Py_None),
		"huge_chunks", huge,
		"prefetch", prefetch_name(first ? first->prefetch : PREFETCH_NONE),
		"served",
		st->served ? PyList_GetSlice(st->served, 0, PY_SSIZE_T_MAX)
			   : PyList_New(0),
		"layers", layers);
	return ret;
}

/* ---- verify and describe: an archive mapped apart, read-only ---- */

/*
 * The archive @arg names, mapped read-only where the kernel puts it, its
 * header, interpreter identity and index checked against this
 * interpreter (whose image fills @img).  With @fd, its descriptor is left
 * open there.  NULL with an exception set: ValueError with the reason.
 */
static void *map_checked(PyObject *arg, struct pycds_archive *ar,
			 struct pycds_image *img, int *fd)
{
	char err[PYCDS_ERR_LEN] = "";
	PyObject *bytes;
	struct stat sb;
	void *map;

	if (!PyUnicode_FSConverter(arg, &bytes))
		return NULL;
	if (pycds_image_find(img)) {
		Py_DECREF(bytes);
		PyErr_SetString(PyExc_RuntimeError,
				"cannot find the interpreter image");
		return NULL;
	}
	map = archive_map(PyBytes_AS_STRING(bytes), 0, PROT_READ, ar, fd, &sb,
			  err, sizeof(err));
	Py_DECREF(bytes);
	if (map && archive_check(ar, img, err, sizeof(err))) {
		if (fd)
			close(*fd);
		munmap(map, ar->size);
		map = NULL;
	}
	if (!map)
		PyErr_SetString(PyExc_ValueError, err);
	return map;
}

/* _pycds.verify(path): every module, in-process, against this
 * interpreter. */
PyObject *pycds_verify(PyObject *self, PyObject *arg)
{
	struct pycds_archive ar = { 0 };
	struct pycds_image img;
	struct pycds_image_ctx ctx;
	char err[PYCDS_ERR_LEN] = "";
	void *map;
	int bad, fd = -1;

	(void)self;
	/* Mapped read-only: checks read slots, never write.  The descriptor
	 * lets the padding check skip holes unread. */
	map = map_checked(arg, &ar, &img, &fd);
	if (!map)
		return NULL;
	pycds_image_ctx_fill(&ctx, &img);
	bad = pycds_verify_all(&ar, fd, &ctx, err, sizeof(err)) != 0;
	close(fd);
	munmap(map, ar.size);
	if (!bad)
		Py_RETURN_NONE;
	PyErr_SetString(PyExc_ValueError, err);
	return NULL;
}

/* _pycds.describe(path): what `pycds build --on` reads of a lower layer. */
PyObject *pycds_describe(PyObject *self, PyObject *arg)
{
	struct pycds_archive ar = { 0 };
	struct pycds_image img;
	const struct pycds_header *h;
	PyObject *mods, *ret = NULL;
	void *map;
	uint32_t i;

	(void)self;
	map = map_checked(arg, &ar, &img, NULL);
	if (!map)
		return NULL;
	h = ar.hdr;
	mods = PyList_New(h->nr_modules);
	for (i = 0; mods && i < h->nr_modules; i++) {
		const struct pycds_module *m = pycds_module_get(&ar, i);
		size_t nlen, olen;
		const char *n = pycds_module_name(&ar, m, &nlen);
		const char *o = pycds_module_origin(&ar, m, &olen);
		PyObject *t = Py_BuildValue("(s#s#ILK)", n, (Py_ssize_t)nlen, o,
					    (Py_ssize_t)olen, m->flags,
					    (long long)m->src_mtime,
					    (unsigned long long)m->src_size);

		if (!t)
			Py_CLEAR(mods);
		else
			PyList_SET_ITEM(mods, i, t);
	}
	if (mods)
		ret = Py_BuildValue(
			"{s:K,s:K,s:K,s:I,s:I,s:N,s:O}",
			"preferred_base", (unsigned long long)h->preferred_base,
			"size", (unsigned long long)h->file_size,
			"checksum", (unsigned long long)h->header_checksum,
			"versions_first", h->versions_first,
			"versions_count", h->versions_count,
			"on",
			h->on_checksum ? Py_BuildValue("(KKK)",
						       (unsigned long long)h->on_checksum,
						       (unsigned long long)h->on_base,
						       (unsigned long long)h->on_size)
				       : Py_NewRef(Py_None),
			"modules", mods);
	Py_XDECREF(mods);
	munmap(map, ar.size);
	return ret;
}

/* _pycds._hook(): what the .pth file calls at start-up. */
PyObject *pycds_hook(PyObject *self, PyObject *noargs)
{
	struct pycds_stack *st = &stack;
	static int hooked;
	const char *archive, *record, *verbose;
	char *dflt = NULL;
	PyObject *flags, *ign;
	long ignore = 0;
	unsigned int i;

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
	state_populate();
	verbose = getenv("PYCDS_VERBOSE");
	st->verbose = verbose && *verbose && strcmp(verbose, "0");
	record = getenv("PYCDS_RECORD");
	if (record && *record)
		pycds_record_start(record);
	archive = getenv("PYCDS_ARCHIVE");
	/* Unset (not empty): the host's default, if it has one. */
	if (!archive && !st->enabled)
		archive = dflt = default_spec(PYCDS_DEFAULT_FILE);
	if (archive && *archive && !st->enabled) {
		if (enable_spec(st, self, archive) < 0) {
			/* Never let a broken archive stop the interpreter. */
			PyObject *exc = PyErr_Occurred();

			report(archive, "cannot enable: %s",
			       exc ? ((PyTypeObject *)exc)->tp_name : "error");
			PyErr_Clear();
		}
	}
	/* The layout run: what this process did with the layer built. */
	if (record && *record && st->enabled &&
	    pycds_record_layout_at_exit() < 0)
		PyErr_Clear();
	/* Before the program runs: the prefetch rings' descriptors go. */
	for (i = 0; i < st->nr; i++)
		prefetch_end(&st->layer[i]);
	free(dflt);
	Py_RETURN_NONE;
}

int pycds_runtime_init(PyObject *module)
{
	(void)module;
	return 0;
}
