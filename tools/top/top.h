/* SPDX-License-Identifier: MIT */
/* pycds-top internals shared between its files. */
#ifndef PYCDS_TOP_H
#define PYCDS_TOP_H

#include <linux/types.h>
#include <signal.h>

struct pycds_counters;

/* procs.c: what is read of a watched process itself. */
/* Whether a process still exists. */
int top_pid_alive(__u32 pid);
/* Clean (page cache) and dirty (copied) kB of [base, base + size) in
 * @pid, or -1 each when /proc cannot say. */
void top_smaps_archive(__u32 pid, __u64 base, __u64 size, long long *clean,
		       long long *dirty);
/* The runtime's counters at @addr in @pid: 0, or -1. */
int top_read_counters(__u32 pid, __u64 addr, struct pycds_counters *out);

/* metrics.c */

/* Serve the "procs" map at @fd as Prometheus metrics on @addr (ADDR:PORT)
 * until *@stop, with the health of each archive published in @archives
 * (a directory, or NULL); collects every @interval seconds.  Returns an
 * exit code. */
int top_listen(int fd, const char *addr, int per_process,
	       const char *archives, double interval,
	       volatile sig_atomic_t *stop);

#endif /* PYCDS_TOP_H */
