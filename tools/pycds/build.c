// SPDX-License-Identifier: MIT
/*
 * pycds build: record a command's imports, lay them out, write the archive.
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

static int find_driver(char *out, size_t len)
{
	const char *dir = getenv("PYCDS_LIBDIR");
	char exe[PATH_MAX];
	ssize_t n;

	if (dir && *dir) {
		snprintf(out, len, "%s/pycds_build.py", dir);
		return access(out, R_OK);
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		return -1;
	exe[n] = '\0';
	dir = dirname(exe);
	snprintf(out, len, "%s/pycds_build.py", dir);
	if (!access(out, R_OK))
		return 0;
	snprintf(out, len, "%s/../lib/pycds/pycds_build.py", dir);
	return access(out, R_OK);
}

/*
 * Processes of the recorded command that could not write the record (run
 * as another user) send one datagram each to this abstract socket,
 * '\0' "pycds-record:" path, so the build can say they were left out.
 */
static int refusals_open(const char *record)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(record);
	int s;

	if (n + 14 > sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path + 1, "pycds-record:", 13);
	memcpy(sa.sun_path + 14, record, n);
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return -1;
	if (bind(s, (struct sockaddr *)&sa,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 14 + n))) {
		close(s);
		return -1;
	}
	return s;
}

/* How many processes said they could not record. */
static unsigned int refusals_count(int s)
{
	unsigned int n = 0;
	char buf[128];

	if (s < 0)
		return 0;
	while (recv(s, buf, sizeof(buf), 0) >= 0)
		n++;
	close(s);
	return n;
}

/* Run the command of `pycds build`: @mods imported, or @cmd. */
static int run_command(const char *python, const char *mods,
		       char *const *cmd, char **env, int quiet)
{
	if (mods) {
		char *const margv[] = {
			(char *)python, "-c",
			"import importlib, sys\n"
			"bad = 0\n"
			"for m in sys.argv[1].split(','):\n"
			"    m = m.strip()\n"
			"    if not m:\n"
			"        continue\n"
			"    try:\n"
			"        importlib.import_module(m)\n"
			"    except Exception as e:\n"
			"        bad = 1\n"
			"        print(f'pycds: cannot import {m}: {e}', file=sys.stderr)\n"
			"sys.exit(bad)\n",
			(char *)mods, NULL,
		};

		return quiet ? run_quiet(margv, env) : run(margv, env);
	}
	return quiet ? run_quiet(cmd, env) : run(cmd, env);
}

/* A layout run repeats the command; past this the second run costs more
 * than the layout it informs is worth, unless --layout-run asks for it. */
#define LAYOUT_RUN_MAX_SECONDS 10.0

