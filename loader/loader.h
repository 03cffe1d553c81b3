/* SPDX-License-Identifier: MIT */
/* pycds-loader internals shared between its files. */
#ifndef PYCDS_LOADER_H
#define PYCDS_LOADER_H

#include <stddef.h>
#include <stdint.h>

/* Copy @src into the directory @dirfd as @name: staged, checked, renamed.
 * Returns 0 or -errno with a reason in @err; the published file under
 * @name is untouched on failure. */
int loader_stage(int dirfd, const char *src, const char *name, char *err,
		 size_t errlen);

/* Structural check of an archive open at @fd, with the runtime's
 * validator: header, index, every module, every pool entry. */
int loader_verify_fd(int fd, uint64_t size, char *err, size_t errlen);

/* Remove hidden temporary names a killed loader may have left. */
void loader_clean_stale(int dirfd);

/*
 * heal.c: run `pycds rebuild` (@tool, or the pycds installed beside the
 * loader) for each archive in @src that no longer fits the interpreter or
 * has stale modules; the rebuilt file lands in @src for the watch to
 * publish.  A failed rebuild is not tried again for that same file for
 * an hour unless @retry.  Says what it does with @log; returns how many
 * it rebuilt.
 */
int loader_heal(const char *src, const char *tool, int retry,
		void (*log)(const char *fmt, ...));

#endif /* PYCDS_LOADER_H */
