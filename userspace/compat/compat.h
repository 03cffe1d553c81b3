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
#else
#error "pycds supports CPython 3.11, 3.12 and 3.13 (see userspace/compat/)"
#endif

#define PYCDS_BUILT_FOR_HEX PY_VERSION_HEX

#endif /* PYCDS_COMPAT_H */
