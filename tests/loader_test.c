// SPDX-License-Identifier: MIT
/*
 * The loader's staging: a good archive is published whole and read-only;
 * a damaged, truncated or unreadable one is refused and the archive
 * already published stays as it was.  Archives come from `pycds build`
 * ($PYCDS, $PYCDS_PYTHON, as make check sets them); staging sets the
 * owner to root, so the tests need root.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "loader.h"

static uint8_t *read_all(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p = NULL;
	long n;

	if (f && !fseek(f, 0, SEEK_END) && (n = ftell(f)) > 0 &&
	    !fseek(f, 0, SEEK_SET) && (p = malloc(n)) &&
	    fread(p, 1, n, f) == (size_t)n)
		*size = n;
	else {
		free(p);
		p = NULL;
	}
	if (f)
		fclose(f);
	return p;
}

static int write_all(const char *path, const uint8_t *p, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	int ok;

	if (fd < 0)
		return -1;
	ok = write(fd, p, size) == (ssize_t)size;
	return close(fd) || !ok ? -1 : 0;
}

FIXTURE(stage) {
	char dir[64], out[80], src[96], bad[96];
	int dirfd;
	uint8_t *good;
	size_t size;
};

FIXTURE_SETUP(stage)
{
	const char *tool = getenv("PYCDS"), *py = getenv("PYCDS_PYTHON");
	char cmd[1024];

	self->dirfd = -1;
	self->good = NULL;
	if (geteuid())
		SKIP(return, "needs root (staging makes root the owner)");
	if (!tool || !py)
		SKIP(return, "needs PYCDS and PYCDS_PYTHON (run by make check)");
	/* A tmpfs, as the loader's mount is. */
	snprintf(self->dir, sizeof(self->dir), "/dev/shm/pycds-stage-XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	snprintf(self->out, sizeof(self->out), "%s/out", self->dir);
	ASSERT_EQ(0, mkdir(self->out, 0755));
	snprintf(self->src, sizeof(self->src), "%s/src.pycds", self->dir);
	snprintf(self->bad, sizeof(self->bad), "%s/bad.pycds", self->dir);
	snprintf(cmd, sizeof(cmd),
		 "env -u PYCDS_ARCHIVE PYTHONNOUSERSITE=1 '%s' build -o '%s' "
		 "--python '%s' -m json >/dev/null", tool, self->src, py);
	ASSERT_EQ(0, system(cmd)) TH_LOG("%s", cmd);
	self->good = read_all(self->src, &self->size);
	ASSERT_NE(NULL, self->good);
	self->dirfd = open(self->out, O_RDONLY | O_DIRECTORY);
	ASSERT_LE(0, self->dirfd);
}

FIXTURE_TEARDOWN(stage)
{
	char cmd[128];

	if (self->dirfd >= 0)
		close(self->dirfd);
	free(self->good);
	if (self->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", self->dir);
		if (system(cmd))
			TH_LOG("could not remove %s", self->dir);
	}
}

/* Staged and published: the same bytes, read-only, no temporary name. */
TEST_F(stage, publishes)
{
	char err[256] = "", path[128];
	struct stat st, again;
	uint8_t *got;
	size_t size;

	ASSERT_EQ(0, loader_stage(self->dirfd, self->src, "a.pycds", err,
				  sizeof(err)))
		TH_LOG("%s", err);
	snprintf(path, sizeof(path), "%s/a.pycds", self->out);
	got = read_all(path, &size);
	ASSERT_NE(NULL, got);
	ASSERT_EQ(self->size, size);
	EXPECT_EQ(0, memcmp(self->good, got, size));
	free(got);
	ASSERT_EQ(0, stat(path, &st));
	EXPECT_EQ(0444U, st.st_mode & 07777);
	EXPECT_EQ(0U, st.st_uid);
	/* Only the published name is left. */
	snprintf(path, sizeof(path), "ls -A '%s' | grep -qvx a.pycds",
		 self->out);
	EXPECT_NE(0, system(path));
	/* Republished over itself: a new inode, the old one untouched for
	 * the processes that map it. */
	ASSERT_EQ(0, loader_stage(self->dirfd, self->src, "a.pycds", err,
				  sizeof(err)))
		TH_LOG("%s", err);
	snprintf(path, sizeof(path), "%s/a.pycds", self->out);
	ASSERT_EQ(0, stat(path, &again));
	EXPECT_NE(st.st_ino, again.st_ino);
}

