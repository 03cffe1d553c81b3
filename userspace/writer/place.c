// SPDX-License-Identifier: MIT
/*
 * Placement by write likelihood: which objects a process writes, so that
 * they share pages and the rest stays the page cache's shared copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "writer.h"

/* ---- placement by write likelihood ----
 *
 * A page of a private mapping is copied for a process when it writes one
 * byte of it, so objects a process is likely to write share pages, and the
 * rest go to the cold region, which stays the page cache's shared copy.
 * 3.11 writes the refcount of every object it touches; on every version
 * a process rewrites the slots that point to names some earlier code
 * interned (the fixups it applies when it prepares a module).  Written:
 *
 * - on 3.11, code objects the module defines: its own, those of the
 *   classes and functions its body and class bodies create (MAKE_FUNCTION
 *   takes a reference, and the function's name, qualified name and
 *   docstring); where the runtime runs copies of module and class bodies
 *   (PYCDS_RUNS_BODY_COPIES), not theirs, only their names and file name;
 *   on 3.12+, code objects that run (module and class bodies, the
 *   comprehensions in them, functions the layout run saw run): the
 *   specializing interpreter writes their counters;
 * - constants of code that runs (at import, or seen by the layout run),
 *   items of constant tuples included; on 3.12+ only the str and bytes
 *   among them, whose cached hash is written (unless stored);
 * - objects holding a slot the process rewrites: a name it interned
 *   already (@preinterned, measured by the build), or a frozenset it
 *   rebuilds for its hash seed, and the frozenset's items.
 *
 * Everything else (constants of functions that did not run when the
 * command was recorded, name tuples, code objects of functions nested in
 * those) is written only if that code runs: it goes to the idle region.
 */
static int hot_has(struct writer *w, PyObject *o)
{
	return pycds_table_find(&w->hot, (uintptr_t)o) != NULL;
}

static int hot_add(struct writer *w, PyObject *o)
{
	return pycds_table_put(&w->hot, (uintptr_t)o)
		       ? 0
		       : left_out(w, "out of memory");
}

void hot_reset(struct writer *w)
{
	pycds_table_clear(&w->hot);
}

/*
 * Is @o's hash the same in every process: no object in it hashed by
 * address (None and Ellipsis on some versions, a NaN), and, unless
 * @seeded (every process runs under one seed), no str or bytes, whose
 * hashes follow the seed?
 */
static int stable(PyObject *o, int seeded, unsigned int depth)
{
	Py_ssize_t i;

	if (depth > MAX_DEPTH)
		return 0;
	if (PyLong_CheckExact(o) || o == Py_True || o == Py_False)
		return 1;
	if (PyUnicode_CheckExact(o) || PyBytes_CheckExact(o))
		return seeded;
	if (PyFloat_CheckExact(o))
		return !isnan(PyFloat_AS_DOUBLE(o));
	if (PyComplex_CheckExact(o))
		return !isnan(PyComplex_RealAsDouble(o)) &&
		       !isnan(PyComplex_ImagAsDouble(o));
	if (PyTuple_CheckExact(o)) {
		for (i = 0; i < PyTuple_GET_SIZE(o); i++)
			if (!stable(PyTuple_GET_ITEM(o, i), seeded, depth + 1))
				return 0;
		return 1;
	}
	if (PyFrozenSet_CheckExact(o)) {
		PyObject *it = PyObject_GetIter(o), *v;
		int ok = it != NULL;

		while (ok && (v = PyIter_Next(it))) {
			ok = stable(v, seeded, depth + 1);
			Py_DECREF(v);
		}
		Py_XDECREF(it);
		if (PyErr_Occurred()) {
			PyErr_Clear();
			ok = 0;
		}
		return ok;
	}
	return 0;
}

/* The same hash in every process, whatever its seed. */
int seed_free(PyObject *o)
{
	return stable(o, 0, 0);
}

/* The same hash in every process that can use the archive: with stored
 * hashes (--hash-seed) they all run under the archive's seed. */
