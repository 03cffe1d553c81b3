/* SPDX-License-Identifier: MIT */
/*
 * pycds archive reader and validator.
 *
 * Plain C with no Python dependency: the runtime, the loader, the pycds tool,
 * the tests and the fuzzer all check archives with this code.  Functions
 * return 0 or -errno (-EINVAL for a malformed archive) and describe the
 * problem in the caller's error buffer; they never print.
 */
#ifndef PYCDS_READER_H
#define PYCDS_READER_H

#include <stddef.h>
#include <stdint.h>

#include "archive.h"

#define PYCDS_ERR_LEN 256
/* Smallest str object in the names pool: a 64-bit PyASCIIObject is 48
 * bytes on 3.11 and 40 on 3.12+; 48 is the 8-aligned minimum for both
 * (the header and a NUL). */
#define PYCDS_MIN_STR_SIZE 48

/* What the running interpreter expects image slots to hold, as load-time
 * addresses.  Built by the runtime; the tool checks kinds only. */
struct pycds_image_ctx {
	uint64_t bias;			/* load bias of the image */
	uint64_t expect[PYCDS_IMG_NR_KINDS]; /* addresses for exact kinds */
	/* Ranges of the image that may hold static objects. */
	uint64_t static_lo[4], static_hi[4];
	unsigned int nr_static;
	/* Allowed ob_type values for PYCDS_IMG_STATIC targets. */
	uint64_t static_types[8];
	unsigned int nr_static_types;
	/* Optional: PYCDS_STATIC_SEEN zeroed slots where the checks keep
	 * static addresses they accepted for this context (not thread-safe:
	 * one user at a time). */
	uint64_t *static_seen;
};

#define PYCDS_STATIC_SEEN 1024

struct pycds_archive {
	const uint8_t *base;		/* where the file is mapped */
	size_t size;
	const struct pycds_header *hdr;
	int64_t delta;			/* mapped base - preferred base */
};

/* Check the header: magic, version, sizes, checksum, every table inside
 * the file.  @size is the number of bytes available at @base. */
int pycds_header_check(const void *base, size_t size, char *err,
		       size_t errlen);

/* Check that the archive was made for this interpreter. */
int pycds_interp_check(const struct pycds_header *hdr,
		       const struct pycds_interp *want, char *err,
		       size_t errlen);

/* Check the index: module entries, buckets and names, and their checksum. */
int pycds_meta_check(const struct pycds_archive *ar, char *err,
		     size_t errlen);

/* Find a module by name; -1 if absent or the bucket chain is malformed. */
long pycds_index_lookup(const struct pycds_archive *ar, const char *name,
			size_t len);

const struct pycds_module *pycds_module_get(const struct pycds_archive *ar,
					    uint32_t idx);

/* Borrowed pointers into the names blob (not NUL-terminated). */
const char *pycds_module_name(const struct pycds_archive *ar,
			      const struct pycds_module *m, size_t *len);
const char *pycds_module_origin(const struct pycds_archive *ar,
				const struct pycds_module *m, size_t *len);

/*
 * Check one module before it is used: spans and table slices inside the
 * file, checksum, every slot inside its spans, every relocation target
 * inside its spans, every image slot of a known kind.  With @img, image
 * slots are also checked against the running interpreter.  The module's
 * bytes must not have been relocated yet.
 */
int pycds_module_check(const struct pycds_archive *ar, uint32_t idx,
		       const struct pycds_image_ctx *img, char *err,
		       size_t errlen);

/*
 * Deeper check of a module that passed pycds_module_check, for pycds
 * verify and the loader: every relocation lands on an object whose type
 * slot is an image slot of a type kind, the root is a code object, and
 * every frozenset fixup points to a frozenset.  O(n log n).
 */
int pycds_module_check_deep(const struct pycds_archive *ar, uint32_t idx,
			    char *err, size_t errlen);

/*
 * For pycds verify and the loader: every byte of the file outside the
 * header, the tables and the regions (alignment, and the padding a build
 * leaves before the written regions, a hole in the file) is zero, so a
 * bit flipped there is found too.  After pycds_meta_check.  With @fd (the
 * file, or -1), holes are skipped unread: on a tmpfs, reading a hole
 * through a mapping would fill it.
 */
int pycds_padding_check(const struct pycds_archive *ar, int fd, char *err,
			size_t errlen);

/*
 * Everything about the file that needs no interpreter, in order: header,
 * index, padding (@fd as for pycds_padding_check), every module with its
 * deep checks, every names pool entry; with @img, image slots against the
 * running interpreter too.  What pycds verify, the loader and the
 * runtime's verify() run.
 */
