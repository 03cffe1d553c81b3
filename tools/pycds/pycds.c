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

#include "pycds.h"


const char usage_text[] =
	"usage: pycds build -o FILE [--python PATH] [--base ADDR] [--once | --layout-run]\n"
	"                   [--hash-seed N] [--on LOWER] -- CMD [ARGS...]\n"
	"       pycds build -o FILE [--python PATH] [--base ADDR] [--once | --layout-run]\n"
	"                   [--hash-seed N] [--on LOWER] -m MOD[,MOD...]\n"
	"       pycds build -o FILE [--python PATH] [--base ADDR] [--hash-seed N]\n"
	"                   [--on LOWER] --stdlib [-- CMD [ARGS...] | -m MOD[,MOD...]]\n"
	"       pycds inspect FILE [--modules]\n"
	"       pycds verify FILE [--python PATH]\n"
	"       pycds rebuild [--dry-run] FILE...\n"
	"       pycds --help | --version\n";

const char help_text[] =
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
	"  rebuild  build each FILE again from the recipe it holds: the same\n"
	"           pycds build options and command, in the same directory,\n"
	"           with the environment variables that steer imports (PATH,\n"
	"           PYTHONPATH, ...) as they were.  Only from a file owned by\n"
	"           root or the caller and writable by no one else.  A failed\n"
	"           build leaves FILE as it was.  --dry-run prints the command.\n"
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
	"  --expect-exit N    fail, writing nothing, unless the command exits\n"
	"                     with status N (pycds rebuild passes the status\n"
	"                     the archive's own build saw)\n"
	"  --modules          with inspect: list the modules\n"
	"  -n, --dry-run      with rebuild: print what would run, run nothing\n"
	"\n"
	"Use an archive with PYCDS_ARCHIVE=FILE python3 app.py, a stack of\n"
	"layers with PYCDS_ARCHIVE=LOWER:FILE (searched in that order).\n"
	"Exit status: 0 success, 1 failure, 2 usage error.\n";

int usage(void)
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

int run(char *const argv[], char *const envp[])
{
	pid_t pid = spawn(argv, envp, -1);

	return pid < 0 ? -1 : reap(pid);
}

/* run(), its stdout and stderr to /dev/null. */
int run_quiet(char *const argv[], char *const envp[])
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
char **child_env(const char *const *extra)
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
int python_check(const char *python, const char *archive)
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

/* ---- reading archives ---- */

int map_file(const char *path, struct pycds_archive *ar)
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

int check_structure(const char *path, struct pycds_archive *ar)
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

struct shown {
	int args;
};

/* pycds inspect: the recipe as a command line, then where and with what
 * environment it ran. */
static void show_entry(const char *key, size_t klen, const char *value,
		       void *arg)
{
	struct shown *s = arg;

	if (klen == 3 && !memcmp(key, "arg", 3)) {
		if (!s->args++)
			printf("recipe:          pycds build");
		putchar(' ');
		print_quoted(stdout, value);
		return;
	}
	if (s->args)
		putchar('\n');
	s->args = 0;
	if (klen == 3 && !memcmp(key, "cwd", 3))
		printf("recipe cwd:      %s\n", value);
	else if (klen == 3 && !memcmp(key, "env", 3))
		printf("recipe env:      %s\n", value);
	else if (klen == 4 && !memcmp(key, "exit", 4))
		printf("recipe exit:     the command exited with status %s\n",
		       value);
}

static int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "modules", no_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct pycds_archive ar;
	struct pycds_health health;
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
	if (h->recipe_size) {
		struct shown s = { 0 };

		pycds_recipe_each(&ar, show_entry, &s);
		if (s.args)
			putchar('\n');
	} else
		printf("recipe:          none\n");
	/* How it stands now: what pycds-loader --status reports too. */
	pycds_health(&ar, &health);
	printf("fits:            %s: %s\n",
	       health.fits > 0 ? "yes" : health.fits ? "unknown" : "no",
	       health.why);
	printf("stale modules:   %u of %u\n", health.stale, health.modules);
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
	if (!strcmp(argv[1], "rebuild"))
		return cmd_rebuild(argc - 1, argv + 1);
	fprintf(stderr, "pycds: unknown command '%s'\n", argv[1]);
	return usage();
}
