// SPDX-License-Identifier: MIT
/*
 * A module on first use: its checks, relocation and fixups; on 3.11 the
 * heap copies of the module and class bodies it runs.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime.h"

static int apply_interns(struct pycds_session *rt, const struct pycds_module *m,
			 char *err, size_t errlen)
{
	const struct pycds_fixup *f =
		pycds_ptr(&rt->ar, rt->ar.hdr->interns_off);
	uint32_t i;

	f += m->intern_first;
	for (i = 0; i < m->intern_count; i++) {
		PyObject **slot = (PyObject **)pycds_ptr(&rt->ar, f[i].slot);
		PyObject *c = name_resolve(rt, f[i].arg, err, errlen);

		if (!c)
			return -1;
		/* Write only when the canonical string is not the one the
		 * slot already holds: an untouched page stays shared. */
		if (*slot != c) {
			Py_INCREF(c);
			*slot = c;
			rt->redirected++;
		}
	}
	return 0;
}

static int apply_fsets(struct pycds_session *rt, const struct pycds_module *m,
		       char *err, size_t errlen)
{
	const struct pycds_fixup *f = pycds_ptr(&rt->ar, rt->ar.hdr->fsets_off);
	uint32_t i;

	f += m->fset_first;
	for (i = 0; i < m->fset_count; i++) {
		PyObject **slot = (PyObject **)pycds_ptr(&rt->ar, f[i].slot);
		PyObject *keys, *t;

		if (!PyFrozenSet_CheckExact(*slot)) {
			snprintf(err, errlen, "frozenset fixup %u: not a frozenset",
				 i);
			return -1;
		}
		/* The table depends on this process's hash seed, so rehash
		 * every key: from a set, CPython would copy the archived
		 * hashes. */
		keys = PySequence_List(*slot);
		t = keys ? PyFrozenSet_New(keys) : NULL;
		Py_XDECREF(keys);
		if (!t) {
			PyErr_Clear();
			snprintf(err, errlen, "cannot rebuild frozenset %u", i);
			return -1;
		}
		*slot = t;
	}
	return 0;
}

/* Mark the page of @slot in @bits if it lies in [@lo, @lo + @size). */
static void mark_slot(uint8_t *bits, uint64_t lo, uint64_t size, uint64_t slot)
{
	uint64_t pg;

	if (slot < lo || slot - lo >= size)
		return;
	pg = (slot - lo) / PYCDS_PAGE_SIZE;
	bits[pg / 8] |= 1u << (pg % 8);
}

/*
 * Relocated at a taken base on an interpreter at its link address: the
 * cold and idle spans of @m are written only where a slot is relocated
 * (a pointer to another archived object, or to a pool entry).  Populate
 * those pages for write, in runs; the others (line tables, byte strings,
 * objects with no pointer inside) stay shared with the page cache and
 * cost no copy.  On stdlib6 that is most of the cold span.
 */
static void prefault_relocated(struct pycds_session *rt,
			       const struct pycds_module *m, int r)
{
	const uint32_t *relocs = pycds_ptr(&rt->ar, rt->ar.hdr->relocs_off);
	const struct pycds_fixup *in = pycds_ptr(&rt->ar, rt->ar.hdr->interns_off);
	const struct pycds_fixup *fs = pycds_ptr(&rt->ar, rt->ar.hdr->fsets_off);
	uint64_t lo = m->span_off[r], size = m->span_size[r], pages, p, run;
	uint8_t small[64], *bits = small;
	uint32_t i;

	if (!size)
		return;
	pages = (lo % PYCDS_PAGE_SIZE + size + PYCDS_PAGE_SIZE - 1) /
		PYCDS_PAGE_SIZE;
	lo -= lo % PYCDS_PAGE_SIZE;
	size = pages * PYCDS_PAGE_SIZE;
	if (pages > sizeof(small) * 8 && !(bits = calloc(pages / 8 + 1, 1))) {
		prefault(rt, m->span_off[r], m->span_size[r], 1);
		return;
	}
	if (bits == small)
		memset(small, 0, sizeof(small));
	for (i = 0; i < m->reloc_count; i++)
		mark_slot(bits, lo, size, relocs[m->reloc_first + i]);
	for (i = 0; i < m->intern_count; i++)
		mark_slot(bits, lo, size, in[m->intern_first + i].slot);
	for (i = 0; i < m->fset_count; i++)
		mark_slot(bits, lo, size, fs[m->fset_first + i].slot);
	for (p = 0; p < pages; p = run) {
		for (run = p; run < pages && bits[run / 8] & (1u << (run % 8));)
			run++;
		if (run > p)
			prefault(rt, lo + p * PYCDS_PAGE_SIZE,
				 (run - p) * PYCDS_PAGE_SIZE, 1);
		else
			run = p + 1;
	}
	if (bits != small)
		free(bits);
}

