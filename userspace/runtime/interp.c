// SPDX-License-Identifier: MIT
/*
 * Identity of the running interpreter: which ELF object holds its types,
 * that object's build ID and load bias, and the facts about object layout
 * an archive depends on.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "pycds_py.h"

_Static_assert(offsetof(PySetObject, table) == PYCDS_SET_TABLE_OFF,
	       "frozenset table offset");

struct find_ctx {
	uintptr_t anchor;
	struct pycds_image *img;
	int found;
};

static void note_build_id(struct pycds_image *img, const uint8_t *p,
			  size_t len)
{
	while (len >= sizeof(ElfW(Nhdr))) {
		const ElfW(Nhdr) *n = (const void *)p;
		size_t name = (n->n_namesz + 3) & ~3u;
		size_t desc = (n->n_descsz + 3) & ~3u;
		size_t total = sizeof(*n) + name + desc;

		if (total > len)
			return;
		if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
		    !memcmp(p + sizeof(*n), "GNU", 4) &&
		    n->n_descsz <= sizeof(img->build_id)) {
			memcpy(img->build_id, p + sizeof(*n) + name,
			       n->n_descsz);
			img->build_id_len = n->n_descsz;
			return;
		}
		p += total;
		len -= total;
	}
}

static int find_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct find_ctx *ctx = data;
	struct pycds_image *img = ctx->img;
	int i, hit = 0;

	(void)size;
	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && ctx->anchor >= lo &&
		    ctx->anchor < lo + ph->p_memsz)
			hit = 1;
	}
	if (!hit)
		return 0;

	memset(img, 0, sizeof(*img));
	img->bias = info->dlpi_addr;
	snprintf(img->path, sizeof(img->path), "%s",
		 info->dlpi_name && *info->dlpi_name ? info->dlpi_name
						     : "(executable)");
	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W) &&
		    img->nr < 4) {
			img->lo[img->nr] = lo;
			img->hi[img->nr] = lo + ph->p_memsz;
			img->nr++;
		}
		if (ph->p_type == PT_NOTE && !img->build_id_len)
			note_build_id(img, (const uint8_t *)lo, ph->p_memsz);
	}
	ctx->found = 1;
	return 1;
}

int pycds_image_find(struct pycds_image *img)
{
	struct find_ctx ctx = {
		.anchor = (uintptr_t)&PyCode_Type,
		.img = img,
	};

	dl_iterate_phdr(find_cb, &ctx);
	if (!ctx.found || !img->build_id_len || !img->nr)
		return -ENOENT;
	return 0;
}

int pycds_image_contains(const struct pycds_image *img, const void *p)
{
	uintptr_t a = (uintptr_t)p;
	unsigned int i;

	for (i = 0; i < img->nr; i++)
		if (a >= img->lo[i] && a < img->hi[i])
			return 1;
	return 0;
}

/* Everything about object layout that archived bytes depend on. */
static uint64_t layout_hash(void)
{
	const uint64_t facts[] = {
		sizeof(void *),
		sizeof(PyObject),
		sizeof(PyVarObject),
		sizeof(PyASCIIObject),
		sizeof(PyCompactUnicodeObject),
		offsetof(PyBytesObject, ob_sval),
		PYCDS_LONG_DIGITS_OFF,
		sizeof(digit),
		PyLong_SHIFT,
		sizeof(PyFloatObject),
		sizeof(PyComplexObject),
		offsetof(PyTupleObject, ob_item),
		sizeof(PySetObject),
		offsetof(PySetObject, table),
		PySet_MINSIZE,
		sizeof(PyCodeObject),
		offsetof(PyCodeObject, co_consts),
		offsetof(PyCodeObject, co_names),
		offsetof(PyCodeObject, co_exceptiontable),
		offsetof(PyCodeObject, co_localsplusnames),
		offsetof(PyCodeObject, co_localspluskinds),
		offsetof(PyCodeObject, co_filename),
		offsetof(PyCodeObject, co_name),
		offsetof(PyCodeObject, co_qualname),
		offsetof(PyCodeObject, co_linetable),
		offsetof(PyCodeObject, co_weakreflist),
		offsetof(PyCodeObject, co_extra),
		offsetof(PyCodeObject, co_code_adaptive),
		PYCDS_GC_HEAD_SIZE,
		PYCDS_BUILT_FOR_HEX,
	};

	return XXH3_64bits(facts, sizeof(facts));
}

