// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * pycds-top's kernel side: per-process import latency (CPython's USDT
 * probes), archive hits, misses and stale modules (pycds's probes), and
 * user page faults inside and outside the archive mapping.  Only
 * aggregates live here; user space reads the "procs" map.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

#include "pycds/probes.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Set before load: only this process, or 0 for all. */
const volatile __u32 target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct pycds_proc);
} procs SEC(".maps");

/* Import nesting per thread: start times and time spent in children. */
struct frames {
	__u32 depth;
	__u32 pad;
	__u64 start[PYCDS_MAX_DEPTH];
	__u64 child[PYCDS_MAX_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct frames);
} stacks SEC(".maps");

static const struct pycds_proc zero_proc;
static const struct frames zero_frames;

static __always_inline struct pycds_proc *proc_get(__u32 tgid, int create)
{
	struct pycds_proc *p = bpf_map_lookup_elem(&procs, &tgid);

	if (p || !create)
		return p;
	bpf_map_update_elem(&procs, &tgid, &zero_proc, BPF_NOEXIST);
	return bpf_map_lookup_elem(&procs, &tgid);
}

static __always_inline int wanted(__u32 tgid)
{
	return !target_tgid || target_tgid == tgid;
}

static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 r = 0;

	while (v > 1 && r < PYCDS_HIST_SLOTS - 1) {
		v >>= 1;
		r++;
	}
	return r & (PYCDS_HIST_SLOTS - 1);
}

SEC("usdt")
int BPF_USDT(import_start, void *name)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, tgid = id >> 32, d;
	struct frames *f;

	if (!wanted(tgid))
		return 0;
	f = bpf_map_lookup_elem(&stacks, &tid);
	if (!f) {
		bpf_map_update_elem(&stacks, &tid, &zero_frames, BPF_NOEXIST);
		f = bpf_map_lookup_elem(&stacks, &tid);
		if (!f)
			return 0;
	}
	d = f->depth;
	if (d < PYCDS_MAX_DEPTH) {
		/* The mask keeps the verifier sure of the bounds. */
		f->start[d & (PYCDS_MAX_DEPTH - 1)] = bpf_ktime_get_ns();
		f->child[d & (PYCDS_MAX_DEPTH - 1)] = 0;
	}
	f->depth = d + 1;
	proc_get(tgid, 1);
	return 0;
}

SEC("usdt")
int BPF_USDT(import_done, void *name, int found)
{
	__u64 id = bpf_get_current_pid_tgid(), now = bpf_ktime_get_ns();
	__u32 tid = (__u32)id, tgid = id >> 32, d;
	__u64 dur, self;
	struct pycds_proc *p;
	struct frames *f;

	if (!wanted(tgid))
		return 0;
	f = bpf_map_lookup_elem(&stacks, &tid);
	if (!f || !f->depth)
		return 0;
	d = f->depth - 1;
	f->depth = d;
	if (d >= PYCDS_MAX_DEPTH)
		return 0;
	dur = now - f->start[d & (PYCDS_MAX_DEPTH - 1)];
	self = dur - f->child[d & (PYCDS_MAX_DEPTH - 1)];
	if (self > dur)
		self = 0;
	if (d > 0) {
		__u32 up = d - 1;

		/* Hide up's range from the compiler, so that the mask the
		 * verifier needs to bound the index stays in the program
		 * (clang 21 drops it, knowing d is below the depth). */
		__asm__ volatile("" : "+r"(up));
		f->child[up & (PYCDS_MAX_DEPTH - 1)] += dur;
	}
	p = proc_get(tgid, 1);
	if (!p)
		return 0;
	__sync_fetch_and_add(&p->imports, 1);
	if (!d)
		__sync_fetch_and_add(&p->import_ns, dur);
	__sync_fetch_and_add(&p->import_ns_sum, dur);
	__sync_fetch_and_add(&p->hist_cum[log2_slot(dur)], 1);
	__sync_fetch_and_add(&p->hist_self[log2_slot(self)], 1);
	return 0;
}

SEC("usdt")
int BPF_USDT(archive_mapped, const char *path, __u64 base, __u64 size,
	     __u32 relocated, __u64 counters, __u64 layer_counters)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, i;
	struct pycds_proc *p;

	if (!wanted(tgid))
		return 0;
	p = proc_get(tgid, 1);
	if (!p)
		return 0;
	i = p->nr_layers;
	if (i < PYCDS_TOP_LAYERS) {
		struct pycds_layer_seen *l;

		__asm__ volatile("" : "+r"(i));	/* keep the mask, as above */
		l = &p->layer[i & (PYCDS_TOP_LAYERS - 1)];

		l->base = base;
		l->size = size;
		l->counters = layer_counters;
		bpf_probe_read_user_str(l->archive, sizeof(l->archive), path);
		p->nr_layers = i + 1;
	}
	if (!p->base) {
		p->base = base;
		p->size = size;
		bpf_probe_read_user_str(p->archive, sizeof(p->archive), path);
	}
	p->relocated |= relocated;
	p->counters = counters;
	return 0;
}

SEC("usdt")
int BPF_USDT(archive_rejected, const char *path, const char *reason)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct pycds_proc *p;

	if (!wanted(tgid))
		return 0;
	p = proc_get(tgid, 1);
	if (p)
		p->rejected = 1;
	return 0;
}

#define COUNTER(prog, field)                                                \
	SEC("usdt")                                                          \
	int BPF_USDT(prog, const char *name)                                 \
	{                                                                    \
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;               \
		struct pycds_proc *p;                                        \
                                                                             \
		if (!wanted(tgid))                                           \
			return 0;                                            \
		p = proc_get(tgid, 1);                                       \
		if (p)                                                       \
			__sync_fetch_and_add(&p->field, 1);                  \
		return 0;                                                    \
	}

SEC("usdt")
int BPF_USDT(module_served, const char *name, __u32 layer)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct pycds_proc *p;

	if (!wanted(tgid))
		return 0;
	p = proc_get(tgid, 1);
	if (!p)
		return 0;
	__sync_fetch_and_add(&p->hits, 1);
	if (layer < PYCDS_TOP_LAYERS) {
		/* Hidden from the compiler, which would otherwise drop the
		 * mask the verifier needs (it knows layer is below 4). */
		__asm__ volatile("" : "+r"(layer));
		__sync_fetch_and_add(&p->layer[layer & (PYCDS_TOP_LAYERS - 1)].hits,
				     1);
	}
	return 0;
}

COUNTER(module_missed, misses)
COUNTER(module_stale, stale)

/* Faults are counted only for processes the probes have seen. */
SEC("tp_btf/page_fault_user")
int BPF_PROG(page_fault_user, unsigned long address, struct pt_regs *regs,
	     unsigned long error_code)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, i;
	struct pycds_proc *p;

	if (!wanted(tgid))
		return 0;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		return 0;
	for (i = 0; i < PYCDS_TOP_LAYERS; i++) {
		const struct pycds_layer_seen *l = &p->layer[i];

		if (i < p->nr_layers && l->size && address >= l->base &&
		    address - l->base < l->size) {
			__sync_fetch_and_add(&p->faults_in, 1);
			return 0;
		}
	}
	__sync_fetch_and_add(&p->faults_out, 1);
	return 0;
}
