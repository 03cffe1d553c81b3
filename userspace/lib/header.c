// SPDX-License-Identifier: MIT
/*
 * The header and the index: magic, version, bounds of every table, the
 * interpreter identity, module entries and the name lookup.  Every offset
 * is checked against the bytes available before it is used.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "pycds/sum.h"

int pycds__fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

int pycds_header_check(const void *base, size_t size, char *err,
		       size_t errlen)
{
	const struct pycds_header *h = base;
	unsigned int i;

	if (size < sizeof(*h))
		return fail(err, errlen, "file too short for a header (%zu bytes)",
			    size);
	if (memcmp(h->magic, PYCDS_MAGIC, PYCDS_MAGIC_LEN))
		return fail(err, errlen, "not a pycds archive (bad magic)");
	if (h->version != PYCDS_FORMAT_VERSION)
		return fail(err, errlen, "format version %u, expected %u",
			    h->version, PYCDS_FORMAT_VERSION);
	if (h->header_size != sizeof(*h))
		return fail(err, errlen, "header size %u, expected %zu",
			    h->header_size, sizeof(*h));
	/* Reserved means zero: a later format may give them meaning. */
	if (h->flags & ~PYCDS_ARCHIVE_KNOWN)
		return fail(err, errlen, "unknown archive flags 0x%x", h->flags);
	if (h->hash_flags & ~PYCDS_HASHES_STORED)
		return fail(err, errlen, "unknown hash flags 0x%x",
			    h->hash_flags);
	if (!h->hash_flags && (h->hash_seed || h->hash_probe))
		return fail(err, errlen, "hash seed fields set without stored hashes");
	if (h->file_size != size)
		return fail(err, errlen,
			    "file is %zu bytes, header says %llu (truncated?)",
			    size, (unsigned long long)h->file_size);
	if (pycds_sum_header(h) != h->header_checksum)
		return fail(err, errlen, "header checksum mismatch");
	if (!h->preferred_base || h->preferred_base % PYCDS_PAGE_SIZE ||
	    h->preferred_base >= PYCDS_BASE_LIMIT ||
	    h->file_size > PYCDS_BASE_LIMIT - h->preferred_base)
		return fail(err, errlen, "bad preferred base 0x%llx",
			    (unsigned long long)h->preferred_base);
	for (i = 0; i < PYCDS_NR_ALL_REGIONS; i++) {
		const struct pycds_span *r = &h->regions[i];

		if (!in_file(r->off, r->size, size) || r->off % PYCDS_PAGE_SIZE)
			return fail(err, errlen, "region %s out of bounds",
				    pycds_region_name(i));
		if (r->off < sizeof(*h) && r->size)
			return fail(err, errlen, "region %s overlaps the header",
				    pycds_region_name(i));
	}
	if (h->names_found_off &&
	    (h->names_found_off < h->regions[PYCDS_REGION_NAMES].off ||
	     h->names_found_off - h->regions[PYCDS_REGION_NAMES].off >=
		     h->regions[PYCDS_REGION_NAMES].size))
		return fail(err, errlen, "names_found_off outside the names pool");
	if (!table_fits(h->modules_off, h->nr_modules,
			sizeof(struct pycds_module), size))
		return fail(err, errlen, "module table out of bounds");
	if (!h->nr_buckets || h->nr_buckets & (h->nr_buckets - 1) ||
	    h->nr_buckets <= h->nr_modules ||
	    !table_fits(h->buckets_off, h->nr_buckets, sizeof(uint32_t), size))
		return fail(err, errlen, "bucket table malformed");
	if (!in_file(h->names.off, h->names.size, size) ||
	    h->names.size > UINT32_MAX)
		return fail(err, errlen, "names blob out of bounds");
	if (!in_file(h->recipe_off, h->recipe_size, h->names.size) ||
	    (h->recipe_size &&
	     ((const char *)base)[h->names.off + h->recipe_off +
				  h->recipe_size - 1]) ||
	    (!h->recipe_size && h->recipe_off))
		return fail(err, errlen, "recipe out of bounds or unterminated");
	if (!table_fits(h->relocs_off, h->nr_relocs, sizeof(uint32_t), size))
		return fail(err, errlen, "relocation table out of bounds");
	if (!table_fits(h->images_off, h->nr_images,
			sizeof(struct pycds_image_reloc), size))
		return fail(err, errlen, "image table out of bounds");
	if (!table_fits(h->interns_off, h->nr_interns,
			sizeof(struct pycds_fixup), size) ||
	    !table_fits(h->fsets_off, h->nr_fsets, sizeof(struct pycds_fixup),
			size))
		return fail(err, errlen, "fixup table out of bounds");
	if (!table_fits(h->names_index_off, h->nr_names,
			sizeof(struct pycds_name), size))
		return fail(err, errlen, "names index out of bounds");
	return 0;
}

