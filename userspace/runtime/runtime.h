/* SPDX-License-Identifier: MIT */
/*
 * The _pycds runtime's private header.  A process has one stack of
 * layers (PYCDS_ARCHIVE=A:B:...), searched in order; each layer is a
 * session: one archive in use and what the process did with it, passed by
 * pointer to every function that reads or changes it.  What each file
 * owns:
 *
 *   session.c   the stack and its sessions: enable (open, check, map),
 *               stats, verify, the .pth hook
 *   map.c       opening, trusting and mapping an archive; its header,
 *               identity and hash-seed checks; the one-line reports
 *   memory.c    what the process copies and when: prefaulting, huge
 *               pages, the padding hole
 *   names.c     the names pool: resolving and interning its strings
 *   prepare.c   a module on first use: checks, relocation, fixups; the
 *               body copies of 3.11
 *   loader.c    get_code of the stock file loaders, as served from the
 *               archive
 *   finder.c    PathFinder.find_spec, answered without bytecode for the
 *               modules the layers hold
 *   prefetch.c  the read-ahead (io_uring, posix_fadvise)
 *   layout.c    what a layout run of `pycds build` reports at exit
 */
#ifndef PYCDS_RUNTIME_H
#define PYCDS_RUNTIME_H

#include <sys/types.h>
#include <linux/types.h>

#include "pycds_py.h"
#include "pycds/probes.h"
#include "lib/table.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif

enum mod_state { MOD_NEW = 0, MOD_READY, MOD_BAD };

/* PYCDS_PREFETCH policies. */
enum prefetch { PREFETCH_NONE = 0, PREFETCH_SYNC, PREFETCH_URING };

/* PYCDS_PREFAULT policies. */
enum prefault { PF_NONE = 0, PF_READ, PF_WRITE, PF_HUGE };

/*
 * The unit of a huge page.  Where a 2 MiB chunk of the archive is mostly
 * spans the process writes anyway, one private huge page holding a copy of
 * it costs about 0.2 ms here (read straight from the page cache into it),
 * against about 3.7 ms for the same 512 pages copied on write one by one
 * by MADV_POPULATE_WRITE and then touched (measured on this kind of
 * machine, where each new 4 KiB mapping costs a few microseconds).
 */
#define HUGE_CHUNK (2u << 20)

enum chunk_state { CHUNK_UNSEEN = 0, CHUNK_PENDING, CHUNK_COPIED, CHUNK_MAPPED };

struct io_uring;

/* Helpers of the import bootstrap finder.c checks are unchanged. */
#define PYCDS_FS_HELPERS 5

/* Layers one process stacks at most. */
#define PYCDS_MAX_LAYERS 8

/* One layer: an archive and what this process did with it. */
struct pycds_session {
	int enabled;			/* mapped and checked at start */
	int damaged;			/* a module failed its checks */
	char *path;
	struct pycds_archive ar;
	uint8_t *map;
	size_t map_size;
	uint8_t *state;			/* enum mod_state, per module */
	dev_t dev;			/* the file mapped */
	ino_t ino;
	struct pycds_image_ctx ctx;
	/* memory.c */
	int prefault;			/* enum prefault */
	int thp;			/* huge pages: -1 not asked yet, 0, 1 */
	uint8_t *huge;			/* enum chunk_state, per 2 MiB */
	uint32_t *asked;		/* bytes prefaulted, per 2 MiB */
	/* prefetch.c */
	struct io_uring *ring;		/* the prefetch in flight, or NULL */
	pid_t ring_pid;			/* the process that submitted it */
	int prefetch;			/* enum prefetch actually used */
	/* names.c.  Pool entries resolved: one bit each.  A resolved entry
	 * that is interned is the canonical string; the others, found
	 * interned already, point to it through the redirects (few: a few
	 * kB where a pointer per entry cost each process 70 kB for
	 * stdlib6). */
	uint8_t *resolved;
	uint8_t *chunks;		/* names pool chunks prefaulted */
	struct pycds_table redirects;	/* idx + 1 -> PyObject * */
	/* pycds-top reads these from the process's memory (their address
	 * is the last argument of archive__mapped). */
	struct pycds_counters ctr;
	unsigned long long interned, redirected, prepare_ns;
	unsigned long long huge_chunks;	/* chunks copied into huge pages */
	PyObject *error;		/* str, or NULL while in use */
	PyObject *served;		/* list of the names served, or NULL */
	uint8_t *served_bits;		/* one bit per module: in served */
};

