// SPDX-License-Identifier: MIT
/*
 * Archive writer: lays out freshly compiled code objects and their constants
 * as live CPython objects for a preferred base, with the tables a process
 * needs to check and relocate them one module at a time.
 *
 * Objects are copied from the writer's own process, whose interpreter is the
 * one the archive is for, and every pointer field is rewritten: pointers to
 * archived objects become absolute addresses for the preferred base (and an
 * entry in the relocation table), pointers into the interpreter image
 * become link-time addresses (and an entry in the image table).
 *
 * This file: _pycds.write(), one module at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "writer.h"

static int write_module(struct writer *w, struct wmodule *m, PyObject *code)
{
	size_t saved[PYCDS_NR_REGIONS];
	unsigned int r;

	memo_reset(w);
	hot_reset(w);
	w->depth = 0;
	m->slot_first = w->nr_slots;
	for (r = 0; r < PYCDS_NR_REGIONS; r++) {
		/* Each module's span starts 8-aligned. */
		w->region[r].len = (w->region[r].len + 7) & ~(size_t)7;
		saved[r] = w->region[r].len;
		m->start[r] = (uint32_t)w->region[r].len;
	}
	if (mark_code(w, code, 1, 1, 0) ||
	    emit(w, code, PYCDS_REGION_CODE, &m->root)) {
		for (r = 0; r < PYCDS_NR_REGIONS; r++) {
			memset(w->region[r].p + saved[r], 0,
			       w->region[r].len - saved[r]);
			w->region[r].len = saved[r];
		}
		w->nr_slots = m->slot_first;
		return -1;
	}
	for (r = 0; r < PYCDS_NR_REGIONS; r++)
		m->end[r] = (uint32_t)w->region[r].len;
	m->slot_end = w->nr_slots;
	return 0;
}

/*
 * The recipe as given, then elf=FILE: the ELF file that holds this
 * interpreter's types, whose build ID the header records, so that tools
 * without an interpreter can tell whether the archive still fits
 * (pycds_health).
 */
static int recipe_with_elf(struct writer *w, const Py_buffer *given)
{
	char exe[PATH_MAX], *p;
	const char *elf = w->image.path;
	size_t n;
	ssize_t r;

	if (!strcmp(elf, "(executable)")) {
		r = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (r <= 0) {
			PyErr_SetFromErrnoWithFilename(PyExc_OSError,
						       "/proc/self/exe");
			return -1;
		}
		exe[r] = '\0';
		elf = exe;
	} else if (realpath(elf, exe)) {
		elf = exe;
	}
	n = (size_t)given->len + strlen("elf=") + strlen(elf) + 1;
	p = malloc(n);
	if (!p) {
		PyErr_NoMemory();
		return -1;
	}
	memcpy(p, given->buf, (size_t)given->len);
	sprintf(p + given->len, "elf=%s", elf);
	w->recipe.buf = p;
	w->recipe.len = n;
	return 0;
}

/*
 * _pycds.write(path, modules, base=PYCDS_DEFAULT_BASE, preinterned=None,
 *	       ran=None, hash_seed=None, versions_first=0, on=None,
 *	       stdlib=False, name_uses=None, end=2**47,
 *	       recipe=b"")
 *
 * modules: a sequence of (name, origin, is_package, mtime, size, code
 * [, sourceless[, warns]]), in the order a process is expected to import them:
 * objects and names are laid out in that order.  sourceless: origin is a
 * .pyc with no source, and mtime and size are its own.  warns: compiling
 * the source emits warnings (served only where a valid .pyc would be read).
 * preinterned: a set of the names a process has interned before it
 * imports from the archive; objects whose slots it will rewrite to point
 * to those are laid out with the objects it writes.
 * ran: a set of (filename, first line, qualified name) of code seen
 * running: its constants are laid out with the objects a process writes.
 * versions_first: the function version of the first code object (3.13+;
 * 0: the bottom of the archives' range); a layer on another takes the
 * first version after the lower layer's.  on: (header checksum, preferred
 * base, size) of the layer this one is built on, recorded in the header.
 * stdlib: a standard-library layer (PYCDS_ARCHIVE_STDLIB).
 * name_uses: a dict, name -> how many of the layout run's processes
 * interned it; the pool puts the most used first.
 * end: the archive must end at or below this address (default and at
 * most 2^47): ValueError, and no file written, if it would not.
 * recipe: bytes, how the archive was made (NUL-terminated entries),
 * stored as they are with elf= (recipe_with_elf) after them.
 * Returns (summary dict, [(name, reason), ...] of modules left out).
 */
PyObject *pycds_write(PyObject *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = { "path", "modules", "base", "preinterned",
				  "ran", "hash_seed", "versions_first", "on",
				  "stdlib", "name_uses", "end", "recipe",
				  NULL };
	PyObject *hash_seed = Py_None, *on = Py_None;
	unsigned long long versions_first = 0;
	unsigned long long base = PYCDS_DEFAULT_BASE, end = PYCDS_BASE_LIMIT;
	struct writer w = {
		.memo = { .val_size = sizeof(struct ref) },
		.hot = { .val_size = 0 },
	};
	struct wmodule *mods = NULL;
	PyObject *path, *seq, *fast = NULL, *skipped = NULL, *summary = NULL;
	PyObject *seen = NULL;
	PyObject *result = NULL;
	Py_buffer recipe = { 0 };
	Py_ssize_t i, n, kept = 0;
	unsigned int r;

	(void)self;
	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&O|KOOOKOpOKy*", kwlist,
					 PyUnicode_FSConverter, &path, &seq,
					 &base, &w.preinterned, &w.ran,
					 &hash_seed, &versions_first, &on,
					 &w.stdlib, &w.name_uses, &end,
					 &recipe))
		return NULL;
	/* A layer on another: its code's function versions follow the
	 * lower layer's, so that both can serve one process. */
