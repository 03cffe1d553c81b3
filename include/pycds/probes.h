/* SPDX-License-Identifier: MIT */
/*
 * USDT probes of the pycds runtime (provider "pycds"), and the layouts of
 * the BPF maps pycds-top reads.  Shared by userspace/, bpf/ and tools/.
 *
 *   pycds:archive__mapped(const char *path, u64 base, u64 size,
 *                         u32 relocated, u64 counters, u64 layer_counters)
 *     once per layer mapped, in the order searched.  counters: address,
 *     in the process, of the runtime's struct pycds_counters for the
 *     process (whichever layer served), kept up to date as it serves;
 *     layer_counters: the same for this layer alone.
 *   pycds:archive__rejected(const char *path, const char *reason)
 *   pycds:module__served(const char *name, u32 layer)
 *     layer: the index of the layer that served it, from 0
 *   pycds:module__missed(const char *name)
 *   pycds:module__stale(const char *name)
 *
 * Fixed-width types only: this header is included by BPF programs.
 */
#ifndef PYCDS_PROBES_H
#define PYCDS_PROBES_H

#define PYCDS_HIST_SLOTS	32	/* log2 buckets of nanoseconds */
#define PYCDS_MAX_DEPTH		32	/* nested imports tracked per thread */
#define PYCDS_PATH_LEN		128

/* The runtime's own counters, at the address archive__mapped gives: what
 * pycds-top reads from a process's memory when it counts no probes. */
struct pycds_counters {
	__u64 hits;		/* modules served */
	__u64 misses;		/* asked for, not in the archive */
	__u64 stale;		/* in the archive, source changed */
	__u64 rejected;		/* failed their checks */
};

/* Layers pycds-top follows per process. */
#define PYCDS_TOP_LAYERS	4

/* One layer a process mapped (archive__mapped). */
struct pycds_layer_seen {
	__u64 base;
	__u64 size;
	__u64 counters;		/* address of the layer's own counters */
	__u64 hits;		/* module__served naming this layer */
	char archive[PYCDS_PATH_LEN];
};

/* Per-process counters, keyed by tgid in the "procs" map.  base, size and
 * archive are the first layer's. */
struct pycds_proc {
	__u64 base;		/* archive mapping (0: none seen) */
	__u64 size;
	__u32 relocated;
	__u32 rejected;		/* archive__rejected seen */
	__u64 counters;		/* address of the runtime's own counters */
	__u64 hits;
	__u64 misses;
	__u64 stale;
	__u64 imports;		/* import__find__load__done */
	__u64 import_ns;	/* cumulative time of top-level imports */
	__u64 import_ns_sum;	/* sum over every import, nested ones too */
	__u64 faults_in;	/* user page faults inside the archive */
	__u64 faults_out;	/* and elsewhere */
	__u64 hist_cum[PYCDS_HIST_SLOTS]; /* per import, cumulative time */
	__u64 hist_self[PYCDS_HIST_SLOTS]; /* per import, minus nested ones */
	char archive[PYCDS_PATH_LEN];
	__u32 nr_layers;	/* archive__mapped seen, up to PYCDS_TOP_LAYERS */
	__u32 pad;
	struct pycds_layer_seen layer[PYCDS_TOP_LAYERS];
};

#endif /* PYCDS_PROBES_H */
