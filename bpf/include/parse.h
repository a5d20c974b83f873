/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parse.h: the bounded Ethernet/VLAN/ARP/IPv4/IPv6/L4 parser shared by the
 * xnic XDP programs. It is the C twin of flows.Parse (flows/parse.go): the
 * same layers, the same limits, the same Reason for the same frame, checked
 * frame by frame over flows.Corpus() by the bpf package's tests.
 *
 * It never reads past data_end, every loop has a constant bound, and it
 * reports what it found (struct xnic_pkt) instead of deciding a verdict: the
 * caller does that.
 *
 * What is filled when (as in flows.Parse):
 *   - key.vlan and num_vlans as soon as a VLAN tag is whole;
 *   - key.family, key.src, key.dst and tos once the fixed IP header is whole
 *     and its version matches the EtherType;
 *   - key.proto and l4_off once the IP layer (IPv6 extension headers
 *     included) is whole and valid: XNIC_OK, XNIC_UNKNOWN_L4,
 *     XNIC_FRAGMENT (l4_off stays 0), XNIC_TRUNC_L4, XNIC_BAD_TCP_OFFSET;
 *   - key.sport and key.dport only with XNIC_OK;
 *   - the IP length field bounds everything after the IP header: bytes
 *     past it (Ethernet padding) are neither L4 header nor payload.
 * Beyond flows.Parse, ARP for IPv4 over Ethernet sets arp and arp_tpa (its
 * target protocol address); the reason stays XNIC_NON_IP.
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

/* Maximum number of rx queues the per-queue maps of drop.bpf.c cover. */
#define XNIC_MAX_QUEUES 64

/* VLAN tags followed before the L3 header; a third is XNIC_TOO_MANY_VLANS
 * (flows.MaxVLANs). */
#define XNIC_MAX_VLANS 2

/* IPv6 extension headers followed; one more is XNIC_TOO_MANY_EXT_HEADERS
 * (flows.MaxExtHeaders). */
#define XNIC_MAX_IPV6_EXT 8

#define XNIC_ETH_P_QINQ2 0x9100 /* pre-standard QinQ */

#define XNIC_IP_MF 0x2000
#define XNIC_IP_OFFSET 0x1fff

/* Protocol numbers the parser knows (IPPROTO_* names vary by header). */
#define XNIC_PROTO_HOPOPTS 0
#define XNIC_PROTO_ICMP 1
#define XNIC_PROTO_TCP 6
#define XNIC_PROTO_UDP 17
#define XNIC_PROTO_ROUTING 43
#define XNIC_PROTO_FRAGMENT 44
#define XNIC_PROTO_ICMPV6 58
#define XNIC_PROTO_DSTOPTS 60

/*
 * Why parsing stopped. The values and their order are flows.Reason's: the
 * Go tests compare them number for number.
 */
enum xnic_reason {
	XNIC_OK = 0,               /* parsed through L4 */
	XNIC_NON_IP,               /* not IPv4/IPv6 (ARP, LLDP, ...) */
	XNIC_TRUNC_ETHERNET,       /* shorter than an Ethernet header */
	XNIC_TRUNC_VLAN,           /* a VLAN tag is cut off */
	XNIC_TOO_MANY_VLANS,       /* more than XNIC_MAX_VLANS tags */
	XNIC_TRUNC_IPV4,           /* IPv4 header or its options cut off */
	XNIC_BAD_IPV4,             /* version not 4, IHL < 5, total < IHL */
	XNIC_TRUNC_IPV6,           /* fixed IPv6 header cut off */
	XNIC_BAD_IPV6,             /* version not 6 */
	XNIC_TRUNC_EXT_HEADER,     /* an IPv6 extension header cut off */
	XNIC_TOO_MANY_EXT_HEADERS, /* more than XNIC_MAX_IPV6_EXT */
	XNIC_IP_LENGTH,            /* IP length beyond the frame */
	XNIC_TRUNC_L4,             /* TCP/UDP/ICMP header cut off */
	XNIC_BAD_TCP_OFFSET,       /* TCP data offset < 5 or beyond the segment */
	XNIC_UNKNOWN_L4,           /* an L4 protocol not decoded: not an error */
	XNIC_FRAGMENT,             /* a non-first fragment: not an error */
	XNIC_NUM_REASONS
};

/* The first and last malformed reasons: those are counted and dropped. */
#define XNIC_FIRST_MALFORMED XNIC_TRUNC_ETHERNET
#define XNIC_LAST_MALFORMED XNIC_BAD_TCP_OFFSET

/*
 * flow_key is the exact-match key of the flow table, laid out as flows.Key:
 * addresses IPv4-mapped (::ffff:a.b.c.d) for IPv4, ports in host order, the
 * outer VLAN id (0 untagged).
 */
struct flow_key {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family; /* 4 or 6 */
	__u16 vlan;
};

#define XNIC_FRAG 0x1       /* part of a fragmented datagram */
#define XNIC_FRAG_FIRST 0x2 /* the fragment at offset 0 */

