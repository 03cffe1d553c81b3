/* SPDX-License-Identifier: MIT */
/*
 * pycds archive format, version 4.
 *
 * An archive is a file that is mapped into a Python process as it is.  It
 * holds ready-made CPython objects (the heap) and the tables that let a
 * process check and use them lazily, one module at a time.
 *
 * All fields are little-endian and fixed width.  Offsets named *_off are
 * byte offsets from the start of the file, except a module's name_off and
 * origin_off, which are offsets into the module-names blob.  "names" is
 * that blob; the "names pool" (PYCDS_REGION_NAMES) holds interned str.  Documentation/archive-format.rst
 * describes every field; change it in the same commit as this file and bump
 * PYCDS_FORMAT_VERSION whenever the layout changes.
 *
 * This header crosses component boundaries (runtime, writer, loader, tools,
 * tests, fuzzer): it must not include Python.h.
 */
#ifndef PYCDS_ARCHIVE_H
#define PYCDS_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#define PYCDS_MAGIC		"PYCDS\0\r\n"
#define PYCDS_MAGIC_LEN		8
#define PYCDS_FORMAT_VERSION	5

/* Default preferred base: far from where the kernel places mappings. */
#define PYCDS_DEFAULT_BASE	0x200000000000ULL
#define PYCDS_PAGE_SIZE		4096u

/* An archive lies below this address, whole: the top of user space with
 * 4-level page tables on x86-64, so any process can map it there. */
#define PYCDS_BASE_LIMIT	(1ULL << 47)
/* A huge page.  The read-only part of an archive (header, index, tables,
 * cold region) comes first, from offset 0, so the 2 MiB extents it fills
 * are PMD-mapped from a huge-page tmpfs in every process. */
#define PYCDS_REGION_ALIGN	(2u << 20)

/* Heap regions, grouped by how likely a process is to write their pages
 * (the build decides; see Documentation/archive-format.rst). */
enum pycds_region_id {
	PYCDS_REGION_CODE = 0,	/* code objects a process defines */
	PYCDS_REGION_DATA = 1,	/* objects it writes: constants it pushes,
				 * tuples whose names it redirects */
	PYCDS_REGION_COLD = 2,	/* line and exception tables, local kinds:
				 * never written */
	PYCDS_REGION_IDLE = 3,	/* objects of code not expected to run */
	PYCDS_NR_REGIONS = 4,	/* regions split into per-module spans */
	PYCDS_REGION_NAMES = 4,	/* the archive-wide pool of interned str */
	PYCDS_NR_ALL_REGIONS = 5,
};

struct pycds_span {
	uint64_t off;		/* file offset */
	uint64_t size;		/* bytes */
};

/* Interpreter identity: an archive is only used by the build it was made
 * for. */
struct pycds_interp {
	uint32_t hexversion;	/* the interpreter's sys.hexversion */
	uint32_t pyc_magic;	/* importlib MAGIC_NUMBER, little-endian */
	char cache_tag[16];	/* "cpython-311", NUL-padded */
	char abiflags[8];	/* sys.abiflags, NUL-padded */
	uint8_t build_id[32];	/* GNU build ID of the ELF holding the types */
	uint32_t build_id_len;
	uint32_t optimize;	/* sys.flags.optimize the code was compiled at */
	uint64_t layout;	/* hash of object sizes/offsets of this build */
	uint64_t runtime_addr;	/* link-time address of _PyRuntime */
};

struct pycds_header {
	char magic[PYCDS_MAGIC_LEN];
	uint32_t version;
	uint32_t header_size;	/* sizeof(struct pycds_header) */
	uint64_t file_size;
	uint64_t preferred_base;
	struct pycds_interp interp;

	struct pycds_span regions[PYCDS_NR_ALL_REGIONS];

	/* The names pool: every string the compiler interned, once for the
	 * whole archive, so a string interned by one module is canonical
	 * for all.  struct pycds_name[nr_names], in increasing offset order,
	 * each describing a str object in regions[PYCDS_REGION_NAMES]. */
	uint64_t names_index_off;
	uint32_t nr_names;
	uint32_t flags;		/* PYCDS_ARCHIVE_* */
	/* Pool entries at this file offset and after, to the pool's end,
	 * are names the build expects a process to find interned already
	 * (redirected, never written): not copied ahead.  0: none. */
	uint64_t names_found_off;

