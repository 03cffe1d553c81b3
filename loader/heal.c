// SPDX-License-Identifier: MIT
/*
 * Healing: archives in the source directory that no longer fit the
 * interpreter installed now (an upgrade or a rebuild of it) or whose
 * modules' sources changed are built again with `pycds rebuild`, from the
 * recipe each holds.  The rebuilt file is renamed into the source
 * directory, which the loader watches: it is then staged, checked and
 * published like any new archive.  A failed rebuild changes nothing: the
 * published archive stays, and the loader says why.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loader.h"
#include "pycds/reader.h"

/* A rebuild that failed is tried again when its source file changes, on
 * SIGHUP, or after this long. */
#define RETRY_SECONDS 3600
#define MAX_FAILED 64

static struct failed {
	char name[NAME_MAX + 1];
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
	time_t when;
} failed[MAX_FAILED];
static unsigned int nr_failed;

static struct failed *failed_find(const char *name)
{
	unsigned int i;

	for (i = 0; i < nr_failed; i++)
		if (!strcmp(failed[i].name, name))
			return &failed[i];
	return NULL;
}

static void failed_forget(const char *name)
{
	struct failed *f = failed_find(name);

	if (f)
		*f = failed[--nr_failed];
}

static void failed_note(const char *name, const struct stat *st)
{
	struct failed *f = failed_find(name);

	if (!f) {
		if (nr_failed == MAX_FAILED)
			return;
		f = &failed[nr_failed++];
	}
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->dev = st->st_dev;
	f->ino = st->st_ino;
	f->mtime = st->st_mtim;
	f->when = time(NULL);
}

/* Did a rebuild of this very file fail a short while ago? */
static int failed_recently(const char *name, const struct stat *st)
{
	struct failed *f = failed_find(name);

	return f && f->dev == st->st_dev && f->ino == st->st_ino &&
	       f->mtime.tv_sec == st->st_mtim.tv_sec &&
	       f->mtime.tv_nsec == st->st_mtim.tv_nsec &&
	       time(NULL) - f->when < RETRY_SECONDS;
}

/* The pycds tool: @given, else the one installed next to this loader,
 * else "pycds" as PATH finds it. */
static const char *tool_path(const char *given)
{
	static char path[PATH_MAX];
	ssize_t n;
	char *slash;

	if (given)
		return given;
	n = readlink("/proc/self/exe", path, sizeof(path) - 8);
	if (n > 0) {
		path[n] = '\0';
		slash = strrchr(path, '/');
		if (slash) {
			strcpy(slash + 1, "pycds");
			if (!access(path, X_OK))
				return path;
		}
	}
	return "pycds";
}

static int run_rebuild(const char *tool, const char *path)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (!pid) {
		char *const argv[] = { "pycds", "rebuild", (char *)path, NULL };
		sigset_t none;

		/* The loader blocks the signals it reads from a signalfd. */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* Its lines go to our stderr: the journal. */
		dup2(STDERR_FILENO, STDOUT_FILENO);
		if (strchr(tool, '/'))
			execv(tool, argv);
		else
			execvp(tool, argv);
		fprintf(stderr, "pycds-loader: cannot run %s: %s\n", tool,
			strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) && !WEXITSTATUS(status) ? 0 : -1;
}

int loader_heal(const char *src, const char *tool, int retry,
		void (*log)(const char *fmt, ...))
{
	struct dirent **list;
	int n, i, rebuilt = 0;

	n = scandir(src, &list, NULL, alphasort);
	if (n < 0) {
		log("failed to read %s: %s", src, strerror(errno));
		return 0;
	}
	tool = tool_path(tool);
	for (i = 0; i < n; i++) {
		const char *name = list[i]->d_name;
		size_t l = strlen(name);
		struct pycds_health h;
		char path[PATH_MAX], why[PYCDS_ERR_LEN + 128];
		struct stat st;

		if (name[0] == '.' || l <= 6 || strcmp(name + l - 6, ".pycds"))
			goto next;
		snprintf(path, sizeof(path), "%s/%s", src, name);
		if (stat(path, &st) || pycds_health_file(path, &h))
			goto next;	/* the publish reports damaged files */
		if (h.fits && !h.stale) {
			failed_forget(name);
			goto next;
		}
		if (!retry && failed_recently(name, &st))
			goto next;
		if (!h.fits)
			snprintf(why, sizeof(why), "does not fit the interpreter (%s)",
				 h.why);
		else
			snprintf(why, sizeof(why), "%u of its %u modules stale",
				 h.stale, h.modules);
		log("%s: %s: rebuilding it from its recipe", path, why);
		if (run_rebuild(tool, path)) {
			failed_note(name, &st);
			log("%s: the rebuild failed; keeping the published archive%s",
			    path, h.fits ? "" :
			    ", which serves nothing until it is rebuilt");
			goto next;
		}
		failed_forget(name);
		log("%s: rebuilt", path);
		rebuilt++;
next:
		free(list[i]);
	}
	free(list);
	return rebuilt;
}
