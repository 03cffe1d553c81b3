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

/* Note @idx of layer @rt served: _pycds.stats()["served"] names each
 * module once, in the order they were first served, and each layer's
 * figures name its own. */
static void served_note(struct pycds_stack *st, struct pycds_session *rt,
			long idx, PyObject *name)
{
	if (rt->served_bits[idx / 8] & (1u << (idx % 8)))
		return;
	if (!rt->served && !(rt->served = PyList_New(0)))
		goto fail;
	if (!st->served && !(st->served = PyList_New(0)))
		goto fail;
	if (PyList_Append(rt->served, name) || PyList_Append(st->served, name))
		goto fail;
	rt->served_bits[idx / 8] |= 1u << (idx % 8);
	return;
fail:
	/* Only the list is short; the module is served all the same. */
	PyErr_Clear();
}

/* What one layer answers for module @name from @self's file. */
enum answer { ANS_MISS = 0, ANS_STALE, ANS_SERVED, ANS_ERROR };

static enum answer layer_get_code(struct pycds_session *rt, PyObject *self,
				  PyObject *name, PyObject **pathp,
				  int sourceless, PyObject **codep)
{
	const struct pycds_module *m;
	PyObject *code;
	long idx;

	if (!rt->enabled || rt->damaged)
		return ANS_MISS;
	idx = lookup_str(rt, name);
	if (idx < 0)
		goto miss;
	m = pycds_module_get(&rt->ar, (uint32_t)idx);
	/* Archived from a source file and asked for by a sourceless loader,
	 * or the other way round: not the same module. */
	if (!(m->flags & PYCDS_MOD_SOURCELESS) != !sourceless)
		goto miss;
	if (!*pathp && !(*pathp = PyObject_GetAttrString(self, "path"))) {
		PyErr_Clear();
		goto miss;
	}
	if (!origin_equal(rt, m, *pathp))
		goto miss;
	if (!pycds_module_fresh(&rt->ar, m)) {
		rt->ctr.stale++;
		return ANS_STALE;
	}
	if ((m->flags & PYCDS_MOD_WARNS) && !pyc_would_load(m, *pathp))
		goto miss;
	code = module_prepare(rt, (uint32_t)idx, probe_name(name));
	if (!code)
		goto miss;
	code = served_code(code);
	if (!code)
		return ANS_ERROR;
	rt->ctr.hits++;
	served_note(pycds_stack(), rt, idx, name);
	*codep = code;
	return ANS_SERVED;
miss:
	/* Counted by the caller once no layer served it. */
	return ANS_MISS;
}

/*
 * get_code(self, fullname) of the stock SourceFileLoader (@sourceless 0)
 * and SourcelessFileLoader (1), as pycds answers it: the archived code
 * object from the first layer that holds the module from the loader's
 * very file, unchanged, when the loader is of exactly that class;
 * otherwise what the stock method returns.  The import system keeps its
 * own finders, specs and loaders, so nothing but get_code tells a served
 * module from one loaded from its .pyc.
 */
static PyObject *archive_get_code(struct pycds_stack *st, PyObject *self,
				  PyObject *const *args, Py_ssize_t nargs,
				  PyObject *kwnames, int sourceless)
{
	PyObject *base = sourceless ? st->pyc_get_code : st->base_get_code;
	PyObject *cls = sourceless ? st->pyc_loader : st->source_loader;
	PyObject *name, *path = NULL, *code = NULL;
	enum answer a = ANS_MISS;
	unsigned int i, missed = 0;
	int stale = 0;

	if (!st->enabled || kwnames || nargs != 1 ||
	    (PyObject *)Py_TYPE(self) != cls || !PyUnicode_Check(args[0]))
		goto fallback;
	name = args[0];
	for (i = 0; i < st->nr; i++) {
		struct pycds_session *rt = &st->layer[i];
		int asked = rt->enabled && !rt->damaged;

		a = layer_get_code(rt, self, name, &path, sourceless, &code);
		if (a == ANS_SERVED || a == ANS_ERROR)
			break;
		stale |= a == ANS_STALE;
		if (a == ANS_MISS && asked)
			missed |= 1u << i;
	}
	Py_XDECREF(path);
	if (a == ANS_ERROR)
		return NULL;
	if (a == ANS_SERVED) {
		st->ctr.hits++;
		STAP_PROBE2(pycds, module__served, probe_name(name), i);
		return code;
	}
	/* A layer's misses are what it was asked and no layer served: a
	 * standard-library layer under an application's does not count the
	 * application's modules, which the layer above it serves. */
	for (i = 0; i < st->nr; i++)
		if (missed & (1u << i))
			st->layer[i].ctr.misses++;
	if (stale) {
		st->ctr.stale++;
		STAP_PROBE1(pycds, module__stale, probe_name(name));
	} else {
		st->ctr.misses++;
		STAP_PROBE1(pycds, module__missed, probe_name(name));
	}
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
	return archive_get_code(pycds_stack(), self, args, nargs, kwnames, 0);
}

static PyObject *pyc_get_code(PyObject *self, PyObject *const *args,
			      Py_ssize_t nargs, PyObject *kwnames)
{
	return archive_get_code(pycds_stack(), self, args, nargs, kwnames, 1);
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
int install_get_code(struct pycds_stack *st)
{
	static int installed;

	if (installed)
		return 0;
	if (replace_get_code(st->source_loader, &source_get_code_def) ||
	    replace_get_code(st->pyc_loader, &pyc_get_code_def))
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

int import_machinery(struct pycds_stack *st)
{
	/* The stock methods, looked up once, before ours replace them. */
	if (st->base_get_code)
		return 0;
	st->source_loader = bootstrap_attr("SourceFileLoader");
	st->pyc_loader = bootstrap_attr("SourcelessFileLoader");
	if (!st->source_loader || !st->pyc_loader)
		return -1;
	if (!PyType_Check(st->source_loader) || !PyType_Check(st->pyc_loader)) {
		PyErr_SetString(PyExc_ImportError,
				"importlib's file loaders are not classes");
		return -1;
	}
	st->pyc_get_code = PyObject_GetAttrString(st->pyc_loader, "get_code");
	st->base_get_code = PyObject_GetAttrString(st->source_loader,
						   "get_code");
	return st->base_get_code && st->pyc_get_code ? 0 : -1;
}