PyObject *module_prepare(struct pycds_session *rt, uint32_t idx,
			 const char *name)
{
	const struct pycds_module *m = pycds_module_get(&rt->ar, idx);
	char err[PYCDS_ERR_LEN];
	struct timespec t0, t1;
	PyObject *code;
	int relocating;

	if (rt->state[idx] == MOD_READY)
		return (PyObject *)pycds_ptr(&rt->ar, m->root);
	if (rt->state[idx] == MOD_BAD)
		return NULL;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	prefetch_end(rt);
	/* The code and data spans are what a process writes (see memory.c).
	 * Relocation (a taken base, or a position-independent interpreter)
	 * writes a pointer in every object: then every span is copied. */
	relocating = rt->ar.delta || rt->ctx.bias;
	prefault(rt, m->span_off[PYCDS_REGION_CODE],
		 m->span_size[PYCDS_REGION_CODE], 1);
	prefault(rt, m->span_off[PYCDS_REGION_DATA],
		 m->span_size[PYCDS_REGION_DATA], 1);
	/* Read-only spans are faulted in by the checksum below, a 64 KiB
	 * fault-around (or a PMD) at a time: populating them page by page
	 * cost stdlib6 about 0.45 ms more (median of 41 preparations). */
	if (relocating && rt->ctx.bias) {
		/* A position-independent interpreter: every object's type
		 * pointer is slid, so every page is written. */
		prefault(rt, m->span_off[PYCDS_REGION_IDLE],
			 m->span_size[PYCDS_REGION_IDLE], 1);
		prefault(rt, m->span_off[PYCDS_REGION_COLD],
			 m->span_size[PYCDS_REGION_COLD], 1);
	} else if (relocating) {
		prefault_relocated(rt, m, PYCDS_REGION_IDLE);
		prefault_relocated(rt, m, PYCDS_REGION_COLD);
	}
	if (pycds_module_check(&rt->ar, idx, &rt->ctx, err, sizeof(err)) ||
	    names_prepare(rt, err, sizeof(err)))
		goto bad;
	pycds_module_relocate(&rt->ar, idx, rt->ctx.bias);
	code = (PyObject *)pycds_ptr(&rt->ar, m->root);
	if (Py_TYPE(code) != &PyCode_Type) {
		snprintf(err, sizeof(err), "root is not a code object");
		goto bad;
	}
	/* Interning first: a rebuilt frozenset gets canonical names. */
	if (apply_interns(rt, m, err, sizeof(err)) ||
	    apply_fsets(rt, m, err, sizeof(err)))
		goto bad;
	rt->state[idx] = MOD_READY;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	rt->prepare_ns += (t1.tv_sec - t0.tv_sec) * 1000000000ULL +
			t1.tv_nsec - t0.tv_nsec;
	return code;
bad:
	/* A damaged module means a damaged file: say so once and stop
	 * serving from it.  Modules already served were checked and stay. */
	rt->state[idx] = MOD_BAD;
	rt->ctr.rejected++;
	pycds_stack()->ctr.rejected++;
	rt->damaged = 1;
	report(rt->path, "module %s: %s; archive no longer used", name, err);
	Py_XDECREF(rt->error);
	rt->error = PyUnicode_FromFormat("module %s: %s", name, err);
	if (!rt->error)
		PyErr_Clear();
	return NULL;
}

