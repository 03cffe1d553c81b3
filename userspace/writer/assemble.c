// SPDX-License-Identifier: MIT
/*
 * Assembling the file: the regions and tables laid out for the preferred
 * base, the header, the checksums (userspace/lib), and the publish.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "writer.h"

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

/*
 * The names a process will find interned already (the build's
 * preinterned set: interned by the interpreter, or by a layer under this
 * one) go last in the pool, from a page boundary: their strings are
 * redirected, not interned, so their pages are never written and the
 * runtime does not copy them ahead (names_found_off).  The rest go
 * first, the names most of the layout run's processes interned before the
 * others (name_uses), then in first-use order.  Renumbers the entries and the slots that name
 * them.  Returns the region offset where the found ones begin (the
 * region's length if none), or -1 with an exception.
 */
struct rank {
	uint32_t uses;
	uint32_t idx;
};

/* Most used first; first use breaks ties. */
static int rank_cmp(const void *a, const void *b)
{
	const struct rank *x = a, *y = b;

	if (x->uses != y->uses)
		return x->uses > y->uses ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static long pool_order(struct writer *w)
{
	struct wbuf *pool = &w->region[PYCDS_REGION_NAMES];
	size_t n = w->nr_pool, i, j, k = 0, len = 0;
	uint32_t *perm = NULL, *off = NULL, *size = NULL;
	uint8_t *found = NULL, *buf = NULL;
	struct rank *order = NULL;
	PyObject *key, *val;
	Py_ssize_t pos = 0;
	long start = -1;
	int pass;

	if ((!w->preinterned && !w->name_uses) || !n)
		return (long)pool->len;
	perm = calloc(n, sizeof(*perm));
	off = calloc(n, sizeof(*off));
	size = calloc(n, sizeof(*size));
	found = calloc(n, 1);
	buf = calloc(1, pool->len + PYCDS_PAGE_SIZE);
	order = calloc(n, sizeof(*order));
	if (!perm || !off || !size || !found || !buf || !order) {
		PyErr_NoMemory();
		goto out;
	}
	for (i = 0; i < n; i++)
		order[i].idx = (uint32_t)i;
	while (PyDict_Next(w->pool, &pos, &key, &val)) {
		size_t idx = PyLong_AsSize_t(val);
		int in = w->preinterned ? PySet_Contains(w->preinterned, key) : 0;
		PyObject *u = w->name_uses ? PyDict_GetItemWithError(w->name_uses,
								    key)
					   : NULL;
		long uses = u ? PyLong_AsLong(u) : 0;

		if (idx >= n || in < 0 || uses < 0) {
			PyErr_Clear();
			continue;
		}
		found[idx] = (uint8_t)in;
		order[idx].uses = uses > UINT32_MAX ? UINT32_MAX : (uint32_t)uses;
	}
	PyErr_Clear();
	qsort(order, n, sizeof(*order), rank_cmp);
	for (pass = 0; pass < 2; pass++) {
		if (pass) {
			len = (len + PYCDS_PAGE_SIZE - 1) &
			      ~(size_t)(PYCDS_PAGE_SIZE - 1);
			start = (long)len;
		}
		for (j = 0; j < n; j++) {
			/* The found ones keep their first-use order. */
			i = pass ? j : order[j].idx;
			if (found[i] != pass)
				continue;
			memcpy(buf + len, pool->p + w->pool_off[i], w->pool_size[i]);
			perm[i] = (uint32_t)k;
			off[k] = (uint32_t)len;
			size[k++] = w->pool_size[i];
			len += w->pool_size[i];
		}
	}
	if ((size_t)start == len) {
		/* None found: no padding either. */
		len = k ? off[k - 1] + size[k - 1] : 0;
		start = (long)len;
	}
	for (i = 0; i < w->nr_slots; i++)
		if (w->slots[i].to.pool)
			w->slots[i].to.off = perm[w->slots[i].to.off];
	free(pool->p);
	pool->p = buf;
	pool->len = pool->cap = len;
	buf = NULL;
	memcpy(w->pool_off, off, n * sizeof(*off));
	memcpy(w->pool_size, size, n * sizeof(*size));
out:
	free(perm);
	free(off);
	free(size);
	free(found);
	free(buf);
	free(order);
	return start;
}

/* Region @r next in the file, at a page boundary. */
static void region_next(struct layout *l, const struct writer *w,
			unsigned int r)
{
	l->region_off[r] = l->size;
	l->size = align_up(l->size + w->region[r].len, PYCDS_PAGE_SIZE);
}

static void plan(struct writer *w, struct wmodule *mods, size_t n,
		 struct layout *l)
{
	size_t i, j;

	l->names_size = (uint64_t)w->recipe.len;
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
	region_next(l, w, PYCDS_REGION_COLD);
	region_next(l, w, PYCDS_REGION_IDLE);
	/*
	 * Where the interpreter's image does not move (a non-PIE
	 * executable, load bias 0), the written regions (what a process
	 * writes, on every version: see place.c) start at a 2 MiB boundary
	 * when they fill one chunk at least 15/16: the runtime copies such a
	 * chunk into one huge page (one allocation and one read against 512
	 * page copies), and where they start is otherwise luck (jinja2_app: no
	 * chunk, 1 ms more to prepare).  The padding is a hole in the file,
	 * kept by pycds-loader and `cp`: it takes no memory, and no process
	 * maps it with a PMD.  Where the image moves, every region is
	 * written and every chunk qualifies anyway.
	 */
	if (!w->image.bias) {
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
	region_next(l, w, PYCDS_REGION_NAMES);
	region_next(l, w, PYCDS_REGION_CODE);
	region_next(l, w, PYCDS_REGION_DATA);
}

PyObject *assemble(struct writer *w, struct wmodule *mods, size_t n,
			  const char *path, uint64_t base, uint64_t end)
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
	long found_at;
	int ret;

	if (pycds_interp_fill(&id, &w->image))
		return NULL;
	found_at = pool_order(w);
	if (found_at < 0)
		return NULL;
	plan(w, mods, n, &l);
	if (l.size > UINT32_MAX) {
		PyErr_SetString(PyExc_OverflowError, "archive exceeds 4 GiB");
		return NULL;
	}
	if (l.size > end - base) {
		if (end == PYCDS_BASE_LIMIT)
			PyErr_SetString(PyExc_ValueError,
					"the archive would not end below 2^47 at that base");
		else {
			char msg[128];

			snprintf(msg, sizeof(msg),
				 "the archive (%llu bytes) would not end below "
				 "0x%llx at that base",
				 (unsigned long long)l.size,
				 (unsigned long long)end);
			PyErr_SetString(PyExc_ValueError, msg);
		}
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
			      (m->sourceless ? PYCDS_MOD_SOURCELESS : 0) |
			      (m->warns ? PYCDS_MOD_WARNS : 0);
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
#if PYCDS_CODE_VERSIONS
	h->versions_first = w->versions_first;
	h->versions_count = w->nr_code;
#endif
	h->flags = w->stdlib ? PYCDS_ARCHIVE_STDLIB : 0;
	if ((size_t)found_at < w->region[PYCDS_REGION_NAMES].len)
		h->names_found_off = l.region_off[PYCDS_REGION_NAMES] +
				     (uint64_t)found_at;
	h->on_checksum = w->on[0];
	h->on_base = w->on[1];
	h->on_size = w->on[2];
	/* The recipe after the module names and origins. */
	if (w->recipe.len) {
		memcpy(names + nameoff, w->recipe.buf, w->recipe.len);
		h->recipe_off = nameoff;
		h->recipe_size = (uint64_t)w->recipe.len;
	}
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
