// SPDX-License-Identifier: MIT
/*
 * The names pool: its strings resolved on first use, interned, and the
 * canonical string of each.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

/* A names pool entry must be a well-formed, uninterned compact str that
 * fits in its recorded size. */
static int name_sane(struct pycds_session *rt, uint32_t idx, PyObject *o)
{
	PyASCIIObject *a = (PyASCIIObject *)o;
	uint64_t hdr, size, room = pycds_name_get(&rt->ar, idx)->size;
	unsigned int kind = a->state.kind;

	if (Py_TYPE(o) != &PyUnicode_Type || !a->state.compact ||
	    !pycds_str_ready(a) || a->state.interned ||
	    (a->hash != -1 &&
	     !(rt->ar.hdr->hash_flags & PYCDS_HASHES_STORED)) ||
	    (kind != 1 && kind != 2 && kind != 4) ||
	    (a->state.ascii && kind != 1) || a->length < 0 ||
	    (uint64_t)a->length > room)
		return 0;
	hdr = a->state.ascii ? sizeof(PyASCIIObject)
			     : sizeof(PyCompactUnicodeObject);
	size = hdr + ((uint64_t)a->length + 1) * kind;
	if (size > room)
		return 0;
	/* NUL-terminated, as CPython assumes. */
	return !memcmp((char *)o + hdr + (uint64_t)a->length * kind,
		       "\0\0\0\0", kind);
}

/* Pool pages are written by interning: copy each 16 KiB chunk of the pool
 * once, when the first entry in it is needed (one system call for four
 * pages; the pool is in the order the build's run first used its names). */
#define NAMES_CHUNK (16u << 10)
/* A standard-library layer's pool holds the names of every program that
 * uses it, and a process interns a small part: its own pages only. */
#define NAMES_CHUNK_SPARSE PYCDS_PAGE_SIZE

static uint32_t names_chunk(const struct pycds_session *rt)
{
	return rt->ar.hdr->flags & PYCDS_ARCHIVE_STDLIB ? NAMES_CHUNK_SPARSE
							: NAMES_CHUNK;
}

/* Is pool entry @idx one the build expects this process to find
 * interned already (names_found_off)? */
static int name_expected_found(const struct pycds_session *rt, uint32_t idx)
{
	uint64_t found = rt->ar.hdr->names_found_off;

	return found && pycds_name_get(&rt->ar, idx)->off >= found;
}

static void names_prefault(struct pycds_session *rt, const struct pycds_name *n)
{
	uint64_t pool = rt->ar.hdr->regions[PYCDS_REGION_NAMES].off;
	uint32_t chunk = names_chunk(rt);
	uint64_t found = rt->ar.hdr->names_found_off;
	uint64_t first = (n->off - pool) / chunk;
	uint64_t last = (n->off + n->size - 1 - pool) / chunk;
	uint64_t c;

	/* Expected to be found interned already: redirected, not written
	 * (and if not, the one page is copied when it is). */
	if (found && n->off >= found)
		return;
	for (c = first; c <= last; c++) {
		if (rt->chunks[c / 8] & (1u << (c % 8)))
			continue;
		rt->chunks[c / 8] |= 1u << (c % 8);
		/* Not into the found ones: they are only read. */
		prefault(rt, pool + c * chunk,
			 found && pool + (c + 1) * chunk > found
				 ? found - (pool + c * chunk) : chunk, 1);
	}
}

/* A redirect's low bit: the canonical string is the heap copy pycds made
 * of an entry expected interned already and found not to be. */
#define REDIRECT_COPIED ((uintptr_t)1)

static uintptr_t redirect_get(struct pycds_session *rt, uint32_t idx)
{
	PyObject **to = pycds_table_find(&rt->redirects, (uintptr_t)idx + 1);

	return to ? (uintptr_t)*to : 0;
}

/* Pool entry @idx's canonical string, when an earlier one was. */
static PyObject *redirect_find(struct pycds_session *rt, uint32_t idx)
{
	return (PyObject *)(redirect_get(rt, idx) & ~REDIRECT_COPIED);
}

static int redirect_add(struct pycds_session *rt, uint32_t idx, PyObject *to,
			int copied)
{
	PyObject **slot = pycds_table_put(&rt->redirects, (uintptr_t)idx + 1);

	if (!slot)
		return -1;
	*slot = (PyObject *)((uintptr_t)to | (copied ? REDIRECT_COPIED : 0));
	return 0;
}

int name_became_canonical(struct pycds_session *rt, uint32_t idx)
{
	PyObject *o = pycds_name_entry(&rt->ar, idx);

	return PyUnicode_CHECK_INTERNED(o) ||
	       (redirect_get(rt, idx) & REDIRECT_COPIED);
}

