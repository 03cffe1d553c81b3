/* SPDX-License-Identifier: MIT */
/* CPython 3.12 (and, through py313.h, 3.13): immortal objects, no wstr,
 * per-process caches and monitoring state in code objects. */
#ifndef PYCDS_COMPAT_PY312_H
#define PYCDS_COMPAT_PY312_H

#ifndef PYCDS_PY_MINOR
#define PYCDS_PY_MINOR 12
#endif

/* The interpreter's immortal value: Py_INCREF/Py_DECREF never write. */
#ifndef PYCDS_REFCNT
#define PYCDS_REFCNT ((Py_ssize_t)_Py_IMMORTAL_REFCNT)
#endif
#define PYCDS_WRITES_EVERY_TOUCHED_OBJECT 0
#define PYCDS_RUNS_BODY_COPIES 0

#define PYCDS_LONG_DIGITS_OFF offsetof(PyLongObject, long_value.ob_digit)
#define PYCDS_LONG_NDIGITS(o) \
	((Py_ssize_t)(((PyLongObject *)(o))->long_value.lv_tag >> 3))

static inline int pycds_str_ready(const PyASCIIObject *a)
{
	(void)a;
	return 1;
}

static inline void pycds_str_reset(PyASCIIObject *a)
{
	(void)a;
}

static inline int pycds_str_shares_wstr(PyObject *o)
{
	(void)o;
	return 0;
}

static inline long pycds_str_archive_wstr(PyCompactUnicodeObject *c,
					  Py_ssize_t len)
{
	(void)c;
	(void)len;
	return -1;
}

static inline void pycds_str_share_wstr(PyObject *o)
{
	(void)o;
}

/* Fields a later version adds (py313.h). */
#ifndef PYCDS_CODE_RESET_MORE
#define PYCDS_CODE_RESET_MORE(d) ((void)(d))
#endif

/*
 * Function versions.  MAKE_FUNCTION copies co_version into the function.
 * 3.12 gives a function with version 0 a fresh one on first use, so
 * archived code carries 0.  3.13 and later never do: a function whose
 * version is 0 is never specialized for (CALL, LOAD_ATTR_PROPERTY,
 * BINARY_SUBSCR_GETITEM), so archived code carries versions of its own,
 * one per code object, from the top quarter of the range.  The
 * interpreter counts up from 1 for every code object it makes and stays
 * at 0 once the count wraps; a process whose count has reached the range
 * is not served (versions_free in runtime/session.c).
 */
#define PYCDS_CODE_VERSIONS (PYCDS_PY_MINOR >= 13)
#define PYCDS_CODE_VERSION_BASE 0xC0000000u
#define PYCDS_CODE_VERSION_ROOM 0x3FFFFFFFu

/* Caches and monitoring state are per process. */
static inline void pycds_code_reset(PyCodeObject *d)
{
	d->_co_cached = NULL;
	d->_co_monitoring = NULL;
	d->_co_instrumentation_version = 0;
	d->co_version = 0;	/* the writer numbers them (above) */
	PYCDS_CODE_RESET_MORE(d);
}

/* No counter outside the bytecode. */
static inline int pycds_code_counters_ran(const PyCodeObject *live,
					  const PyCodeObject *pristine)
{
	(void)live;
	(void)pristine;
	return 0;
}

#endif /* PYCDS_COMPAT_PY312_H */