/* A changed byte anywhere, or a cut, is refused, and what was published
 * under the name stays as it was. */
TEST_F(stage, damage_keeps_published)
{
	char err[256], path[128];
	struct stat before, after;
	const size_t at[] = { 9, 200, self->size / 3, self->size / 2,
			      self->size * 2 / 3, self->size - 1 };
	uint8_t *copy, *got;
	size_t size;
	unsigned int i;
	int ret;

	ASSERT_EQ(0, loader_stage(self->dirfd, self->src, "a.pycds", err,
				  sizeof(err)))
		TH_LOG("%s", err);
	snprintf(path, sizeof(path), "%s/a.pycds", self->out);
	ASSERT_EQ(0, stat(path, &before));
	copy = malloc(self->size);
	ASSERT_NE(NULL, copy);
	for (i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		memcpy(copy, self->good, self->size);
		copy[at[i]] ^= 0x5a;
		ASSERT_EQ(0, write_all(self->bad, copy, self->size));
		err[0] = '\0';
		ret = loader_stage(self->dirfd, self->bad, "a.pycds", err,
				   sizeof(err));
		EXPECT_GT(0, ret) TH_LOG("byte %zu changed and accepted", at[i]);
		EXPECT_NE(0, err[0]);
	}
	/* Truncated: half, and one byte short. */
	ASSERT_EQ(0, write_all(self->bad, self->good, self->size / 2));
	EXPECT_GT(0, loader_stage(self->dirfd, self->bad, "a.pycds", err,
				  sizeof(err)));
	ASSERT_EQ(0, write_all(self->bad, self->good, self->size - 1));
	EXPECT_GT(0, loader_stage(self->dirfd, self->bad, "a.pycds", err,
				  sizeof(err)));
	free(copy);
	ASSERT_EQ(0, stat(path, &after));
	EXPECT_EQ(before.st_ino, after.st_ino);
	got = read_all(path, &size);
	ASSERT_NE(NULL, got);
	ASSERT_EQ(self->size, size);
	EXPECT_EQ(0, memcmp(self->good, got, size));
	free(got);
}

/* What is not a readable regular file is refused with its reason. */
TEST_F(stage, not_a_file)
{
	char err[256] = "", path[128];

	EXPECT_EQ(-EINVAL, loader_stage(self->dirfd, self->dir, "d.pycds",
					err, sizeof(err)));
	EXPECT_NE(NULL, strstr(err, "not a regular file")) TH_LOG("%s", err);
	snprintf(path, sizeof(path), "%s/none.pycds", self->dir);
	EXPECT_EQ(-ENOENT, loader_stage(self->dirfd, path, "n.pycds", err,
					sizeof(err)));
	ASSERT_EQ(0, write_all(self->bad, self->good, 10));
	EXPECT_EQ(-EINVAL, loader_stage(self->dirfd, self->bad, "s.pycds",
					err, sizeof(err)));
	EXPECT_NE(NULL, strstr(err, "too short")) TH_LOG("%s", err);
	snprintf(path, sizeof(path), "ls -A '%s' | grep -q .", self->out);
	EXPECT_NE(0, system(path)) TH_LOG("a refused archive left a file");
}

/* Leftovers of a killed loader go; published archives stay. */
TEST_F(stage, cleans_stale)
{
	char err[256], path[128];

	ASSERT_EQ(0, loader_stage(self->dirfd, self->src, "a.pycds", err,
				  sizeof(err)))
		TH_LOG("%s", err);
	snprintf(path, sizeof(path), "%s/.a.pycds.4242.new", self->out);
	ASSERT_EQ(0, write_all(path, self->good, 64));
	loader_clean_stale(self->dirfd);
	EXPECT_NE(0, access(path, F_OK));
	snprintf(path, sizeof(path), "%s/a.pycds", self->out);
	EXPECT_EQ(0, access(path, F_OK));
}

TEST_HARNESS_MAIN
