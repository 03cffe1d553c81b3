// SPDX-License-Identifier: MIT
/*
 * The recorder behind `pycds build`: with PYCDS_RECORD=FILE in its
 * environment, a process appends to FILE the modules it imports, as it
 * imports them (include/pycds/record.h, Documentation/record-format.rst):
 *
 *	#<TAB>pid		first line of each process's records
 *	name<TAB>origin		a module loaded from source or a .pyc
 *	!<TAB>name		a module with no Python code (built in,
 *				frozen, extension), in import order
 *	__main__<TAB>path	a script run as __main__
 *
 * It listens through a C audit hook (PySys_AddAuditHook) to the "import"
 * and "exec" events, so it never competes with the program for the
 * trace and profile hooks, takes no reference to any module, adds
 * nothing to sys.meta_path, atexit or threading, and writes each batch
 * with one open-append-close, keeping no descriptor.  A process that
 * cannot open FILE (a child running as another user) stays silent and
 * unrecorded; it only sends one datagram to the build's abstract socket
 * so that the build can say how many were left out.
 *
 * In the layout run (PYCDS_ARCHIVE set as well) the process also appends,
 * at exit, what it did with the first archive (runtime/layout.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "pycds_py.h"
#include "pycds/record.h"

static struct {
	int on;
	char *path;
	PyObject *seen;			/* name -> id of the module recorded */
	Py_ssize_t last_size;		/* len(sys.modules) at the last scan */
	pid_t pid;			/* whose "#" line was written */
} rec;

/* Tell the build that this process could not record. */
static void record_refused(int err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(rec.path);
	char msg[64];
	int s;

	if (n + 14 > sizeof(sa.sun_path))
		return;
	/* Abstract name: '\0' "pycds-record:" path. */
	memcpy(sa.sun_path + 1, "pycds-record:", 13);
	memcpy(sa.sun_path + 14, rec.path, n);
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	snprintf(msg, sizeof(msg), "%d %d %d", (int)getpid(), (int)getuid(),
		 err);
	sendto(s, msg, strlen(msg), MSG_DONTWAIT, (struct sockaddr *)&sa,
	       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 14 + n));
	close(s);
}

/* Append @len bytes in one write: concurrent processes append whole
 * batches.  The file must exist (the build made it): never create one. */
static void record_append(const char *buf, size_t len)
{
	int fd;

	if (!len)
		return;
	fd = open(rec.path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		record_refused(errno);
		rec.on = 0;
		return;
	}
	if (write(fd, buf, len) < 0)
		rec.on = 0;
	close(fd);
}

static int has_tab_or_nl(const char *s)
{
	return strpbrk(s, "\t\n") != NULL;
}

/* The line for module @mod named @name, appended to @out; 1 if the
 * module is recorded for good, 0 to look at it again later. */
static int module_line(PyObject **out, PyObject *name, PyObject *mod,
		       PyObject *sfl, PyObject *pyc)
{
	PyObject *dict, *spec, *loader = NULL, *origin = NULL;
	const char *n, *o;
	int done = 1;

	if (!PyModule_Check(mod))
		return 1;
	dict = PyModule_GetDict(mod);			/* borrowed */
	n = PyUnicode_AsUTF8(name);
	if (!dict || !n || has_tab_or_nl(n))
		return 1;
	spec = PyDict_GetItemString(dict, "__spec__");	/* borrowed */
	if ((!spec || spec == Py_None) && !strcmp(n, "__main__")) {
		/* A script: its loader knows the path once it runs. */
		loader = PyDict_GetItemString(dict, "__loader__");
		if (!loader || loader == Py_None)
			return 0;
		Py_INCREF(loader);
		origin = PyObject_GetAttrString(loader, "path");
		o = origin && PyUnicode_Check(origin) ? PyUnicode_AsUTF8(origin)
						      : NULL;
		if (o && !has_tab_or_nl(o))
			PyBytes_ConcatAndDel(out, PyBytes_FromFormat(
				PYCDS_REC_MAIN "\t%s\n", o));
		goto out;
	}
	if (!spec || spec == Py_None)
		return 1;
	loader = PyObject_GetAttrString(spec, "loader");
	origin = PyObject_GetAttrString(spec, "origin");
	if (!loader || !origin)
		goto out;
	if (PyObject_TypeCheck(loader, (PyTypeObject *)sfl) ||
	    PyObject_TypeCheck(loader, (PyTypeObject *)pyc)) {
		o = PyUnicode_Check(origin) ? PyUnicode_AsUTF8(origin) : NULL;
		if (o && !has_tab_or_nl(o))
			PyBytes_ConcatAndDel(out, PyBytes_FromFormat(
				"%s\t%s\n", n, o));
	} else {
		PyBytes_ConcatAndDel(out, PyBytes_FromFormat(
			PYCDS_REC_NATIVE "\t%s\n", n));
	}
out:
	Py_XDECREF(loader);
	Py_XDECREF(origin);
	PyErr_Clear();
	return done;
}

