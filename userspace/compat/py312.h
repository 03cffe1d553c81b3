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

/* Caches and monitoring state are per process; a version of 0 makes the
 * interpreter assign a fresh one on first use (3.12) or leave archived
 * functions unspecialized by version (3.13): never a duplicate of another
 * code object's version. */
static inline void pycds_code_reset(PyCodeObject *d)
{
	d->_co_cached = NULL;
	d->_co_monitoring = NULL;
	d->_co_instrumentation_version = 0;
	d->co_version = 0;
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
