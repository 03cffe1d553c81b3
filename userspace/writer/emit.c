// SPDX-License-Identifier: MIT
/*
 * Copying objects into the archive's regions: each object laid out as
 * the live CPython object it is, every pointer in it recorded as a slot to
 * relocate (to an archived object, a names pool entry or the interpreter
 * image).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "writer.h"

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

/* Why the module is left out, in w->why; returns -1. */
int left_out(struct writer *w, const char *fmt, ...)
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
	return pycds_table_find(&w->memo, (uintptr_t)key);
}

static int memo_add(struct writer *w, PyObject *key, const struct ref *ref)
{
	struct ref *r = pycds_table_put(&w->memo, (uintptr_t)key);

	if (!r)
		return left_out(w, "out of memory");
	*r = *ref;
	return 0;
}

void memo_reset(struct writer *w)
{
	pycds_table_clear(&w->memo);
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
	pycds_set_refcnt(o);
	o->ob_type = NULL;
	t = image_ref(w, type_kind, type);
	if (put_ref(w, region, base + pre + offsetof(PyObject, ob_type), &t))
		return -1;
	return base + (long)pre;
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

	Py_hash_t hash;

	*off = new_object(w, region, size, 1, &PyTuple_Type,
			  PYCDS_IMG_TYPE_TUPLE, sizeof(PyVarObject), o);
	if (*off < 0)
		return -1;
	/* Where tuples cache their hash (3.14+): the same in every process
	 * when nothing in it depends on the seed, else not computed. */
	hash = -1;
	if (PYCDS_HAS_TUPLE_HASH && hash_stable(w, o)) {
		hash = PyObject_Hash(o);
		if (hash == -1)
			PyErr_Clear();
	}
	pycds_tuple_set_hash((PyTupleObject *)at(w, region, *off), hash);
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

/* A slice (3.14+ compilers fold constant ones): start, stop, step. */
static int emit_slice(struct writer *w, PyObject *o, unsigned int region,
		      long *off)
{
	PySliceObject *s = (PySliceObject *)o, *d;
	struct ref r;

	*off = new_object(w, region, sizeof(PySliceObject),
			  PyType_IS_GC(&PySlice_Type), &PySlice_Type,
			  PYCDS_IMG_TYPE_SLICE, sizeof(PyObject), o);
	if (*off < 0)
		return -1;
	d = (PySliceObject *)at(w, region, *off);
	d->start = d->stop = d->step = NULL;
#define FIELD(f)                                                             \
	do {                                                                 \
		if (emit(w, s->f, PYCDS_REGION_DATA, &r) ||                  \
		    put_ref(w, region, *off + offsetof(PySliceObject, f), &r)) \
			return -1;                                           \
	} while (0)
	FIELD(start);
	FIELD(stop);
	FIELD(step);
#undef FIELD
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
	if (hash == -1 && seed_free(o)) {
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
#if PYCDS_CODE_VERSIONS
	/* Functions take their version from their code object and never get
	 * another: one per archived code object, from a range the process's
	 * own counter is checked not to have reached (runtime/session.c). */
	if (w->versions_first - PYCDS_CODE_VERSION_BASE + w->nr_code >=
	    PYCDS_CODE_VERSION_ROOM)
		return left_out(w, "more code objects than function versions");
	d->co_version = w->versions_first + w->nr_code++;
#endif
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

int emit(struct writer *w, PyObject *o, unsigned int region,
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
	} else if (PYCDS_HAS_SLICE_CONSTANTS && PySlice_Check(o)) {
		ret = emit_slice(w, o, region, &off);
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
