/* SPDX-License-Identifier: MIT */
/* CPython 3.11: no immortal objects; str keeps a wchar_t view (wstr). */
#ifndef PYCDS_COMPAT_PY311_H
#define PYCDS_COMPAT_PY311_H

#include "pycds/archive.h"

#define PYCDS_PY_MINOR 11

/* Far from zero, so no decref ever frees an archived object. */
#define PYCDS_REFCNT ((Py_ssize_t)1 << 60)

/* Every object the interpreter touches has its refcount written.  So the
 * runtime runs a heap copy of each module and class body (code that runs
 * once, at import, and that a process without an archive frees after),
 * and the archived ones stay unwritten. */
#define PYCDS_WRITES_EVERY_TOUCHED_OBJECT 1
#define PYCDS_RUNS_BODY_COPIES 1

#define PYCDS_LONG_DIGITS_OFF offsetof(PyLongObject, ob_digit)
#define PYCDS_LONG_NDIGITS(o) (Py_SIZE(o) < 0 ? -Py_SIZE(o) : Py_SIZE(o))

/* The verifier's view of a 4-byte str's wchar_t pointer (archive.h). */
_Static_assert(offsetof(PyASCIIObject, wstr) == PYCDS_STR311_WSTR_OFF,
	       "str wstr offset");
_Static_assert(sizeof(PyCompactUnicodeObject) == PYCDS_STR311_COMPACT_SIZE,
	       "compact str size");

static inline int pycds_str_ready(const PyASCIIObject *a)
{
	return a->state.ready;
}

static inline void pycds_str_reset(PyASCIIObject *a)
{
	a->state.ready = 1;
	a->wstr = NULL;
	if (!a->state.ascii)
		((PyCompactUnicodeObject *)a)->wstr_length = 0;
}

/* PyUnicode_New makes a 4-byte string's data its wchar_t view when
 * wchar_t holds a code point, and C code reading wstr expects that. */
static inline int pycds_str_shares_wstr(PyObject *o)
{
	return PyUnicode_KIND(o) == PyUnicode_4BYTE_KIND &&
	       sizeof(wchar_t) == 4;
}

static inline long pycds_str_archive_wstr(PyCompactUnicodeObject *c,
					  Py_ssize_t len)
{
	c->wstr_length = len;
	return (long)offsetof(PyASCIIObject, wstr);
}

static inline void pycds_str_share_wstr(PyObject *o)
{
	if (!pycds_str_shares_wstr(o))
		return;
	((PyASCIIObject *)o)->wstr = (wchar_t *)PyUnicode_DATA(o);
	((PyCompactUnicodeObject *)o)->wstr_length = PyUnicode_GET_LENGTH(o);
}

static inline void pycds_code_reset(PyCodeObject *d)
{
	d->_co_code = NULL;
	d->_co_linearray = NULL;
	d->_co_linearray_entry_size = 0;
}

/* The warm-up counter, written at every call. */
static inline int pycds_code_counters_ran(const PyCodeObject *live,
					  const PyCodeObject *pristine)
{
	return live->co_warmup != pristine->co_warmup;
}

#endif /* PYCDS_COMPAT_PY311_H */
