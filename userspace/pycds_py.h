/* SPDX-License-Identifier: MIT */
/*
 * Private header of the _pycds extension: what its files share.  Never
 * installed, never included outside userspace/.
 */
#ifndef PYCDS_PY_H
#define PYCDS_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pycds/archive.h"
#include "pycds/reader.h"
#include "compat/compat.h"

/* Size of the GC header in front of tuples and frozensets (3.11-3.13). */
#define PYCDS_GC_HEAD_SIZE 16

/* A module or class body: code that is not a function's. */
#define PYCDS_IS_BODY(co) (!(((PyCodeObject *)(co))->co_flags & CO_OPTIMIZED))

/* The interpreter image: the ELF object that holds the types. */
struct pycds_image {
	uint64_t bias;			/* load bias (0 for non-PIE) */
	uint64_t lo[4], hi[4];		/* writable segments, load-time */
	unsigned int nr;
	uint8_t build_id[32];
	uint32_t build_id_len;
	char path[256];
};

/* runtime/interp.c */
int pycds_image_find(struct pycds_image *img);
int pycds_interp_fill(struct pycds_interp *id, const struct pycds_image *img);
int pycds_image_ctx_fill(struct pycds_image_ctx *ctx,
			 const struct pycds_image *img);
int pycds_image_contains(const struct pycds_image *img, const void *p);
PyObject *pycds_image_singleton(unsigned int kind);
PyTypeObject *pycds_image_type(unsigned int kind);
Py_hash_t pycds_hash_probe(void);
int pycds_interp_compatible(void);
int pycds_code_ran(const PyCodeObject *live, const PyCodeObject *pristine);

/* writer/record.c */
void pycds_record_start(const char *path);
int pycds_record_layout_at_exit(void);

/* writer/writer.c */
PyObject *pycds_write(PyObject *self, PyObject *args, PyObject *kwds);

/* The host-wide default: one line in PYCDS_ARCHIVE's syntax, used when
 * PYCDS_ARCHIVE is unset (tools/mkpth.py names the same path). */
#define PYCDS_DEFAULT_FILE "/etc/pycds/archive"

/* runtime/session.c, runtime/layout.c */
PyObject *pycds_enable(PyObject *self, PyObject *arg);
PyObject *pycds_stats(PyObject *self, PyObject *noargs);
PyObject *pycds_hook(PyObject *self, PyObject *noargs);
PyObject *pycds_verify(PyObject *self, PyObject *arg);
PyObject *pycds_describe(PyObject *self, PyObject *arg);
PyObject *pycds_layout_lines(void);
int pycds_runtime_init(PyObject *module);

#endif /* PYCDS_PY_H */