int hash_stable(struct writer *w, PyObject *o)
{
	return stable(o, w->hashes, 0);
}

/* Must a process rebuild frozenset @o for its hash seed?  Not when the
 * archive stores hashes for its seed, nor when no hash in it depends on
 * the seed: then the archived table is the one it would build. */
int rebuilt(struct writer *w, PyObject *o)
{
	return PyFrozenSet_CheckExact(o) && !hash_stable(w, o);
}

/* Will a process rewrite a slot that holds @v? */
static int rewritten(struct writer *w, PyObject *v)
{
	if (PyFrozenSet_CheckExact(v))
		return rebuilt(w, v);
	/* Statically allocated names are the canonical ones already. */
	if (!w->preinterned || !PyUnicode_CheckExact(v) ||
	    !PyUnicode_CHECK_INTERNED(v) || pycds_image_contains(&w->image, v))
		return 0;
	switch (PySet_Contains(w->preinterned, v)) {
	case 1:
		return 1;
	case -1:
		PyErr_Clear();
	}
	return 0;
}

/* Tuples and frozensets with rewritten slots, at any depth of @o. */
static int mark_rewritten(struct writer *w, PyObject *o, unsigned int depth)
{
	Py_ssize_t i, n;
	PyObject *v;
	int hot = 0;

	if (depth > MAX_DEPTH)
		return 0;
	if (PyFrozenSet_CheckExact(o)) {
		/* Rebuilt from its items, which are touched then. */
		PyObject *it;

		if (!rebuilt(w, o))
			return 0;
		it = PyObject_GetIter(o);

		if (!it)
			return left_out(w, "cannot iterate a frozenset");
		while ((v = PyIter_Next(it))) {
			/* The frozenset holds a reference. */
			int r = hot_add(w, v) || mark_rewritten(w, v, depth + 1);

			Py_DECREF(v);
			if (r) {
				Py_DECREF(it);
				return -1;
			}
		}
		Py_DECREF(it);
		if (PyErr_Occurred()) {
			PyErr_Clear();
			return left_out(w, "cannot iterate a frozenset");
		}
		return 0;
	}
	if (!PyTuple_CheckExact(o))
		return 0;
	n = PyTuple_GET_SIZE(o);
	for (i = 0; i < n; i++) {
		v = PyTuple_GET_ITEM(o, i);
		hot |= rewritten(w, v);
		if (mark_rewritten(w, v, depth + 1))
			return -1;
	}
	return hot ? hot_add(w, o) : 0;
}

/* Is constant @o written when code that runs pushes it?  On 3.11 always
 * (its refcount).  On 3.12+, whose objects are immortal, only the hash a
 * str or bytes object caches the first time something hashes it (a dict
 * key, a set member), unless the archive stores hashes: measured on
 * 3.13.5, requests_app's data region, then holding every constant pushed,
 * had 425 of its 1,082 pages copied. */
static int written_when_loaded(struct writer *w, PyObject *o)
{
	if (PYCDS_WRITES_EVERY_TOUCHED_OBJECT)
		return 1;
	return (PyUnicode_CheckExact(o) || PyBytes_CheckExact(o)) &&
	       !w->hashes;
}

/* A constant pushed by code that runs, and its items: those written. */
static int mark_loaded(struct writer *w, PyObject *o, unsigned int depth)
{
	Py_ssize_t i;

	if (depth > MAX_DEPTH)
		return 0;
	if (written_when_loaded(w, o) && hot_add(w, o))
		return -1;
	if (PyTuple_CheckExact(o))
		for (i = 0; i < PyTuple_GET_SIZE(o); i++)
			if (mark_loaded(w, PyTuple_GET_ITEM(o, i), depth + 1))
				return -1;
	return 0;
}

