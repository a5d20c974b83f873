/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parse.h: the bounded Ethernet/VLAN/IPv4/IPv6 parser shared by the xnic XDP
 * programs. It never reads past data_end, never loops without a bound, and
 * reports what it found instead of deciding a verdict: the caller does that.
 */
#ifndef XNIC_PARSE_H
#define XNIC_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Maximum number of rx queues the per-queue maps cover. */
#define XNIC_MAX_QUEUES 64

/* VLAN tags skipped before the L3 header (802.1Q and 802.1ad). */
#define XNIC_MAX_VLANS 2

/* IPv6 extension headers skipped while looking for the transport header. */
#define XNIC_MAX_IPV6_EXT 4

#define XNIC_IP_MF 0x2000
#define XNIC_IP_OFFSET 0x1fff

struct xnic_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

enum xnic_parse_result {
	XNIC_PARSE_OK = 0,   /* IPv4 or IPv6, headers present */
	XNIC_PARSE_NON_IP,   /* ARP, LLDP, ...: not ours */
	XNIC_PARSE_MALFORMED /* truncated or inconsistent headers */
};

struct xnic_pkt {
	__u16 l3_proto; /* ETH_P_IP or ETH_P_IPV6, host order */
	__u8 l4_proto;  /* IPPROTO_*, after IPv6 extension headers */
	__u8 fragment;  /* 1: a non-first fragment, no transport header */
	__u16 l3_off;   /* offset of the IP header from data */
	__u16 l4_off;   /* offset of the transport header from data */
	__be16 sport;   /* TCP/UDP ports, network order; 0 otherwise */
	__be16 dport;
};

/*
 * xnic_parse_l4 checks that a TCP or UDP header is present and records its
 * ports. Other protocols are accepted as they are.
 */
static __always_inline int xnic_parse_l4(void *data, void *data_end,
					 struct xnic_pkt *pkt)
{
	if (pkt->fragment)
		return XNIC_PARSE_OK;

	if (pkt->l4_proto == IPPROTO_UDP) {
		struct udphdr *udp = data + pkt->l4_off;

		if ((void *)(udp + 1) > data_end)
			return XNIC_PARSE_MALFORMED;
		pkt->sport = udp->source;
		pkt->dport = udp->dest;
	} else if (pkt->l4_proto == IPPROTO_TCP) {
		struct tcphdr *tcp = data + pkt->l4_off;

		if ((void *)(tcp + 1) > data_end)
			return XNIC_PARSE_MALFORMED;
		pkt->sport = tcp->source;
		pkt->dport = tcp->dest;
	}
	return XNIC_PARSE_OK;
}

static __always_inline int xnic_parse_ipv4(void *data, void *data_end,
					   struct xnic_pkt *pkt)
{
	struct iphdr *iph = data + pkt->l3_off;
	__u32 hlen;

	if ((void *)(iph + 1) > data_end)
		return XNIC_PARSE_MALFORMED;
	if (iph->version != 4 || iph->ihl < 5)
		return XNIC_PARSE_MALFORMED;
	hlen = iph->ihl * 4;
	if ((void *)iph + hlen > data_end)
		return XNIC_PARSE_MALFORMED;

	pkt->l4_proto = iph->protocol;
	pkt->l4_off = pkt->l3_off + hlen;
	pkt->fragment = (bpf_ntohs(iph->frag_off) & XNIC_IP_OFFSET) != 0;
	return xnic_parse_l4(data, data_end, pkt);
}

static __always_inline int xnic_parse_ipv6(void *data, void *data_end,
					   struct xnic_pkt *pkt)
{
	struct ipv6hdr *ip6 = data + pkt->l3_off;
	__u32 off = pkt->l3_off + sizeof(*ip6);
	__u8 next;
	int i;

	if ((void *)(ip6 + 1) > data_end)
		return XNIC_PARSE_MALFORMED;
	if (ip6->version != 6)
		return XNIC_PARSE_MALFORMED;
	next = ip6->nexthdr;

#pragma unroll
	for (i = 0; i < XNIC_MAX_IPV6_EXT; i++) {
		__u8 *ext = data + off;

		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING &&
		    next != IPPROTO_DSTOPTS && next != IPPROTO_FRAGMENT &&
		    next != IPPROTO_AH)
			break;
		/* every extension header starts with next header and length */
		if ((void *)(ext + 8) > data_end)
			return XNIC_PARSE_MALFORMED;
		if (next == IPPROTO_FRAGMENT) {
			__u16 frag = ((__u16)ext[2] << 8) | ext[3];

			if (frag & 0xfff8)
				pkt->fragment = 1;
			off += 8;
		} else if (next == IPPROTO_AH) {
			off += ((__u32)ext[1] + 2) * 4;
		} else {
			off += ((__u32)ext[1] + 1) * 8;
		}
		next = ext[0];
		if (off > 0xffff)
			return XNIC_PARSE_MALFORMED;
	}

	pkt->l4_proto = next;
	pkt->l4_off = off;
	return xnic_parse_l4(data, data_end, pkt);
}

/*
 * xnic_parse walks Ethernet, up to XNIC_MAX_VLANS VLAN tags and the IP header.
 * A frame shorter than what its headers announce is XNIC_PARSE_MALFORMED.
 */
static __always_inline int xnic_parse(void *data, void *data_end,
				      struct xnic_pkt *pkt)
{
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__be16 proto;
	int i;

	if ((void *)(eth + 1) > data_end)
		return XNIC_PARSE_MALFORMED;
	proto = eth->h_proto;

#pragma unroll
	for (i = 0; i < XNIC_MAX_VLANS; i++) {
		struct xnic_vlan_hdr *vh = data + off;

		if (proto != bpf_htons(ETH_P_8021Q) &&
		    proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > data_end)
			return XNIC_PARSE_MALFORMED;
		proto = vh->encap_proto;
		off += sizeof(*vh);
	}

	pkt->l3_off = off;
	if (proto == bpf_htons(ETH_P_IP)) {
		pkt->l3_proto = ETH_P_IP;
		return xnic_parse_ipv4(data, data_end, pkt);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		pkt->l3_proto = ETH_P_IPV6;
		return xnic_parse_ipv6(data, data_end, pkt);
	}
	return XNIC_PARSE_NON_IP;
}

#endif /* XNIC_PARSE_H */
