// SPDX-License-Identifier: MIT
/*
 * One module before its first use: checksum, every slot and relocation
 * inside its spans, image slots of the right kinds; the deeper checks of
 * verify; relocation.  And the names pool's entries.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pycds/sum.h"

/* Index of the module span holding [off, off + len), or -1. */
static int span_of(const struct pycds_module *m, uint64_t off, uint64_t len)
{
	unsigned int r;

	for (r = 0; r < PYCDS_NR_REGIONS; r++)
		if (off >= m->span_off[r] &&
		    in_file(off - m->span_off[r], len, m->span_size[r]))
			return r;
	return -1;
}

static uint64_t load_slot(const struct pycds_archive *ar, uint32_t slot)
{
	uint64_t v;

	memcpy(&v, ar->base + slot, sizeof(v));
	return v;
}

static int static_check(const struct pycds_image_ctx *img, uint64_t addr);

/* static_check(), through the context's cache of accepted addresses if it
 * has one: modules point to the same few hundred static objects (small
 * ints, one-character strings, empty singletons) tens of thousands of
 * times. */
static int static_ok(const struct pycds_image_ctx *img, uint64_t addr)
{
	uint64_t *seen = img->static_seen;
	unsigned int i = (unsigned int)((addr * 0x9e3779b97f4a7c15ULL) >> 32) %
			 PYCDS_STATIC_SEEN;

	if (seen && addr && seen[i] == addr)
		return 1;
	if (!static_check(img, addr))
		return 0;
	if (seen)
		seen[i] = addr;
	return 1;
}

static int static_check(const struct pycds_image_ctx *img, uint64_t addr)
{
	uint64_t type;
	unsigned int i, j;

	if (addr % 8)
		return 0;
	for (i = 0; i < img->nr_static; i++) {
		if (addr < img->static_lo[i] || addr >= img->static_hi[i] ||
		    img->static_hi[i] - addr < 16)
			continue;
		memcpy(&type, (const void *)(uintptr_t)(addr + 8), sizeof(type));
		for (j = 0; j < img->nr_static_types; j++)
			if (type == img->static_types[j])
				return 1;
		return 0;
	}
	return 0;
}

/*
 * The module's spans as bounds for a branch-free test: an 8-byte slot at
 * @off lies in span r when off - lo[r] < lim8[r] (unsigned: an @off below
 * lo[r] wraps to more than any file size), a 16-byte object when off -
 * lo[r] < lim16[r].  The same answers as span_of() >= 0.
 */
struct spans {
	uint64_t lo[PYCDS_NR_REGIONS];
	uint64_t lim8[PYCDS_NR_REGIONS], lim16[PYCDS_NR_REGIONS];
};

static void spans_init(struct spans *sp, const struct pycds_module *m)
{
	unsigned int r;

	for (r = 0; r < PYCDS_NR_REGIONS; r++) {
		sp->lo[r] = m->span_off[r];
		sp->lim8[r] = m->span_size[r] >= 8 ? m->span_size[r] - 7 : 0;
		sp->lim16[r] = m->span_size[r] >= 16 ? m->span_size[r] - 15 : 0;
	}
}

static inline unsigned int in_spans(const uint64_t *lo, const uint64_t *lim,
				    uint64_t off)
{
	return (off - lo[0] < lim[0]) | (off - lo[1] < lim[1]) |
	       (off - lo[2] < lim[2]) | (off - lo[3] < lim[3]);
}

/*
 * The relocation, image and intern checks of pycds_module_check() in one
 * pass without early exits, so that a sound module (every module, in
 * practice) costs no mispredicted branches.  Returns 1 if every entry
 * passes; 0 sends the caller to the checks that name the first failure.
 * A slot is loaded only once its own bounds passed (else the header's
 * first bytes are read, harmlessly).
 */
