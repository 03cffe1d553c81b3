// SPDX-License-Identifier: MIT
/*
 * PathFinder.find_spec of the stock import system, as pycds answers it
 * for the modules its layers hold: the same search the path finder would
 * make, done in C over the path entry finders' own caches, whenever it
 * can be proved to give the answer the stock method would give.
 *
 * The stock search walks the path (sys.path or a package's __path__);
 * for each entry it takes the finder cached in sys.path_importer_cache
 * and, for a FileFinder, stats the directory: when its mtime is the one
 * the finder last listed it at, the finder's set of names holds the
 * directory's entries, and only the names it holds are stat'ed.  This
 * file makes exactly those checks and those stats, in the same order,
 * without running the interpreter's bytecode for them.  Whatever it
 * cannot prove the same is left to the stock method, which then also
 * refreshes what it must:
 *
 *   - a finder of another class than FileFinder, a path entry with no
 *     finder cached yet, or state of an unexpected type;
 *   - a directory whose mtime is not the one its finder last listed
 *     (the stock method lists it again);
 *   - a package directory without an __init__ file (a namespace
 *     portion), a name or path it would not encode as the interpreter;
 *   - monkeypatched import machinery (the helpers the stock search
 *     calls are compared with the ones found at start), a subclass
 *     calling it, a target module (reload), verbose imports (-vv).
 *
 * The spec itself is always made by the finder's own _get_spec, so the
 * loader and spec are the stock objects.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"

/* What the stock search would call, as found when pycds installed its
 * method; a change to any of them sends every call to the stock one. */
enum fs_name {
	FS_PATH, FS_LOADERS, FS_MTIME, FS_CACHE, FS_FIND_SPEC, FS_GET_SPEC,
	FS_IMPORTER_CACHE, FS_VERBOSE, FS_NR_NAMES
};

static const char *const fs_names[FS_NR_NAMES] = {
	"path", "_loaders", "_path_mtime", "_path_cache", "find_spec",
	"_get_spec", "_path_importer_cache", "verbose",
};
_Static_assert(FS_NR_NAMES == sizeof(((struct pycds_stack *)0)->fs_str) /
			     sizeof(PyObject *),
	       "one interned string per name");

/* Helpers of _frozen_importlib_external the stock search calls. */
static const char *const fs_helpers[PYCDS_FS_HELPERS] = {
	"_path_stat", "_path_isfile", "_path_is_mode_type", "_path_join",
	"_relax_case",
};

/* Answers of one step of the search. */
enum step { STEP_NEXT, STEP_FOUND, STEP_STOCK };

/* The longest path this file builds; anything longer goes to the
 * stock method. */
#define FS_PATH_MAX PATH_MAX

/* @dir's mtime as os.stat() gives it (st_mtime, a float: seconds plus
 * nanoseconds times 1e-9), the value FileFinder compares. */
static int dir_mtime(const char *dir, double *mtime)
{
	struct stat sb;

	if (stat(dir, &sb))
		return -1;
	*mtime = (double)sb.st_mtim.tv_sec +
		 1e-9 * (double)(unsigned long)sb.st_mtim.tv_nsec;
	return 0;
}

static int is_regular(const char *path)
{
	struct stat sb;

	return !stat(path, &sb) && S_ISREG(sb.st_mode);
}

/* UTF-8 of @s with its length, or NULL when the interpreter would not
 * give these bytes to the system (a NUL or a lone surrogate). */
static const char *fs_bytes(PyObject *s, Py_ssize_t *len)
{
	const char *b = PyUnicode_AsUTF8AndSize(s, len);

	if (!b) {
		PyErr_Clear();
		return NULL;
	}
	return memchr(b, 0, (size_t)*len) ? NULL : b;
}

/* @buf = @dir with its trailing slashes dropped, then "/" @a @b, as
 * _path_join(dir, a + b) builds it.  0, or -1 when it does not fit. */
static int join(char *buf, const char *dir, size_t dlen, const char *a,
		size_t alen, const char *b, size_t blen, size_t *out)
{
	while (dlen && dir[dlen - 1] == '/')
		dlen--;
	if (dlen + 1 + alen + blen + 1 > FS_PATH_MAX)
		return -1;
	memcpy(buf, dir, dlen);
	buf[dlen] = '/';
	memcpy(buf + dlen + 1, a, alen);
	memcpy(buf + dlen + 1 + alen, b, blen);
	buf[dlen + 1 + alen + blen] = 0;
	*out = dlen + 1 + alen + blen;
	return 0;
}