/* The canonical string of a pool entry resolved before, or NULL. */
PyObject *name_resolved(struct pycds_session *rt, uint32_t idx)
{
	PyObject *o;

	if (idx >= rt->ar.hdr->nr_names ||
	    !(rt->resolved[idx / 8] & (1u << (idx % 8))))
		return NULL;
	o = pycds_name_entry(&rt->ar, idx);
	return PyUnicode_CHECK_INTERNED(o) ? o : redirect_find(rt, idx);
}

PyObject *name_resolve(struct pycds_session *rt, uint32_t idx, char *err,
		       size_t errlen)
{
	PyObject *o, *t, *copy;

	t = name_resolved(rt, idx);
	if (t)
		return t;
	if (pycds_name_check(&rt->ar, idx, &rt->ctx, err, errlen))
		return NULL;
	names_prefault(rt, pycds_name_get(&rt->ar, idx));
	pycds_name_relocate(&rt->ar, idx, rt->ctx.bias);
	o = pycds_name_entry(&rt->ar, idx);
	if (!name_sane(rt, idx, o)) {
		snprintf(err, errlen, "names pool entry %u is not a sound str",
			 idx);
		return NULL;
	}
	if (name_expected_found(rt, idx)) {
		/* Expected interned already: looked up through a heap copy,
		 * so that neither its hash nor a reference count is written
		 * into the pool (a page copied per handful of names: 241
		 * faults for stdlib6 on 3.13.5).  Should no equal string be
		 * interned after all, the copy becomes the canonical one (and
		 * a layout run says so: name_became_canonical). */
		t = PyUnicode_FromKindAndData(PyUnicode_KIND(o),
					      PyUnicode_DATA(o),
					      PyUnicode_GET_LENGTH(o));
		if (!t) {
			PyErr_Clear();
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		copy = t;
		PyUnicode_InternInPlace(&t);
		if (redirect_add(rt, idx, t, t == copy)) {
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		rt->interned++;
		rt->resolved[idx / 8] |= 1u << (idx % 8);
		return t;
	}
	/* 3.11: a 4-byte string's wchar_t view is its own data, as the
	 * interpreter makes it (the pool holds no pointers to relocate). */
	pycds_str_share_wstr(o);
	/* The first to intern a string makes it canonical; a string some
	 * earlier code interned stays canonical and the archive uses it. */
	t = o;
	Py_INCREF(t);
	PyUnicode_InternInPlace(&t);
	if (t == o)
		pycds_str_interned_keep(o);
	if (t != o && redirect_add(rt, idx, t, 0)) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	rt->interned++;
	rt->resolved[idx / 8] |= 1u << (idx % 8);
	return t;
}

int names_prepare(struct pycds_session *rt, char *err, size_t errlen)
{
	const struct pycds_span *pool =
		&rt->ar.hdr->regions[PYCDS_REGION_NAMES];

	if (rt->resolved)
		return 0;
	rt->resolved = calloc(rt->ar.hdr->nr_names / 8 + 1, 1);
	rt->chunks = calloc(pool->size / names_chunk(rt) / 8 + 1, 1);
	if (!rt->resolved || !rt->chunks) {
		free(rt->resolved);
		rt->resolved = NULL;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rt->redirects.val_size = sizeof(PyObject *);
	return 0;
}

#if PYCDS_INTERNED_FREED_AT_EXIT
/*
 * Before finalization: any archived str of a module in use that some code
 * interned (sys.intern() of a constant) is kept from being freed, as the
 * pool's entries are when they are interned.  Its page was written by the
 * interning already; the others are only read.
 */
static void keep_interned(void *data)
{
	struct pycds_session *rt = data;
	const struct pycds_image_reloc *images;
	uint32_t i, k;

	if (!rt->map)
		return;
	images = pycds_ptr(&rt->ar, rt->ar.hdr->images_off);
	for (i = 0; i < rt->ar.hdr->nr_modules; i++) {
		const struct pycds_module *m = pycds_module_get(&rt->ar, i);

		if (rt->state[i] != MOD_READY)
			continue;
		for (k = 0; k < m->image_count; k++) {
			const struct pycds_image_reloc *r =
				&images[m->image_first + k];

			if (r->kind == PYCDS_IMG_TYPE_STR)
				pycds_str_interned_keep(pycds_ptr(
					&rt->ar,
					r->slot - offsetof(PyObject, ob_type)));
		}
	}
}

int names_keep_at_exit(struct pycds_session *rt)
{
	return PyUnstable_AtExit(PyInterpreterState_Get(), keep_interned, rt);
}
#else
int names_keep_at_exit(struct pycds_session *rt)
{
	(void)rt;
	return 0;
}
#endif
