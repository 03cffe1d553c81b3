// SPDX-License-Identifier: MIT
/*
 * What pycds-top reads of a watched process itself, besides the BPF maps:
 * whether it still exists, its archive's clean and copied memory, and
 * the runtime's counters (struct pycds_counters, include/pycds/probes.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <linux/types.h>

#include "pycds/probes.h"
#include "top.h"

/*
 * Clean (still the page cache) and dirty (copied) kB of the archive's
 * address range [base, base + size).  The range can be several mappings:
 * the runtime replaces chunks that are copied anyway by huge pages.
 */
void top_smaps_archive(__u32 pid, __u64 base, __u64 size, long long *clean,
		       long long *dirty)
{
	char path[64], line[256];
	unsigned long long lo, hi;
	long long rss = 0, anon = 0;
	int in = 0, seen = 0;
	FILE *f;

	*clean = *dirty = -1;
	if (!base)
		return;
	snprintf(path, sizeof(path), "/proc/%u/smaps", pid);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%llx-%llx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = lo >= base && hi <= base + ((size + 4095) & ~4095ULL);
			seen |= in;
		} else if (in && !strncmp(line, "Rss:", 4)) {
			rss += atoll(line + 4);
		} else if (in && !strncmp(line, "Anonymous:", 10)) {
			anon += atoll(line + 10);
		}
	}
	if (f)
		fclose(f);
	if (seen) {
		*clean = rss - anon;
		*dirty = anon;
	}
}

int top_pid_alive(__u32 pid)
{
	return !kill((pid_t)pid, 0) || errno == EPERM;
}

int top_read_counters(__u32 pid, __u64 addr, struct pycds_counters *out)
{
	struct iovec l = { out, sizeof(*out) };
	struct iovec r = { (void *)(uintptr_t)addr, sizeof(*out) };

	return process_vm_readv((pid_t)pid, &l, 1, &r, 1, 0) ==
	       (ssize_t)sizeof(*out) ? 0 : -1;
}