static int module_slots_sound(const struct pycds_archive *ar,
			      const struct pycds_module *m,
			      const struct pycds_image_ctx *img)
{
	const struct pycds_header *h = ar->hdr;
	const uint64_t base = h->preferred_base;
	const uint32_t *relocs = pycds_ptr(ar, h->relocs_off);
	const struct pycds_image_reloc *images = pycds_ptr(ar, h->images_off);
	const struct pycds_fixup *fx = pycds_ptr(ar, h->interns_off);
	const struct pycds_name *names = pycds_ptr(ar, h->names_index_off);
	struct spans sp;
	unsigned int ok, bad = 0;
	uint32_t i;

	spans_init(&sp, m);
	relocs += m->reloc_first;
	for (i = 0; i < m->reloc_count; i++) {
		uint64_t s = relocs[i], v, t;

		ok = ((s & 7) == 0) & in_spans(sp.lo, sp.lim8, s);
		v = load_slot(ar, ok ? s : 0);
		t = v - base;
		ok &= (v >= base) & ((t & 7) == 0) & in_spans(sp.lo, sp.lim16, t);
		bad |= !ok;
	}
	images += m->image_first;
	for (i = 0; i < m->image_count; i++) {
		uint64_t s = images[i].slot, v;
		uint32_t kind = images[i].kind;

		ok = ((s & 7) == 0) & in_spans(sp.lo, sp.lim8, s) & (kind != 0) &
		     (kind < PYCDS_IMG_NR_KINDS);
		if (img) {
			v = load_slot(ar, ok ? s : 0) + img->bias;
			if (kind == PYCDS_IMG_STATIC)
				ok &= ok && static_ok(img, v);
			else
				ok &= v == img->expect[ok ? kind : 0];
		}
		bad |= !ok;
	}
	if (m->intern_count && !h->nr_names)
		return 0;
	fx += m->intern_first;
	for (i = 0; i < m->intern_count; i++) {
		uint64_t s = fx[i].slot, v;
		uint32_t a = fx[i].arg;

		ok = ((s & 7) == 0) & in_spans(sp.lo, sp.lim8, s) & (a < h->nr_names);
		v = load_slot(ar, ok ? s : 0);
		ok &= v == base + names[a < h->nr_names ? a : 0].off;
		bad |= !ok;
	}
	return !bad;
}

/* A fixup's slot: an aligned pointer inside one of the module's spans. */
static int fixup_slot_in(const struct pycds_module *m,
			 const struct pycds_fixup *f)
{
	return f->slot % 8 == 0 && span_of(m, f->slot, 8) >= 0;
}

/* The same checks one entry at a time, naming the first that fails. */
static int module_slots_detail(const struct pycds_archive *ar,
			       const struct pycds_module *m, uint32_t idx,
			       const struct pycds_image_ctx *img, char *err,
			       size_t errlen)
{
	const struct pycds_header *h = ar->hdr;
	const uint32_t *relocs;
	const struct pycds_image_reloc *images;
	const struct pycds_fixup *fixups;
	const struct pycds_name *names;
	uint32_t i;

	relocs = pycds_ptr(ar, h->relocs_off);
	relocs += m->reloc_first;
	for (i = 0; i < m->reloc_count; i++) {
		uint64_t v, target;

		if (relocs[i] % 8 || span_of(m, relocs[i], 8) < 0)
			return fail(err, errlen,
				    "module %u: relocation %u slot outside the module",
				    idx, i);
		v = load_slot(ar, relocs[i]);
		target = v - h->preferred_base;
		if (v < h->preferred_base || target % 8 ||
		    span_of(m, target, 16) < 0)
			return fail(err, errlen,
				    "module %u: relocation %u points outside the module",
				    idx, i);
	}

	images = pycds_ptr(ar, h->images_off);
	images += m->image_first;
	for (i = 0; i < m->image_count; i++) {
		uint32_t kind = images[i].kind;
		uint64_t v;

		if (images[i].slot % 8 || span_of(m, images[i].slot, 8) < 0)
			return fail(err, errlen,
				    "module %u: image slot %u outside the module",
				    idx, i);
		if (!kind || kind >= PYCDS_IMG_NR_KINDS)
			return fail(err, errlen,
				    "module %u: image slot %u has unknown kind %u",
				    idx, i, kind);
		if (!img)
			continue;
		v = load_slot(ar, images[i].slot) + img->bias;
		if (kind == PYCDS_IMG_STATIC ? !static_ok(img, v)
					     : !img->expect[kind] ||
						       v != img->expect[kind])
			return fail(err, errlen,
				    "module %u: image slot %u does not point to a %s",
				    idx, i, pycds_image_kind_name(kind));
	}

	/* Pool references are not in the relocation table: each one is an
	 * intern fixup that names its pool entry, and must point at it. */
	names = pycds_ptr(ar, h->names_index_off);
	fixups = pycds_ptr(ar, h->interns_off);
	fixups += m->intern_first;
	for (i = 0; i < m->intern_count; i++) {
		if (!fixup_slot_in(m, &fixups[i]))
			return fail(err, errlen,
				    "module %u: intern fixup %u slot outside the module",
				    idx, i);
		if (fixups[i].arg >= h->nr_names ||
		    load_slot(ar, fixups[i].slot) !=
			    h->preferred_base + names[fixups[i].arg].off)
			return fail(err, errlen,
				    "module %u: intern fixup %u does not match the names pool",
				    idx, i);
	}
	return 0;
}