/* xnic_pkt is what xnic_parse learns of a frame. Zero it before parsing. */
struct xnic_pkt {
	struct flow_key key;
	__u16 ethertype; /* after the VLAN tags, host order */
	__u16 l3_off;    /* start of the IP (or ARP) header */
	__u16 l4_off;    /* start of the L4 header */
	__u16 ip_end;    /* l3_off + IP total length */
	__u8 reason;     /* enum xnic_reason */
	__u8 num_vlans;
	__u8 tos;       /* IPv4 TOS or IPv6 traffic class; DSCP is tos >> 2 */
	__u8 frag;      /* XNIC_FRAG, XNIC_FRAG_FIRST */
	__u8 ext_headers; /* IPv6 extension headers followed */
	__u8 arp;       /* 1: ARP for IPv4 over Ethernet, arp_tpa is valid */
	__u8 pad[2];
	__be32 arp_tpa; /* ARP target protocol address, network order */
	__u32 pad2;
} __attribute__((aligned(8)));

struct xnic_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* The ARP header for IPv4 over Ethernet (RFC 826), 28 bytes. */
struct xnic_arp_eth {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
};

/* Frames longer than this are parsed as if they ended here (flows.MaxFrameLen). */
#define XNIC_MAX_FRAME 0xffff

static __always_inline void xnic_map_ipv4(__u8 *dst, const __u8 *a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	dst[12] = a[0];
	dst[13] = a[1];
	dst[14] = a[2];
	dst[15] = a[3];
}

/*
 * xnic_parse_l4 decodes the L4 header at off; end is the end of the IP
 * packet (its length field), never past data_end.
 */
static __always_inline void xnic_parse_l4(void *data, void *data_end,
					  struct xnic_pkt *pkt, __u32 off,
					  __u32 end)
{
	__u8 proto = pkt->key.proto;
	__u8 *l4 = data + off;

	pkt->l4_off = off;
	if (proto == XNIC_PROTO_TCP) {
		__u32 hl;

		if (off + 20 > end || (void *)(l4 + 20) > data_end) {
			pkt->reason = XNIC_TRUNC_L4;
			return;
		}
		hl = (__u32)(l4[12] >> 4) * 4;
		if (hl < 20 || off + hl > end) {
			pkt->reason = XNIC_BAD_TCP_OFFSET;
			return;
		}
	} else if (proto == XNIC_PROTO_UDP) {
		if (off + 8 > end || (void *)(l4 + 8) > data_end) {
			pkt->reason = XNIC_TRUNC_L4;
			return;
		}
	} else if ((proto == XNIC_PROTO_ICMP && pkt->key.family == 4) ||
		   (proto == XNIC_PROTO_ICMPV6 && pkt->key.family == 6)) {
		if (off + 8 > end) {
			pkt->reason = XNIC_TRUNC_L4;
			return;
		}
		pkt->reason = XNIC_OK;
		return;
	} else {
		pkt->reason = XNIC_UNKNOWN_L4;
		return;
	}
	/* TCP and UDP start with the two ports, checked present above. */
	pkt->key.sport = ((__u16)l4[0] << 8) | l4[1];
	pkt->key.dport = ((__u16)l4[2] << 8) | l4[3];
	pkt->reason = XNIC_OK;
}

static __always_inline void xnic_parse_ipv4(void *data, void *data_end,
					    struct xnic_pkt *pkt, __u32 off)
{
	struct iphdr *iph = data + off;
	__u32 hl, total, frag;

	if ((void *)(iph + 1) > data_end) {
		pkt->reason = XNIC_TRUNC_IPV4;
		return;
	}
	if (iph->version != 4) {
		pkt->reason = XNIC_BAD_IPV4;
		return;
	}
	pkt->key.family = 4;
	pkt->tos = iph->tos;
	xnic_map_ipv4(pkt->key.src, (const __u8 *)&iph->saddr);
	xnic_map_ipv4(pkt->key.dst, (const __u8 *)&iph->daddr);
	hl = iph->ihl * 4;
	if (hl < 20) {
		pkt->reason = XNIC_BAD_IPV4;
		return;
	}
	if ((void *)iph + hl > data_end) {
		pkt->reason = XNIC_TRUNC_IPV4;
		return;
	}
	total = bpf_ntohs(iph->tot_len);
	if (total < hl) {
		pkt->reason = XNIC_BAD_IPV4;
		return;
	}
	if ((void *)iph + total > data_end) {
		pkt->reason = XNIC_IP_LENGTH;
		return;
	}
	pkt->ip_end = off + total;
	frag = bpf_ntohs(iph->frag_off);
	if (frag & (XNIC_IP_MF | XNIC_IP_OFFSET)) {
		pkt->frag = XNIC_FRAG;
		if (!(frag & XNIC_IP_OFFSET))
			pkt->frag |= XNIC_FRAG_FIRST;
	}
	pkt->key.proto = iph->protocol;
	if (frag & XNIC_IP_OFFSET) {
		pkt->reason = XNIC_FRAGMENT;
		return;
	}
	xnic_parse_l4(data, data_end, pkt, off + hl, off + total);
}