/* Does some layer in use hold module @name? */
static int held(struct pycds_stack *st, const char *name, Py_ssize_t len)
{
	unsigned int i;

	for (i = 0; i < st->nr; i++) {
		struct pycds_session *rt = &st->layer[i];

		if (rt->enabled && !rt->damaged &&
		    pycds_index_lookup(&rt->ar, name, len) >= 0)
			return 1;
	}
	return 0;
}

/* Is the import machinery the stock search would use the one found at
 * start?  Class attributes by identity, module helpers by identity. */
static int machinery_unchanged(struct pycds_stack *st)
{
	PyObject *pd = ((PyTypeObject *)st->path_finder)->tp_dict;
	PyObject *fd = ((PyTypeObject *)st->file_finder)->tp_dict;
	unsigned int i;

	if (PyDict_GetItemWithError(pd, st->fs_str[FS_GET_SPEC]) !=
		    st->pf_get_spec ||
	    PyDict_GetItemWithError(pd, st->fs_str[FS_IMPORTER_CACHE]) !=
		    st->pf_importer_cache ||
	    PyDict_GetItemWithError(fd, st->fs_str[FS_FIND_SPEC]) !=
		    st->ff_find_spec)
		return 0;
	for (i = 0; i < PYCDS_FS_HELPERS; i++)
		if (PyDict_GetItemWithError(st->bootstrap_dict,
					    st->fs_helper_str[i]) !=
		    st->fs_helper[i])
			return 0;
	return !PyErr_Occurred();
}

/* sys.flags.verbose, or -1 if it cannot be read. */
static long verbose_flag(struct pycds_stack *st)
{
	PyObject *flags = PySys_GetObject("flags");	/* borrowed */
	PyObject *v;
	long n;

	if (!flags)
		return -1;
	v = PyObject_GetAttr(flags, st->fs_str[FS_VERBOSE]);
	if (!v) {
		PyErr_Clear();
		return -1;
	}
	n = PyLong_Check(v) ? PyLong_AsLong(v) : -1;
	Py_DECREF(v);
	if (n == -1)
		PyErr_Clear();
	return n;
}

/* finder._get_spec(loader, name, path, smsl, target): Python code runs,
 * which may drop the finder's list of loaders; the loader is held. */
static PyObject *call_get_spec(struct pycds_stack *st, PyObject *finder,
			       PyObject *loader, PyObject *name,
			       PyObject *path, PyObject *smsl,
			       PyObject *target)
{
	PyObject *spec;

	Py_INCREF(loader);
	spec = PyObject_CallMethodObjArgs(finder, st->fs_str[FS_GET_SPEC],
					  loader, name, path, smsl, target,
					  NULL);
	Py_DECREF(loader);
	return spec;
}

/* What FileFinder.find_spec would answer for @name (last part @tail)
 * in @finder: STEP_NEXT for nothing (the search goes on), STEP_FOUND
 * with the spec in *@spec, STEP_STOCK when only the stock method can
 * tell (or an error is set, *@spec NULL). */