	uint64_t modules_off;	/* struct pycds_module[nr_modules] */
	uint32_t nr_modules;
	uint32_t nr_buckets;	/* power of two */
	uint64_t buckets_off;	/* uint32_t[nr_buckets]: module index + 1 */
	struct pycds_span names; /* UTF-8 blob: module names, origins */
	uint64_t relocs_off;	/* uint32_t[nr_relocs]: slot offsets */
	uint64_t nr_relocs;
	uint64_t images_off;	/* struct pycds_image_reloc[nr_images] */
	uint64_t nr_images;
	uint64_t interns_off;	/* struct pycds_fixup[nr_interns] */
	uint64_t nr_interns;
	uint64_t fsets_off;	/* struct pycds_fixup[nr_fsets] */
	uint64_t nr_fsets;

	uint64_t meta_checksum;	/* XXH3-64 of modules, buckets and names */
	uint64_t header_checksum; /* XXH3-64 of this header, this field 0 */

	/* Stored hashes (pycds build --hash-seed): with PYCDS_HASHES_STORED,
	 * every str, bytes and frozenset carries its hash under
	 * PYTHONHASHSEED=hash_seed, and a process whose hash of
	 * PYCDS_HASH_PROBE differs from hash_probe must not use the archive.
	 * Without it, all three fields are zero and every cached hash is -1:
	 * the archive serves any seed. */
	uint32_t hash_flags;
	uint32_t hash_seed;
	uint64_t hash_probe;

	/* Layers.  The function versions this archive's code objects carry
	 * (3.13 and later: co_version, one each, [versions_first,
	 * versions_first + versions_count)); both zero where the interpreter
	 * gives code no version.  Layers stacked in one process must not
	 * share a version. */
	uint32_t versions_first;
	uint32_t versions_count;
	/* The layer this one was built on (pycds build --on): its header
	 * checksum, preferred base and size; all zero for an archive built
	 * on nothing.  Informational: a layer serves on its own. */
	uint64_t on_checksum;
	uint64_t on_base;
	uint64_t on_size;

	/* How it was made (pycds build; pycds rebuild runs it again): bytes
	 * at [recipe_off, recipe_off + recipe_size) of the names blob, so
	 * under meta_checksum; NUL-terminated KEY=VALUE entries (cwd=, env=,
	 * arg=: see Documentation/archive-format.rst).  Both zero: none. */
	uint64_t recipe_off;
	uint64_t recipe_size;
};

/* A standard-library layer (pycds build --stdlib): shared by programs
 * that each use a small part of it, so a process copies a 2 MiB chunk of
 * it whole only when it has asked for most of the chunk. */
#define PYCDS_ARCHIVE_STDLIB	0x1u
#define PYCDS_ARCHIVE_KNOWN	PYCDS_ARCHIVE_STDLIB

#define PYCDS_HASHES_STORED	0x1u
/* The str whose hash tells a process's seed from the archive's. */
#define PYCDS_HASH_PROBE	"pycds: hash seed probe"

#define PYCDS_MOD_PACKAGE	0x1u
/* The module came from a sourceless .pyc: origin is that file, and
 * src_mtime/src_size are its own. */
#define PYCDS_MOD_SOURCELESS	0x2u
/* Compiling the source emits warnings (a SyntaxWarning): a process serves
 * the module only where it would read a valid .pyc instead, so that where
 * the interpreter would compile it, it does, and warns. */
#define PYCDS_MOD_WARNS		0x4u
#define PYCDS_MOD_KNOWN		(PYCDS_MOD_PACKAGE | PYCDS_MOD_SOURCELESS | \
				 PYCDS_MOD_WARNS)

/*
 * One module.  Its objects lie in one span of each region, and its entries
 * in each table are one contiguous slice, so a process checks and
 * relocates a module only when it imports it.
 */