int pycds_module_check(const struct pycds_archive *ar, uint32_t idx,
		       const struct pycds_image_ctx *img, char *err,
		       size_t errlen)
{
	const struct pycds_header *h = ar->hdr;
	const struct pycds_module *m = pycds_module_get(ar, idx);
	const struct pycds_fixup *fixups;
	uint32_t i;
	uint64_t sum;
	int ret, sound;

	if (!m)
		return fail(err, errlen, "module %u does not exist", idx);
	ret = pycds__module_entry_check(ar, idx, err, errlen);
	if (ret)
		return ret;
	if (pycds_sum_module(ar->base, ar->size, m, &sum) || sum != m->checksum)
		return fail(err, errlen, "module %u: checksum mismatch", idx);
	sound = module_slots_sound(ar, m, img);
#ifdef PYCDS_CHECK_BOTH
	/* Fuzzing: the one-pass checks must agree with these. */
	if (sound != !module_slots_detail(ar, m, idx, img, NULL, 0))
		abort();
#endif
	if (!sound) {
		ret = module_slots_detail(ar, m, idx, img, err, errlen);
		if (ret)
			return ret;
	}
	fixups = pycds_ptr(ar, h->fsets_off);
	fixups += m->fset_first;
	for (i = 0; i < m->fset_count; i++) {
		uint64_t v, target;

		if (!fixup_slot_in(m, &fixups[i]) || fixups[i].arg)
			return fail(err, errlen,
				    "module %u: frozenset fixup %u malformed", idx, i);
		v = load_slot(ar, fixups[i].slot);
		target = v - h->preferred_base;
		if (v < h->preferred_base || span_of(m, target, 16) < 0)
			return fail(err, errlen,
				    "module %u: frozenset fixup %u points outside the module",
				    idx, i);
	}
	return 0;
}

int pycds_name_check(const struct pycds_archive *ar, uint32_t i,
		     const struct pycds_image_ctx *img, char *err,
		     size_t errlen)
{
	const struct pycds_span *pool = &ar->hdr->regions[PYCDS_REGION_NAMES];
	const struct pycds_name *n;

	if (i >= ar->hdr->nr_names)
		return fail(err, errlen, "names pool entry %u does not exist", i);
	n = pycds_name_get(ar, i);
	if (n->off % 8 || n->size % 8 || n->size < PYCDS_MIN_STR_SIZE ||
	    n->off < pool->off ||
	    !in_file(n->off - pool->off, n->size, pool->size))
		return fail(err, errlen, "names pool entry %u out of bounds", i);
	if (pycds_sum_bytes(ar->base + n->off, n->size) != n->hash)
		return fail(err, errlen, "names pool entry %u: checksum mismatch",
			    i);
	if (img && load_slot(ar, n->off + 8) + img->bias !=
			   img->expect[PYCDS_IMG_TYPE_STR])
		return fail(err, errlen, "names pool entry %u is not a str", i);
	return 0;
}