int cmd_build(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "python", required_argument, NULL, 'p' },
		{ "base", required_argument, NULL, 'b' },
		{ "modules", required_argument, NULL, 'm' },
		{ "once", no_argument, NULL, '1' },
		{ "layout-run", no_argument, NULL, 'L' },
		{ "hash-seed", required_argument, NULL, 's' },
		{ "on", required_argument, NULL, 'O' },
		{ "stdlib", no_argument, NULL, 'S' },
		{ "expect-exit", required_argument, NULL, 'E' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *output = NULL, *python = DEFAULT_PYTHON, *base = NULL;
	const char *on = NULL;
	int stdlib = 0, command;
	const char *mods = NULL;
	char record[] = "/tmp/pycds-record.XXXXXX";
	char layout[] = "/tmp/pycds-layout.XXXXXX";
	char first[] = "/tmp/pycds-first.XXXXXX";
	char startup[] = "/tmp/pycds-startup.XXXXXX";
	char recipe_path[] = "/tmp/pycds-recipe.XXXXXX";
	struct recipe rc = { 0 };
	int rc_fd = -1;
	char driver[PATH_MAX], recenv[64 + sizeof(record)];
	char stenv[64 + sizeof(startup)];
	char layenv[64 + sizeof(layout)], arenv[PATH_MAX + 64 + sizeof(first)];
	const char *rec_extra[] = { recenv, NULL };
	const char *st_extra[] = { stenv, NULL };
	const char *lay_extra[] = { layenv, arenv, NULL };
	char seedenv[32] = "PYTHONHASHSEED=0";
	const char *build_extra[] = { seedenv, NULL };
	const char *hash_seed = NULL;
	char **env = NULL, unrecorded[16] = "0";
	int expect_exit = -1;
	int c, fd, ret = 1, status, once = 0, have_layout = 0, refusals;
	int force_layout = 0, have_startup = 0, st_fd = -1;
	struct timespec t0, t1;
	double took;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+o:m:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': output = optarg; break;
		case 'p': python = optarg; break;
		case 'b': base = optarg; break;
		case 'm': mods = optarg; break;
		case '1': once = 1; break;
		case 'L': force_layout = 1; break;
		case 's': hash_seed = optarg; break;
		case 'O': on = optarg; break;
		case 'S': stdlib = 1; break;
		case 'E': {
			char *end;

			expect_exit = (int)strtol(optarg, &end, 10);
			if (*end || end == optarg || expect_exit < 0 ||
			    expect_exit > 255) {
				fprintf(stderr, "pycds: bad --expect-exit '%s'\n",
					optarg);
				return 2;
			}
			break;
		}
		case 'h': fputs(usage_text, stdout); fputs(help_text, stdout); return 0;
		default: return usage();
		}
	}
	if (once && force_layout) {
		fprintf(stderr, "pycds build: --once and --layout-run exclude each other\n");
		return usage();
	}
	if (!output) {
		fprintf(stderr, "pycds build: -o FILE is required\n");
		return usage();
	}
	if (mods && optind < argc) {
		fprintf(stderr,
			"pycds build: give either -m MOD[,MOD...] or -- CMD [ARGS...]\n");
		return usage();
	}
	command = mods || optind < argc;
	if (!command && !stdlib) {
		fprintf(stderr,
			"pycds build: give -m MOD[,MOD...], --stdlib or -- CMD [ARGS...]\n");
		return usage();
	}
	if (on && (!*on || strchr(on, ':') || strlen(on) >= PATH_MAX)) {
		fprintf(stderr,
			"pycds build: --on needs an archive's path, with no ':' in it\n");
		return 2;
	}
	if (on && access(on, R_OK)) {
		fprintf(stderr, "pycds build: --on %s: %s\n", on, strerror(errno));
		return 1;
	}
	/* --stdlib alone: the standard library is compiled, not run, and
	 * nothing is laid out but what a bare start runs. */
	if (!command && force_layout) {
		fprintf(stderr, "pycds build: --layout-run needs a command\n");
		return usage();
	}
	if (base) {
		char *end;
		unsigned long long b = strtoull(base, &end, 0);

		if (*end || !b || b % PYCDS_PAGE_SIZE || b >= PYCDS_BASE_LIMIT) {
			fprintf(stderr,
				"pycds build: --base must be a page-aligned address below 0x800000000000\n");
			return 2;
		}
	}
	if (hash_seed) {
		char *end;
		unsigned long long v;

		errno = 0;
		v = strtoull(hash_seed, &end, 10);
		if (!*hash_seed || *end || errno || v > 4294967295ULL ||
		    hash_seed[0] == '-' || hash_seed[0] == '+') {
			fprintf(stderr,
				"pycds build: --hash-seed must be an integer from 0 to 4294967295\n");
			return 2;
		}
		snprintf(seedenv, sizeof(seedenv), "PYTHONHASHSEED=%llu", v);
	}
	if (find_driver(driver, sizeof(driver))) {
		fprintf(stderr,
			"pycds: failed to find pycds_build.py next to the pycds binary\n");
		return 1;
	}
	/* Before the command runs: a _pycds that is missing, or built for
	 * another interpreter, would record nothing and write nothing. */
	if (python_check(python, NULL))
		return 1;
	/* The recipe: pycds rebuild runs this build again from it. */
	{
		char cwd[PATH_MAX];
		const char *const *e;
		int i;

		if (!getcwd(cwd, sizeof(cwd))) {
			fprintf(stderr, "pycds: getcwd: %s\n", strerror(errno));
			return 1;
		}
		recipe_add(&rc, "cwd", cwd);
		for (e = recipe_env; *e; e++)
			if (getenv(*e)) {
				char *kv;

				if (asprintf(&kv, "%s=%s", *e, getenv(*e)) < 0) {
					rc.oom = 1;
					break;
				}
				recipe_add(&rc, "env", kv);
				free(kv);
			}
		recipe_add(&rc, "arg", "--python");
		recipe_add(&rc, "arg", python);
		if (base) {
			recipe_add(&rc, "arg", "--base");
			recipe_add(&rc, "arg", base);
		}
		if (once)
			recipe_add(&rc, "arg", "--once");
		if (force_layout)
			recipe_add(&rc, "arg", "--layout-run");
		if (hash_seed) {
			recipe_add(&rc, "arg", "--hash-seed");
			recipe_add(&rc, "arg", hash_seed);
		}
		if (on) {
			recipe_add(&rc, "arg", "--on");
			recipe_add(&rc, "arg", on);
		}
		if (stdlib)
			recipe_add(&rc, "arg", "--stdlib");
		if (mods) {
			recipe_add(&rc, "arg", "--modules");
			recipe_add(&rc, "arg", mods);
		}
		if (optind < argc)
			recipe_add(&rc, "arg", "--");
		for (i = optind; i < argc; i++)
			recipe_add(&rc, "arg", argv[i]);
		rc_fd = rc.oom ? -1 : mkstemp(recipe_path);
		if (rc_fd < 0 || write(rc_fd, rc.p, rc.len) != (ssize_t)rc.len) {
			fprintf(stderr, "pycds: failed to write the recipe: %s\n",
				rc.oom ? "out of memory" : strerror(errno));
			if (rc_fd >= 0) {
				close(rc_fd);
				unlink(recipe_path);
			}
			free(rc.p);
			return 1;
		}
		close(rc_fd);
		free(rc.p);
	}
	fd = mkstemp(record);
	if (fd < 0) {
		fprintf(stderr, "pycds: failed to create a record file: %s\n",
			strerror(errno));
		unlink(recipe_path);
		return 1;
	}
	close(fd);
	snprintf(recenv, sizeof(recenv), "PYCDS_RECORD=%s", record);

	/* 1: run the command with the recorder on. */
	env = child_env(rec_extra);
	if (!env)
		goto out;
	refusals = refusals_open(record);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	status = command ? run_command(python, mods, argv + optind, env, 0) : 0;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	free(env);
	took = (double)(t1.tv_sec - t0.tv_sec) +
	       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (!once && !force_layout && took > LAYOUT_RUN_MAX_SECONDS) {
		fprintf(stderr,
			"pycds: the command took %.0f s; no layout run (--layout-run forces one)\n",
			took);
		once = 1;
	}
	snprintf(unrecorded, sizeof(unrecorded), "%u",
		 refusals_count(refusals));
	if (status < 0)
		goto out;
	if (expect_exit >= 0 && status != expect_exit) {
		fprintf(stderr,
			"pycds: the command exited with status %d where %d was expected (--expect-exit): nothing written\n",
			status, expect_exit);
		goto out;
	}
	if (status)
		fprintf(stderr,
			"pycds: the command exited with status %d; building from what it imported\n",
			status);
	/* The recipe ends with the status the command exited with: a
	 * rebuild expects it again (a program gone, or failing early,
	 * must not replace the archive with what little it imported). */
	{
		char ent[32];
		int n = snprintf(ent, sizeof(ent), "exit=%d", status) + 1;
		int rfd = open(recipe_path, O_WRONLY | O_APPEND | O_CLOEXEC);

		if (rfd < 0 || write(rfd, ent, (size_t)n) != n) {
			fprintf(stderr, "pycds: failed to write the recipe: %s\n",
				strerror(errno));
			if (rfd >= 0)
				close(rfd);
			goto out;
		}
		close(rfd);
	}

	/* A bare start of the interpreter, recorded apart: the modules
	 * every process imports before its program (sitecustomize, and
	 * linecache for -c from 3.13 on) are laid out first, their names
	 * together at the front of the pool, so that a small program
	 * copies few pages.  Without it the order is only the command's. */
	st_fd = mkstemp(startup);
	if (st_fd >= 0) {
		char *const sargv[] = { (char *)python, "-c", "pass", NULL };

		close(st_fd);
		snprintf(stenv, sizeof(stenv), "PYCDS_RECORD=%s", startup);
		env = child_env(st_extra);
		have_startup = env && run_quiet(sargv, env) == 0;
		free(env);
	}

	/* 2: the layout run: build a first archive and run the command again
	 * with it, quietly; the runtime records which archived names the
	 * process found interned already, whose slots it rewrites.  The
	 * final layout puts those with the objects a process writes. */
	if (!once) {
		int lfd = mkstemp(layout), afd = mkstemp(first);

		if (lfd >= 0)
			close(lfd);
		if (afd >= 0)
			close(afd);
		snprintf(layenv, sizeof(layenv), "PYCDS_RECORD=%s", layout);
		/* A layer runs on its lower layer, as it will. */
		snprintf(arenv, sizeof(arenv), "PYCDS_ARCHIVE=%s%s%s",
			 on ? on : "", on ? ":" : "", first);
		env = lfd >= 0 && afd >= 0 ? child_env(build_extra) : NULL;
		if (env) {
			char *fargv[14];
			int k = 0;

			fargv[k++] = (char *)python;
			fargv[k++] = driver;
			fargv[k++] = "-o";
			fargv[k++] = first;
			fargv[k++] = "--quiet";
			if (stdlib)
				fargv[k++] = "--stdlib";
			if (on) {
				fargv[k++] = "--on";
				fargv[k++] = (char *)on;
			}
			if (have_startup) {
				fargv[k++] = "--startup";
				fargv[k++] = startup;
			}
			if (base) {
				fargv[k++] = "--base";
				fargv[k++] = (char *)base;
			}
			fargv[k++] = record;
			fargv[k] = NULL;

			have_layout = run_quiet(fargv, env) == 0;
			free(env);
		}
		env = have_layout ? child_env(lay_extra) : NULL;
		if (env) {
			char *const sargv[] = { (char *)python, "-c", "pass",
						NULL };

			if (command)
				run_command(python, mods, argv + optind, env, 1);
			/* And a bare start: the code it runs (linecache's,
			 * for -c) is laid out with what processes write. */
			if (have_startup)
				run_quiet(sargv, env);
			free(env);
		}
		if (afd >= 0)
			unlink(first);
	}

	/* 3: compile what it imported, with a fixed hash seed. */
	env = child_env(build_extra);
	if (!env)
		goto out;
	{
		char *bargv[24];
		int k = 0;

		bargv[k++] = (char *)python;
		bargv[k++] = driver;
		bargv[k++] = "-o";
		bargv[k++] = (char *)output;
		if (stdlib)
			bargv[k++] = "--stdlib";
		if (on) {
			bargv[k++] = "--on";
			bargv[k++] = (char *)on;
		}
		if (have_startup) {
			bargv[k++] = "--startup";
			bargv[k++] = startup;
		}
		if (have_layout) {
			bargv[k++] = "--layout";
			bargv[k++] = layout;
		}
		if (base) {
			bargv[k++] = "--base";
			bargv[k++] = (char *)base;
		}
		if (hash_seed) {
			bargv[k++] = "--hash-seed";
			bargv[k++] = seedenv + strlen("PYTHONHASHSEED=");
		}
		bargv[k++] = "--recipe";
		bargv[k++] = recipe_path;
		bargv[k++] = "--unrecorded";
		bargv[k++] = unrecorded;
		bargv[k++] = record;
		bargv[k] = NULL;
		ret = run(bargv, env) ? 1 : 0;
	}
	free(env);
out:
	unlink(record);
	unlink(recipe_path);
	if (st_fd >= 0)
		unlink(startup);
	if (!once)
		unlink(layout);
	return ret;
}