static enum step file_finder_step(struct pycds_stack *st, PyObject *finder,
				  PyObject *name, PyObject *tail,
				  const char *tb, size_t tlen, PyObject *target,
				  PyObject **spec)
{
	PyObject *d, *dir, *loaders, *pm, *cache, *key;
	const char *db, *sb;
	Py_ssize_t dlen, slen, i, n;
	char buf[FS_PATH_MAX], base[FS_PATH_MAX];
	size_t blen, flen;
	enum step ret = STEP_STOCK;
	double mtime;
	int in;

	*spec = NULL;
	d = PyObject_GenericGetDict(finder, NULL);
	if (!d) {
		PyErr_Clear();
		return STEP_STOCK;
	}
	dir = PyDict_GetItemWithError(d, st->fs_str[FS_PATH]);
	loaders = PyDict_GetItemWithError(d, st->fs_str[FS_LOADERS]);
	pm = PyDict_GetItemWithError(d, st->fs_str[FS_MTIME]);
	cache = PyDict_GetItemWithError(d, st->fs_str[FS_CACHE]);
	/* An instance's own find_spec would be the one called. */
	if (PyErr_Occurred() ||
	    PyDict_GetItemWithError(d, st->fs_str[FS_FIND_SPEC]) ||
	    !dir || !PyUnicode_CheckExact(dir) || !loaders ||
	    !PyList_CheckExact(loaders) || !pm || !PyFloat_CheckExact(pm) ||
	    !cache || !PySet_CheckExact(cache))
		goto out;
	db = fs_bytes(dir, &dlen);
	if (!db || !dlen)
		goto out;
	/* The directory listed at this mtime: the set is its contents. */
	if (dir_mtime(db, &mtime) || mtime != PyFloat_AS_DOUBLE(pm)) {
		st->find_relisted++;
		goto out;
	}
	n = PyList_GET_SIZE(loaders);
	for (i = 0; i < n; i++) {
		PyObject *t = PyList_GET_ITEM(loaders, i);

		if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 2 ||
		    !PyUnicode_CheckExact(PyTuple_GET_ITEM(t, 0)))
			goto out;
	}
	in = PySet_Contains(cache, tail);
	if (in < 0)
		goto err;
	if (in) {
		/* A directory of that name: a package if it holds an
		 * __init__ file of some suffix, tried in the finder's order. */
		if (join(base, db, (size_t)dlen, tb, tlen, "", 0, &blen))
			goto out;
		for (i = 0; i < n; i++) {
			PyObject *t = PyList_GET_ITEM(loaders, i);
			PyObject *full, *smsl;

			sb = fs_bytes(PyTuple_GET_ITEM(t, 0), &slen);
			if (!sb || join(buf, base, blen, "__init__", 8, sb,
					(size_t)slen, &flen))
				goto out;
			if (!is_regular(buf))
				continue;
			full = PyUnicode_DecodeFSDefaultAndSize(buf,
								(Py_ssize_t)flen);
			smsl = full ? Py_BuildValue("[N]",
				PyUnicode_DecodeFSDefaultAndSize(base,
							(Py_ssize_t)blen))
				    : NULL;
			if (smsl)
				*spec = call_get_spec(st, finder,
						      PyTuple_GET_ITEM(t, 1),
						      name, full, smsl, target);
			Py_XDECREF(full);
			Py_XDECREF(smsl);
			ret = *spec ? STEP_FOUND : STEP_STOCK;
			goto out;
		}
		/* A namespace portion, or a module beside a directory of its
		 * name: the stock method's to sort out. */
		goto out;
	}
	for (i = 0; i < n; i++) {
		PyObject *t = PyList_GET_ITEM(loaders, i);
		PyObject *full;

		key = PyUnicode_Concat(tail, PyTuple_GET_ITEM(t, 0));
		if (!key)
			goto err;
		in = PySet_Contains(cache, key);
		Py_DECREF(key);
		if (in < 0)
			goto err;
		if (!in)
			continue;
		sb = fs_bytes(PyTuple_GET_ITEM(t, 0), &slen);
		if (!sb || join(buf, db, (size_t)dlen, tb, tlen, sb,
				(size_t)slen, &flen))
			goto out;
		if (!is_regular(buf))
			continue;
		full = PyUnicode_DecodeFSDefaultAndSize(buf, (Py_ssize_t)flen);
		if (full)
			*spec = call_get_spec(st, finder, PyTuple_GET_ITEM(t, 1),
					      name, full, Py_None, target);
		Py_XDECREF(full);
		ret = *spec ? STEP_FOUND : STEP_STOCK;
		goto out;
	}
	ret = STEP_NEXT;
	goto out;
err:
	PyErr_Clear();
out:
	Py_DECREF(d);
	return ret;
}

/* The stock search for @name over @path, done here: STEP_FOUND with the
 * spec, STEP_NEXT for no module of that name (None), STEP_STOCK when
 * the stock method must answer (any error it met is cleared). */
