//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * gen.bpf.c: the live-frames traffic generator.
 *
 * User space runs xnic_gen with BPF_PROG_RUN and BPF_F_TEST_XDP_LIVE_FRAMES
 * over a template Ethernet + IPv4/IPv6 + UDP frame; every run returns XDP_TX,
 * so the kernel transmits the frame out of the ingress device (the peer veth).
 *
 * Per frame the program
 *   - picks flow f = n % cfg_nflows, where n is a per-CPU frame counter, so
 *     consecutive frames round-robin the flows, and sets the UDP source port
 *     to cfg_port_base + f % cfg_nports. Beyond cfg_nports flows it also adds
 *     f / cfg_nports to the 16-bit word of the source address at
 *     cfg_addr_off (the third octet of an IPv4 address), so up to millions of
 *     flows stay distinct;
 *   - writes a 64-bit big-endian sequence number at cfg_seq_off (when set and
 *     inside the frame): (cpu << 48) | n. Within one CPU, the frames of one
 *     flow carry numbers that grow by cfg_nflows;
 *   - updates the UDP checksum (and the IPv4 header checksum when the address
 *     changes) incrementally (RFC 1624), so they stay valid.
 *
 * In live-frames mode the kernel copies the template into a page once and
 * recycles the page without copying it again, so a frame may hold what the
 * previous run wrote. The update therefore reads the old port, sequence and
 * checksum from the frame itself, never from the template.
 */
#include "include/parse.h"

/* Set by user space before load (read-only data, constant to the verifier). */
volatile const __u32 cfg_nflows = 1;    /* 1..MaxGenFlows */
volatile const __u32 cfg_nports = 1;    /* source ports per address, 1..65535 */
volatile const __u32 cfg_port_base = 0; /* first UDP source port, host order */
volatile const __u32 cfg_addr_off = 0;  /* source address word to vary; 0: none */
volatile const __u32 cfg_addr_word = 0; /* its template value, host order */
volatile const __u32 cfg_l4_off = 34;   /* offset of the UDP header */
volatile const __u32 cfg_seq_off = 0;   /* offset of the sequence; 0: none */
volatile const __u32 cfg_ipv6 = 0;      /* 1: IPv6, checksum mandatory */

struct gen_stats {
	__u64 frames_generated; /* frames sent to XDP_TX */
	__u64 bytes_generated;  /* their bytes, without FCS */
	__u64 frames_too_short; /* template shorter than the UDP header */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_stats);
} gen_counts SEC(".maps");

/* csum_replace adds ~old + new to a ones' complement sum (RFC 1624, eqn 3). */
static __always_inline __u32 csum_replace(__u32 sum, __u16 old, __u16 new)
{
	return sum + (__u16)~old + new;
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

SEC("xdp")
int xnic_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct gen_stats *st;
	struct udphdr *udp;
	__u32 key = 0, sum;
	__u16 port, check;
	__u32 f;
	__u64 n;

	st = bpf_map_lookup_elem(&gen_counts, &key);
	if (!st)
		return XDP_ABORTED;

	udp = data + cfg_l4_off;
	if ((void *)(udp + 1) > data_end) {
		st->frames_too_short++;
		return XDP_DROP;
	}

	n = st->frames_generated++;
	st->bytes_generated += data_end - data;

	/* ones' complement sums do not depend on byte order: work on raw words */
	check = udp->check;
	sum = (__u16)~check;

	f = n % cfg_nflows;
	port = bpf_htons((__u16)(cfg_port_base + f % cfg_nports));
	sum = csum_replace(sum, udp->source, port);
	udp->source = port;

	if (cfg_addr_off) {
		__u16 *w = data + cfg_addr_off;

		if ((void *)(w + 1) <= data_end) {
			__u16 aw = bpf_htons((__u16)(cfg_addr_word + ((f / cfg_nports) << 8)));

			/* the pseudo-header covers the source address */
			sum = csum_replace(sum, *w, aw);
			if (!cfg_ipv6) {
				struct iphdr *ip = data + sizeof(struct ethhdr);

				if ((void *)(ip + 1) <= data_end)
					ip->check = (__u16)~csum_fold(
						csum_replace((__u16)~ip->check, *w, aw));
			}
			*w = aw;
		}
	}

	if (cfg_seq_off) {
		__u16 *seq = data + cfg_seq_off;

		if ((void *)(seq + 4) <= data_end) {
			__u64 v = ((__u64)bpf_get_smp_processor_id() << 48) |
				  (n & 0xffffffffffffULL);
			__u64 be = bpf_cpu_to_be64(v);
			__u16 *w = (__u16 *)&be;

			sum = csum_replace(sum, seq[0], w[0]);
			sum = csum_replace(sum, seq[1], w[1]);
			sum = csum_replace(sum, seq[2], w[2]);
			sum = csum_replace(sum, seq[3], w[3]);
			seq[0] = w[0];
			seq[1] = w[1];
			seq[2] = w[2];
			seq[3] = w[3];
		}
	}

	/* IPv4 may carry no checksum (0); IPv6 always does (RFC 8200). */
	if (cfg_ipv6 || check != 0) {
		check = (__u16)~csum_fold(sum);
		udp->check = check ? check : 0xffff;
	}
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
