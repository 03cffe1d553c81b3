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
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pycds_py.h"
#include "pycds/sum.h"

struct wbuf {
	uint8_t *p;
	size_t len, cap;
};

/* Where an archived pointer points. */
struct ref {
	uint8_t region;		/* for internal refs */
	uint8_t image;		/* 0: internal; else enum pycds_image_kind */
	uint8_t pool;		/* names pool entry @off */
	uint8_t frozenset;	/* frozenset the process must rebuild */
	uint32_t off;		/* region offset of the object */
	uint64_t value;		/* link-time address for image refs */
};

struct slot {
	uint8_t region;
	uint32_t off;		/* region offset of the 8-byte slot */
	struct ref to;
};

struct memo_entry {
	PyObject *key;
	struct ref ref;
};

struct writer {
	struct wbuf region[PYCDS_NR_ALL_REGIONS];
	PyObject *pool;			/* str -> names pool index */
	uint32_t *pool_off;		/* region offset of each entry */
	uint32_t *pool_size;		/* its size, 8-aligned */
	size_t nr_pool, cap_pool;
	struct slot *slots;
	size_t nr_slots, cap_slots;
	struct memo_entry *memo;	/* per module: object -> ref */
	size_t memo_cap, memo_used;
	struct pycds_image image;
	PyObject *preinterned;		/* names a process interned already */
	PyObject *ran;			/* (file, first line, qualname) run */
	PyObject **hot;			/* per module: objects a process writes */
	size_t hot_cap, hot_used;
	unsigned int depth;
	int hashes;			/* store hashes (--hash-seed) */
	uint32_t hash_seed;
	char why[200];			/* why a module was left out */
};

struct wmodule {
	PyObject *name, *origin;
	int is_package;
	int sourceless;
	int64_t mtime;
	uint64_t size;
	uint32_t start[PYCDS_NR_REGIONS], end[PYCDS_NR_REGIONS];
	size_t slot_first, slot_end;
	struct ref root;
};

#define MAX_DEPTH 200

static int wbuf_grow(struct wbuf *b, size_t need)
{
	size_t cap = b->cap ? b->cap : 65536;
	uint8_t *p;

	while (cap - b->len < need)
		cap *= 2;
	if (cap == b->cap)
		return 0;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	memset(p + b->cap, 0, cap - b->cap);
	b->p = p;
	b->cap = cap;
	return 0;
}

/* Reserve @size zeroed bytes, 8-aligned; returns the offset or -1. */
static long wbuf_alloc(struct wbuf *b, size_t size)
{
	size_t off = (b->len + 7) & ~(size_t)7;

	if (off > UINT32_MAX - size - 8 || wbuf_grow(b, off - b->len + size))
		return -1;
	b->len = off + size;
	return (long)off;
}

