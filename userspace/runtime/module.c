// SPDX-License-Identifier: MIT
/*
 * The _pycds extension module: its method table and initialisation.
 */
#include "pycds_py.h"

static PyMethodDef pycds_methods[] = {
	{ "enable", pycds_enable, METH_O,
	  "enable(path) -> bool\n\n"
	  "Map the archive at path and serve imports from it; path may name "
	  "several layers, joined by ':' and searched in that order.  Returns "
	  "False, after one 'pycds:' line on stderr for each layer that cannot "
	  "be used, if none can." },
	{ "stats", pycds_stats, METH_NOARGS,
	  "stats() -> dict\n\n"
	  "archive, base, preferred_base, relocated, modules, hits, misses, "
	  "stale, found, relisted, rejected, error (None while the archive "
	  "is in use), size, served, and layers: a dict of the same for "
	  "each layer." },
	{ "verify", pycds_verify, METH_O,
	  "verify(path) -> None\n\n"
	  "Check every part of the archive against this interpreter; raise "
	  "ValueError with the reason if it is not sound." },
	{ "describe", pycds_describe, METH_O,
	  "describe(path) -> dict\n\n"
	  "What a layer built on the archive at path needs to know of it: "
	  "preferred_base, size, checksum, versions_first, versions_count, "
	  "on (checksum, base and size of the layer it is built on, or None) "
	  "and modules, a list of (name, origin, flags, mtime, size).  "
	  "Raises ValueError if the archive is not sound for this "
	  "interpreter." },
	{ "write", (PyCFunction)(void (*)(void))pycds_write,
	  METH_VARARGS | METH_KEYWORDS,
	  "write(path, modules, base=0x200000000000) -> (summary, left_out)\n\n"
	  "Write an archive of modules, a sequence of (name, origin, "
	  "is_package, mtime, size, code), in import order." },
	{ "_hook", pycds_hook, METH_NOARGS,
	  "Start-up hook called from 00-pycds.pth." },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef pycds_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "_pycds",
	.m_doc = "pycds runtime: serve imports from a mapped archive of "
		 "ready-made code objects.",
	.m_size = -1,
	.m_methods = pycds_methods,
};

PyMODINIT_FUNC PyInit__pycds(void)
{
	PyObject *m;

	/* Before anything else: a _pycds compiled for another interpreter
	 * must not touch this one's objects. */
	if (pycds_interp_compatible())
		return NULL;
	m = PyModule_Create(&pycds_module);
	if (!m)
		return NULL;
	if (pycds_runtime_init(m) ||
	    PyModule_AddIntConstant(m, "FORMAT_VERSION", PYCDS_FORMAT_VERSION) ||
	    PyModule_AddStringConstant(m, "DEFAULT_FILE", PYCDS_DEFAULT_FILE) ||
	    PyModule_AddObject(m, "DEFAULT_BASE",
			       PyLong_FromUnsignedLongLong(PYCDS_DEFAULT_BASE))) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