/* The process's layers, and what is the process's own. */
struct pycds_stack {
	int enabled;			/* some layer is in use */
	int verbose;
	char *spec;			/* PYCDS_ARCHIVE's value, or enable()'s */
	unsigned int nr;		/* layers named */
	struct pycds_session layer[PYCDS_MAX_LAYERS];
	/* What get_code answered, whichever layer served: pycds-top reads
	 * these from the process's memory (archive__mapped gives their
	 * address). */
	struct pycds_counters ctr;
	unsigned long long enable_ns;	/* the last enable(): every layer */
	struct pycds_image image;	/* the interpreter's, found once */
	int have_image;
	/* Statics of the interpreter the image checks found sound: one
	 * cache for every layer. */
	uint64_t static_seen[PYCDS_STATIC_SEEN];
	/* loader.c */
	PyObject *source_loader;	/* SourceFileLoader */
	PyObject *base_get_code;	/* its stock get_code */
	PyObject *pyc_loader;		/* SourcelessFileLoader */
	PyObject *pyc_get_code;		/* its stock get_code */
	PyObject *module;		/* _pycds */
	PyObject *served;		/* every layer's, in the order served */
	/* finder.c: what the stock search calls, found at install */
	int path_find_installed;	/* 1 ours, -1 left stock, 0 not yet */
	PyObject *bootstrap_dict;	/* _frozen_importlib_external's */
	PyObject *path_finder;		/* PathFinder */
	PyObject *pf_find_spec;		/* its stock find_spec's function */
	PyObject *pf_get_spec;		/* its _get_spec, as in its dict */
	PyObject *pf_importer_cache;	/* its _path_importer_cache */
	PyObject *file_finder;		/* FileFinder */
	PyObject *ff_find_spec;		/* its find_spec */
	PyObject *fs_str[8];		/* attribute names, interned */
	PyObject *fs_helper_str[PYCDS_FS_HELPERS];
	PyObject *fs_helper[PYCDS_FS_HELPERS];
	unsigned long long found;	/* find_spec answered here */
	unsigned long long find_relisted; /* a directory changed since listed */
};

/* session.c: the process's one stack (for entry points only: what the
 * interpreter calls without a way to pass it). */
struct pycds_stack *pycds_stack(void);

/* map.c */
void report(const char *path, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void set_error(struct pycds_session *rt, const char *path, const char *msg);
int trust_check(int fd, char *err, size_t errlen);
char *default_spec(const char *path);
int env_choice(const char *path, const char *var, const char *const *names,
	       int dflt);
void *archive_map(const char *path, int fixed, int prot,
		  struct pycds_archive *ar, int *keep_fd, struct stat *kept,
		  char *err, size_t errlen);
int archive_check(const struct pycds_archive *ar,
		  const struct pycds_image *img, char *err, size_t errlen);
int hash_seed_check(struct pycds_session *rt, char *err, size_t errlen);

/* memory.c */
void prefault(struct pycds_session *rt, uint64_t off, uint64_t size,
	      int write);
int prefault_policy(struct pycds_session *rt);
void padding_keep_hole(struct pycds_session *rt);

/* names.c */
PyObject *name_resolved(struct pycds_session *rt, uint32_t idx);
PyObject *name_resolve(struct pycds_session *rt, uint32_t idx, char *err,
		       size_t errlen);
int name_became_canonical(struct pycds_session *rt, uint32_t idx);
int names_prepare(struct pycds_session *rt, char *err, size_t errlen);
int names_keep_at_exit(struct pycds_session *rt);

/* prepare.c */
PyObject *module_prepare(struct pycds_session *rt, uint32_t idx,
			 const char *name);
PyObject *served_code(PyObject *code);

/* loader.c */
int import_machinery(struct pycds_stack *st);
int install_get_code(struct pycds_stack *st);

/* finder.c */
int install_find_spec(struct pycds_stack *st);

/* prefetch.c */
void prefetch_start(struct pycds_session *rt, int fd, size_t size);
void prefetch_end(struct pycds_session *rt);

#endif /* PYCDS_RUNTIME_H */