void pycds_name_relocate(const struct pycds_archive *ar, uint32_t i,
			 uint64_t bias)
{
	if (bias)
		*(uint64_t *)(ar->base + pycds_name_get(ar, i)->off + 8) += bias;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Kind of the image slot at file offset @slot in a sorted index, or 0. */
static uint32_t kind_at(const uint32_t *slots, const uint32_t *kinds,
			uint32_t n, uint64_t slot)
{
	uint32_t lo = 0, hi = n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (slots[mid] < slot)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && slots[lo] == slot ? kinds[lo] : 0;
}

static int is_type_kind(uint32_t k)
{
	return (k >= PYCDS_IMG_TYPE_STR && k <= PYCDS_IMG_TYPE_CODE) ||
	       k == PYCDS_IMG_TYPE_SLICE;
}

int pycds_module_check_deep(const struct pycds_archive *ar, uint32_t idx,
			    char *err, size_t errlen)
{
	const struct pycds_header *h = ar->hdr;
	const struct pycds_module *m = pycds_module_get(ar, idx);
	const struct pycds_image_reloc *images;
	const struct pycds_fixup *f;
	const uint32_t *relocs;
	uint32_t *pairs, *slots, *kinds, i, n;
	int ret = 0;

	if (!m)
		return fail(err, errlen, "module %u does not exist", idx);
	images = pycds_ptr(ar, h->images_off);
	images += m->image_first;
	n = m->image_count;
	pairs = malloc(((size_t)n + 1) * 2 * sizeof(uint32_t));
	slots = malloc(((size_t)n + 1) * sizeof(uint32_t));
	kinds = malloc(((size_t)n + 1) * sizeof(uint32_t));
	if (!pairs || !slots || !kinds) {
		ret = fail(err, errlen, "out of memory");
		goto out;
	}
	/* Sort (slot, kind) pairs by slot: qsort on 8-byte records keyed by
	 * their first word. */
	for (i = 0; i < n; i++) {
		pairs[2 * i] = images[i].slot;
		pairs[2 * i + 1] = images[i].kind;
	}
	qsort(pairs, n, 2 * sizeof(uint32_t), cmp_u32);
	for (i = 0; i < n; i++) {
		slots[i] = pairs[2 * i];
		kinds[i] = pairs[2 * i + 1];
		if (i && slots[i] == slots[i - 1]) {
			ret = fail(err, errlen,
				   "module %u: image slot %u listed twice", idx,
				   slots[i]);
			goto out;
		}
	}
	/* Every object a pointer reaches starts with a type the archive
	 * may hold, and the root is a code object. */
	relocs = pycds_ptr(ar, h->relocs_off);
	relocs += m->reloc_first;
	for (i = 0; i < m->reloc_count; i++) {
		uint64_t target = load_slot(ar, relocs[i]) - h->preferred_base;

		/* The one pointer to a non-object: a frozenset's table, to
		 * its own small table or to the array after it. */
		if (kind_at(slots, kinds, n,
			    (uint64_t)relocs[i] - PYCDS_SET_TABLE_OFF + 8) ==
		    PYCDS_IMG_TYPE_FROZENSET)
			continue;
		/* And a 3.11 str's wchar_t view, to its own data. */
		if (h->interp.hexversion < 0x030c0000 &&
		    kind_at(slots, kinds, n,
			    (uint64_t)relocs[i] - PYCDS_STR311_WSTR_OFF + 8) ==
			    PYCDS_IMG_TYPE_STR &&
		    target == (uint64_t)relocs[i] - PYCDS_STR311_WSTR_OFF +
				      PYCDS_STR311_COMPACT_SIZE)
			continue;
		if (!is_type_kind(kind_at(slots, kinds, n, target + 8))) {
			ret = fail(err, errlen,
				   "module %u: relocation %u does not point to an object",
				   idx, i);
			goto out;
		}
	}
	if (kind_at(slots, kinds, n, m->root + 8) != PYCDS_IMG_TYPE_CODE) {
		ret = fail(err, errlen, "module %u: root is not a code object",
			   idx);
		goto out;
	}
	f = pycds_ptr(ar, h->fsets_off);
	f += m->fset_first;
	for (i = 0; i < m->fset_count; i++) {
		uint64_t target = load_slot(ar, f[i].slot) - h->preferred_base;

		if (kind_at(slots, kinds, n, target + 8) !=
		    PYCDS_IMG_TYPE_FROZENSET) {
			ret = fail(err, errlen,
				   "module %u: frozenset fixup %u does not point to a frozenset",
				   idx, i);
			goto out;
		}
	}
out:
	free(pairs);
	free(slots);
	free(kinds);
	return ret;
}

void pycds_module_relocate(const struct pycds_archive *ar, uint32_t idx,
			   uint64_t bias)
{
	const struct pycds_header *h = ar->hdr;
	const struct pycds_module *m = pycds_module_get(ar, idx);
	uint8_t *base = (uint8_t *)ar->base;
	uint64_t delta = (uint64_t)ar->delta;
	const uint32_t *relocs = pycds_ptr(ar, h->relocs_off);
	const struct pycds_image_reloc *images = pycds_ptr(ar, h->images_off);
	uint32_t i;

	if (delta) {
		relocs += m->reloc_first;
		for (i = 0; i < m->reloc_count; i++)
			*(uint64_t *)(base + relocs[i]) += delta;
	}
	if (bias) {
		images += m->image_first;
		for (i = 0; i < m->image_count; i++)
			*(uint64_t *)(base + images[i].slot) += bias;
	}
}

