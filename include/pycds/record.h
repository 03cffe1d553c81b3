/* SPDX-License-Identifier: MIT */
/*
 * The record file of `pycds build` (Documentation/record-format.rst): one
 * line per event, UTF-8 with surrogateescape, fields separated by a TAB.
 * Written by the recorder (userspace/writer/record.c) and, in a layout
 * run, by the runtime at exit (userspace/runtime/layout.c); read by
 * tools/pycds_build.py.  A line that begins with none of the tags below
 * is "name<TAB>origin": a module loaded from source or a .pyc.
 */
#ifndef PYCDS_RECORD_H
#define PYCDS_RECORD_H

#define PYCDS_REC_PROCESS	"#"	/* #<TAB>pid: a process begins */
#define PYCDS_REC_NATIVE	"!"	/* !<TAB>name: no Python code */
#define PYCDS_REC_MAIN		"__main__" /* __main__<TAB>path: a script */
/* Layout run only. */
#define PYCDS_REC_RAN		"@"	/* @<TAB>file<TAB>line<TAB>qualname */
#define PYCDS_REC_FOUND		'~'	/* ~<TAB>name: interned already */
#define PYCDS_REC_CANONICAL	'='	/* =<TAB>name: made canonical */

#endif /* PYCDS_RECORD_H */
