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

/* One per process: an archive is enabled at most once. */
static struct pycds_session session;

struct pycds_session *pycds_session(void)
{
	return &session;
}

static void exit_summary(void)
{
	struct pycds_session *rt = &session;
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

static int enable_try(struct pycds_session *rt, PyObject *module,
		      const char *path)
{
	char err[PYCDS_ERR_LEN];
	struct stat st;
	int fd = -1;

	free(rt->path);
	rt->path = strdup(path);
	if (!rt->path) {
		PyErr_NoMemory();
		return -1;
	}
	if (pycds_image_find(&rt->image)) {
		set_error(rt, path, "cannot find the interpreter image");
		return 0;
	}
	rt->map = archive_map(path, 1, PROT_READ | PROT_WRITE, &rt->ar, &fd,
			      &st, err, sizeof(err));
	if (!rt->map) {
		set_error(rt, path, err);
		return 0;
	}
	rt->map_size = rt->ar.size;
	rt->dev = st.st_dev;
	rt->ino = st.st_ino;
	rt->prefault = prefault_policy(rt);
	rt->thp = -1;
	prefetch_start(rt, fd, rt->map_size);
	/* The process keeps no descriptor of ours: descriptor numbers, and
	 * what a program that lists its descriptors sees, are stock's. */
	close(fd);
	if (archive_check(&rt->ar, &rt->image, err, sizeof(err)) ||
	    hash_seed_check(rt, err, sizeof(err)) ||
	    versions_free(err, sizeof(err)))
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
	pycds_image_ctx_fill(&rt->ctx, &rt->image);
	{
		static uint64_t seen[PYCDS_STATIC_SEEN];

		rt->ctx.static_seen = seen;
	}
	rt->served_bits = calloc(rt->ar.hdr->nr_modules / 8 + 1, 1);
	if (!rt->served_bits) {
		snprintf(err, sizeof(err), "out of memory");
		goto reject;
	}
	if (import_machinery(rt))
		return -1;
	Py_XSETREF(rt->module, Py_NewRef(module));
	if (install_get_code(rt))
		return -1;
	if (names_keep_at_exit(rt))
		return -1;
	rt->enabled = 1;
	Py_CLEAR(rt->error);
	{
		/* In registers: libbpf's USDT reader does not take
		 * RIP-relative operands. */
		const char *p = rt->path;
		uint64_t b = (uint64_t)(uintptr_t)rt->map, sz = rt->map_size;
		uint64_t ctr = (uint64_t)(uintptr_t)&rt->ctr;
		uint32_t rel = rt->ar.delta != 0;

		__asm__ volatile("" : "+r"(p), "+r"(b), "+r"(sz), "+r"(rel),
				 "+r"(ctr));
		STAP_PROBE5(pycds, archive__mapped, p, b, sz, rel, ctr);
	}
	if (rt->verbose) {
		fprintf(stderr,
			"pycds: %s: mapped at 0x%llx (%s, preferred 0x%llx), %u modules, %zu bytes\n",
			path, (unsigned long long)(uintptr_t)rt->map,
			rt->ar.delta ? "relocated" : "not relocated",
			(unsigned long long)rt->ar.hdr->preferred_base,
			rt->ar.hdr->nr_modules, rt->map_size);
		Py_AtExit(exit_summary);
	}
	return 1;
reject:
	prefetch_end(rt);
	munmap(rt->map, rt->map_size);
	rt->map = NULL;
	memset(&rt->ar, 0, sizeof(rt->ar));
	set_error(rt, path, err);
	return 0;
}

/* enable_try(), its wall time kept for _pycds.stats(). */
static int enable_path(struct pycds_session *rt, PyObject *module,
		       const char *path)
{
	struct timespec t0, t1;
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = enable_try(rt, module, path);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	rt->enable_ns = (t1.tv_sec - t0.tv_sec) * 1000000000ULL + t1.tv_nsec -
			t0.tv_nsec;
	return ret;
}

/* _pycds.enable(path) -> bool: True if the archive is in use. */
PyObject *pycds_enable(PyObject *self, PyObject *arg)
{
	struct pycds_session *rt = &session;
	PyObject *bytes;
	int ret;

	if (rt->enabled) {
		PyErr_Format(PyExc_RuntimeError, "an archive is already in use: %s",
			     rt->path);
		return NULL;
	}
	if (!PyUnicode_FSConverter(arg, &bytes))
		return NULL;
	ret = enable_path(rt, self, PyBytes_AS_STRING(bytes));
	Py_DECREF(bytes);
	if (ret < 0)
		return NULL;
	return PyBool_FromLong(ret);
}

PyObject *pycds_stats(PyObject *self, PyObject *noargs)
{
	struct pycds_session *rt = &session;
	const struct pycds_header *h = rt->enabled ? rt->ar.hdr : NULL;
	const char *prefetch = rt->prefetch == PREFETCH_URING  ? "uring"
			       : rt->prefetch == PREFETCH_SYNC ? "sync"
							       : "none";

	(void)self;
	(void)noargs;
	return Py_BuildValue(
		"{s:s,s:N,s:N,s:O,s:I,s:K,s:K,s:K,s:K,s:O,"
		"s:K,s:K,s:K,s:K,s:K,s:K,s:N,s:K,s:s,s:N}",
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
		"size", (unsigned long long)rt->map_size,
		"interned", rt->interned,
		"redirected", rt->redirected,
		"prepare_ns", rt->prepare_ns,
		"enable_ns", rt->enable_ns,
		"image_bias", (unsigned long long)rt->ctx.bias,
		"hash_seed",
		h && h->hash_flags & PYCDS_HASHES_STORED
			? PyLong_FromUnsignedLong(h->hash_seed)
			: Py_NewRef(Py_None),
		"huge_chunks", rt->huge_chunks,
		"prefetch", prefetch,
		"served",
		rt->served ? PyList_GetSlice(rt->served, 0, PY_SSIZE_T_MAX)
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

/* _pycds._hook(): what the .pth file calls at start-up. */
PyObject *pycds_hook(PyObject *self, PyObject *noargs)
{
	struct pycds_session *rt = &session;
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
	rt->verbose = verbose && *verbose && strcmp(verbose, "0");
	record = getenv("PYCDS_RECORD");
	if (record && *record)
		pycds_record_start(record);
	archive = getenv("PYCDS_ARCHIVE");
	if (archive && *archive && !rt->enabled) {
		if (enable_path(rt, self, archive) < 0) {
			/* Never let a broken archive stop the interpreter. */
			PyObject *exc = PyErr_Occurred();

			report(archive, "cannot enable: %s",
			       exc ? ((PyTypeObject *)exc)->tp_name : "error");
			PyErr_Clear();
		}
	}
	/* The layout run: what this process did with the first archive. */
	if (record && *record && rt->enabled &&
	    pycds_record_layout_at_exit() < 0)
		PyErr_Clear();
	/* Before the program runs: the prefetch ring's descriptor goes. */
	prefetch_end(rt);
	Py_RETURN_NONE;
}

int pycds_runtime_init(PyObject *module)
{
	(void)module;
	return 0;
}