static __always_inline void xnic_parse_ipv6(void *data, void *data_end,
					    struct xnic_pkt *pkt, __u32 off)
{
	struct ipv6hdr *ip6 = data + off;
	__u32 pos, end;
	__u8 next;
	int i;

	if ((void *)(ip6 + 1) > data_end) {
		pkt->reason = XNIC_TRUNC_IPV6;
		return;
	}
	if (ip6->version != 6) {
		pkt->reason = XNIC_BAD_IPV6;
		return;
	}
	pkt->key.family = 6;
	pkt->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	__builtin_memcpy(pkt->key.src, &ip6->saddr, 16);
	__builtin_memcpy(pkt->key.dst, &ip6->daddr, 16);
	end = off + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	if (data + end > data_end) {
		pkt->reason = XNIC_IP_LENGTH;
		return;
	}
	pkt->ip_end = end;
	next = ip6->nexthdr;
	pos = off + sizeof(*ip6);

	for (i = 0; i <= XNIC_MAX_IPV6_EXT; i++) {
		__u8 *ext = data + pos;

		if (next != XNIC_PROTO_HOPOPTS && next != XNIC_PROTO_ROUTING &&
		    next != XNIC_PROTO_FRAGMENT && next != XNIC_PROTO_DSTOPTS)
			break;
		if (i == XNIC_MAX_IPV6_EXT) {
			pkt->reason = XNIC_TOO_MANY_EXT_HEADERS;
			return;
		}
		/* Every extension header is a multiple of 8 bytes, at least 8. */
		if (pos + 8 > end || (void *)(ext + 8) > data_end) {
			pkt->reason = XNIC_TRUNC_EXT_HEADER;
			return;
		}
		if (next == XNIC_PROTO_FRAGMENT) {
			__u16 fo = ((__u16)ext[2] << 8) | ext[3];

			pos += 8;
			pkt->ext_headers++;
			if (fo & 0xfff9) {
				pkt->frag = XNIC_FRAG;
				if (!(fo & 0xfff8))
					pkt->frag |= XNIC_FRAG_FIRST;
			}
			if (fo & 0xfff8) {
				pkt->key.proto = ext[0];
				pkt->reason = XNIC_FRAGMENT;
				return;
			}
		} else {
			__u32 hl = ((__u32)ext[1] + 1) * 8;

			if (pos + hl > end) {
				pkt->reason = XNIC_TRUNC_EXT_HEADER;
				return;
			}
			pos += hl;
			pkt->ext_headers++;
		}
		next = ext[0];
		/* Bound pos for the verifier: end already bounds it. */
		if (pos > XNIC_MAX_FRAME) {
			pkt->reason = XNIC_TRUNC_EXT_HEADER;
			return;
		}
	}
	pkt->key.proto = next;
	xnic_parse_l4(data, data_end, pkt, pos, end);
}

/* xnic_parse_arp records the target address of ARP for IPv4 over Ethernet. */
static __always_inline void xnic_parse_arp(void *data, void *data_end,
					   struct xnic_pkt *pkt, __u32 off)
{
	struct xnic_arp_eth *arp = data + off;

	if ((void *)(arp + 1) > data_end)
		return;
	if (arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != 6 || arp->plen != 4)
		return;
	pkt->arp = 1;
	__builtin_memcpy(&pkt->arp_tpa, arp->tpa, 4);
}

/*
 * xnic_parse walks Ethernet, up to XNIC_MAX_VLANS VLAN tags, then ARP or
 * IPv4/IPv6 and the L4 header, and sets pkt->reason.
 */
static __always_inline void xnic_parse(void *data, void *data_end,
				       struct xnic_pkt *pkt)
{
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__u16 proto;
	int i;

	if ((void *)(eth + 1) > data_end) {
		pkt->reason = XNIC_TRUNC_ETHERNET;
		return;
	}
	proto = bpf_ntohs(eth->h_proto);

#pragma unroll
	for (i = 0; i <= XNIC_MAX_VLANS; i++) {
		struct xnic_vlan_hdr *vh = data + off;

		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD &&
		    proto != XNIC_ETH_P_QINQ2)
			break;
		pkt->ethertype = proto;
		if (i == XNIC_MAX_VLANS) {
			pkt->reason = XNIC_TOO_MANY_VLANS;
			return;
		}
		if ((void *)(vh + 1) > data_end) {
			pkt->reason = XNIC_TRUNC_VLAN;
			return;
		}
		if (i == 0)
			pkt->key.vlan = bpf_ntohs(vh->tci) & 0x0fff;
		pkt->num_vlans = i + 1;
		proto = bpf_ntohs(vh->encap_proto);
		off += sizeof(*vh);
	}

	pkt->ethertype = proto;
	pkt->l3_off = off;
	if (proto == ETH_P_IP) {
		xnic_parse_ipv4(data, data_end, pkt, off);
		return;
	}
	if (proto == ETH_P_IPV6) {
		xnic_parse_ipv6(data, data_end, pkt, off);
		return;
	}
	if (proto == ETH_P_ARP)
		xnic_parse_arp(data, data_end, pkt, off);
	pkt->reason = XNIC_NON_IP;
}

#endif /* XNIC_PARSE_H */