/* Did @co run when the command was recorded? */
static int ran(struct writer *w, PyCodeObject *co)
{
	PyObject *k;
	int r;

	if (!w->ran)
		return 0;
	k = Py_BuildValue("(OiO)", co->co_filename, co->co_firstlineno,
			  co->co_qualname);
	r = k ? PySet_Contains(w->ran, k) : -1;
	Py_XDECREF(k);
	if (r < 0)
		PyErr_Clear();
	return r == 1;
}

/* Code that runs when the code defining it runs: class bodies (not
 * optimized) and comprehensions; or code seen running when the command
 * was recorded. */
static int runs_at_definition(struct writer *w, PyCodeObject *co)
{
	static const char *const comps[] = { "<listcomp>", "<setcomp>",
					     "<dictcomp>", "<genexpr>" };
	size_t i;

	if (!(co->co_flags & CO_OPTIMIZED))
		return 1;
	for (i = 0; i < sizeof(comps) / sizeof(comps[0]); i++)
		if (PyUnicode_CompareWithASCIIString(co->co_name, comps[i]) == 0)
			return 1;
	return ran(w, co);
}

int mark_code(struct writer *w, PyObject *o, int defined, int runs,
		     unsigned int depth)
{
	PyCodeObject *co = (PyCodeObject *)o;
	PyObject *consts = co->co_consts;
	/* A body the runtime copies is only read; the copy takes references
	 * to its names and file name. */
	int copied = PYCDS_RUNS_BODY_COPIES && PYCDS_IS_BODY(co);
	/* 3.11 writes a code object when a function is made from it; 3.12+
	 * only when it runs (the specializing interpreter's counters). */
	int written = PYCDS_WRITES_EVERY_TOUCHED_OBJECT ? defined && !copied
							: runs;
	Py_ssize_t i;

	if (depth > MAX_DEPTH)
		return 0;

	if ((written || rewritten(w, co->co_name) ||
	     rewritten(w, co->co_qualname) || rewritten(w, co->co_filename)) &&
	    hot_add(w, o))
		return -1;
	if (copied && defined && hot_add(w, co->co_filename))
		return -1;
	if (defined && PYCDS_WRITES_EVERY_TOUCHED_OBJECT) {
		if (hot_add(w, co->co_qualname) || hot_add(w, co->co_name))
			return -1;
		/* The docstring a function takes at its creation. */
		if ((co->co_flags & CO_OPTIMIZED) && PyTuple_GET_SIZE(consts) &&
		    PyUnicode_CheckExact(PyTuple_GET_ITEM(consts, 0)) &&
		    hot_add(w, PyTuple_GET_ITEM(consts, 0)))
			return -1;
	}
	if (mark_rewritten(w, consts, depth + 1) ||
	    mark_rewritten(w, co->co_names, depth + 1) ||
	    mark_rewritten(w, co->co_localsplusnames, depth + 1))
		return -1;
	for (i = 0; i < PyTuple_GET_SIZE(consts); i++) {
		PyObject *c = PyTuple_GET_ITEM(consts, i);

		if (PyCode_Check(c)) {
			if (mark_code(w, c, runs,
				      runs && runs_at_definition(
						      w, (PyCodeObject *)c),
				      depth + 1))
				return -1;
		} else if (runs && mark_loaded(w, c, depth + 1)) {
			return -1;
		}
	}
	return 0;
}

/* Where an object goes: line tables and the like to the cold region,
 * which nothing writes; the rest by whether a process will write it. */
unsigned int place(struct writer *w, PyObject *o, unsigned int region)
{
	if (region == PYCDS_REGION_COLD)
		return region;
	if (!hot_has(w, o))
		return PYCDS_REGION_IDLE;
	/* 3.11 writes both: a module's code objects and the constants they
	 * push share its code span, so a process first touches one region for
	 * them, not two.  Later versions leave constants unwritten. */
	if (PYCDS_RUNS_BODY_COPIES)
		return PYCDS_REGION_CODE;
	return PyCode_Check(o) ? PYCDS_REGION_CODE : PYCDS_REGION_DATA;
}
