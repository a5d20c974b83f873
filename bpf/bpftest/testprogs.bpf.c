//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * testprogs.bpf.c: programs for the bpf package's tests and benchmarks,
 * built from the same bpf/include/parse.h as xnic_steer.
 *
 *   xnic_parse_check parses the frame and stores the struct xnic_pkt in
 *                    parse_result[0], then returns XDP_PASS: the tests
 *                    compare it with flows.Parse, field by field.
 *   xnic_raw         is steer version 1's data path on the v2 parser: every
 *                    well-formed IP frame goes to raw_xsks[rx queue], without a
 *                    flow or rule lookup. The benchmarks' baseline.
 */
#include "../include/parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xnic_pkt);
} parse_result SEC(".maps");

SEC("xdp")
int xnic_parse_check(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xnic_pkt pkt = {};
	__u32 zero = 0;

	xnic_parse(data, data_end, &pkt);
	bpf_map_update_elem(&parse_result, &zero, &pkt, BPF_ANY);
	return XDP_PASS;
}

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, XNIC_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} raw_xsks SEC(".maps");

SEC("xdp")
int xnic_raw(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xnic_pkt pkt = {};

	xnic_parse(data, data_end, &pkt);
	switch (pkt.reason) {
	case XNIC_OK:
	case XNIC_FRAGMENT:
	case XNIC_UNKNOWN_L4:
		break;
	case XNIC_NON_IP:
		return XDP_PASS;
	default:
		return XDP_DROP;
	}
	if (pkt.key.proto == XNIC_PROTO_ICMP || pkt.key.proto == XNIC_PROTO_ICMPV6)
		return XDP_PASS;
	return bpf_redirect_map(&raw_xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
