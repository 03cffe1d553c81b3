// SPDX-License-Identifier: MIT
/*
 * The writer and the reader round trip, and relocation, in one process:
 * an embedded interpreter compiles modules and writes them with the
 * extension's writer (linked in, not imported from a file), and the
 * library reads, checks and relocates what it wrote.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "pycds/reader.h"

PyMODINIT_FUNC PyInit__pycds(void);

/* Modules with the object kinds a compiler puts in constants. */
static const char *const sources[][2] = {
	{ "wt_consts",
	  "import sys\n"
	  "INTS = (0, 1, -5, 255, 256, 2**31, -2**63, 10**40)\n"
	  "FLOATS = (0.0, -0.0, 1.5, float('inf'))\n"
	  "CPLX = 3+4j\n"
	  "BYTES = b'\\x00\\xffraw'\n"
	  "TEXT = ('ascii', 'l\\xe4tin', '\\u20ac uro', '\\U0001f600')\n"
	  "SETS = frozenset({1, 'two', (3,)})\n"
	  "def f(x, *a, k=None, **kw):\n"
	  "    if x in {1, 2, 3}:\n"
	  "        return [i * 2 for i in a]\n"
	  "    return lambda y: (x, y, k, kw)\n"
	  "class C:\n"
	  "    '''doc'''\n"
	  "    def m(self): return __class__\n" },
	{ "wt_pkg",
	  "from . import sub\n"
	  "try:\n"
	  "    import nothing_here\n"
	  "except ImportError as e:\n"
	  "    ERR = e\n"
	  "async def g():\n"
	  "    async with x as y:\n"
	  "        yield y\n" },
	{ "wt_pkg.sub", "NAME = __name__\n" },
};
#define NR_SOURCES (sizeof(sources) / sizeof(sources[0]))

static int py_started;

static void py_start(void)
{
	PyConfig config;
	PyStatus st;

	if (py_started)
		return;
	if (PyImport_AppendInittab("_pycds", PyInit__pycds) < 0)
		abort();
	PyConfig_InitIsolatedConfig(&config);
	/* The stdlib of the interpreter the extension was built for. */
	st = PyConfig_SetBytesString(&config, &config.program_name,
				     PYCDS_TEST_PYTHON);
	if (!PyStatus_Exception(st))
		st = Py_InitializeFromConfig(&config);
	PyConfig_Clear(&config);
	if (PyStatus_Exception(st))
		Py_ExitStatusException(st);
	py_started = 1;
}

/*
 * Write sources[] to @path at @base with _pycds.write(); 0 or -1 with the
 * Python exception's text in @why.
 */
static int write_archive(const char *path, unsigned long long base,
			 char *why, size_t len)
{
	PyObject *mod, *write, *mods, *res = NULL;
	unsigned int i;

	py_start();
	mod = PyImport_ImportModule("_pycds");
	write = mod ? PyObject_GetAttrString(mod, "write") : NULL;
	mods = PyList_New(0);
	for (i = 0; write && mods && i < NR_SOURCES; i++) {
		const char *name = sources[i][0];
		int pkg = !strcmp(name, "wt_pkg");
		char origin[128];
		PyObject *code, *t;

		snprintf(origin, sizeof(origin), "/nonexistent/%s%s", name,
			 pkg ? "/__init__.py" : ".py");
		code = Py_CompileString(sources[i][1], origin, Py_file_input);
		if (!code)
			break;
		t = Py_BuildValue("(ssiLKN)", name, origin, pkg,
				  (long long)1700000000 + i,
				  (unsigned long long)strlen(sources[i][1]), code);
		if (!t || PyList_Append(mods, t)) {
			Py_XDECREF(t);
			break;
		}
		Py_DECREF(t);
	}
	if (!PyErr_Occurred())
		res = PyObject_CallFunction(write, "sOK", path, mods, base);
	Py_XDECREF(mods);
	Py_XDECREF(write);
	Py_XDECREF(mod);
	if (!res) {
		PyObject *type, *value, *tb, *s;
		const char *txt;

		PyErr_Fetch(&type, &value, &tb);
		s = value ? PyObject_Str(value) : NULL;
		txt = s ? PyUnicode_AsUTF8(s) : NULL;
		snprintf(why, len, "%s", txt ? txt : "error");
		PyErr_Clear();
		Py_XDECREF(s);
		Py_XDECREF(type);
		Py_XDECREF(value);
		Py_XDECREF(tb);
		return -1;
	}
	Py_DECREF(res);
	return 0;
}

