//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * drop.bpf.c: two counting programs for benchmarks.
 *
 *   xnic_drop counts and returns XDP_DROP: the XDP_DROP ceiling.
 *   xnic_pass counts and returns XDP_PASS: lets kernel-socket baselines
 *             (AF_PACKET, UDP sockets) receive live-frames traffic, which a
 *             veth only delivers when an XDP program is attached.
 *
 * User space loads one program at a time, so each gets its own counts map.
 */
#include "include/parse.h"

struct count_stats {
	__u64 rx_packets; /* frames the program saw */
	__u64 rx_bytes;   /* their bytes, without FCS */
};

/* Per rx queue, per CPU counters. Queues >= max_entries are not counted. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XNIC_MAX_QUEUES);
	__type(key, __u32);
	__type(value, struct count_stats);
} counts SEC(".maps");

static __always_inline void count(struct xdp_md *ctx)
{
	__u32 queue = ctx->rx_queue_index;
	struct count_stats *st = bpf_map_lookup_elem(&counts, &queue);

	if (st) {
		st->rx_packets++;
		st->rx_bytes += ctx->data_end - ctx->data;
	}
}

SEC("xdp")
int xnic_drop(struct xdp_md *ctx)
{
	count(ctx);
	return XDP_DROP;
}

SEC("xdp")
int xnic_pass(struct xdp_md *ctx)
{
	count(ctx);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