static enum step path_search(struct pycds_stack *st, PyObject *name,
			     PyObject *path, PyObject *target,
			     PyObject **spec)
{
	PyObject *cache = PySys_GetObject("path_importer_cache"); /* borrowed */
	PyObject *tail = NULL, *cwd = NULL;
	const char *nb, *tb;
	Py_ssize_t nlen, i, n;
	enum step ret = STEP_STOCK;

	*spec = NULL;
	if (!cache || !PyDict_CheckExact(cache) || !PyList_CheckExact(path))
		return STEP_STOCK;
	nb = fs_bytes(name, &nlen);
	if (!nb || !nlen || memchr(nb, '/', (size_t)nlen) ||
	    nb[nlen - 1] == '.' || !held(st, nb, nlen))
		return STEP_STOCK;
	tb = memrchr(nb, '.', (size_t)nlen);
	tb = tb ? tb + 1 : nb;
	tail = PyUnicode_FromStringAndSize(tb, nlen - (tb - nb));
	if (!tail)
		goto err;
	/* The list is not changed under us: nothing below runs Python code
	 * until a spec is made, and then the search is over. */
	n = PyList_GET_SIZE(path);
	for (i = 0; i < n; i++) {
		PyObject *entry = PyList_GET_ITEM(path, i), *finder;
		enum step s;

		if (!PyUnicode_Check(entry))
			continue;
		if (!PyUnicode_CheckExact(entry))
			goto out;
		if (!PyUnicode_GET_LENGTH(entry)) {
			/* '' is the current directory, looked up by name. */
			if (!cwd) {
				char buf[FS_PATH_MAX];

				if (!getcwd(buf, sizeof(buf)))
					goto out;
				cwd = PyUnicode_DecodeFSDefault(buf);
				if (!cwd)
					goto err;
			}
			entry = cwd;
		}
		finder = PyDict_GetItemWithError(cache, entry);
		if (!finder) {
			/* No finder yet: the path hooks make one. */
			if (PyErr_Occurred())
				goto err;
			goto out;
		}
		if (finder == Py_None)
			continue;
		if ((PyObject *)Py_TYPE(finder) != st->file_finder)
			goto out;
		Py_INCREF(finder);
		s = file_finder_step(st, finder, name, tail, tb,
				     (size_t)(nlen - (tb - nb)), target, spec);
		Py_DECREF(finder);
		if (s == STEP_NEXT)
			continue;
		ret = s;
		goto out;
	}
	ret = STEP_NEXT;
	goto out;
err:
	PyErr_Clear();
out:
	Py_XDECREF(tail);
	Py_XDECREF(cwd);
	return ret;
}

/* A spec PathFinder._get_spec would return as it is: one with a loader. */
static int spec_has_loader(PyObject *spec)
{
	PyObject *l = PyObject_GetAttrString(spec, "loader");
	int ok = l && l != Py_None;

	if (!l)
		PyErr_Clear();
	Py_XDECREF(l);
	return ok;
}

/*
 * PathFinder.find_spec(cls, fullname, path=None, target=None), as pycds
 * answers it: from the search above for a module some layer holds, when
 * everything it relies on holds; otherwise the stock method's answer.
 */
static PyObject *archive_find_spec(PyObject *cls, PyObject *const *args,
				   Py_ssize_t nargs, PyObject *kwnames)
{
	struct pycds_stack *st = pycds_stack();
	PyObject *name, *path = Py_None, *target = Py_None, *spec = NULL;
	enum step s;

	if (!st->enabled || kwnames || nargs < 1 || nargs > 3 ||
	    cls != st->path_finder || !PyUnicode_CheckExact(args[0]))
		goto stock;
	name = args[0];
	if (nargs > 1)
		path = args[1];
	if (nargs > 2)
		target = args[2];
	if (target != Py_None || verbose_flag(st) != 0 ||
	    !machinery_unchanged(st))
		goto stock;
	if (path == Py_None && !(path = PySys_GetObject("path")))
		goto stock;
	s = path_search(st, name, path, target, &spec);
	if (s == STEP_NEXT) {
		st->found++;
		Py_RETURN_NONE;
	}
	if (s == STEP_FOUND) {
		if (spec_has_loader(spec)) {
			st->found++;
			return spec;
		}
		Py_DECREF(spec);
	}
stock:
	PyErr_Clear();
	{
		PyObject *small[4], **argv = small, *ret;
		size_t n = (size_t)nargs +
			   (kwnames ? (size_t)PyTuple_GET_SIZE(kwnames) : 0);

		if (n + 1 > sizeof(small) / sizeof(small[0])) {
			argv = PyMem_Malloc((n + 1) * sizeof(*argv));
			if (!argv)
				return PyErr_NoMemory();
		}
		argv[0] = cls;
		memcpy(argv + 1, args, n * sizeof(*argv));
		ret = PyObject_Vectorcall(st->pf_find_spec, argv,
					  (size_t)nargs + 1, kwnames);
		if (argv != small)
			PyMem_Free(argv);
		return ret;
	}
}

static PyMethodDef find_spec_def = {
	"find_spec", (PyCFunction)(void (*)(void))archive_find_spec,
	METH_FASTCALL | METH_KEYWORDS,
	"Try to find a spec for 'fullname' on sys.path or 'path', through "
	"sys.path_importer_cache; for a module a pycds layer holds, the same "
	"search made without running bytecode.",
};