static uint8_t *slurp(const char *path, size_t *size)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) || !st.st_size) {
		close(fd);
		return NULL;
	}
	/* Private and writable, at an address of the kernel's choosing: not
	 * the preferred base, so relocation has work to do. */
	p = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return NULL;
	*size = st.st_size;
	return p;
}

FIXTURE(written) {
	char dir[64], path[96];
	uint8_t *buf;
	size_t size;
	struct pycds_archive ar;
};

FIXTURE_SETUP(written)
{
	char why[512];

	snprintf(self->dir, sizeof(self->dir), "/tmp/pycds-writer-XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	snprintf(self->path, sizeof(self->path), "%s/a.pycds", self->dir);
	ASSERT_EQ(0, write_archive(self->path, PYCDS_DEFAULT_BASE, why,
				   sizeof(why)))
		TH_LOG("write: %s", why);
	self->buf = slurp(self->path, &self->size);
	ASSERT_NE(NULL, self->buf);
	self->ar.base = self->buf;
	self->ar.size = self->size;
	self->ar.hdr = (const struct pycds_header *)self->buf;
	self->ar.delta = (int64_t)((uint64_t)(uintptr_t)self->buf -
				   self->ar.hdr->preferred_base);
}

FIXTURE_TEARDOWN(written)
{
	if (self->buf)
		munmap(self->buf, self->size);
	unlink(self->path);
	rmdir(self->dir);
}

/* What the writer wrote, the reader accepts whole, and finds again. */
TEST_F(written, reads_back)
{
	char err[PYCDS_ERR_LEN] = "";
	unsigned int i;

	ASSERT_EQ(0, pycds_header_check(self->buf, self->size, err, sizeof(err)))
		TH_LOG("%s", err);
	ASSERT_EQ(0, pycds_verify_all(&self->ar, -1, NULL, err, sizeof(err)))
		TH_LOG("%s", err);
	ASSERT_EQ(NR_SOURCES, self->ar.hdr->nr_modules);
	EXPECT_EQ(PYCDS_DEFAULT_BASE, self->ar.hdr->preferred_base);
	for (i = 0; i < NR_SOURCES; i++) {
		const char *name = sources[i][0], *s;
		long idx = pycds_index_lookup(&self->ar, name, strlen(name));
		const struct pycds_module *m;
		char origin[128];
		size_t len;

		ASSERT_LE(0, idx) TH_LOG("%s not in the index", name);
		m = pycds_module_get(&self->ar, idx);
		s = pycds_module_name(&self->ar, m, &len);
		EXPECT_EQ(strlen(name), len);
		EXPECT_EQ(0, memcmp(s, name, len));
		snprintf(origin, sizeof(origin), "/nonexistent/%s%s", name,
			 !strcmp(name, "wt_pkg") ? "/__init__.py" : ".py");
		s = pycds_module_origin(&self->ar, m, &len);
		EXPECT_EQ(strlen(origin), len);
		EXPECT_EQ(0, memcmp(s, origin, len));
		EXPECT_EQ(1700000000 + (int64_t)i, m->src_mtime);
		EXPECT_EQ(strlen(sources[i][1]), m->src_size);
		EXPECT_EQ(!strcmp(name, "wt_pkg"),
			  !!(m->flags & PYCDS_MOD_PACKAGE));
		EXPECT_LT(0U, m->reloc_count);
		EXPECT_LT(0U, m->image_count);
	}
	EXPECT_EQ(-1, pycds_index_lookup(&self->ar, "wt_absent", 9));
}

/* The same input gives the same bytes. */
TEST_F(written, deterministic)
{
	char path[128], why[512];
	uint8_t *again;
	size_t size;

	snprintf(path, sizeof(path), "%s/b.pycds", self->dir);
	ASSERT_EQ(0, write_archive(path, PYCDS_DEFAULT_BASE, why, sizeof(why)))
		TH_LOG("write: %s", why);
	again = slurp(path, &size);
	unlink(path);
	ASSERT_NE(NULL, again);
	EXPECT_EQ(self->size, size);
	EXPECT_EQ(0, memcmp(self->buf, again, size < self->size ? size
								  : self->size));
	munmap(again, size);
}

/*
 * Relocated to where it is mapped, every internal slot holds the same
 * file offset from the new base as it held from the preferred one, image
 * slots move by the bias, and no other byte changes.
 */
TEST_F(written, relocates)
{
	const struct pycds_header *h = self->ar.hdr;
	const uint64_t bias = 0x5000;
	char err[PYCDS_ERR_LEN] = "";
	uint8_t *orig;
	uint64_t off, nslots = 0;
	uint32_t i, k;

	ASSERT_NE(0, self->ar.delta);
	orig = malloc(self->size);
	ASSERT_NE(NULL, orig);
	memcpy(orig, self->buf, self->size);
	for (i = 0; i < h->nr_modules; i++) {
		ASSERT_EQ(0, pycds_module_check(&self->ar, i, NULL, err,
						sizeof(err)))
			TH_LOG("module %u: %s", i, err);
		pycds_module_relocate(&self->ar, i, bias);
	}
	for (i = 0; i < h->nr_modules; i++) {
		const struct pycds_module *m = pycds_module_get(&self->ar, i);
		const uint32_t *relocs = pycds_ptr(&self->ar, h->relocs_off);
		const struct pycds_image_reloc *img =
			pycds_ptr(&self->ar, h->images_off);

		for (k = 0; k < m->reloc_count; k++) {
			uint32_t slot = relocs[m->reloc_first + k];
			uint64_t was, now;

			memcpy(&was, orig + slot, 8);
			memcpy(&now, self->buf + slot, 8);
			ASSERT_EQ(was - h->preferred_base,
				  now - (uint64_t)(uintptr_t)self->buf);
			ASSERT_GT(self->size, now - (uint64_t)(uintptr_t)self->buf);
			memcpy(self->buf + slot, &was, 8);
			nslots++;
		}
		for (k = 0; k < m->image_count; k++) {
			uint32_t slot = img[m->image_first + k].slot;
			uint64_t was, now;

			memcpy(&was, orig + slot, 8);
			memcpy(&now, self->buf + slot, 8);
			ASSERT_EQ(was + bias, now);
			memcpy(self->buf + slot, &was, 8);
			nslots++;
		}
	}
	EXPECT_LT(0ULL, (unsigned long long)nslots);
	/* With every slot put back, nothing else was touched. */
	for (off = 0; off < self->size; off++)
		if (orig[off] != self->buf[off])
			break;
	EXPECT_EQ(self->size, off) TH_LOG("byte %llu changed",
					  (unsigned long long)off);
	free(orig);
}

/* A path that cannot be written fails the write and leaves no file. */
TEST(unwritable)
{
	char why[512] = "";

	ASSERT_EQ(-1, write_archive("/nonexistent/dir/x.pycds",
				    PYCDS_DEFAULT_BASE, why, sizeof(why)));
	EXPECT_NE(0, why[0]);
	EXPECT_NE(0, access("/nonexistent/dir/x.pycds", F_OK));
}

/* A base that is not page-aligned, or beyond the limit, is refused. */
TEST(bad_base)
{
	char why[512] = "";

	ASSERT_EQ(-1, write_archive("/tmp/pycds-writer-never.pycds",
				    PYCDS_DEFAULT_BASE + 8, why, sizeof(why)));
	EXPECT_NE(NULL, strstr(why, "base")) TH_LOG("%s", why);
	ASSERT_EQ(-1, write_archive("/tmp/pycds-writer-never.pycds",
				    PYCDS_BASE_LIMIT, why, sizeof(why)));
	EXPECT_NE(0, access("/tmp/pycds-writer-never.pycds", F_OK));
}

TEST_HARNESS_MAIN