#if PYCDS_RUNS_BODY_COPIES
/*
 * A heap copy of a module or class body (PYCDS_RUNS_BODY_COPIES): what
 * the interpreter writes as it runs one (refcounts, the warm-up counter)
 * lands in the copy, which is freed after, as the code a process without
 * an archive unmarshals is.  The copy owns copies of the tuples and byte
 * strings it points to, which the interpreter would otherwise write
 * through it; it shares the constants, each class body among them copied
 * in turn, and its names and file name, which the build lays out with
 * what processes write.
 */
static PyObject *body_copy(PyCodeObject *co, unsigned int depth);

static PyObject *tuple_copy(PyObject *t, int bodies, unsigned int depth)
{
	Py_ssize_t i, n = PyTuple_GET_SIZE(t);
	PyObject *c = PyTuple_New(n);

	for (i = 0; c && i < n; i++) {
		PyObject *v = PyTuple_GET_ITEM(t, i);

		v = bodies && PyCode_Check(v) && PYCDS_IS_BODY(v)
			    ? body_copy((PyCodeObject *)v, depth + 1)
			    : Py_NewRef(v);
		if (!v)
			Py_CLEAR(c);
		else
			PyTuple_SET_ITEM(c, i, v);
	}
	return c;
}

static PyObject *bytes_copy(PyObject *b)
{
	return PyBytes_FromStringAndSize(PyBytes_AS_STRING(b),
					 PyBytes_GET_SIZE(b));
}

static PyObject *body_copy(PyCodeObject *co, unsigned int depth)
{
	PyCodeObject *c;
	size_t size;

	/* Deeper than any compiler nests classes: run the archived one. */
	if (depth > 64)
		return Py_NewRef(co);
	c = PyObject_NewVar(PyCodeObject, &PyCode_Type, Py_SIZE(co));
	if (!c)
		return NULL;
	size = offsetof(PyCodeObject, co_code_adaptive) +
	       (size_t)Py_SIZE(co) * sizeof(_Py_CODEUNIT);
	memcpy((char *)c + sizeof(PyVarObject), (char *)co + sizeof(PyVarObject),
	       size - sizeof(PyVarObject));
	c->co_consts = c->co_names = c->co_exceptiontable = NULL;
	c->co_localsplusnames = c->co_localspluskinds = NULL;
	c->co_filename = c->co_name = c->co_qualname = NULL;
	c->co_linetable = c->co_weakreflist = NULL;
	pycds_code_reset(c);
	c->co_extra = NULL;
	c->co_consts = tuple_copy(co->co_consts, 1, depth);
	c->co_names = tuple_copy(co->co_names, 0, depth);
	c->co_localsplusnames = tuple_copy(co->co_localsplusnames, 0, depth);
	c->co_exceptiontable = bytes_copy(co->co_exceptiontable);
	c->co_localspluskinds = bytes_copy(co->co_localspluskinds);
	c->co_linetable = bytes_copy(co->co_linetable);
	c->co_filename = Py_NewRef(co->co_filename);
	c->co_name = Py_NewRef(co->co_name);
	c->co_qualname = Py_NewRef(co->co_qualname);
	if (!c->co_consts || !c->co_names || !c->co_localsplusnames ||
	    !c->co_exceptiontable || !c->co_localspluskinds ||
	    !c->co_linetable) {
		Py_DECREF(c);
		return NULL;
	}
	return (PyObject *)c;
}
#endif

/* The code object get_code() returns for a prepared module. */
PyObject *served_code(PyObject *code)
{
#if PYCDS_RUNS_BODY_COPIES
	return body_copy((PyCodeObject *)code, 0);
#else
	return Py_NewRef(code);
#endif
}