int pycds_verify_all(const struct pycds_archive *ar, int fd,
		     const struct pycds_image_ctx *img, char *err,
		     size_t errlen);

/* The offset of the first non-zero byte of @base's [at, end), or @end. */
uint64_t pycds_first_nonzero(const uint8_t *base, uint64_t at, uint64_t end);

/*
 * The first range of data (not a hole) of file @fd within [at, end), in
 * *data and *hole: returns 1, or 0 when only holes are left, or -1 when
 * the file cannot say (no @fd, or no SEEK_DATA): then take it all as data.
 */
int pycds_next_data(int fd, uint64_t at, uint64_t end, uint64_t *data,
		    uint64_t *hole);

/*
 * Check names pool entry @i before its first use: inside the pool,
 * 8-aligned, big enough for a str, its bytes matching its hash, and with
 * @img its type pointer naming str.  Before pycds_name_relocate.
 */
int pycds_name_check(const struct pycds_archive *ar, uint32_t i,
		     const struct pycds_image_ctx *img, char *err,
		     size_t errlen);

/* Add the image load bias to entry @i's type pointer. */
void pycds_name_relocate(const struct pycds_archive *ar, uint32_t i,
			 uint64_t bias);

static inline const struct pycds_name *
pycds_name_get(const struct pycds_archive *ar, uint32_t i)
{
	return (const struct pycds_name *)(ar->base +
					   ar->hdr->names_index_off) + i;
}

/* Address of names pool entry @i in this mapping. */
static inline void *pycds_name_entry(const struct pycds_archive *ar,
				     uint32_t i)
{
	return (void *)(ar->base + pycds_name_get(ar, i)->off);
}

/* Apply relocations to a checked module mapped writable at @ar->base:
 * internal slots get @ar->delta, image slots get @bias. */
void pycds_module_relocate(const struct pycds_archive *ar, uint32_t idx,
			   uint64_t bias);

/* Translate a file offset to the address it has in this mapping. */
static inline void *pycds_ptr(const struct pycds_archive *ar, uint64_t off)
{
	return (void *)(ar->base + off);
}

/* XXH3-64 of a module name, as used by the bucket table. */
uint64_t pycds_name_hash(const char *name, size_t len);

/* Human-readable name of a region or image kind. */
const char *pycds_region_name(unsigned int id);
const char *pycds_image_kind_name(unsigned int kind);

/*
 * Map @size bytes of @fd from offset 0, or anonymous memory when @fd is
 * negative, with @prot and @flags (MAP_PRIVATE or MAP_SHARED) at an
 * address that is a multiple of @align (a power of two, at least a page):
 * with 2 MiB, a huge-page tmpfs file is mapped with PMDs and anonymous
 * memory can be a transparent huge page.  The range is reserved first and
 * the mapping placed over the reservation, so nothing else is replaced.
 * Returns the mapping, or NULL with errno set.
 */
void *pycds_map_aligned(int fd, size_t size, int prot, int flags,
			size_t align);

/*
 * The recipe of an archive (struct pycds_header, recipe_off): @fn(key,
 * klen, value, arg) for each KEY=VALUE entry in order, value NUL-ended.
 * After pycds_header_check.  pycds_recipe_get: the first value for @key,
 * or NULL.
 */
void pycds_recipe_each(const struct pycds_archive *ar,
		       void (*fn)(const char *key, size_t klen,
				  const char *value, void *arg),
		       void *arg);
const char *pycds_recipe_get(const struct pycds_archive *ar, const char *key);

/* Is module @m's source as it was archived: same st_mtime seconds and
 * size?  What decides whether a process is served it or counts it stale. */
int pycds_module_fresh(const struct pycds_archive *ar,
		       const struct pycds_module *m);

/* How an archive stands against the host now (pycds_health). */
struct pycds_health {
	int fits;		/* 1: the interpreter file it was built for has
				 * the same build ID; 0: not (why says how);
				 * -1: unknown (no elf= in the recipe) */
	uint32_t modules;	/* modules it holds */
	uint32_t stale;		/* of them, sources changed or gone */
	char elf[256];		/* the interpreter file named by the recipe */
	char why[PYCDS_ERR_LEN + 64];
};

/* Fill @out for @ar, after pycds_header_check and pycds_meta_check:
 * stats every module's source and reads the ELF notes of the interpreter
 * file; returns 0. */
int pycds_health(const struct pycds_archive *ar, struct pycds_health *out);
/* The same for the archive at @path, mapped shared and read-only (its
 * header and index only: a hole in a tmpfs file stays a hole): 0, or -1
 * with fits -1 and why saying what is wrong with the file. */
int pycds_health_file(const char *path, struct pycds_health *out);

#endif /* PYCDS_READER_H */