int pycds_interp_check(const struct pycds_header *hdr,
		       const struct pycds_interp *want, char *err,
		       size_t errlen)
{
	const struct pycds_interp *have = &hdr->interp;

	if (have->hexversion != want->hexversion)
		return fail(err, errlen,
			    "built for Python %08x, this is %08x",
			    have->hexversion, want->hexversion);
	if (have->pyc_magic != want->pyc_magic)
		return fail(err, errlen, "bytecode magic %08x, expected %08x",
			    have->pyc_magic, want->pyc_magic);
	if (memcmp(have->cache_tag, want->cache_tag, sizeof(have->cache_tag)))
		return fail(err, errlen, "built for cache tag %.16s, this is %.16s",
			    have->cache_tag, want->cache_tag);
	if (memcmp(have->abiflags, want->abiflags, sizeof(have->abiflags)))
		return fail(err, errlen, "built for ABI flags '%.8s', this is '%.8s'",
			    have->abiflags, want->abiflags);
	if (have->build_id_len != want->build_id_len ||
	    have->build_id_len > sizeof(have->build_id) ||
	    memcmp(have->build_id, want->build_id, have->build_id_len))
		return fail(err, errlen,
			    "built for another interpreter binary (build ID differs)");
	if (have->layout != want->layout)
		return fail(err, errlen, "object layout differs from this build");
	if (have->runtime_addr != want->runtime_addr)
		return fail(err, errlen, "interpreter image layout differs");
	if (have->optimize != want->optimize)
		return fail(err, errlen,
			    "compiled at optimization level %u, process runs at %u",
			    have->optimize, want->optimize);
	return 0;
}

const struct pycds_module *pycds_module_get(const struct pycds_archive *ar,
					    uint32_t idx)
{
	const struct pycds_module *mods = pycds_ptr(ar, ar->hdr->modules_off);

	if (idx >= ar->hdr->nr_modules)
		return NULL;
	return &mods[idx];
}

const char *pycds_module_name(const struct pycds_archive *ar,
			      const struct pycds_module *m, size_t *len)
{
	*len = m->name_len;
	return pycds_ptr(ar, ar->hdr->names.off + m->name_off);
}

const char *pycds_module_origin(const struct pycds_archive *ar,
				const struct pycds_module *m, size_t *len)
{
	*len = m->origin_len;
	return pycds_ptr(ar, ar->hdr->names.off + m->origin_off);
}

int pycds__module_entry_check(const struct pycds_archive *ar, uint32_t idx,
			      char *err, size_t errlen)
{
	const struct pycds_header *h = ar->hdr;
	const struct pycds_module *m = pycds_module_get(ar, idx);
	unsigned int r;

	if (!in_file(m->name_off, m->name_len, h->names.size) || !m->name_len)
		return fail(err, errlen, "module %u: name out of bounds", idx);
	if (!in_file(m->origin_off, m->origin_len, h->names.size) ||
	    !m->origin_len)
		return fail(err, errlen, "module %u: origin out of bounds", idx);
	if (m->reserved)
		return fail(err, errlen, "module %u: reserved field not zero", idx);
	if (m->flags & ~PYCDS_MOD_KNOWN)
		return fail(err, errlen, "module %u: unknown flags 0x%x", idx,
			    m->flags);
	for (r = 0; r < PYCDS_NR_REGIONS; r++) {
		const struct pycds_span *reg = &h->regions[r];

		if (!m->span_size[r])
			continue;
		if (m->span_off[r] < reg->off || m->span_off[r] % 8 ||
		    !in_file(m->span_off[r] - reg->off, m->span_size[r],
			     reg->size))
			return fail(err, errlen,
				    "module %u: %s span outside its region", idx,
				    pycds_region_name(r));
	}
	if (!in_file(m->reloc_first, m->reloc_count, h->nr_relocs) ||
	    !in_file(m->image_first, m->image_count, h->nr_images) ||
	    !in_file(m->intern_first, m->intern_count, h->nr_interns) ||
	    !in_file(m->fset_first, m->fset_count, h->nr_fsets))
		return fail(err, errlen, "module %u: table slice out of bounds",
			    idx);
	/* In its code span, or its idle span (a body processes copy). */
	if (m->root % 8 ||
	    ((m->root < m->span_off[PYCDS_REGION_CODE] ||
	      m->root - m->span_off[PYCDS_REGION_CODE] >=
		      m->span_size[PYCDS_REGION_CODE]) &&
	     (m->root < m->span_off[PYCDS_REGION_IDLE] ||
	      m->root - m->span_off[PYCDS_REGION_IDLE] >=
		      m->span_size[PYCDS_REGION_IDLE])))
		return fail(err, errlen, "module %u: code object out of bounds",
			    idx);
	return 0;
}

