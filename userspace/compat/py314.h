/* SPDX-License-Identifier: MIT */
/*
 * CPython 3.14: 3.13's rules, and a split object header (32-bit count,
 * overflow, flags), cached tuple hashes, slices folded into constants,
 * a per-object unique id in code objects, and immortal interned strings
 * freed at finalization.
 */
#ifndef PYCDS_COMPAT_PY314_H
#define PYCDS_COMPAT_PY314_H

#ifndef PYCDS_PY_MINOR
#define PYCDS_PY_MINOR 14
#endif

/* The value the interpreter gives the objects it makes immortal. */
#define PYCDS_REFCNT ((Py_ssize_t)_Py_IMMORTAL_INITIAL_REFCNT)

/* Immortal as the interpreter's own heap objects it immortalizes: the
 * count, no overflow, and the immortal flag, which stack references take
 * as their tag (an untagged reference would be counted, and written). */
#define PYCDS_HAS_REFCNT_FLAGS 1
static inline void pycds_set_refcnt(PyObject *o)
{
	o->ob_refcnt = (uint32_t)_Py_IMMORTAL_INITIAL_REFCNT;
	o->ob_overflow = 0;
	o->ob_flags = _Py_IMMORTAL_FLAGS;
}

/* A tuple caches its hash; -1 until first computed. */
#define PYCDS_HAS_TUPLE_HASH 1
static inline void pycds_tuple_set_hash(PyTupleObject *t, Py_hash_t h)
{
	t->ob_hash = h;
}

#define PYCDS_HAS_SLICE_CONSTANTS 1

/*
 * At finalization the interpreter makes immortal interned strings mortal
 * and frees them; it leaves statically allocated ones alone.  An archived
 * str is not the interpreter's to free: once interned, it is marked as
 * the static ones are.
 */
#define PYCDS_INTERNED_FREED_AT_EXIT 1
static inline void pycds_str_interned_keep(PyObject *o)
{
	PyASCIIObject *a = (PyASCIIObject *)o;

	if (a->state.interned == SSTATE_INTERNED_IMMORTAL) {
		a->state.statically_allocated = 1;
		a->state.interned = SSTATE_INTERNED_IMMORTAL_STATIC;
	}
}

/* Unused outside free-threaded builds, and left uninitialised by the
 * interpreter: a fixed value keeps archives byte-identical. */
#define PYCDS_CODE_RESET_MORE(d)                                             \
	do {                                                                 \
		(d)->co_executors = NULL;                                    \
		(d)->_co_unique_id = 0;                                      \
	} while (0)

#include "py312.h"

#endif /* PYCDS_COMPAT_PY314_H */