#if PYCDS_CODE_VERSIONS
	if (!versions_first)
		versions_first = PYCDS_CODE_VERSION_BASE;
	if (versions_first < PYCDS_CODE_VERSION_BASE ||
	    versions_first >= PYCDS_CODE_VERSION_BASE + PYCDS_CODE_VERSION_ROOM) {
		PyErr_Format(PyExc_ValueError,
			     "versions_first must be from %#x to %#x",
			     PYCDS_CODE_VERSION_BASE,
			     PYCDS_CODE_VERSION_BASE + PYCDS_CODE_VERSION_ROOM - 1);
		goto out;
	}
	w.versions_first = (uint32_t)versions_first;
#endif
	if (on != Py_None &&
	    !PyArg_ParseTuple(on, "KKK;on is (checksum, base, size)", &w.on[0],
			      &w.on[1], &w.on[2]))
		goto out;
	if (hash_seed != Py_None) {
		/* The seed this process runs under: the caller sets
		 * PYTHONHASHSEED and says which, so the header can name it. */
		unsigned long seed = PyLong_AsUnsignedLong(hash_seed);

		if (PyErr_Occurred() || seed > 4294967295UL) {
			PyErr_Clear();
			PyErr_SetString(PyExc_ValueError,
					"hash_seed must be an int from 0 to 4294967295");
			goto out;
		}
		w.hashes = 1;
		w.hash_seed = (uint32_t)seed;
	}
	if (w.preinterned == Py_None)
		w.preinterned = NULL;
	if (w.ran == Py_None)
		w.ran = NULL;
	if (w.name_uses == Py_None)
		w.name_uses = NULL;
	if (w.name_uses && !PyDict_Check(w.name_uses)) {
		PyErr_SetString(PyExc_TypeError, "name_uses must be a dict");
		goto out;
	}
	if ((w.preinterned && !PyAnySet_Check(w.preinterned)) ||
	    (w.ran && !PyAnySet_Check(w.ran))) {
		PyErr_SetString(PyExc_TypeError,
				"preinterned and ran must be sets");
		goto out;
	}
	if (end > PYCDS_BASE_LIMIT)
		end = PYCDS_BASE_LIMIT;
	if (!base || base % PYCDS_PAGE_SIZE || base >= PYCDS_BASE_LIMIT) {
		PyErr_SetString(PyExc_ValueError,
				"base must be page-aligned and below 2^47");
		goto out;
	}
	if (base >= end) {
		PyErr_SetString(PyExc_ValueError, "base must be below end");
		goto out;
	}
	if (pycds_image_find(&w.image)) {
		PyErr_SetString(PyExc_RuntimeError,
				"cannot find the interpreter image");
		goto out;
	}
	if (recipe.len && recipe_with_elf(&w, &recipe))
		goto out;
	w.pool = PyDict_New();
	seen = PySet_New(NULL);
	if (!w.pool || !seen)
		goto out;
	fast = PySequence_Fast(seq, "modules must be a sequence");
	if (!fast)
		goto out;
	n = PySequence_Fast_GET_SIZE(fast);
	mods = calloc(n ? n : 1, sizeof(*mods));
	skipped = PyList_New(0);
	if (!mods || !skipped) {
		PyErr_NoMemory();
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct wmodule *m = &mods[kept];
		PyObject *code;
		long long mtime;
		unsigned long long size;

		m->sourceless = m->warns = 0;
		if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i),
				      "UUpLKO!|pp;module entries are (name, origin, "
				      "is_package, mtime, size, code[, sourceless"
				      "[, warns]])",
				      &m->name, &m->origin, &m->is_package,
				      &mtime, &size, &PyCode_Type, &code,
				      &m->sourceless, &m->warns))
			goto out;
		m->mtime = mtime;
		m->size = size;
		switch (PySet_Contains(seen, m->name)) {
		case 1:
			PyErr_Format(PyExc_ValueError, "module %U given twice",
				     m->name);
			/* fall through */
		case -1:
			goto out;
		}
		if (PySet_Add(seen, m->name))
			goto out;
		if (write_module(&w, m, code)) {
			PyObject *t = Py_BuildValue("(Os)", m->name, w.why);

			if (!t || PyList_Append(skipped, t)) {
				Py_XDECREF(t);
				goto out;
			}
			Py_DECREF(t);
			continue;
		}
		kept++;
	}
	summary = assemble(&w, mods, kept, PyBytes_AS_STRING(path), base, end);
	if (summary)
		result = PyTuple_Pack(2, summary, skipped);
out:
	Py_XDECREF(summary);
	Py_XDECREF(skipped);
	Py_XDECREF(seen);
	Py_XDECREF(fast);
	Py_DECREF(path);
	free(mods);
	for (r = 0; r < PYCDS_NR_ALL_REGIONS; r++)
		free(w.region[r].p);
	Py_XDECREF(w.pool);
	free(w.pool_off);
	free(w.pool_size);
	free(w.slots);
	free(w.memo.e);
	free(w.hot.e);
	PyBuffer_Release(&recipe);
	free(w.recipe.buf);
	return result;
}