static int copy_attr_str(PyObject *obj, const char *attr, char *dst,
			 size_t len)
{
	PyObject *v = PyObject_GetAttrString(obj, attr);
	const char *s;
	Py_ssize_t n;

	if (!v)
		return -1;
	s = PyUnicode_AsUTF8AndSize(v, &n);
	if (!s || (size_t)n > len) {
		Py_DECREF(v);
		if (s)
			PyErr_Format(PyExc_ValueError, "%s too long", attr);
		return -1;
	}
	memset(dst, 0, len);
	memcpy(dst, s, n);
	Py_DECREF(v);
	return 0;
}

/* This process's hash of PYCDS_HASH_PROBE: the writer stores it, the
 * runtime compares.  -1 with a Python exception on error. */
Py_hash_t pycds_hash_probe(void)
{
	PyObject *probe = PyUnicode_FromString(PYCDS_HASH_PROBE);
	Py_hash_t h = probe ? PyObject_Hash(probe) : -1;

	Py_XDECREF(probe);
	return h;
}

/* Fill @id for the running interpreter.  Sets a Python exception on error. */
int pycds_interp_fill(struct pycds_interp *id, const struct pycds_image *img)
{
	PyObject *impl, *flags, *opt, *sys_abiflags;
	void *runtime;
	long optimize;

	memset(id, 0, sizeof(*id));
	/* The interpreter this runs in, not the headers it was built with
	 * (the module's import refuses any difference that matters). */
	id->hexversion = (uint32_t)Py_Version;
	id->pyc_magic = (uint32_t)PyImport_GetMagicNumber();
	impl = PySys_GetObject("implementation");	/* borrowed */
	if (!impl || copy_attr_str(impl, "cache_tag", id->cache_tag,
				   sizeof(id->cache_tag)))
		goto err;
	sys_abiflags = PySys_GetObject("abiflags");	/* borrowed */
	if (sys_abiflags) {
		const char *s = PyUnicode_AsUTF8(sys_abiflags);

		if (!s)
			goto err;
		strncpy(id->abiflags, s, sizeof(id->abiflags) - 1);
	}
	flags = PySys_GetObject("flags");		/* borrowed */
	if (!flags)
		goto err;
	opt = PyObject_GetAttrString(flags, "optimize");
	if (!opt)
		goto err;
	optimize = PyLong_AsLong(opt);
	Py_DECREF(opt);
	if (optimize < 0 && PyErr_Occurred())
		goto err;
	id->optimize = (uint32_t)optimize;
	memcpy(id->build_id, img->build_id, img->build_id_len);
	id->build_id_len = img->build_id_len;
	id->layout = layout_hash();
	runtime = dlsym(RTLD_DEFAULT, "_PyRuntime");
	id->runtime_addr = runtime ? (uint64_t)(uintptr_t)runtime - img->bias
				   : 0;
	return 0;
err:
	if (!PyErr_Occurred())
		PyErr_SetString(PyExc_RuntimeError,
				"cannot identify the interpreter");
	return -1;
}

PyTypeObject *pycds_image_type(unsigned int kind)
{
	switch (kind) {
	case PYCDS_IMG_TYPE_STR: return &PyUnicode_Type;
	case PYCDS_IMG_TYPE_BYTES: return &PyBytes_Type;
	case PYCDS_IMG_TYPE_INT: return &PyLong_Type;
	case PYCDS_IMG_TYPE_FLOAT: return &PyFloat_Type;
	case PYCDS_IMG_TYPE_COMPLEX: return &PyComplex_Type;
	case PYCDS_IMG_TYPE_TUPLE: return &PyTuple_Type;
	case PYCDS_IMG_TYPE_FROZENSET: return &PyFrozenSet_Type;
	case PYCDS_IMG_TYPE_CODE: return &PyCode_Type;
	case PYCDS_IMG_TYPE_SLICE:
		return PYCDS_HAS_SLICE_CONSTANTS ? &PySlice_Type : NULL;
	default: return NULL;
	}
}

PyObject *pycds_image_singleton(unsigned int kind)
{
	switch (kind) {
	case PYCDS_IMG_NONE: return Py_None;
	case PYCDS_IMG_TRUE: return Py_True;
	case PYCDS_IMG_FALSE: return Py_False;
	case PYCDS_IMG_ELLIPSIS: return Py_Ellipsis;
	default: return NULL;
	}
}

