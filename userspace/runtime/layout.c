// SPDX-License-Identifier: MIT
/*
 * What the layout run of `pycds build` learns: the archived code this
 * process ran and the names it found interned already.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pycds/record.h"
#include "runtime.h"

/* "~<TAB>name" for each names pool entry this process found interned
 * already (its slots were rewritten), "=<TAB>name" for each that became
 * the canonical string. */
static PyObject *layout_names(struct pycds_session *rt, PyObject *out)
{
	uint32_t i;

	if (!rt->enabled || !rt->resolved)
		return out;
	for (i = 0; i < rt->ar.hdr->nr_names && out; i++) {
		PyObject *t = name_resolved(rt, i);
		const char *s;

		if (!t)
			continue;
		s = PyUnicode_AsUTF8(t);
		if (!s || strpbrk(s, "\t\n")) {
			PyErr_Clear();
			continue;
		}
		PyBytes_ConcatAndDel(&out, PyBytes_FromFormat(
			"%c\t%s\n",
			name_became_canonical(rt, i) ? PYCDS_REC_CANONICAL
						     : PYCDS_REC_FOUND,
			s));
	}
	return out;
}

/*
 * "@<TAB>file<TAB>first line<TAB>qualified name" for each archived code
 * object this process ran: its bytecode (and on 3.11 its warm-up
 * counter) no longer what the file holds.  The file is mapped again,
 * read-only, to compare: this measures what a process writes without
 * competing with the program for its trace or profile hooks.
 */
static PyObject *ran_walk(struct pycds_session *rt, PyObject *out, PyObject *o,
			  const uint8_t *pristine, unsigned int depth)
{
	PyCodeObject *co = (PyCodeObject *)o;
	const uint8_t *p = (const uint8_t *)o;
	Py_ssize_t i;

	if (!out || depth > 64 || Py_TYPE(o) != &PyCode_Type ||
	    p < rt->ar.base || p >= rt->ar.base + rt->ar.size)
		return out;
	if (pycds_code_ran(co, (const PyCodeObject *)(pristine +
						      (p - rt->ar.base)))) {
		const char *file = PyUnicode_AsUTF8(co->co_filename);
		const char *qual = PyUnicode_AsUTF8(co->co_qualname);

		if (file && qual && !strpbrk(file, "\t\n") &&
		    !strpbrk(qual, "\t\n"))
			PyBytes_ConcatAndDel(&out, PyBytes_FromFormat(
				PYCDS_REC_RAN "\t%s\t%d\t%s\n", file,
				co->co_firstlineno,
				qual));
		PyErr_Clear();
	}
	for (i = 0; out && i < PyTuple_GET_SIZE(co->co_consts); i++)
		out = ran_walk(rt, out, PyTuple_GET_ITEM(co->co_consts, i),
			       pristine, depth + 1);
	return out;
}

static PyObject *layout_ran(struct pycds_session *rt, PyObject *out)
{
	uint8_t *pristine;
	uint32_t i;
	int fd;

	/* A relocated copy differs from the file everywhere. */
	if (!rt->enabled || rt->ar.delta || !out)
		return out;
	fd = open(rt->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return out;
	pristine = mmap(NULL, rt->ar.size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (pristine == MAP_FAILED)
		return out;
	for (i = 0; i < rt->ar.hdr->nr_modules && out; i++)
		if (rt->state[i] == MOD_READY)
			out = ran_walk(rt, out, pycds_ptr(&rt->ar,
					pycds_module_get(&rt->ar, i)->root),
				       pristine, 0);
	munmap(pristine, rt->ar.size);
	return out;
}

/* What a layout run appends to its record at exit; NULL with an
 * exception on error. */
PyObject *pycds_layout_lines(void)
{
	struct pycds_stack *st = pycds_stack();
	/* The layer being built is the last: the layers under it are the
	 * ones it was built on (pycds build --on). */
	struct pycds_session *rt = &st->layer[st->nr ? st->nr - 1 : 0];
	PyObject *out = PyBytes_FromStringAndSize(NULL, 0);

	out = layout_ran(rt, out);
	return layout_names(rt, out);
}