static int left_out(struct writer *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int left_out(struct writer *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->why, sizeof(w->why), fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * The hash cached in an archived str, bytes or frozenset: -1 (not
 * computed) unless the build stores hashes, for the seed this process runs
 * under.  0 on success, -1 with the module left out.
 */
static int stored_hash(struct writer *w, PyObject *o, Py_hash_t *out)
{
	*out = -1;
	if (!w->hashes)
		return 0;
	*out = PyObject_Hash(o);
	if (*out == -1) {
		PyErr_Clear();
		return left_out(w, "cannot hash a %s constant",
				Py_TYPE(o)->tp_name);
	}
	return 0;
}

static int add_slot(struct writer *w, unsigned int region, size_t off,
		    const struct ref *to)
{
	if (w->nr_slots == w->cap_slots) {
		size_t cap = w->cap_slots ? w->cap_slots * 2 : 4096;
		struct slot *s = realloc(w->slots, cap * sizeof(*s));

		if (!s)
			return left_out(w, "out of memory");
		w->slots = s;
		w->cap_slots = cap;
	}
	w->slots[w->nr_slots].region = region;
	w->slots[w->nr_slots].off = (uint32_t)off;
	w->slots[w->nr_slots].to = *to;
	w->nr_slots++;
	return 0;
}

static struct ref *memo_find(struct writer *w, PyObject *key)
{
	size_t mask = w->memo_cap - 1;
	size_t i = ((uintptr_t)key >> 4) & mask;

	if (!w->memo_cap)
		return NULL;
	while (w->memo[i].key) {
		if (w->memo[i].key == key)
			return &w->memo[i].ref;
		i = (i + 1) & mask;
	}
	return NULL;
}

static int memo_add(struct writer *w, PyObject *key, const struct ref *ref)
{
	size_t mask, i;

	if ((w->memo_used + 1) * 2 > w->memo_cap) {
		struct memo_entry *old = w->memo;
		size_t oldcap = w->memo_cap, j;

		w->memo_cap = oldcap ? oldcap * 2 : 1024;
		w->memo = calloc(w->memo_cap, sizeof(*w->memo));
		if (!w->memo)
			return left_out(w, "out of memory");
		w->memo_used = 0;
		for (j = 0; j < oldcap; j++)
			if (old[j].key)
				memo_add(w, old[j].key, &old[j].ref);
		free(old);
	}
	mask = w->memo_cap - 1;
	i = ((uintptr_t)key >> 4) & mask;
	while (w->memo[i].key)
		i = (i + 1) & mask;
	w->memo[i].key = key;
	w->memo[i].ref = *ref;
	w->memo_used++;
	return 0;
}

static void memo_reset(struct writer *w)
{
	if (w->memo)
		memset(w->memo, 0, w->memo_cap * sizeof(*w->memo));
	w->memo_used = 0;
}

static uint8_t *at(struct writer *w, unsigned int region, size_t off)
{
	return w->region[region].p + off;
}

static int put_ref(struct writer *w, unsigned int region, size_t off,
		   const struct ref *to)
{
	return add_slot(w, region, off, to);
}

static struct ref image_ref(struct writer *w, unsigned int kind,
			    const void *addr)
{
	struct ref r = { .image = (uint8_t)kind };

	r.value = (uint64_t)(uintptr_t)addr - w->image.bias;
	return r;
}

/* Allocate an object of @size bytes (plus a GC header if @gc) in @region
 * and write its header: refcount and type.  Returns the object's offset. */
static long new_object(struct writer *w, unsigned int region, size_t size,
		       int gc, PyTypeObject *type, unsigned int type_kind,
		       size_t copy_from_size, const void *copy_from)
{
	size_t pre = gc ? PYCDS_GC_HEAD_SIZE : 0;
	long base = wbuf_alloc(&w->region[region], pre + size);
	PyObject *o;
	struct ref t;

	if (base < 0) {
		left_out(w, "archive too large");
		return -1;
	}
	o = (PyObject *)at(w, region, base + pre);
	if (copy_from)
		memcpy(o, copy_from, copy_from_size);
	o->ob_refcnt = PYCDS_REFCNT;
	o->ob_type = NULL;
	t = image_ref(w, type_kind, type);
	if (put_ref(w, region, base + pre + offsetof(PyObject, ob_type), &t))
		return -1;
	return base + (long)pre;
}

static int emit(struct writer *w, PyObject *o, unsigned int region,
		struct ref *out);


/* ---- placement by write likelihood ----
 *
 * A page of a private mapping is copied for a process when it writes one
 * byte of it, so objects a process is likely to write share pages, and the
 * rest go to the cold region, which stays the page cache's shared copy.
 * 3.11 writes the refcount of every object it touches; on every version
 * a process rewrites the slots that point to names some earlier code
 * interned (the fixups it applies when it prepares a module).  Written:
 *
 * - code objects the module defines: its own, those of the classes and
 *   functions its body and class bodies create (MAKE_FUNCTION takes a
 *   reference, and the function's name, qualified name and docstring);
 *   where the runtime runs copies of module and class bodies
 *   (PYCDS_RUNS_BODY_COPIES), not theirs, only their names and file name;
 * - constants of code that runs at import (module and class bodies, and
 *   the comprehensions in them), items of constant tuples included;
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
	size_t mask = w->hot_cap - 1, i;

	if (!w->hot_cap)
		return 0;
	for (i = ((uintptr_t)o >> 4) & mask; w->hot[i]; i = (i + 1) & mask)
		if (w->hot[i] == o)
			return 1;
	return 0;
}

static int hot_add(struct writer *w, PyObject *o)
{
	size_t mask, i;

	if (hot_has(w, o))
		return 0;
	if ((w->hot_used + 1) * 2 > w->hot_cap) {
		PyObject **old = w->hot;
		size_t oldcap = w->hot_cap, j;

		w->hot_cap = oldcap ? oldcap * 2 : 1024;
		w->hot = calloc(w->hot_cap, sizeof(*w->hot));
		if (!w->hot) {
			w->hot = old;
			w->hot_cap = oldcap;
			return left_out(w, "out of memory");
		}
		w->hot_used = 0;
		for (j = 0; j < oldcap; j++)
			if (old[j])
				hot_add(w, old[j]);
		free(old);
	}
	mask = w->hot_cap - 1;
	for (i = ((uintptr_t)o >> 4) & mask; w->hot[i]; i = (i + 1) & mask)
		;
	w->hot[i] = o;
	w->hot_used++;
	return 0;
}

static void hot_reset(struct writer *w)
{
	if (w->hot)
		memset(w->hot, 0, w->hot_cap * sizeof(*w->hot));
	w->hot_used = 0;
}

/*
 * Is @o's hash the same in every process: no str or bytes in it (their
 * hashes follow the seed), nor an object hashed by address (None and
 * Ellipsis on some versions, a NaN)?
 */
static int seed_free(PyObject *o, unsigned int depth)
{
	Py_ssize_t i;

	if (depth > MAX_DEPTH)
		return 0;
	if (PyLong_CheckExact(o) || o == Py_True || o == Py_False)
		return 1;
	if (PyFloat_CheckExact(o))
		return !isnan(PyFloat_AS_DOUBLE(o));
	if (PyComplex_CheckExact(o))
		return !isnan(PyComplex_RealAsDouble(o)) &&
		       !isnan(PyComplex_ImagAsDouble(o));
	if (PyTuple_CheckExact(o)) {
		for (i = 0; i < PyTuple_GET_SIZE(o); i++)
			if (!seed_free(PyTuple_GET_ITEM(o, i), depth + 1))
				return 0;
		return 1;
	}
	if (PyFrozenSet_CheckExact(o)) {
		PyObject *it = PyObject_GetIter(o), *v;
		int ok = it != NULL;

		while (ok && (v = PyIter_Next(it))) {
			ok = seed_free(v, depth + 1);
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

/* Must a process rebuild frozenset @o for its hash seed?  Not when the
 * archive stores hashes for its seed, nor when no hash in it depends on
 * the seed: then the archived table is the one it would build. */
static int rebuilt(struct writer *w, PyObject *o)
{
	return PyFrozenSet_CheckExact(o) && !w->hashes && !seed_free(o, 0);
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

/* A constant pushed by code that runs: it and its items are written. */
static int mark_loaded(struct writer *w, PyObject *o, unsigned int depth)
{
	Py_ssize_t i;

	if (depth > MAX_DEPTH || hot_add(w, o))
		return depth > MAX_DEPTH ? 0 : -1;
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

static int mark_code(struct writer *w, PyObject *o, int defined, int runs,
		     unsigned int depth)
{
	PyCodeObject *co = (PyCodeObject *)o;
	PyObject *consts = co->co_consts;
	/* A body the runtime copies is only read; the copy takes references
	 * to its names and file name. */
	int copied = PYCDS_RUNS_BODY_COPIES && PYCDS_IS_BODY(co);
	Py_ssize_t i;

	if (depth > MAX_DEPTH)
		return 0;

	if (((defined && !copied) || rewritten(w, co->co_name) ||
	     rewritten(w, co->co_qualname) || rewritten(w, co->co_filename)) &&
	    hot_add(w, o))
		return -1;
	if (copied && defined && hot_add(w, co->co_filename))
		return -1;
	if (defined) {
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
static unsigned int place(struct writer *w, PyObject *o, unsigned int region)
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

static int emit_str(struct writer *w, PyObject *o, unsigned int region,
		    long *off)
{
	Py_ssize_t len = PyUnicode_GET_LENGTH(o);
	int kind = PyUnicode_KIND(o);
	size_t hdr, size, copy;
	PyASCIIObject *a;
	Py_hash_t hash;

	if (!PyUnicode_IS_COMPACT(o) || !PyUnicode_IS_READY(o))
		return left_out(w, "non-compact str constant");
	hdr = PyUnicode_IS_ASCII(o) ? sizeof(PyASCIIObject)
				    : sizeof(PyCompactUnicodeObject);
	size = hdr + (size_t)(len + 1) * kind;
	copy = size;
	/* 3.11 shares a 4-byte string's data as its wchar_t view (wstr), so
	 * wstr points into the object itself; a pointer's target must leave
	 * room for an object header before the module ends. */
	if (pycds_str_shares_wstr(o) && size < hdr + 16)
		size = hdr + 16;
	*off = new_object(w, region, size, 0, &PyUnicode_Type,
			  PYCDS_IMG_TYPE_STR, copy, o);
	if (*off < 0)
		return -1;
	if (stored_hash(w, o, &hash))
		return -1;
	a = (PyASCIIObject *)at(w, region, *off);
	a->hash = hash;
	/* Rebuild the state word and its padding from the named bits only:
	 * the rest of the copied bytes were never initialised. */
	memset(&a->state, 0, sizeof(PyASCIIObject) -
				     offsetof(PyASCIIObject, state));
	a->state.kind = kind;
	a->state.compact = 1;
	a->state.ascii = PyUnicode_IS_ASCII(o);
	a->state.interned = SSTATE_NOT_INTERNED;
	pycds_str_reset(a);
	if (!PyUnicode_IS_ASCII(o)) {
		PyCompactUnicodeObject *c = (PyCompactUnicodeObject *)a;
		struct ref r = { .region = (uint8_t)region,
				 .off = (uint32_t)(*off + hdr) };
		long field;

		c->utf8 = NULL;
		c->utf8_length = 0;
		/* Pool entries get their wchar_t view when they are resolved:
		 * they carry no relocations. */
		if (!pycds_str_shares_wstr(o) || region == PYCDS_REGION_NAMES)
			return 0;
		field = pycds_str_archive_wstr(c, len);
		if (field >= 0)
			return put_ref(w, region, *off + field, &r);
	}
	return 0;
}

static int emit_tuple(struct writer *w, PyObject *o, unsigned int region,
		      long *off)
{
	Py_ssize_t i, n = PyTuple_GET_SIZE(o);
	size_t size = offsetof(PyTupleObject, ob_item) + n * sizeof(void *);

	*off = new_object(w, region, size, 1, &PyTuple_Type,
			  PYCDS_IMG_TYPE_TUPLE, sizeof(PyVarObject), o);
	if (*off < 0)
		return -1;
	for (i = 0; i < n; i++) {
		struct ref r;

		if (emit(w, PyTuple_GET_ITEM(o, i), PYCDS_REGION_DATA, &r) ||
		    put_ref(w, region,
			    *off + offsetof(PyTupleObject, ob_item) +
				    i * sizeof(void *),
			    &r))
			return -1;
	}
	return 0;
}

static int emit_frozenset(struct writer *w, PyObject *o, unsigned int region,
			  long *off)
{
	PySetObject *s = (PySetObject *)o, *d;
	size_t slots = (size_t)s->mask + 1, i;
	long table_off;
	struct ref r;
	Py_hash_t hash;

	*off = new_object(w, region, sizeof(PySetObject), 1, &PyFrozenSet_Type,
			  PYCDS_IMG_TYPE_FROZENSET, sizeof(PySetObject), o);
	if (*off < 0)
		return -1;
	if (s->table == s->smalltable) {
		table_off = *off + offsetof(PySetObject, smalltable);
	} else {
		table_off = wbuf_alloc(&w->region[region],
				       slots * sizeof(setentry));
		if (table_off < 0)
			return left_out(w, "archive too large");
	}
	if (stored_hash(w, o, &hash))
		return -1;
	/* The same in every process: stored even without --hash-seed. */
	if (hash == -1 && seed_free(o, 0)) {
		hash = PyObject_Hash(o);
		if (hash == -1)
			PyErr_Clear();
	}
	d = (PySetObject *)at(w, region, *off);
	if (s->table != s->smalltable)
		memset(d->smalltable, 0, sizeof(d->smalltable));
	d->hash = hash;
	d->finger = 0;
	d->weakreflist = NULL;
	d->table = NULL;
	r = (struct ref){ .region = region, .off = (uint32_t)table_off };
	if (put_ref(w, region, *off + offsetof(PySetObject, table), &r))
		return -1;
	for (i = 0; i < slots; i++) {
		setentry *e = &s->table[i];
		size_t eoff = table_off + i * sizeof(setentry);

		if (!e->key)
			continue;
		if (!PyUnicode_CheckExact(e->key) && !PyLong_CheckExact(e->key) &&
		    !PyBytes_CheckExact(e->key) && !PyTuple_CheckExact(e->key) &&
		    !PyFloat_CheckExact(e->key) &&
		    !PyComplex_CheckExact(e->key) &&
		    !PyFrozenSet_CheckExact(e->key) && e->key != Py_None &&
		    e->key != Py_True && e->key != Py_False &&
		    e->key != Py_Ellipsis)
			return left_out(w, "frozenset with a %s entry",
					Py_TYPE(e->key)->tp_name);
		((setentry *)at(w, region, eoff))->hash = e->hash;
		if (emit(w, e->key, region, &r) ||
		    put_ref(w, region, eoff + offsetof(setentry, key), &r))
			return -1;
	}
	return 0;
}

static size_t code_size(PyObject *o)
{
	size_t n = PyCode_Type.tp_basicsize +
		   (size_t)Py_SIZE(o) * PyCode_Type.tp_itemsize;

	return (n + 7) & ~(size_t)7;
}

static int emit_code_field(struct writer *w, unsigned int in, long off,
			   size_t field, PyObject *v, unsigned int region)
{
	struct ref r;

	if (emit(w, v, region, &r))
		return -1;
	return put_ref(w, in, off + field, &r);
}

static int emit_code(struct writer *w, PyObject *o, unsigned int in,
		     long *off)
{
	PyCodeObject *co = (PyCodeObject *)o, *d;
	size_t size = code_size(o);

	if (co->co_extra)
		return left_out(w, "code object with extra data");
	/* Copy only the bytes the interpreter wrote: the allocation's tail
	 * past the last code unit is uninitialised. */
	*off = new_object(w, in, size, 0, &PyCode_Type,
			  PYCDS_IMG_TYPE_CODE,
			  offsetof(PyCodeObject, co_code_adaptive) +
				  (size_t)Py_SIZE(o) * PyCode_Type.tp_itemsize,
			  o);
	if (*off < 0)
		return -1;
	d = (PyCodeObject *)at(w, in, *off);
	d->co_consts = d->co_names = d->co_exceptiontable = NULL;
	d->co_localsplusnames = d->co_localspluskinds = NULL;
	d->co_filename = d->co_name = d->co_qualname = NULL;
	d->co_linetable = NULL;
	d->co_weakreflist = NULL;
	d->co_extra = NULL;
	pycds_code_reset(d);
	memset((char *)d + offsetof(PyCodeObject, _co_firsttraceable) +
		       sizeof(int),
	       0,
	       offsetof(PyCodeObject, co_extra) -
		       offsetof(PyCodeObject, _co_firsttraceable) - sizeof(int));

	/* Hot fields first: objects they share with cold ones land hot. */
#define FIELD(f, region)                                                     \
	do {                                                                 \
		if (emit_code_field(w, in, *off, offsetof(PyCodeObject, f),  \
				    (PyObject *)co->f, region))              \
			return -1;                                           \
	} while (0)
	FIELD(co_consts, PYCDS_REGION_DATA);
	FIELD(co_names, PYCDS_REGION_DATA);
	FIELD(co_name, PYCDS_REGION_DATA);
	FIELD(co_qualname, PYCDS_REGION_DATA);
	FIELD(co_filename, PYCDS_REGION_DATA);
	FIELD(co_localsplusnames, PYCDS_REGION_DATA);
	FIELD(co_localspluskinds, PYCDS_REGION_COLD);
	FIELD(co_linetable, PYCDS_REGION_COLD);
	FIELD(co_exceptiontable, PYCDS_REGION_COLD);
#undef FIELD
	return 0;
}

/* An interned string goes to the names pool, once per archive. */
static int emit_name(struct writer *w, PyObject *o, struct ref *out)
{
	PyObject *known = PyDict_GetItemWithError(w->pool, o);
	size_t nr_slots = w->nr_slots;
	PyObject *idx;
	long off;

	if (known) {
		*out = (struct ref){ .pool = 1,
				     .off = (uint32_t)PyLong_AsSize_t(known) };
		return 0;
	}
	if (PyErr_Occurred()) {
		PyErr_Clear();
		return left_out(w, "cannot look up a name");
	}
	if (w->nr_pool == w->cap_pool) {
		size_t cap = w->cap_pool ? w->cap_pool * 2 : 4096;
		uint32_t *p = realloc(w->pool_off, cap * sizeof(*p));
		uint32_t *q;

		if (!p)
			return left_out(w, "out of memory");
		w->pool_off = p;
		q = realloc(w->pool_size, cap * sizeof(*q));
		if (!q)
			return left_out(w, "out of memory");
		w->pool_size = q;
		w->cap_pool = cap;
	}
	if (emit_str(w, o, PYCDS_REGION_NAMES, &off))
		return -1;
	/* Pool entries carry their type pointer implicitly (offset 8):
	 * drop the slot new_object recorded and store the address. */
	w->nr_slots = nr_slots;
	((PyObject *)at(w, PYCDS_REGION_NAMES, off))->ob_type =
		(PyTypeObject *)((uintptr_t)&PyUnicode_Type - w->image.bias);
	idx = PyLong_FromSize_t(w->nr_pool);
	if (!idx || PyDict_SetItem(w->pool, o, idx)) {
		Py_XDECREF(idx);
		PyErr_Clear();
		return left_out(w, "out of memory");
	}
	Py_DECREF(idx);
	w->pool_off[w->nr_pool] = (uint32_t)off;
	w->pool_size[w->nr_pool] =
		(uint32_t)((w->region[PYCDS_REGION_NAMES].len - off + 7) & ~7u);
	*out = (struct ref){ .pool = 1, .off = (uint32_t)w->nr_pool };
	w->nr_pool++;
	return 0;
}

static int emit(struct writer *w, PyObject *o, unsigned int region,
		struct ref *out)
{
	struct ref *seen, r = { 0 };
	long off = 0;
	int ret;

	if (o == Py_None || o == Py_True || o == Py_False || o == Py_Ellipsis) {
		unsigned int k = o == Py_None ? PYCDS_IMG_NONE
				 : o == Py_True ? PYCDS_IMG_TRUE
				 : o == Py_False ? PYCDS_IMG_FALSE
						 : PYCDS_IMG_ELLIPSIS;

		*out = image_ref(w, k, o);
		return 0;
	}
	if (pycds_image_contains(&w->image, o)) {
		/* Statically allocated: small ints, one-character strings,
		 * empty singletons, names of deep-frozen modules. */
		if (!PyUnicode_CheckExact(o) && !PyLong_CheckExact(o) &&
		    !PyBytes_CheckExact(o) && !PyTuple_CheckExact(o) &&
		    !PyFloat_CheckExact(o) && !PyComplex_CheckExact(o))
			return left_out(w, "static %s constant",
					Py_TYPE(o)->tp_name);
		*out = image_ref(w, PYCDS_IMG_STATIC, o);
		return 0;
	}
	if (PyUnicode_CheckExact(o) && PyUnicode_CHECK_INTERNED(o))
		return emit_name(w, o, out);
	seen = memo_find(w, o);
	if (seen) {
		*out = *seen;
		return 0;
	}
	if (++w->depth > MAX_DEPTH) {
		w->depth--;
		return left_out(w, "constants nested too deeply");
	}

	region = place(w, o, region);
	if (PyCode_Check(o)) {
		ret = emit_code(w, o, region, &off);
	} else if (PyUnicode_CheckExact(o)) {
		ret = emit_str(w, o, region, &off);
	} else if (PyBytes_CheckExact(o)) {
		size_t size = offsetof(PyBytesObject, ob_sval) +
			      PyBytes_GET_SIZE(o) + 1;

		Py_hash_t hash;

		off = new_object(w, region, size, 0, &PyBytes_Type,
				 PYCDS_IMG_TYPE_BYTES, size, o);
		ret = off < 0 ? -1 : stored_hash(w, o, &hash);
		/* The cached hash depends on the hash seed. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
		if (!ret)
			((PyBytesObject *)at(w, region, off))->ob_shash = hash;
#pragma GCC diagnostic pop
	} else if (PyLong_CheckExact(o)) {
		Py_ssize_t nd = PYCDS_LONG_NDIGITS(o);
		size_t size = PYCDS_LONG_DIGITS_OFF +
			      (nd ? nd : 1) * sizeof(digit);

		off = new_object(w, region, size, 0, &PyLong_Type,
				 PYCDS_IMG_TYPE_INT,
				 PYCDS_LONG_DIGITS_OFF + nd * sizeof(digit), o);
		ret = off < 0 ? -1 : 0;
	} else if (PyFloat_CheckExact(o)) {
		off = new_object(w, region, sizeof(PyFloatObject), 0,
				 &PyFloat_Type, PYCDS_IMG_TYPE_FLOAT,
				 sizeof(PyFloatObject), o);
		ret = off < 0 ? -1 : 0;
	} else if (PyComplex_CheckExact(o)) {
		off = new_object(w, region, sizeof(PyComplexObject), 0,
				 &PyComplex_Type, PYCDS_IMG_TYPE_COMPLEX,
				 sizeof(PyComplexObject), o);
		ret = off < 0 ? -1 : 0;
	} else if (PyTuple_CheckExact(o)) {
		ret = emit_tuple(w, o, region, &off);
	} else if (PyFrozenSet_CheckExact(o)) {
		ret = emit_frozenset(w, o, region, &off);
		r.frozenset = rebuilt(w, o);
	} else {
		ret = left_out(w, "%s constant", Py_TYPE(o)->tp_name);
	}
	w->depth--;
	if (ret)
		return -1;
	r.region = (uint8_t)region;
	r.off = (uint32_t)off;
	if (memo_add(w, o, &r))
		return -1;
	*out = r;
	return 0;
}

/* ---- assembling the file ---- */

struct layout {
	uint64_t modules_off, buckets_off, names_off, relocs_off, images_off,
		interns_off, fsets_off, index_off;
	uint64_t region_off[PYCDS_NR_ALL_REGIONS], size;
	uint64_t gap_off, gap_size;	/* a hole in the file, or 0 */
	uint32_t nr_buckets;
	uint64_t names_size, nr_relocs, nr_images, nr_interns, nr_fsets;
};

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static uint64_t slot_file_off(const struct layout *l, const struct slot *s)
{
	return l->region_off[s->region] + s->off;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Publish atomically: never leave a partial file under @path.  The
 * @gap_size bytes at @gap_off (zeros) are left a hole. */
static int publish(const char *path, const uint8_t *file, size_t size,
		   uint64_t gap_off, uint64_t gap_size)
{
	char tmp[4096];
	int fd, ret;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, getpid()) >=
	    sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (gap_size) {
		ret = write_all(fd, file, gap_off);
		if (!ret && lseek(fd, (off_t)(gap_off + gap_size), SEEK_SET) < 0)
			ret = -errno;
		if (!ret)
			ret = write_all(fd, file + gap_off + gap_size,
					size - gap_off - gap_size);
	} else {
		ret = write_all(fd, file, size);
	}
	if (!ret && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

static void plan(struct writer *w, struct wmodule *mods, size_t n,
		 struct layout *l)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		Py_ssize_t a, b;

		PyUnicode_AsUTF8AndSize(mods[i].name, &a);
		PyUnicode_AsUTF8AndSize(mods[i].origin, &b);
		l->names_size += a + b;
		for (j = mods[i].slot_first; j < mods[i].slot_end; j++) {
			const struct ref *to = &w->slots[j].to;

			if (to->image)
				l->nr_images++;
			else if (to->pool)
				l->nr_interns++;
			else
				l->nr_relocs++;
			l->nr_fsets += to->frozenset;
		}
	}
	l->nr_buckets = 16;
	while (l->nr_buckets < n * 2 + 1)
		l->nr_buckets *= 2;
	/*
	 * What processes only read comes first, from offset 0: the header,
	 * the index, the tables and the cold region, so that on a huge-page
	 * tmpfs the 2 MiB extents they fill stay mapped with PMDs in every
	 * process, with no padding.  Then what processes write only if code
	 * the build did not expect to run does (idle), and last what they
	 * write: the names pool (interning), code and data, in as few 2 MiB
	 * chunks as they fill (the runtime copies a chunk they fill whole
	 * into a huge page).
	 */
	l->modules_off = align_up(sizeof(struct pycds_header), 64);
	l->buckets_off = l->modules_off + n * sizeof(struct pycds_module);
	l->names_off = l->buckets_off + (uint64_t)l->nr_buckets * 4;
	l->relocs_off = align_up(l->names_off + l->names_size, 8);
	l->images_off = align_up(l->relocs_off + l->nr_relocs * 4, 8);
	l->interns_off = l->images_off + l->nr_images * 8;
	l->fsets_off = l->interns_off + l->nr_interns * 8;
	l->index_off = l->fsets_off + l->nr_fsets * 8;
	l->size = align_up(l->index_off + w->nr_pool * sizeof(struct pycds_name),
			   PYCDS_PAGE_SIZE);
	l->region_off[PYCDS_REGION_COLD] = l->size;
	l->size = align_up(l->size + w->region[PYCDS_REGION_COLD].len,
			   PYCDS_PAGE_SIZE);
	l->region_off[PYCDS_REGION_IDLE] = l->size;
	l->size = align_up(l->size + w->region[PYCDS_REGION_IDLE].len,
			   PYCDS_PAGE_SIZE);
	/*
	 * Where a process writes every object it touches (3.11) and the
	 * interpreter's image does not move (a non-PIE executable, load
	 * bias 0), the written regions start at a 2 MiB boundary when they
	 * fill one chunk at least 15/16: the runtime copies such a chunk
	 * into one huge page (one allocation and one read against 512 page
	 * copies), and where they start is otherwise luck (jinja2_app: no
	 * chunk, 1 ms more to prepare).  The padding is a hole in the file,
	 * kept by pycds-loader and `cp`: it takes no memory, and no process
	 * maps it with a PMD.  Where the image moves, every region is
	 * written and every chunk qualifies anyway.
	 */
	if (PYCDS_WRITES_EVERY_TOUCHED_OBJECT && !w->image.bias) {
		uint64_t written =
			align_up(w->region[PYCDS_REGION_NAMES].len, PYCDS_PAGE_SIZE) +
			align_up(w->region[PYCDS_REGION_CODE].len, PYCDS_PAGE_SIZE) +
			align_up(w->region[PYCDS_REGION_DATA].len, PYCDS_PAGE_SIZE);

		if (written >= PYCDS_REGION_ALIGN / 16 * 15 &&
		    l->size % PYCDS_REGION_ALIGN) {
			l->gap_off = l->size;
			l->size = align_up(l->size, PYCDS_REGION_ALIGN);
			l->gap_size = l->size - l->gap_off;
		}
	}
	l->region_off[PYCDS_REGION_NAMES] = l->size;
	l->size = align_up(l->size + w->region[PYCDS_REGION_NAMES].len,
			   PYCDS_PAGE_SIZE);
	l->region_off[PYCDS_REGION_CODE] = l->size;
	l->size = align_up(l->size + w->region[PYCDS_REGION_CODE].len,
			   PYCDS_PAGE_SIZE);
	l->region_off[PYCDS_REGION_DATA] = l->size;
	l->size = align_up(l->size + w->region[PYCDS_REGION_DATA].len,
			   PYCDS_PAGE_SIZE);
}

static PyObject *assemble(struct writer *w, struct wmodule *mods, size_t n,
			  const char *path, uint64_t base)
{
	struct pycds_interp id;
	struct layout l = { 0 };
	struct pycds_header *h;
	struct pycds_module *me;
	uint32_t *buckets, *relocs;
	struct pycds_name *index;
	struct pycds_image_reloc *images;
	struct pycds_fixup *interns, *fsets;
	uint8_t *file = NULL, *names;
	size_t i, j, nameoff = 0;
	unsigned int r;
	PyObject *result = NULL;
	int ret;

	if (pycds_interp_fill(&id, &w->image))
		return NULL;
	plan(w, mods, n, &l);
	if (l.size > UINT32_MAX) {
		PyErr_SetString(PyExc_OverflowError, "archive exceeds 4 GiB");
		return NULL;
	}
	if (l.size > PYCDS_BASE_LIMIT - base) {
		PyErr_SetString(PyExc_ValueError,
				"the archive would not end below 2^47 at that base");
		return NULL;
	}
	file = calloc(1, l.size);
	if (!file)
		return PyErr_NoMemory();
	h = (struct pycds_header *)file;
	me = (struct pycds_module *)(file + l.modules_off);
	buckets = (uint32_t *)(file + l.buckets_off);
	names = file + l.names_off;
	relocs = (uint32_t *)(file + l.relocs_off);
	images = (struct pycds_image_reloc *)(file + l.images_off);
	interns = (struct pycds_fixup *)(file + l.interns_off);
	fsets = (struct pycds_fixup *)(file + l.fsets_off);
	index = (struct pycds_name *)(file + l.index_off);
	for (r = 0; r < PYCDS_NR_ALL_REGIONS; r++)
		memcpy(file + l.region_off[r], w->region[r].p, w->region[r].len);
	for (i = 0; i < w->nr_pool; i++) {
		index[i].off = (uint32_t)(l.region_off[PYCDS_REGION_NAMES] +
					  w->pool_off[i]);
		index[i].size = w->pool_size[i];
	}

	l.nr_relocs = l.nr_images = l.nr_interns = l.nr_fsets = 0;
	for (i = 0; i < n; i++) {
		struct wmodule *m = &mods[i];
		const char *s;
		Py_ssize_t len;
		uint32_t pos;

		s = PyUnicode_AsUTF8AndSize(m->name, &len);
		me[i].name_off = (uint32_t)nameoff;
		me[i].name_len = (uint32_t)len;
		memcpy(names + nameoff, s, len);
		nameoff += len;
		pos = (uint32_t)pycds_name_hash(s, len) & (l.nr_buckets - 1);
		while (buckets[pos])
			pos = (pos + 1) & (l.nr_buckets - 1);
		buckets[pos] = (uint32_t)i + 1;

		s = PyUnicode_AsUTF8AndSize(m->origin, &len);
		me[i].origin_off = (uint32_t)nameoff;
		me[i].origin_len = (uint32_t)len;
		memcpy(names + nameoff, s, len);
		nameoff += len;

		me[i].flags = (m->is_package ? PYCDS_MOD_PACKAGE : 0) |
			      (m->sourceless ? PYCDS_MOD_SOURCELESS : 0);
		me[i].src_mtime = m->mtime;
		me[i].src_size = m->size;
		me[i].root = l.region_off[m->root.region] + m->root.off;
		for (r = 0; r < PYCDS_NR_REGIONS; r++) {
			me[i].span_off[r] = (uint32_t)(l.region_off[r] + m->start[r]);
			me[i].span_size[r] = m->end[r] - m->start[r];
		}
		me[i].reloc_first = (uint32_t)l.nr_relocs;
		me[i].image_first = (uint32_t)l.nr_images;
		me[i].intern_first = (uint32_t)l.nr_interns;
		me[i].fset_first = (uint32_t)l.nr_fsets;
		for (j = m->slot_first; j < m->slot_end; j++) {
			const struct slot *sl = &w->slots[j];
			uint32_t slot = (uint32_t)slot_file_off(&l, sl);
			uint64_t v;

			if (sl->to.image) {
				v = sl->to.value;
				images[l.nr_images].slot = slot;
				images[l.nr_images++].kind = sl->to.image;
			} else if (sl->to.pool) {
				v = base + index[sl->to.off].off;
				interns[l.nr_interns].slot = slot;
				interns[l.nr_interns++].arg = sl->to.off;
			} else {
				v = base + l.region_off[sl->to.region] + sl->to.off;
				relocs[l.nr_relocs++] = slot;
			}
			memcpy(file + slot, &v, 8);
			if (sl->to.frozenset)
				fsets[l.nr_fsets++].slot = slot;
		}
		me[i].reloc_count = (uint32_t)l.nr_relocs - me[i].reloc_first;
		me[i].image_count = (uint32_t)l.nr_images - me[i].image_first;
		me[i].intern_count = (uint32_t)l.nr_interns - me[i].intern_first;
		me[i].fset_count = (uint32_t)l.nr_fsets - me[i].fset_first;
	}

	memcpy(h->magic, PYCDS_MAGIC, PYCDS_MAGIC_LEN);
	h->version = PYCDS_FORMAT_VERSION;
	h->header_size = sizeof(*h);
	h->file_size = l.size;
	h->preferred_base = base;
	h->interp = id;
	for (r = 0; r < PYCDS_NR_ALL_REGIONS; r++) {
		h->regions[r].off = l.region_off[r];
		h->regions[r].size = align_up(w->region[r].len, 8);
	}
	h->names_index_off = l.index_off;
	h->nr_names = (uint32_t)w->nr_pool;
	h->modules_off = l.modules_off;
	h->nr_modules = (uint32_t)n;
	h->nr_buckets = l.nr_buckets;
	h->buckets_off = l.buckets_off;
	h->names.off = l.names_off;
	h->names.size = l.names_size;
	h->relocs_off = l.relocs_off;
	h->nr_relocs = l.nr_relocs;
	h->images_off = l.images_off;
	h->nr_images = l.nr_images;
	h->interns_off = l.interns_off;
	h->nr_interns = l.nr_interns;
	h->fsets_off = l.fsets_off;
	h->nr_fsets = l.nr_fsets;
	if (w->hashes) {
		Py_hash_t ph = pycds_hash_probe();

		if (ph == -1)
			goto out;
		h->hash_flags = PYCDS_HASHES_STORED;
		h->hash_seed = w->hash_seed;
		h->hash_probe = (uint64_t)ph;
	}

	/* Every checksum, as the reader defines them. */
	pycds_seal(file, l.size);

	ret = publish(path, file, l.size, l.gap_off, l.gap_size);
	if (ret) {
		errno = -ret;
		PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
		goto out;
	}
	result = Py_BuildValue(
		"{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:n}", "size",
		(unsigned long long)l.size, "code",
		(unsigned long long)w->region[PYCDS_REGION_CODE].len, "data",
		(unsigned long long)w->region[PYCDS_REGION_DATA].len, "cold",
		(unsigned long long)w->region[PYCDS_REGION_COLD].len, "idle",
		(unsigned long long)w->region[PYCDS_REGION_IDLE].len, "names",
		(unsigned long long)w->region[PYCDS_REGION_NAMES].len, "relocs",
		(unsigned long long)l.nr_relocs, "images",
		(unsigned long long)l.nr_images, "interns",
		(unsigned long long)l.nr_interns, "pool",
		(unsigned long long)w->nr_pool, "base",
		(unsigned long long)base, "modules", (Py_ssize_t)n);
out:
	free(file);
	return result;
}

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
 * _pycds.write(path, modules, base=PYCDS_DEFAULT_BASE, preinterned=None,
 *	       ran=None)
 *
 * modules: a sequence of (name, origin, is_package, mtime, size, code
 * [, sourceless]), in the order a process is expected to import them:
 * objects and names are laid out in that order.  sourceless: origin is a
 * .pyc with no source, and mtime and size are its own.
 * preinterned: a set of the names a process has interned before it
 * imports from the archive; objects whose slots it will rewrite to point
 * to those are laid out with the objects it writes.
 * ran: a set of (filename, first line, qualified name) of code seen
 * running: its constants are laid out with the objects a process writes.
 * Returns (summary dict, [(name, reason), ...] of modules left out).
 */
PyObject *pycds_write(PyObject *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = { "path", "modules", "base", "preinterned",
				  "ran", "hash_seed", NULL };
	PyObject *hash_seed = Py_None;
	unsigned long long base = PYCDS_DEFAULT_BASE;
	struct writer w = { 0 };
	struct wmodule *mods = NULL;
	PyObject *path, *seq, *fast = NULL, *skipped = NULL, *summary = NULL;
	PyObject *seen = NULL;
	PyObject *result = NULL;
	Py_ssize_t i, n, kept = 0;
	unsigned int r;

	(void)self;
	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&O|KOOO", kwlist,
					 PyUnicode_FSConverter, &path, &seq,
					 &base, &w.preinterned, &w.ran,
					 &hash_seed))
		return NULL;
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
	if ((w.preinterned && !PyAnySet_Check(w.preinterned)) ||
	    (w.ran && !PyAnySet_Check(w.ran))) {
		PyErr_SetString(PyExc_TypeError,
				"preinterned and ran must be sets");
		goto out;
	}
	if (!base || base % PYCDS_PAGE_SIZE || base >= PYCDS_BASE_LIMIT) {
		PyErr_SetString(PyExc_ValueError,
				"base must be page-aligned and below 2^47");
		goto out;
	}
	if (pycds_image_find(&w.image)) {
		PyErr_SetString(PyExc_RuntimeError,
				"cannot find the interpreter image");
		goto out;
	}
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

		m->sourceless = 0;
		if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i),
				      "UUpLKO!|p;module entries are (name, origin, "
				      "is_package, mtime, size, code[, sourceless])",
				      &m->name, &m->origin, &m->is_package,
				      &mtime, &size, &PyCode_Type, &code,
				      &m->sourceless))
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
	summary = assemble(&w, mods, kept, PyBytes_AS_STRING(path), base);
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
	free(w.memo);
	free(w.hot);
	return result;
}
