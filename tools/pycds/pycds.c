// SPDX-License-Identifier: MIT
/*
 * pycds: build, inspect and verify pycds archives.
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

#include "pycds/reader.h"

#define DEFAULT_PYTHON "/usr/bin/python3"

extern char **environ;

static const char usage_text[] =
	"usage: pycds build -o FILE [--python PATH] [--base ADDR] [--once | --layout-run]\n"
	"                   [--hash-seed N] [--on LOWER] -- CMD [ARGS...]\n"
	"       pycds build -o FILE [--python PATH] [--base ADDR] [--once | --layout-run]\n"
	"                   [--hash-seed N] [--on LOWER] -m MOD[,MOD...]\n"
	"       pycds build -o FILE [--python PATH] [--base ADDR] [--hash-seed N]\n"
	"                   [--on LOWER] --stdlib [-- CMD [ARGS...] | -m MOD[,MOD...]]\n"
	"       pycds inspect FILE [--modules]\n"
	"       pycds verify FILE [--python PATH]\n"
	"       pycds --help | --version\n";

static const char help_text[] =
	"\n"
	"Build an archive of ready-made CPython code objects, show what one\n"
	"holds, or check that one is sound for an interpreter.\n"
	"\n"
	"commands:\n"
	"  build    run CMD with a recorder that notes every module it imports\n"
	"           from source (or import the modules named with -m and all\n"
	"           they import), then compile those sources, without running\n"
	"           them, into FILE.  The same inputs give the same bytes.\n"
	"           The recorder uses an audit hook: the command's own trace\n"
	"           and profile functions, threads and children are untouched.\n"
	"           A bare start (PATH -c pass) is recorded too: the modules\n"
	"           every process imports first are laid out first.\n"
	"           Then a layout run: CMD runs again, quietly, with a first\n"
	"           archive, to see which names the process had interned\n"
	"           before the archive's and which functions it ran; objects\n"
	"           a process writes are laid out together.  There is no\n"
	"           layout run with --once, or when the recorded run took\n"
	"           more than 10 s (a test suite, say) unless --layout-run.\n"
	"  inspect  print the header, interpreter, preferred base, regions and\n"
	"           module count; --modules lists every module.\n"
	"  verify   check everything: header, index, checksums, every table\n"
	"           entry, zeros in the padding, and that the archive fits\n"
	"           the interpreter.  Exit 0 if sound, 1 with the reason if not.\n"
	"\n"
	"options:\n"
	"  -o, --output FILE  archive to write (replaced atomically)\n"
	"  --python PATH      interpreter the archive is for (default "
	DEFAULT_PYTHON ")\n"
	"  --base ADDR        preferred base address (default 0x200000000000)\n"
	"  -m MOD[,MOD...]    modules to import instead of a command\n"
	"  --once             run CMD once: no layout run (see below)\n"
	"  --layout-run       do the layout run even when CMD took long\n"
	"  --hash-seed N      store the hashes of str, bytes and frozenset\n"
	"                     constants for PYTHONHASHSEED=N (0-4294967295);\n"
	"                     the archive then serves only processes run\n"
	"                     with that seed.  Default: no hashes, any seed.\n"
	"  --stdlib           every pure-Python module of the interpreter's\n"
	"                     standard library (its test suites left out):\n"
	"                     the host-wide lower layer.  With a command (or\n"
	"                     -m), what it imports of the standard library\n"
	"                     is laid out first, from its runs, and nothing\n"
	"                     else it imports is archived\n"
	"  --on LOWER         a layer to stack on the archive LOWER\n"
	"                     (PYCDS_ARCHIVE=LOWER:FILE): the modules LOWER\n"
	"                     serves, from the same sources, are left out;\n"
	"                     the preferred base is the next 2 MiB boundary\n"
	"                     above LOWER's range, and function versions\n"
	"                     follow LOWER's.  The layout run runs with\n"
	"                     LOWER under the new layer.\n"
	"  --modules          with inspect: list the modules\n"
	"\n"
	"Use an archive with PYCDS_ARCHIVE=FILE python3 app.py, a stack of\n"
	"layers with PYCDS_ARCHIVE=LOWER:FILE (searched in that order).\n"
	"Exit status: 0 success, 1 failure, 2 usage error.\n";

static int usage(void)
{
	fputs(usage_text, stderr);
	return 2;
}

/* ---- running children ---- */

