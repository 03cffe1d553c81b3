/* SPDX-License-Identifier: MIT */
/* pycds-top internals shared between its files. */
#ifndef PYCDS_TOP_H
#define PYCDS_TOP_H

#include <linux/types.h>
#include <signal.h>

/* Whether a process still exists. */
int top_pid_alive(__u32 pid);

/* Serve the "procs" map at @fd as Prometheus metrics on @addr (ADDR:PORT)
 * until *@stop; collects every @interval seconds.  Returns an exit code. */
int top_listen(int fd, const char *addr, int per_process, double interval,
	       volatile sig_atomic_t *stop);

#endif /* PYCDS_TOP_H */