struct pycds_module {
	uint32_t name_off;	/* in the names blob */
	uint32_t name_len;
	uint32_t origin_off;	/* source path, in the names blob */
	uint32_t origin_len;
	uint32_t flags;		/* PYCDS_MOD_* */
	uint32_t reserved;
	int64_t src_mtime;	/* source st_mtime, whole seconds */
	uint64_t src_size;	/* source st_size */
	uint64_t root;		/* file offset of the module's code object */
	uint32_t span_off[PYCDS_NR_REGIONS];	/* file offset of its span */
	uint32_t span_size[PYCDS_NR_REGIONS];
	uint32_t reloc_first, reloc_count;
	uint32_t image_first, image_count;
	uint32_t intern_first, intern_count;
	uint32_t fset_first, fset_count;
	uint64_t checksum;	/* XXH3-64 of its spans and table slices */
};

/* A names pool entry.  Each is checked on its own, when a process first
 * needs it, so the cost follows the names a process uses.  Its type
 * pointer (offset 8) is a link-time address with no image-table entry:
 * the process adds its load bias when it first uses the entry.  Slots
 * pointing into the pool are intern fixups, not relocations. */
struct pycds_name {
	uint32_t off;		/* file offset of the str object */
	uint32_t size;		/* its size in bytes, a multiple of 8 */
	uint64_t hash;		/* XXH3-64 of those bytes as written */
};

/* Offset of a frozenset's table pointer in the object (PySetObject on
 * 64-bit CPython 3.11-3.13): the only archived pointer that may point
 * inside an object but a 3.11 str's wchar_t view (below).  The layout
 * hash in the header pins it. */
#define PYCDS_SET_TABLE_OFF 40

/* 3.11 only (hexversion below 0x030c0000): a 4-byte str's wchar_t view
 * (PyASCIIObject.wstr) points to its own data, which follows the
 * PyCompactUnicodeObject header.  The one other pointer inside an object. */
#define PYCDS_STR311_WSTR_OFF 40
#define PYCDS_STR311_COMPACT_SIZE 72

/* What an interpreter-image slot must point to. */
enum pycds_image_kind {
	PYCDS_IMG_TYPE_STR = 1,
	PYCDS_IMG_TYPE_BYTES,
	PYCDS_IMG_TYPE_INT,
	PYCDS_IMG_TYPE_FLOAT,
	PYCDS_IMG_TYPE_COMPLEX,
	PYCDS_IMG_TYPE_TUPLE,
	PYCDS_IMG_TYPE_FROZENSET,
	PYCDS_IMG_TYPE_CODE,
	PYCDS_IMG_NONE,
	PYCDS_IMG_TRUE,
	PYCDS_IMG_FALSE,
	PYCDS_IMG_ELLIPSIS,
	PYCDS_IMG_STATIC,	/* a static str/bytes/int/float/complex/tuple */
	PYCDS_IMG_TYPE_SLICE,	/* 3.14+: compilers fold constant slices */
	PYCDS_IMG_NR_KINDS,
};

/* A slot holding the link-time address of an object in the interpreter
 * image; a process adds its load bias (0 for a non-PIE executable). */
struct pycds_image_reloc {
	uint32_t slot;		/* file offset of the 8-byte slot */
	uint32_t kind;		/* enum pycds_image_kind */
};

/*
 * Fixups a process applies when it first uses a module.
 * interns: the slot holds the preferred-base address of names pool entry
 *	@arg; the process interns that string once and stores the canonical
 *	object (the pool's own string when it is the first) in the slot.
 * fsets: the slot holds a frozenset whose table depends on the hash seed;
 *	the process rebuilds it (@arg is 0).
 */
struct pycds_fixup {
	uint32_t slot;
	uint32_t arg;
};

_Static_assert(sizeof(struct pycds_interp) == 88, "pycds_interp size");
_Static_assert(sizeof(struct pycds_span) == 16, "pycds_span size");
_Static_assert(sizeof(struct pycds_header) == 408, "pycds_header size");
_Static_assert(offsetof(struct pycds_header, interp) == 32, "interp offset");
_Static_assert(offsetof(struct pycds_header, regions) == 120,
	       "regions offset");
_Static_assert(sizeof(struct pycds_module) == 120, "pycds_module size");
_Static_assert(sizeof(struct pycds_image_reloc) == 8, "image reloc size");
_Static_assert(sizeof(struct pycds_fixup) == 8, "fixup size");
_Static_assert(sizeof(struct pycds_name) == 16, "name size");

#endif /* PYCDS_ARCHIVE_H */