/* Start @argv with @envp, its stdout on @out_fd (or ours if -1). */
static pid_t spawn(char *const argv[], char *const envp[], int out_fd)
{
	pid_t pid = fork();

	if (pid < 0) {
		fprintf(stderr, "pycds: failed to fork: %s\n", strerror(errno));
		return -1;
	}
	if (!pid) {
		if (out_fd >= 0)
			dup2(out_fd, 1);
		if (out_fd == -2) {
			/* Quiet, and never waiting on a terminal: stdin,
			 * stdout and stderr on /dev/null. */
			int null = open("/dev/null", O_RDWR);

			if (null >= 0) {
				dup2(null, 0);
				dup2(null, 1);
				dup2(null, 2);
			}
		}
		execvpe(argv[0], argv, envp);
		fprintf(stderr, "pycds: failed to run %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	return pid;
}

/* Its exit status, or 128 + the signal that killed it, or -1. */
static int reap(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static int run(char *const argv[], char *const envp[])
{
	pid_t pid = spawn(argv, envp, -1);

	return pid < 0 ? -1 : reap(pid);
}

/* run(), its stdout and stderr to /dev/null. */
static int run_quiet(char *const argv[], char *const envp[])
{
	pid_t pid = spawn(argv, envp, -2);

	return pid < 0 ? -1 : reap(pid);
}

/* Run @argv, keeping up to @len - 1 bytes of its stdout in @out. */
static int run_capture(char *const argv[], char *const envp[], char *out,
		       size_t len)
{
	char sink[256];
	size_t got = 0;
	ssize_t n;
	int fds[2];
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC))
		return -1;
	pid = spawn(argv, envp, fds[1]);
	close(fds[1]);
	if (pid < 0) {
		close(fds[0]);
		return -1;
	}
	/* Read to the end, so the child never blocks on a full pipe. */
	for (;;) {
		char *to = got < len - 1 ? out + got : sink;
		size_t room = got < len - 1 ? len - 1 - got : sizeof(sink);

		n = read(fds[0], to, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (to != sink)
			got += (size_t)n;
	}
	out[got] = '\0';
	close(fds[0]);
	return reap(pid);
}

/* environ without the variables pycds reacts to, plus @extra (NULL-ended).
 * PYCDS_ARCHIVE is set and empty unless @extra sets it: off, so that no
 * step runs from an older archive, not even the host-wide default. */
static char **child_env(const char *const *extra)
{
	size_t n = 0, k = 0, i;
	int archive = 0;
	char **env;

	while (environ[n])
		n++;
	for (i = 0; extra[i]; i++)
		archive |= !strncmp(extra[i], "PYCDS_ARCHIVE=", 14);
	env = calloc(n + i + 2, sizeof(*env));
	if (!env)
		return NULL;
	for (i = 0; i < n; i++) {
		if (!strncmp(environ[i], "PYCDS_ARCHIVE=", 14) ||
		    !strncmp(environ[i], "PYCDS_RECORD=", 13) ||
		    !strncmp(environ[i], "PYTHONHASHSEED=", 15))
			continue;
		env[k++] = environ[i];
	}
	for (i = 0; extra[i]; i++)
		env[k++] = (char *)extra[i];
	if (!archive)
		env[k++] = "PYCDS_ARCHIVE=";
	env[k] = NULL;
	return env;
}

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
 * Python that imports the _pycds the interpreter would import and says in
 * one line why not: not installed, or built for another interpreter (its
 * own check at import, or an undefined symbol when the loader cannot even
 * link it: then the version it names in the file).  Then, with an
 * argument, verifies that archive.
 */
static const char check_py[] =
	"import sys\n"
	"try:\n"
	"    import _pycds\n"
	"except ImportError as e:\n"
	"    m = str(e).splitlines()[0] if str(e) else type(e).__name__\n"
	"    if isinstance(e, ModuleNotFoundError):\n"
	"        m = f'_pycds is not installed (run: make install PYTHON={sys.executable})'\n"
	"    elif '_pycds was built for' not in m:\n"
	"        try:\n"
	"            b = open(e.path, 'rb').read()\n"
	"            i = b.find(b'pycds-built-for-python=')\n"
	"            v = b[i + 23:b.index(b'\\0', i)].decode()\n"
	"            if i >= 0 and v != sys.version.split()[0]:\n"
	"                m = f'_pycds was built for Python {v}, this is Python {sys.version.split()[0]}: {m}'\n"
	"        except Exception:\n"
	"            pass\n"
	"    print(f'pycds: {sys.executable}: {m}', file=sys.stderr)\n"
	"    sys.exit(1)\n"
	"if len(sys.argv) > 1:\n"
	"    try:\n"
	"        _pycds.verify(sys.argv[1])\n"
	"    except (ValueError, OSError) as e:\n"
	"        print(f'pycds: {sys.argv[1]}: {e}', file=sys.stderr)\n"
	"        sys.exit(1)\n"
	"print('pycds-verified')\n";

/* 0 if @python imports a _pycds built for it (and, with @archive, finds
 * that archive sound); else it has said why in one line. */
static int python_check(const char *python, const char *archive)
{
	const char *none[] = { NULL };
	char **env = child_env(none);
	char *const vargv[] = { (char *)python, "-c", (char *)check_py,
				(char *)archive, NULL };
	char out[64];
	int ret;

	if (!env)
		return -1;
	ret = run_capture(vargv, env, out, sizeof(out));
	free(env);
	/* Only the interpreter that ran the check can vouch for it. */
	if (!ret && strcmp(out, "pycds-verified\n")) {
		fprintf(stderr,
			"pycds: %s did not run the check: is it a Python interpreter?\n",
			python);
		ret = 1;
	}
	return ret ? -1 : 0;
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

static int cmd_build(int argc, char **argv)
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
	fd = mkstemp(record);
	if (fd < 0) {
		fprintf(stderr, "pycds: failed to create a record file: %s\n",
			strerror(errno));
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
	if (status)
		fprintf(stderr,
			"pycds: the command exited with status %d; building from what it imported\n",
			status);

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
		char *bargv[20];
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
		bargv[k++] = "--unrecorded";
		bargv[k++] = unrecorded;
		bargv[k++] = record;
		bargv[k] = NULL;
		ret = run(bargv, env) ? 1 : 0;
	}
	free(env);
out:
	unlink(record);
	if (st_fd >= 0)
		unlink(startup);
	if (!once)
		unlink(layout);
	return ret;
}

/* ---- reading archives ---- */

static int map_file(const char *path, struct pycds_archive *ar)
{
	struct stat st;
	void *p;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st)) {
		fprintf(stderr, "pycds: failed to open %s: %s\n", path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || !st.st_size) {
		fprintf(stderr, "pycds: %s: not a regular, non-empty file\n", path);
		close(fd);
		return -1;
	}
	p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		fprintf(stderr, "pycds: failed to map %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	ar->base = p;
	ar->size = st.st_size;
	ar->hdr = p;
	ar->delta = 0;
	return 0;
}

static int check_structure(const char *path, struct pycds_archive *ar)
{
	char err[PYCDS_ERR_LEN];
	int fd, bad;

	/* The descriptor lets the check skip holes unread (a published
	 * archive's padding on a tmpfs, which reading would fill). */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	bad = pycds_verify_all(ar, fd, NULL, err, sizeof(err));
	if (fd >= 0)
		close(fd);
	if (bad) {
		fprintf(stderr, "pycds: %s: %s\n", path, err);
		return -1;
	}
	return 0;
}

static void print_hex(const uint8_t *p, size_t n)
{
	while (n--)
		printf("%02x", *p++);
}

static int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "modules", no_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pycds_archive ar;
	const struct pycds_header *h;
	char err[PYCDS_ERR_LEN];
	int c, list = 0;
	uint32_t i, packages = 0;
	unsigned int r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'M': list = 1; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: return usage();
		}
	}
	if (optind + 1 != argc)
		return usage();
	if (map_file(argv[optind], &ar))
		return 1;
	if (pycds_header_check(ar.base, ar.size, err, sizeof(err)) ||
	    pycds_meta_check(&ar, err, sizeof(err))) {
		fprintf(stderr, "pycds: %s: %s\n", argv[optind], err);
		return 1;
	}
	h = ar.hdr;
	for (i = 0; i < h->nr_modules; i++)
		packages += !!(pycds_module_get(&ar, i)->flags & PYCDS_MOD_PACKAGE);
	printf("archive:         %s\n", argv[optind]);
	printf("format:          %u\n", h->version);
	printf("size:            %llu bytes\n", (unsigned long long)h->file_size);
	printf("interpreter:     Python %u.%u.%u (hexversion 0x%08x), cache tag %.16s, abiflags '%.8s', optimize %u\n",
	       h->interp.hexversion >> 24, (h->interp.hexversion >> 16) & 0xff,
	       (h->interp.hexversion >> 8) & 0xff, h->interp.hexversion,
	       h->interp.cache_tag, h->interp.abiflags, h->interp.optimize);
	printf("build id:        ");
	print_hex(h->interp.build_id,
		  h->interp.build_id_len < 32 ? h->interp.build_id_len : 32);
	printf("\npreferred base:  0x%llx\n",
	       (unsigned long long)h->preferred_base);
	for (r = 0; r < PYCDS_NR_REGIONS; r++)
		printf("region %-8s offset 0x%llx, %llu bytes\n",
		       pycds_region_name(r), (unsigned long long)h->regions[r].off,
		       (unsigned long long)h->regions[r].size);
	if (h->hash_flags & PYCDS_HASHES_STORED)
		printf("hashes:          stored for PYTHONHASHSEED=%u\n",
		       (unsigned int)h->hash_seed);
	else
		printf("hashes:          none stored (any PYTHONHASHSEED)\n");
	if (h->flags & PYCDS_ARCHIVE_STDLIB)
		printf("layer:           the standard library's (--stdlib)\n");
	if (h->on_checksum)
		printf("built on:        the layer at 0x%llx-0x%llx (header checksum %016llx)\n",
		       (unsigned long long)h->on_base,
		       (unsigned long long)(h->on_base + h->on_size),
		       (unsigned long long)h->on_checksum);
	else
		printf("built on:        nothing (a lowest layer, or a single archive)\n");
	if (h->versions_count)
		printf("code versions:   0x%x-0x%x\n", h->versions_first,
		       h->versions_first + h->versions_count - 1);
	printf("modules:         %u (%u packages)\n", h->nr_modules, packages);
	printf("names pool:      %u strings, offset 0x%llx, %llu bytes\n",
	       h->nr_names,
	       (unsigned long long)h->regions[PYCDS_REGION_NAMES].off,
	       (unsigned long long)h->regions[PYCDS_REGION_NAMES].size);
	printf("relocations:     %llu internal, %llu image, %llu intern, %llu frozenset\n",
	       (unsigned long long)h->nr_relocs, (unsigned long long)h->nr_images,
	       (unsigned long long)h->nr_interns,
	       (unsigned long long)h->nr_fsets);
	if (list) {
		for (i = 0; i < h->nr_modules; i++) {
			const struct pycds_module *m = pycds_module_get(&ar, i);
			size_t nl, ol;
			const char *n = pycds_module_name(&ar, m, &nl);
			const char *o = pycds_module_origin(&ar, m, &ol);

			printf("  %-40.*s %.*s%s%s%s\n", (int)nl, n, (int)ol, o,
			       m->flags & PYCDS_MOD_PACKAGE ? " (package)" : "",
			       m->flags & PYCDS_MOD_SOURCELESS ? " (sourceless)"
							       : "",
			       m->flags & PYCDS_MOD_WARNS ? " (compile warns)"
							  : "");
		}
	}
	munmap((void *)ar.base, ar.size);
	return 0;
}

static int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "python", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *python = DEFAULT_PYTHON;
	struct pycds_archive ar;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': python = optarg; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: return usage();
		}
	}
	if (optind + 1 != argc)
		return usage();
	if (map_file(argv[optind], &ar))
		return 1;
	ret = check_structure(argv[optind], &ar);
	munmap((void *)ar.base, ar.size);
	if (ret)
		return 1;

	/* Image pointers and identity can only be checked by the
	 * interpreter the archive is for, with a _pycds built for it. */
	if (python_check(python, argv[optind]))
		return 1;
	printf("%s: sound for %s\n", argv[optind], python);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		fputs(usage_text, stdout);
		fputs(help_text, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("pycds %s, archive format %d\n", PYCDS_VERSION, PYCDS_FORMAT_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "build"))
		return cmd_build(argc - 1, argv + 1);
	if (!strcmp(argv[1], "inspect"))
		return cmd_inspect(argc - 1, argv + 1);
	if (!strcmp(argv[1], "verify"))
		return cmd_verify(argc - 1, argv + 1);
	fprintf(stderr, "pycds: unknown command '%s'\n", argv[1]);
	return usage();
}
