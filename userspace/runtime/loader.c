// SPDX-License-Identifier: MIT
/*
 * get_code of the stock SourceFileLoader and SourcelessFileLoader, as
 * pycds answers it: the archived code object for a module the archive
 * holds unchanged, the stock method's answer for anything else.
 */
#define _GNU_SOURCE
#include <string.h>
#include <sys/stat.h>

#include <sys/sdt.h>

#include "runtime.h"

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

static long lookup_str(struct pycds_session *rt, PyObject *name)
{
	Py_ssize_t len;
	const char *s = PyUnicode_AsUTF8AndSize(name, &len);

	if (!s) {
		PyErr_Clear();
		return -1;
	}
	return pycds_index_lookup(&rt->ar, s, len);
}

static int origin_equal(struct pycds_session *rt, const struct pycds_module *m,
			PyObject *path)
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
	o = pycds_module_origin(&rt->ar, m, &olen);
	return (size_t)len == olen && !memcmp(s, o, olen);
}

/* The source is unchanged when its whole-second mtime and its size are,
 * as for a timestamp-based .pyc. */
static int source_fresh(struct pycds_session *rt, const struct pycds_module *m)
{
	char path[4096];
	size_t len;
	const char *o = pycds_module_origin(&rt->ar, m, &len);
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

/*
 * Would the stock loader read a valid .pyc for @path, the source of @m?
 * For modules whose compile warns: where it would compile the source
 * instead (no .pyc where it looks, as under a fresh sys.pycache_prefix,
 * or one for another source), it must, and warn.  A timestamp-based .pyc
 * of this interpreter for this source's mtime and size is valid; a
 * hash-based one is left to the stock loader to judge.
 */
static int pyc_would_load(const struct pycds_module *m, PyObject *path)
{
	long magic = PyImport_GetMagicNumber();
	PyObject *bx, *cached = NULL;
	const char *c;
	unsigned char h[16];
	uint32_t flags, mtime, size;
	FILE *f;
	int ok = 0;

	if (magic == -1) {
		PyErr_Clear();
		return 0;
	}
	/* From sys.modules, not through __import__ (no import hook runs). */
	bx = PyUnicode_FromString("_frozen_importlib_external");
	if (bx)
		Py_SETREF(bx, PyImport_GetModule(bx));
	if (bx)
		cached = PyObject_CallMethod(bx, "cache_from_source", "O", path);
	Py_XDECREF(bx);
	c = cached ? PyUnicode_AsUTF8(cached) : NULL;
	if (c && (f = fopen(c, "rb"))) {
		ok = fread(h, 1, sizeof(h), f) == sizeof(h);
		fclose(f);
	}
	Py_XDECREF(cached);
	PyErr_Clear();
	if (!ok)
		return 0;
	memcpy(&flags, h + 4, 4);
	memcpy(&mtime, h + 8, 4);
	memcpy(&size, h + 12, 4);
	return h[0] == (magic & 0xff) && h[1] == ((magic >> 8) & 0xff) &&
	       h[2] == ((magic >> 16) & 0xff) && h[3] == ((magic >> 24) & 0xff) &&
	       flags == 0 && mtime == (uint32_t)m->src_mtime &&
	       size == (uint32_t)m->src_size;
}

/* Note @idx served: _pycds.stats()["served"] names each module once, in
 * the order they were first served. */
static void served_note(struct pycds_session *rt, long idx, PyObject *name)
{
	if (rt->served_bits[idx / 8] & (1u << (idx % 8)))
		return;
	if (!rt->served && !(rt->served = PyList_New(0)))
		goto fail;
	if (PyList_Append(rt->served, name))
		goto fail;
	rt->served_bits[idx / 8] |= 1u << (idx % 8);
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
static PyObject *archive_get_code(struct pycds_session *rt, PyObject *self,
				  PyObject *const *args, Py_ssize_t nargs,
				  PyObject *kwnames, int sourceless)
{
	PyObject *base = sourceless ? rt->pyc_get_code : rt->base_get_code;
	PyObject *cls = sourceless ? rt->pyc_loader : rt->source_loader;
	const struct pycds_module *m;
	PyObject *name, *path, *code;
	long idx;

	if (!rt->enabled || rt->damaged || kwnames || nargs != 1 ||
	    (PyObject *)Py_TYPE(self) != cls || !PyUnicode_Check(args[0]))
		goto fallback;
	name = args[0];
	idx = lookup_str(rt, name);
	if (idx < 0) {
		rt->ctr.misses++;
		STAP_PROBE1(pycds, module__missed, probe_name(name));
		goto fallback;
	}
	m = pycds_module_get(&rt->ar, (uint32_t)idx);
	/* Archived from a source file and asked for by a sourceless loader,
	 * or the other way round: not the same module. */
	if (!(m->flags & PYCDS_MOD_SOURCELESS) != !sourceless) {
		rt->ctr.misses++;
		goto fallback;
	}
	path = PyObject_GetAttrString(self, "path");
	if (!path) {
		PyErr_Clear();
		rt->ctr.misses++;
		goto fallback;
	}
	if (!origin_equal(rt, m, path)) {
		Py_DECREF(path);
		rt->ctr.misses++;
		goto fallback;
	}
	if (!source_fresh(rt, m)) {
		Py_DECREF(path);
		rt->ctr.stale++;
		STAP_PROBE1(pycds, module__stale, probe_name(name));
		goto fallback;
	}
	if ((m->flags & PYCDS_MOD_WARNS) && !pyc_would_load(m, path)) {
		Py_DECREF(path);
		rt->ctr.misses++;
		STAP_PROBE1(pycds, module__missed, probe_name(name));
		goto fallback;
	}
	Py_DECREF(path);
	code = module_prepare(rt, (uint32_t)idx, probe_name(name));
	if (!code) {
		rt->ctr.misses++;
		goto fallback;
	}
	code = served_code(code);
	if (!code)
		return NULL;
	rt->ctr.hits++;
	served_note(rt, idx, name);
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
	return archive_get_code(pycds_session(), self, args, nargs, kwnames, 0);
}

static PyObject *pyc_get_code(PyObject *self, PyObject *const *args,
			      Py_ssize_t nargs, PyObject *kwnames)
{
	return archive_get_code(pycds_session(), self, args, nargs, kwnames, 1);
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

/* @cls.get_code = the method @def, as a descriptor of @cls. */
static int replace_get_code(PyObject *cls, PyMethodDef *def)
{
	PyObject *d = PyDescr_NewMethod((PyTypeObject *)cls, def);
	int ret;

	if (!d)
		return -1;
	ret = PyObject_SetAttrString(cls, "get_code", d);
	Py_DECREF(d);
	return ret;
}

/* Answer get_code on the stock loader classes, once per process.  The
 * stock methods were looked up before (import_machinery). */
int install_get_code(struct pycds_session *rt)
{
	static int installed;

	if (installed)
		return 0;
	if (replace_get_code(rt->source_loader, &source_get_code_def) ||
	    replace_get_code(rt->pyc_loader, &pyc_get_code_def))
		return -1;
	installed = 1;
	return 0;
}

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

int import_machinery(struct pycds_session *rt)
{
	/* The stock methods, looked up once, before ours replace them. */
	if (rt->base_get_code)
		return 0;
	rt->source_loader = bootstrap_attr("SourceFileLoader");
	rt->pyc_loader = bootstrap_attr("SourcelessFileLoader");
	if (!rt->source_loader || !rt->pyc_loader)
		return -1;
	if (!PyType_Check(rt->source_loader) || !PyType_Check(rt->pyc_loader)) {
		PyErr_SetString(PyExc_ImportError,
				"importlib's file loaders are not classes");
		return -1;
	}
	rt->pyc_get_code = PyObject_GetAttrString(rt->pyc_loader, "get_code");
	rt->base_get_code = PyObject_GetAttrString(rt->source_loader,
						   "get_code");
	return rt->base_get_code && rt->pyc_get_code ? 0 : -1;
}
