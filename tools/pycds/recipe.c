// SPDX-License-Identifier: MIT
/*
 * Recipes, how an archive was made (pycds build writes one into each
 * archive), and pycds rebuild, which builds an archive again from its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pycds.h"

/* ---- recipes: how an archive was made ---- */

/*
 * The environment variables that steer what a command imports: recorded
 * in the recipe as they were set, and set (or unset) so on rebuild.
 */
const char *const recipe_env[] = {
	"PATH", "PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH",
	"PYTHONNOUSERSITE", "PYTHONPLATLIBDIR", "VIRTUAL_ENV", NULL,
};


/* Append the entry KEY=VALUE. */
void recipe_add(struct recipe *r, const char *key, const char *v)
{
	size_t n = strlen(key) + 1 + strlen(v) + 1;

	if (r->oom)
		return;
	if (r->len + n > r->cap) {
		size_t cap = (r->len + n) * 2;
		char *p = realloc(r->p, cap);

		if (!p) {
			r->oom = 1;
			return;
		}
		r->p = p;
		r->cap = cap;
	}
	r->len += (size_t)sprintf(r->p + r->len, "%s=%s", key, v) + 1;
}

/* Print @s so that a POSIX shell reads it back as one word. */
void print_quoted(FILE *f, const char *s)
{
	const char *c;

	for (c = s; *c; c++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789_@%+=:,./-", *c))
			break;
	if (*s && !*c) {
		fputs(s, f);
		return;
	}
	fputc('\'', f);
	for (c = s; *c; c++) {
		if (*c == '\'')
			fputs("'\\''", f);
		else
			fputc(*c, f);
	}
	fputc('\'', f);
}

/* ---- rebuild: an archive made again from its recipe ---- */

static const char *getenv_in(char **env, size_t n, const char *name)
{
	size_t i, l = strlen(name);

	for (i = 0; i < n; i++)
		if (!strncmp(env[i], name, l) && env[i][l] == '=')
			return env[i] + l + 1;
	return NULL;
}

struct plan {
	const char *cwd;
	char **argv;		/* pycds build -o FILE ARGS..., NULL-ended */
	size_t argc;
	char **env;		/* NAME=VALUE of recipe_env, as recorded */
	size_t envc;
	const char *exit;	/* the status the command exited with */
	int oom;
};

static void plan_entry(const char *key, size_t klen, const char *value,
		       void *arg)
{
	struct plan *pl = arg;
	char ***v;
	size_t *n;

	if (klen == 3 && !memcmp(key, "cwd", 3)) {
		pl->cwd = value;
		return;
	}
	if (klen == 4 && !memcmp(key, "exit", 4)) {
		pl->exit = value;
		return;
	}
	if (klen == 3 && !memcmp(key, "arg", 3)) {
		v = &pl->argv;
		n = &pl->argc;
	} else if (klen == 3 && !memcmp(key, "env", 3)) {
		v = &pl->env;
		n = &pl->envc;
	} else {
		return;		/* a key of a later pycds: ignored */
	}
	{
		char **p = realloc(*v, (*n + 2) * sizeof(**v));

		if (!p) {
			pl->oom = 1;
			return;
		}
		*v = p;
		p[(*n)++] = (char *)value;
		p[*n] = NULL;
	}
}

/* Our environment without the recipe's variables, then the recipe's. */
static char **rebuild_env(const struct plan *pl)
{
	size_t n = 0, k = 0, i;
	char **env;
	const char *const *e;

	while (environ[n])
		n++;
	env = calloc(n + pl->envc + 1, sizeof(*env));
	if (!env)
		return NULL;
	for (i = 0; i < n; i++) {
		for (e = recipe_env; *e; e++) {
			size_t l = strlen(*e);

			if (!strncmp(environ[i], *e, l) && environ[i][l] == '=')
				break;
		}
		/* PATH stays ours where the recipe has none. */
		if (!*e || (!strcmp(*e, "PATH") &&
			    !getenv_in(pl->env, pl->envc, "PATH")))
			env[k++] = environ[i];
	}
	for (i = 0; i < pl->envc; i++)
		env[k++] = pl->env[i];
	env[k] = NULL;
	return env;
}

static int rebuild_one(const char *file, int dry_run)
{
	struct pycds_archive ar;
	struct plan pl = { 0 };
	char err[PYCDS_ERR_LEN], path[PATH_MAX];
	char **argv = NULL, **env = NULL;
	struct stat sb;
	int ret = 1, status;
	size_t i, k;
	pid_t pid;

	if (!realpath(file, path)) {
		fprintf(stderr, "pycds rebuild: %s: %s\n", file, strerror(errno));
		return 1;
	}
	if (map_file(path, &ar))
		return 1;
	if (pycds_header_check(ar.base, ar.size, err, sizeof(err)) ||
	    pycds_meta_check(&ar, err, sizeof(err))) {
		fprintf(stderr, "pycds rebuild: %s: %s\n", file, err);
		goto out;
	}
	/* The recipe is a command this runs: only from a file no one but
	 * root and the caller could have written. */
	if (stat(path, &sb) || (sb.st_uid != 0 && sb.st_uid != geteuid()) ||
	    (sb.st_mode & 022)) {
		fprintf(stderr,
			"pycds rebuild: %s: not trusted to run its recipe (owned by uid %u, mode %04o): it must be owned by root or you and not writable by group or others\n",
			file, (unsigned int)sb.st_uid,
			(unsigned int)(sb.st_mode & 07777));
		goto out;
	}
	if (!ar.hdr->recipe_size) {
		fprintf(stderr,
			"pycds rebuild: %s: holds no recipe; build it again with pycds build\n",
			file);
		goto out;
	}
	pycds_recipe_each(&ar, plan_entry, &pl);
	if (pl.oom || !pl.cwd || !pl.argc) {
		fprintf(stderr, "pycds rebuild: %s: %s\n", file,
			pl.oom ? "out of memory" : "its recipe names no command");
		goto out;
	}
	argv = calloc(pl.argc + 7, sizeof(*argv));
	env = rebuild_env(&pl);
	if (!argv || !env) {
		fprintf(stderr, "pycds rebuild: out of memory\n");
		goto out;
	}
	argv[0] = "pycds";
	argv[1] = "build";
	argv[2] = "-o";
	argv[3] = path;
	k = 4;
	if (pl.exit) {
		argv[k++] = "--expect-exit";
		argv[k++] = (char *)pl.exit;
	}
	for (i = 0; i < pl.argc; i++)
		argv[k++] = pl.argv[i];
	printf("pycds rebuild: %s: in %s:", file, pl.cwd);
	for (i = 0; i < pl.envc; i++) {
		putchar(' ');
		print_quoted(stdout, pl.env[i]);
	}
	for (i = 0; argv[i]; i++) {
		putchar(' ');
		print_quoted(stdout, argv[i]);
	}
	putchar('\n');
	fflush(stdout);
	if (dry_run) {
		ret = 0;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "pycds rebuild: fork: %s\n", strerror(errno));
		goto out;
	}
	if (!pid) {
		if (chdir(pl.cwd)) {
			fprintf(stderr, "pycds rebuild: %s: cannot enter %s: %s\n",
				file, pl.cwd, strerror(errno));
			_exit(1);
		}
		execve("/proc/self/exe", argv, env);
		fprintf(stderr, "pycds rebuild: cannot run pycds: %s\n",
			strerror(errno));
		_exit(1);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	ret = WIFEXITED(status) && !WEXITSTATUS(status) ? 0 : 1;
	if (ret)
		fprintf(stderr,
			"pycds rebuild: %s: the build failed; the archive is as it was\n",
			file);
out:
	free(argv);
	free(env);
	free(pl.argv);
	free(pl.env);
	munmap((void *)ar.base, ar.size);
	return ret;
}

int cmd_rebuild(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, i, dry_run = 0, failed = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "nh", opts, NULL)) != -1) {
		switch (c) {
		case 'n': dry_run = 1; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: return usage();
		}
	}
	if (optind == argc) {
		fprintf(stderr, "pycds rebuild: give one archive or more\n");
		return usage();
	}
	for (i = optind; i < argc; i++)
		failed += rebuild_one(argv[i], dry_run);
	if (argc - optind > 1 && !dry_run)
		printf("pycds rebuild: %d of %d archives rebuilt\n",
		       argc - optind - failed, argc - optind);
	return failed ? 1 : 0;
}