int pycds_meta_check(const struct pycds_archive *ar, char *err,
		     size_t errlen)
{
	const struct pycds_header *h = ar->hdr;
	const uint32_t *buckets = pycds_ptr(ar, h->buckets_off);
	uint64_t sum;
	uint32_t i;
	int ret;

	if (pycds_sum_meta(ar->base, ar->size, &sum) || sum != h->meta_checksum)
		return fail(err, errlen, "index checksum mismatch");
	for (i = 0; i < h->nr_buckets; i++)
		if (buckets[i] > h->nr_modules)
			return fail(err, errlen, "bucket %u out of range", i);
	for (i = 0; i < h->nr_modules; i++) {
		ret = pycds__module_entry_check(ar, i, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

long pycds_index_lookup(const struct pycds_archive *ar, const char *name,
			size_t len)
{
	const struct pycds_header *h = ar->hdr;
	const uint32_t *buckets = pycds_ptr(ar, h->buckets_off);
	uint32_t mask = h->nr_buckets - 1;
	uint32_t pos = (uint32_t)pycds_name_hash(name, len) & mask;
	uint32_t n;

	for (n = 0; n < h->nr_buckets; n++, pos = (pos + 1) & mask) {
		const struct pycds_module *m;
		const char *mname;
		size_t mlen;
		uint32_t v = buckets[pos];

		if (!v)
			return -1;
		m = pycds_module_get(ar, v - 1);
		if (!m)
			return -1;
		mname = pycds_module_name(ar, m, &mlen);
		if (mlen == len && !memcmp(mname, name, len))
			return v - 1;
	}
	return -1;
}

const char *pycds_region_name(unsigned int id)
{
	static const char *const names[PYCDS_NR_ALL_REGIONS] = {
		[PYCDS_REGION_CODE] = "code",
		[PYCDS_REGION_DATA] = "data",
		[PYCDS_REGION_COLD] = "cold",
		[PYCDS_REGION_IDLE] = "idle",
		[PYCDS_REGION_NAMES] = "names",
	};

	return id < PYCDS_NR_ALL_REGIONS ? names[id] : "?";
}

const char *pycds_image_kind_name(unsigned int kind)
{
	static const char *const names[PYCDS_IMG_NR_KINDS] = {
		[PYCDS_IMG_TYPE_STR] = "str type",
		[PYCDS_IMG_TYPE_BYTES] = "bytes type",
		[PYCDS_IMG_TYPE_INT] = "int type",
		[PYCDS_IMG_TYPE_FLOAT] = "float type",
		[PYCDS_IMG_TYPE_COMPLEX] = "complex type",
		[PYCDS_IMG_TYPE_TUPLE] = "tuple type",
		[PYCDS_IMG_TYPE_FROZENSET] = "frozenset type",
		[PYCDS_IMG_TYPE_CODE] = "code type",
		[PYCDS_IMG_NONE] = "None",
		[PYCDS_IMG_TRUE] = "True",
		[PYCDS_IMG_FALSE] = "False",
		[PYCDS_IMG_ELLIPSIS] = "Ellipsis",
		[PYCDS_IMG_STATIC] = "static object",
		[PYCDS_IMG_TYPE_SLICE] = "slice type",
	};

	return kind && kind < PYCDS_IMG_NR_KINDS ? names[kind] : "?";
}