/* Replace PathFinder.find_spec, once per process; left as it is (and
 * nothing lost but speed) when the machinery is not what this file
 * knows. */
int install_find_spec(struct pycds_stack *st)
{
	PyObject *modules = PyImport_GetModuleDict();	/* borrowed */
	PyObject *ext, *pd, *fd, *fs, *relax, *r, *descr;
	unsigned int i;
	int utf8;

	if (st->path_find_installed)
		return 0;
	/* Paths are given to the system as UTF-8 here. */
	r = PySys_GetObject("getfilesystemencoding");	/* borrowed */
	r = r ? PyObject_CallNoArgs(r) : NULL;
	utf8 = r && PyUnicode_Check(r) &&
	       !PyUnicode_CompareWithASCIIString(r, "utf-8");
	Py_XDECREF(r);
	PyErr_Clear();
	if (!utf8)
		goto leave;
	ext = PyDict_GetItemString(modules, "_frozen_importlib_external");
	if (!ext || !PyModule_Check(ext))
		return 0;
	st->bootstrap_dict = Py_NewRef(PyModule_GetDict(ext));
	st->path_finder = PyDict_GetItemString(st->bootstrap_dict,
					       "PathFinder");
	st->file_finder = PyDict_GetItemString(st->bootstrap_dict,
					       "FileFinder");
	if (!st->path_finder || !st->file_finder ||
	    !PyType_Check(st->path_finder) || !PyType_Check(st->file_finder))
		goto leave;
	Py_INCREF(st->path_finder);
	Py_INCREF(st->file_finder);
	for (i = 0; i < FS_NR_NAMES; i++)
		if (!st->fs_str[i] &&
		    !(st->fs_str[i] = PyUnicode_InternFromString(fs_names[i])))
			goto fail;
	pd = ((PyTypeObject *)st->path_finder)->tp_dict;
	fd = ((PyTypeObject *)st->file_finder)->tp_dict;
	fs = PyDict_GetItemWithError(pd, st->fs_str[FS_FIND_SPEC]);
	st->pf_get_spec = PyDict_GetItemWithError(pd, st->fs_str[FS_GET_SPEC]);
	st->pf_importer_cache =
		PyDict_GetItemWithError(pd, st->fs_str[FS_IMPORTER_CACHE]);
	st->ff_find_spec = PyDict_GetItemWithError(fd, st->fs_str[FS_FIND_SPEC]);
	if (PyErr_Occurred())
		goto fail;
	/* The stock method is a classmethod of a Python function. */
	if (!fs || !PyObject_TypeCheck(fs, &PyClassMethod_Type) ||
	    !st->pf_get_spec || !st->pf_importer_cache || !st->ff_find_spec)
		goto leave;
	st->pf_find_spec = PyObject_GetAttrString(fs, "__func__");
	if (!st->pf_find_spec)
		goto fail;
	Py_INCREF(st->pf_get_spec);
	Py_INCREF(st->pf_importer_cache);
	Py_INCREF(st->ff_find_spec);
	for (i = 0; i < PYCDS_FS_HELPERS; i++) {
		st->fs_helper_str[i] = PyUnicode_InternFromString(fs_helpers[i]);
		if (!st->fs_helper_str[i])
			goto fail;
		st->fs_helper[i] = PyDict_GetItemWithError(st->bootstrap_dict,
							   st->fs_helper_str[i]);
		if (!st->fs_helper[i])
			goto leave;
		Py_INCREF(st->fs_helper[i]);
	}
	/* Names are matched as they are spelt: a case-insensitive
	 * platform's relaxed cache is not this file's. */
	relax = st->fs_helper[PYCDS_FS_HELPERS - 1];
	r = PyObject_CallNoArgs(relax);
	if (!r)
		goto fail;
	i = r == Py_False;
	Py_DECREF(r);
	if (!i)
		goto leave;
	descr = PyDescr_NewClassMethod((PyTypeObject *)st->path_finder,
				       &find_spec_def);
	if (!descr)
		goto fail;
	if (PyObject_SetAttr(st->path_finder, st->fs_str[FS_FIND_SPEC],
			     descr)) {
		Py_DECREF(descr);
		goto fail;
	}
	Py_DECREF(descr);
	st->path_find_installed = 1;
	return 0;
fail:
	/* Only speed is lost: the stock method stays. */
	PyErr_Clear();
leave:
	st->path_find_installed = -1;
	return 0;
}
