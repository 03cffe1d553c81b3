/* SPDX-License-Identifier: MIT */
/*
 * The archive writer's private header: what its files share.
 *
 *   writer.c    _pycds.write(): modules compiled, emitted, assembled
 *   emit.c      objects copied into the regions, their pointers as slots
 *   place.c     which region an object goes to (write likelihood)
 *   assemble.c  the file: layout, tables, header, checksums, publish
 *   record.c    the recorder of `pycds build` (not the writer proper)
 */
#ifndef PYCDS_WRITER_H
#define PYCDS_WRITER_H

#include "pycds_py.h"
#include "pycds/sum.h"
#include "lib/table.h"

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

struct writer {
	struct wbuf region[PYCDS_NR_ALL_REGIONS];
	PyObject *pool;			/* str -> names pool index */
	uint32_t *pool_off;		/* region offset of each entry */
	uint32_t *pool_size;		/* its size, 8-aligned */
	size_t nr_pool, cap_pool;
	uint32_t nr_code;		/* code objects emitted: their versions */
	uint32_t versions_first;	/* the first one's (3.13+) */
	uint64_t on[3];			/* --on: checksum, base, size */
	int stdlib;			/* --stdlib: PYCDS_ARCHIVE_STDLIB */
	struct slot *slots;
	size_t nr_slots, cap_slots;
	struct pycds_table memo;	/* per module: object -> struct ref */
	struct pycds_image image;
	PyObject *preinterned;		/* names a process interned already */
	PyObject *ran;			/* (file, first line, qualname) run */
	PyObject *name_uses;		/* name -> processes that interned it */
	struct {
		char *buf;
		size_t len;
	} recipe;			/* how it was made, or len 0 */
	struct pycds_table hot;		/* per module: objects a process writes */
	unsigned int depth;
	int hashes;			/* store hashes (--hash-seed) */
	uint32_t hash_seed;
	char why[200];			/* why a module was left out */
};

struct wmodule {
	PyObject *name, *origin;
	int is_package;
	int sourceless;
	int warns;		/* compiling the source warns */
	int64_t mtime;
	uint64_t size;
	uint32_t start[PYCDS_NR_REGIONS], end[PYCDS_NR_REGIONS];
	size_t slot_first, slot_end;
	struct ref root;
};

#define MAX_DEPTH 200

struct layout {
	uint64_t modules_off, buckets_off, names_off, relocs_off, images_off,
		interns_off, fsets_off, index_off;
	uint64_t region_off[PYCDS_NR_ALL_REGIONS], size;
	uint64_t gap_off, gap_size;	/* a hole in the file, or 0 */
	uint32_t nr_buckets;
	uint64_t names_size, nr_relocs, nr_images, nr_interns, nr_fsets;
};

/* emit.c */
int left_out(struct writer *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void memo_reset(struct writer *w);
int emit(struct writer *w, PyObject *o, unsigned int region, struct ref *out);

/* place.c */
unsigned int place(struct writer *w, PyObject *o, unsigned int region);
int seed_free(PyObject *o);
int hash_stable(struct writer *w, PyObject *o);
int rebuilt(struct writer *w, PyObject *o);
void hot_reset(struct writer *w);
int mark_code(struct writer *w, PyObject *o, int defined, int runs,
	      unsigned int depth);

/* assemble.c */
PyObject *assemble(struct writer *w, struct wmodule *mods, size_t n,
		   const char *path, uint64_t base, uint64_t end);

#endif /* PYCDS_WRITER_H */
