/* SPDX-License-Identifier: MIT */
/*
 * The pycds tool's parts: the command line and children (pycds.c), build
 * (build.c), recipes and rebuild (recipe.c), inspect and verify (pycds.c).
 */
#ifndef PYCDS_TOOL_H
#define PYCDS_TOOL_H

#include <stdio.h>

#include "pycds/reader.h"

#define DEFAULT_PYTHON "/usr/bin/python3"

extern char **environ;
extern const char usage_text[], help_text[];

/* Print the usage lines to stderr; returns 2, the usage error status. */
int usage(void);

/* Run @argv with @envp and wait: its exit status, or 1 (said why) if it
 * could not run or died.  run_quiet sends its stdout to /dev/null. */
int run(char *const argv[], char *const envp[]);
int run_quiet(char *const argv[], char *const envp[]);

/* environ for a child step: see pycds.c.  Free the array, not its
 * strings. */
char **child_env(const char *const *extra);

/* 0 if @python imports a _pycds built for it (and, with @archive, finds
 * that archive sound); else it has said why in one line. */
int python_check(const char *python, const char *archive);

/* Map @path read-only and check nothing; -1 after saying why. */
int map_file(const char *path, struct pycds_archive *ar);
/* Every structural check of a mapped archive; -1 after saying why. */
int check_structure(const char *path, struct pycds_archive *ar);

/* ---- recipes (recipe.c) ---- */

/* The environment variables a recipe records, NULL-ended. */
extern const char *const recipe_env[];

/* A recipe being written: KEY=VALUE entries, each NUL-ended. */
struct recipe {
	char *p;
	size_t len, cap;
	int oom;
};

void recipe_add(struct recipe *r, const char *key, const char *v);
/* Print @s so that a POSIX shell reads it back as one word. */
void print_quoted(FILE *f, const char *s);

int cmd_build(int argc, char **argv);
int cmd_rebuild(int argc, char **argv);

#endif