static PyObject *bootstrap(const char *attr)
{
	PyObject *ext = PyDict_GetItemString(PyImport_GetModuleDict(),
					     "_frozen_importlib_external");

	return ext ? PyObject_GetAttrString(ext, attr) : NULL;
}

/* Record every module in sys.modules not recorded yet. */
static void record_scan(void)
{
	PyObject *modules = PyImport_GetModuleDict();	/* borrowed */
	PyObject *sfl, *pyc, *out, *k, *v;
	Py_ssize_t pos = 0;

	if (!modules || !PyDict_Check(modules))
		return;
	sfl = bootstrap("SourceFileLoader");
	pyc = bootstrap("SourcelessFileLoader");
	if (!sfl || !pyc || !PyType_Check(sfl) || !PyType_Check(pyc))
		goto out_types;
	out = PyBytes_FromStringAndSize(NULL, 0);
	rec.last_size = PyDict_Size(modules);
	while (out && PyDict_Next(modules, &pos, &k, &v)) {
		PyObject *id, *was;

		if (!PyUnicode_Check(k))
			continue;
		was = PyDict_GetItemWithError(rec.seen, k);	/* borrowed */
		if (was && PyLong_AsVoidPtr(was) == (void *)v)
			continue;
		if (!module_line(&out, k, v, sfl, pyc))
			continue;
		/* Its address, not a reference: recording must not keep a
		 * module alive. */
		id = PyLong_FromVoidPtr(v);
		if (!id || PyDict_SetItem(rec.seen, k, id) < 0) {
			Py_XDECREF(id);
			break;
		}
		Py_DECREF(id);
	}
	if (out && PyBytes_GET_SIZE(out)) {
		/* Each process's records start with its pid. */
		if (rec.pid != getpid()) {
			PyObject *head = PyBytes_FromFormat(PYCDS_REC_PROCESS "\t%d\n",
							    (int)getpid());

			PyBytes_ConcatAndDel(&head, out);
			out = head;
			rec.pid = getpid();
		}
		if (out)
			record_append(PyBytes_AS_STRING(out),
				      PyBytes_GET_SIZE(out));
	}
	Py_XDECREF(out);
out_types:
	Py_XDECREF(sfl);
	Py_XDECREF(pyc);
	PyErr_Clear();
}

static int record_audit(const char *event, PyObject *args, void *data)
{
	(void)data;
	if (!rec.on || (event[0] != 'i' && event[0] != 'e'))
		return 0;
	if (strcmp(event, "import") && strcmp(event, "exec"))
		return 0;
	/* Only the main interpreter's modules, and never with an exception
	 * pending: the hook must not change what the program sees. */
	if (PyInterpreterState_Get() != PyInterpreterState_Main() ||
	    PyErr_Occurred())
		return 0;
	if (event[0] == 'e') {
		/* A module body about to run: its module is in sys.modules.
		 * Other exec() calls only when sys.modules changed. */
		PyObject *co = args && PyTuple_Check(args) &&
					       PyTuple_GET_SIZE(args)
				       ? PyTuple_GET_ITEM(args, 0)
				       : NULL;

		if (!(co && PyCode_Check(co) &&
		      !PyUnicode_CompareWithASCIIString(
			      ((PyCodeObject *)co)->co_name, "<module>")) &&
		    PyDict_Size(PyImport_GetModuleDict()) == rec.last_size)
			return 0;
	} else if (PyDict_Size(PyImport_GetModuleDict()) == rec.last_size) {
		return 0;
	}
	record_scan();
	return 0;
}

void pycds_record_start(const char *path)
{
	if (rec.path)
		return;
	rec.path = strdup(path);
	rec.seen = PyDict_New();
	if (!rec.path || !rec.seen || PySys_AddAuditHook(record_audit, NULL)) {
		PyErr_Clear();
		return;
	}
	rec.on = 1;
	/* What the start-up imported before the hook was in place. */
	record_scan();
}

static PyObject *record_at_exit(PyObject *self, PyObject *noargs)
{
	PyObject *out;

	(void)self;
	(void)noargs;
	if (!rec.path)
		Py_RETURN_NONE;
	if (rec.on)
		record_scan();
	out = pycds_layout_lines();
	if (out)
		record_append(PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out));
	Py_XDECREF(out);
	PyErr_Clear();
	Py_RETURN_NONE;
}

static PyMethodDef record_def = {
	"_layout_record", record_at_exit, METH_NOARGS,
	"Append what this layout run did with the archive to $PYCDS_RECORD.",
};

/* Only in the layout run, whose output the build discards. */
int pycds_record_layout_at_exit(void)
{
	PyObject *func, *atexit, *r;

	if (!rec.path)
		return 0;
	func = PyCFunction_NewEx(&record_def, NULL, NULL);
	atexit = func ? PyImport_ImportModule("atexit") : NULL;
	r = atexit ? PyObject_CallMethod(atexit, "register", "O", func) : NULL;
	Py_XDECREF(atexit);
	Py_XDECREF(func);
	if (!r)
		return -1;
	Py_DECREF(r);
	return 0;
}
