//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * steer.bpf.c, version 1: the xnic receive steering program.
 *
 *   non-IP (ARP, LLDP, ...)      -> XDP_PASS  (pass_non_ip)
 *   ICMP, ICMPv6 (ping, NDP)     -> XDP_PASS  (pass_control)
 *   truncated or bad headers     -> XDP_DROP  (dropped_malformed)
 *   other IPv4/IPv6, socket set  -> XDP_REDIRECT into xsks[rx queue] (redirected)
 *   other IPv4/IPv6, no socket   -> XDP_PASS  (pass_no_socket)
 *
 * Malformed frames are dropped rather than passed: the kernel would drop
 * them as well, and dropping here keeps a flood of garbage off the stack.
 */
#include "include/parse.h"

struct steer_stats {
	__u64 rx_packets;        /* every frame the program saw */
	__u64 rx_bytes;          /* their bytes, without FCS */
	__u64 redirected;        /* handed to the AF_XDP socket of the queue */
	__u64 pass_non_ip;       /* not IPv4/IPv6: to the kernel */
	__u64 pass_control;      /* ICMP/ICMPv6: to the kernel */
	__u64 pass_no_socket;    /* no socket on this queue: to the kernel */
	__u64 dropped_malformed; /* truncated or inconsistent headers */
};

/* One AF_XDP socket per rx queue; user space fills it. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XNIC_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* Per rx queue, per CPU counters. Queues >= max_entries are not counted. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XNIC_MAX_QUEUES);
	__type(key, __u32);
	__type(value, struct steer_stats);
} stats SEC(".maps");

#define COUNT(st, field)                                                       \
	do {                                                                   \
		if (st)                                                        \
			(st)->field++;                                         \
	} while (0)

SEC("xdp")
int xnic_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 queue = ctx->rx_queue_index;
	struct xnic_pkt pkt = {};
	struct steer_stats *st;
	long action;

	st = bpf_map_lookup_elem(&stats, &queue);
	if (st) {
		st->rx_packets++;
		st->rx_bytes += data_end - data;
	}

	switch (xnic_parse(data, data_end, &pkt)) {
	case XNIC_PARSE_OK:
		break;
	case XNIC_PARSE_NON_IP:
		COUNT(st, pass_non_ip);
		return XDP_PASS;
	default:
		COUNT(st, dropped_malformed);
		return XDP_DROP;
	}

	if (pkt.l4_proto == IPPROTO_ICMP || pkt.l4_proto == IPPROTO_ICMPV6) {
		COUNT(st, pass_control);
		return XDP_PASS;
	}

	if (!bpf_map_lookup_elem(&xsks, &queue)) {
		COUNT(st, pass_no_socket);
		return XDP_PASS;
	}
	action = bpf_redirect_map(&xsks, queue, XDP_PASS);
	if (action == XDP_REDIRECT)
		COUNT(st, redirected);
	else
		COUNT(st, pass_no_socket); /* the socket went away meanwhile */
	return action;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
