/* SPDX-License-Identifier: MIT */
/*
 * What pycds needs to know of one CPython minor version, behind one small
 * interface.  The only place in the tree that tests PY_VERSION_HEX: code
 * elsewhere uses the names below.  A version without a header here does
 * not build.
 *
 *   PYCDS_PY_MINOR                     the minor version built for
 *   PYCDS_BUILT_FOR_HEX                the full version built for
 *   PYCDS_REFCNT                       refcount of archived objects
 *   pycds_set_refcnt(o)                write an archived object's header
 *                                      word as the interpreter's own
 *                                      immortal objects carry it
 *   pycds_tuple_set_hash(t, h)         a tuple's cached hash (3.14+)
 *   PYCDS_HAS_SLICE_CONSTANTS          compilers fold slices (3.14+)
 *   pycds_str_interned_keep(o)         an archived str now interned: keep
 *                                      finalization from freeing it
 *   PYCDS_INTERNED_FREED_AT_EXIT       finalization frees immortal interned
 *                                      strings (3.14+)
 *   PYCDS_WRITES_EVERY_TOUCHED_OBJECT  the interpreter writes refcounts
 *   PYCDS_RUNS_BODY_COPIES             the runtime runs heap copies of
 *                                      module and class bodies
 *   PYCDS_LONG_DIGITS_OFF, PYCDS_LONG_NDIGITS(o)   an int's digits
 *   pycds_str_ready(a)                 a str's ready bit (1 without one)
 *   pycds_str_reset(a)                 per-version str fields, as
 *                                      PyUnicode_New leaves them
 *   pycds_str_shares_wstr(o)           wstr is the object's own data
 *   pycds_str_archive_wstr(c, len)     set wstr_length for an archived
 *                                      copy; the wstr field's offset, or -1
 *   pycds_str_share_wstr(o)            point wstr at the data, in place
 *   pycds_code_reset(d)                per-process code-object fields
 *   pycds_code_counters_ran(l, p)      counters outside the bytecode
 *                                      that running writes
 */
#ifndef PYCDS_COMPAT_H
#define PYCDS_COMPAT_H

#include <Python.h>
#include <stddef.h>

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#include "py311.h"
#elif PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
#include "py312.h"
#elif PY_VERSION_HEX >= 0x030D0000 && PY_VERSION_HEX < 0x030E0000
#include "py313.h"
#elif PY_VERSION_HEX >= 0x030E0000 && PY_VERSION_HEX < 0x030F0000
#include "py314.h"
#elif PY_VERSION_HEX >= 0x030F0000 && PY_VERSION_HEX < 0x03100000
#include "py315.h"
#else
#error "pycds supports CPython 3.11 to 3.15 (see userspace/compat/)"
#endif

/* Defaults for what only some versions have. */
#ifndef PYCDS_HAS_REFCNT_FLAGS
static inline void pycds_set_refcnt(PyObject *o)
{
	o->ob_refcnt = PYCDS_REFCNT;
}
#endif

#ifndef PYCDS_HAS_TUPLE_HASH
#define PYCDS_HAS_TUPLE_HASH 0
static inline void pycds_tuple_set_hash(PyTupleObject *t, Py_hash_t h)
{
	(void)t;
	(void)h;
}
#endif

#ifndef PYCDS_HAS_SLICE_CONSTANTS
#define PYCDS_HAS_SLICE_CONSTANTS 0
#endif

#ifndef PYCDS_INTERNED_FREED_AT_EXIT
#define PYCDS_INTERNED_FREED_AT_EXIT 0
static inline void pycds_str_interned_keep(PyObject *o)
{
	(void)o;
}
#endif

#define PYCDS_BUILT_FOR_HEX PY_VERSION_HEX

#endif /* PYCDS_COMPAT_H */