int pycds_image_ctx_fill(struct pycds_image_ctx *ctx,
			 const struct pycds_image *img)
{
	static PyTypeObject *const statics[] = {
		&PyUnicode_Type, &PyBytes_Type, &PyLong_Type,
		&PyFloat_Type,	 &PyComplex_Type, &PyTuple_Type,
	};
	unsigned int k;

	memset(ctx, 0, sizeof(*ctx));
	ctx->bias = img->bias;
	for (k = 1; k < PYCDS_IMG_NR_KINDS; k++) {
		void *p = pycds_image_type(k);

		if (!p)
			p = pycds_image_singleton(k);
		ctx->expect[k] = (uint64_t)(uintptr_t)p;
	}
	for (k = 0; k < img->nr && k < 4; k++) {
		ctx->static_lo[k] = img->lo[k];
		ctx->static_hi[k] = img->hi[k];
	}
	ctx->nr_static = k;
	for (k = 0; k < sizeof(statics) / sizeof(statics[0]); k++)
		ctx->static_types[k] = (uint64_t)(uintptr_t)statics[k];
	ctx->nr_static_types = k;
	return 0;
}

/*
 * The Python version _pycds was compiled for, in a form the start-up hook
 * can find in the file when the extension cannot even be loaded (an
 * undefined symbol in another interpreter).
 */
__attribute__((used)) const char pycds_built_for[] =
	"pycds-built-for-python=" PY_VERSION;

static void version_str(unsigned long hex, char *out, size_t len)
{
	static const char level[] = { 'a', 'b', 'c' };
	unsigned int rl = (hex >> 4) & 0xf;

	if (rl >= 0xa && rl <= 0xc)
		snprintf(out, len, "%lu.%lu.%lu%c%lu", hex >> 24,
			 (hex >> 16) & 0xff, (hex >> 8) & 0xff,
			 level[rl - 0xa], hex & 0xf);
	else
		snprintf(out, len, "%lu.%lu.%lu", hex >> 24,
			 (hex >> 16) & 0xff, (hex >> 8) & 0xff);
}

/*
 * May this build of _pycds run in this interpreter?  It was compiled
 * against one interpreter's headers and reads and writes objects by
 * their layout.  The interpreter it is loaded into must have the same
 * minor version (the layouts differ between minor versions), the exact
 * version if either is a pre-release (layouts change between alphas and
 * betas), and the object sizes the headers gave, read from the running
 * interpreter's own type objects, so a layout changed within a series is
 * caught too.  0, or -1 with a Python ImportError naming both.
 */
int pycds_interp_compatible(void)
{
	static const struct {
		PyTypeObject *type;
		Py_ssize_t basic, item;
	} sizes[] = {
		{ &PyCode_Type, offsetof(PyCodeObject, co_code_adaptive), 2 },
		{ &PyUnicode_Type, sizeof(PyUnicodeObject), 0 },
		{ &PyBytes_Type, offsetof(PyBytesObject, ob_sval) + 1, 1 },
		{ &PyTuple_Type, offsetof(PyTupleObject, ob_item),
		  sizeof(PyObject *) },
		{ &PyFloat_Type, sizeof(PyFloatObject), 0 },
		{ &PyComplex_Type, sizeof(PyComplexObject), 0 },
		{ &PySet_Type, sizeof(PySetObject), 0 },
		{ &PyFrozenSet_Type, sizeof(PySetObject), 0 },
	};
	unsigned long run = Py_Version, built = PYCDS_BUILT_FOR_HEX;
	char have[32], want[32];
	size_t i;

	version_str(run, have, sizeof(have));
	version_str(built, want, sizeof(want));
	if ((run >> 16) != (built >> 16) ||
	    (((run | built) >> 4 & 0xf) != 0xf && run != built)) {
		PyErr_Format(PyExc_ImportError,
			     "_pycds was built for Python %s, this is Python %s",
			     want, have);
		return -1;
	}
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		if (sizes[i].type->tp_basicsize == sizes[i].basic &&
		    sizes[i].type->tp_itemsize == sizes[i].item)
			continue;
		PyErr_Format(PyExc_ImportError,
			     "_pycds was built for Python %s with %s objects of "
			     "%zd+%zd bytes; this Python %s has %zd+%zd",
			     want, sizes[i].type->tp_name, sizes[i].basic,
			     sizes[i].item, have, sizes[i].type->tp_basicsize,
			     sizes[i].type->tp_itemsize);
		return -1;
	}
	return 0;
}

/*
 * Did the interpreter run @live, an archived code object, when
 * @pristine is the same object as the file holds?  Running writes the
 * bytecode's inline caches and counters (specialization, and 3.13's
 * RESUME check), and on 3.11 the warm-up counter at every call.  Nothing
 * else the process does to a code object touches those.
 */
int pycds_code_ran(const PyCodeObject *live, const PyCodeObject *pristine)
{
	size_t n = (size_t)Py_SIZE(live) * 2;	/* 16-bit code units */

	if (pycds_code_counters_ran(live, pristine))
		return 1;
	return memcmp(live->co_code_adaptive, pristine->co_code_adaptive, n) != 0;
}
