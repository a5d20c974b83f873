//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * steer.bpf.c, version 2: the xnic receive steering program.
 *
 * Every frame is parsed once (include/parse.h, the twin of flows.Parse),
 * matched to an owner (a guest) and a traffic class, and redirected to the
 * AF_XDP socket of that (guest, class) on the frame's rx queue. Everything
 * else goes to the kernel untouched.
 *
 *   malformed (truncated, bad)   -> XDP_DROP, dropped_malformed + drop_<reason>
 *   non-IP, except steered ARP   -> XDP_PASS, pass_non_ip
 *   IPv4: fast_flows[5-tuple+vlan] hit -> (guest, class)        flow_hits
 *   IP: flows[5-tuple+vlan] hit  -> (guest, class) of the flow    flow_hits
 *       else rules (LPM on dst)  -> (guest, class) of the rule    rule_hits
 *       else ICMP/ICMPv6         -> XDP_PASS, pass_control
 *       else                     -> XDP_PASS, pass_unmatched
 *   ARP whose target address matches a rule with proto XNIC_RULE_ARP
 *                                -> that rule's (guest, class)    rule_hits
 *   The outcome of a rule lookup that walks the trie (a rule's target, or
 *   no match) is cached per flow key in rule_cache, tagged with the rule
 *   generation (ctl.rule_gen) read before the lookup; user space bumps the
 *   generation after every rule change, which invalidates every cached
 *   outcome at once. A cached outcome counts as the lookup would have, plus
 *   rule_cache_hits. Lookups the fast rule index answers, and ARP, never
 *   use the cache. User space turns the cache on (ctl.rule_cache_on) only
 *   for tables large enough that a hash lookup beats the trie walk, and
 *   only while some frames still walk it.
 *   (guest, class): socket in xsks[slot]        -> XDP_REDIRECT, redirected
 *                   else socket of (guest, 0)   -> XDP_REDIRECT, redirected
 *                                                  (+ redirected_class0)
 *                   else                        -> XDP_PASS, pass_no_socket
 *   then, while ctl.cong_on, the admission of the slot whose socket took
 *   the frame (see struct occ_slot): over its threshold
 *                   ECN on, frame ECN-capable   -> CE, XDP_REDIRECT, redirected
 *                                                  (+ ecn_marked)
 *                   else                        -> XDP_DROP, early_drops
 *
 * with slot = (queue * cfg_guests + guest) * cfg_classes + class.
 *
 * The common frame (see steer_common) is decided inline, without the full
 * parser; the rest by the full parser and xnic_steer_ip, to the same
 * verdicts and counters.
 *
 * Rules: one LPM trie for both families, keyed by the destination address
 * IPv4-mapped (::ffff:a.b.c.d, an IPv4 /n is stored as /(96+n)). The value
 * of a prefix holds up to XNIC_RULES_PER_PREFIX rules, sorted by user space
 * (priority, then id); the first that matches family, protocol and
 * destination port range wins. When none of the most specific prefix's
 * rules match, the next less specific prefix is tried, up to
 * XNIC_RULE_DEPTH prefixes in all.
 *
 * The trie holds every rule and is the reference. In front of it, the
 * fast rule index holds the rule sets of the exact prefixes (IPv4 /32,
 * IPv6 /128) and of the two /0 prefixes in cache-line ways, and counts the
 * prefixes it cannot answer for (middle lengths, sets that did not fit).
 * For an IP frame the program reads the exact way of its destination and,
 * when no rule there matches and no middle prefix exists, the /0 way of
 * its family: array reads instead of a trie walk. It walks the trie only
 * when a middle prefix exists, a set does not fit a way, or user space is
 * changing the index (see fast_rules_decide). ARP always walks the trie.
 *
 * Malformed frames are dropped rather than passed: the kernel would drop
 * them as well, and dropping here keeps a flood of garbage off the stack.
 */
#include "include/parse.h"

/* Load-time configuration (rodata), set by user space. */
volatile const __u32 cfg_queues = 64;
volatile const __u32 cfg_guests = 64;
volatile const __u32 cfg_classes = 8;
volatile const __u32 cfg_queue_slots = 64 * 8; /* cfg_guests * cfg_classes */
volatile const __u32 cfg_rule_cache = 1; /* 0: no rule cache */
volatile const __u32 cfg_fast_mask = 32767; /* fast_flows buckets - 1 */
volatile const __u32 cfg_rules_shift = 50; /* 64 - log2(fast_rules buckets) */

#define XNIC_RULES_PER_PREFIX 16
#define XNIC_RULE_DEPTH 8

/* rule.proto: 0 is any IP protocol; XNIC_RULE_ARP is ARP (not IP). */
#define XNIC_RULE_ANY 0
#define XNIC_RULE_ARP 255

/* rule.flags, flow_target.flags and rule_cache_entry.target.flags */
#define XNIC_CLASS_FROM_DSCP 0x1
#define XNIC_NO_MATCH 0x80 /* rule_cache and rule_memo only: no rule matched */

struct rule {
	__u32 id;       /* user space's handle */
	__u16 priority; /* lower first; user space keeps the order */
	__u16 port_lo;  /* destination port range, host order */
	__u16 port_hi;
	__u8 proto;  /* XNIC_RULE_ANY, an IP protocol, or XNIC_RULE_ARP */
	__u8 family; /* 4 or 6: the family of the rule's prefix */
	__u8 guest;
	__u8 class;
	__u8 flags; /* XNIC_CLASS_FROM_DSCP */
	__u8 pad;
};

struct rule_key {
	__u32 prefixlen; /* IPv4: 96 + n */
	__u8 addr[16];   /* IPv4-mapped for IPv4 */
};

struct rule_set {
	__u32 prefixlen; /* the prefix this set is stored under */
	__u32 count;     /* rules in use, 1..XNIC_RULES_PER_PREFIX */
	struct rule rules[XNIC_RULES_PER_PREFIX];
};

struct flow_target {
	__u8 guest;
	__u8 class;
	__u8 flags; /* XNIC_CLASS_FROM_DSCP */
	__u8 pad;
};

/* What the rules of a frame are matched on: for ARP its target address,
 * family 4, no protocol or port. */
struct xnic_match {
	__u64 a0, a1; /* destination address, IPv4-mapped, as loaded */
	__u16 dport;  /* host order; 0 without ports */
	__u8 proto;
	__u8 family;
};

/*
 * The fast flow table holds IPv4 flows in a set-associative array of
 * buckets, each one cache line of XNIC_FAST_WAYS ways, 16 bytes a flow. A
 * flow has two candidate buckets (the two halves of fast_hash); user space
 * puts it in the first when that has a free way, else in the second, else
 * in the LRU hash, so a key is in one place only. Most lookups read one
 * cache line, where the LRU hash costs two dependent misses (bucket, then
 * entry) in a table seven times the size.
 *
 * A way is two 64-bit words, and user space writes them through mmap with
 * single 64-bit stores, in an order that makes every read consistent
 * without a lock (x86-64 only, where stores and loads are not reordered
 * with others of their kind; elsewhere user space leaves the table empty):
 *   - word 0 is (src, dst), 0 for an empty way; word 1 is ports, protocol,
 *     guest, vlan and class;
 *   - a flow goes into an empty way word 1 first, then word 0, so a
 *     reader that sees its word 0 sees its word 1;
 *   - a new target for the same flow is one store of word 1;
 *   - a delete stores 0 in word 0, and the way is not reused before an
 *     RCU grace period (membarrier), so a reader that saw the old word 0
 *     still reads the old word 1.
 * The program reads word 0, then word 1, each with one load.
 */
#define XNIC_FAST_WAYS 4

struct fast_flow {
	__u32 src; /* word 0: the last 4 bytes of flow_key.src and .dst */
	__u32 dst;
	__u16 sport; /* word 1 */
	__u16 dport;
	__u8 proto;
	__u8 guest;
	__u16 vlan_class; /* vlan << 4 | class */
};

struct fast_bucket {
	struct fast_flow way[XNIC_FAST_WAYS];
};

/* Word 1 without the target (guest, class). */
#define XNIC_FAST_KEY_MASK 0xfff000ffffffffffULL

/*
 * The fast rule index: the maps fast_rules_head and fast_rules. A way holds
 * the IP rules of one prefix (ARP rules left out: they never match an IP
 * frame), in the trie's order, each in 8 bytes. The head holds the /0 ways
 * (any[0] IPv4 0.0.0.0/0, any[1] IPv6 ::/0) and, while there are at most
 * XNIC_HEAD_EXACT exact prefixes, their ways too, so that the common
 * tables cost one array lookup. Beyond that every exact prefix is in
 * fast_rules, an array of buckets of two ways, in one of its two candidate
 * buckets (rule_buckets) or, when all four ways are taken, only in the
 * trie (counted in head.overflow).
 *
 * User space writes both maps through mmap, inside a sequence lock: it
 * makes head.seq odd, changes what it must (ways, counts), and makes seq
 * even again, with ordered stores (x86-64; elsewhere the index stays off).
 * The program reads seq before and after it reads the index, with compiler
 * barriers in between; if seq was odd or changed, it forgets what it read
 * and walks the trie. The trie is always updated on its own, one prefix
 * per update, before the index, so a frame sees every rule change whole:
 * before it or after it.
 */
#define XNIC_FAST_RULES 5 /* rules in a way */

/* fast_way.flags */
#define XNIC_WAY_USED 0x1 /* the way holds a prefix's rules */
#define XNIC_WAY_TRIE 0x2 /* the set does not fit a way: walk the trie */

struct fast_rule {
	__u16 port_lo; /* destination port range, host order */
	__u16 port_hi;
	__u8 proto; /* XNIC_RULE_ANY or an IP protocol */
	__u8 guest;
	__u8 class;
	__u8 flags; /* XNIC_CLASS_FROM_DSCP */
};

struct fast_way {
	__u8 addr[16]; /* the prefix, IPv4-mapped; 0 for the /0 ways */
	__u8 flags;    /* XNIC_WAY_USED, XNIC_WAY_TRIE */
	__u8 family;   /* of every rule in rules[] */
	__u8 count;    /* rules in use, 0..XNIC_FAST_RULES */
	__u8 pad[5];
	struct fast_rule rules[XNIC_FAST_RULES];
} __attribute__((aligned(8)));

struct fast_rule_bucket {
	struct fast_way way[2];
};

#define XNIC_HEAD_EXACT 2 /* exact prefixes the head holds */

struct rule_head {
	__u32 seq;      /* odd while user space changes the index */
	__u32 on;       /* 0: the index is not kept, always walk the trie */
	__u32 middles;  /* trie prefixes that are neither exact nor /0 */
	__u32 overflow; /* exact prefixes in no way */
	__u32 hashed;   /* exact prefixes in fast_rules; 0: they are in exact[] */
	__u32 in_head;  /* exact prefixes in exact[], the first ones */
	struct fast_way any[2]; /* 0.0.0.0/0 and ::/0 */
	struct fast_way exact[XNIC_HEAD_EXACT];
};

/* A cached rule lookup: its outcome, valid while gen == ctl.rule_gen. */
struct rule_cache_entry {
	struct flow_target target;
	__u32 gen;
};

/* Per rx queue counters. Every frame counts in rx_packets and in exactly
 * one of redirected, pass_*, dropped_malformed, early_drops. */
struct steer_stats {
	__u64 rx_packets;        /* every frame the program saw */
	__u64 rx_bytes;          /* their bytes, without FCS */
	__u64 redirected;        /* to an AF_XDP socket */
	__u64 pass_non_ip;       /* not IP and not steered ARP */
	__u64 pass_control;      /* unmatched ICMP/ICMPv6 (ping, NDP) */
	__u64 pass_unmatched;    /* other IP without flow or rule */
	__u64 pass_no_socket;    /* matched, but no socket for the slot */
	__u64 dropped_malformed; /* sum of the drop_* counters */
	/* How frames were matched (not verdicts). */
	__u64 flow_hits;         /* exact flow table */
	__u64 rule_hits;         /* rule table */
	__u64 rule_cache_hits;   /* rule lookups answered by the rule cache */
	__u64 redirected_class0; /* class socket missing, to the guest's class 0 */
	__u64 rx_fragments;      /* non-first fragments (no ports) */
	__u64 rx_unknown_l4;     /* IP with an L4 protocol not decoded */
	/* Malformed frames by reason, in enum xnic_reason order. */
	__u64 drop_trunc_ethernet;
	__u64 drop_trunc_vlan;
	__u64 drop_too_many_vlans;
	__u64 drop_trunc_ipv4;
	__u64 drop_bad_ipv4;
	__u64 drop_trunc_ipv6;
	__u64 drop_bad_ipv6;
	__u64 drop_trunc_ext_header;
	__u64 drop_too_many_ext_headers;
	__u64 drop_ip_length;
	__u64 drop_trunc_l4;
	__u64 drop_bad_tcp_offset;
	/* Congestion: the admission of struct occ_slot. */
	__u64 early_drops; /* a verdict: over a slot's threshold, XDP_DROP */
	__u64 ecn_marked;  /* over a threshold, ECN-capable: CE, redirected */
};

/* Per (guest, class) counters, over all queues. */
struct steer_slot_stats {
	__u64 packets;           /* classified to this slot */
	__u64 bytes;
	__u64 redirected;        /* to this slot's own socket */
	__u64 redirected_class0; /* no socket here: to the guest's class 0 */
	__u64 pass_no_socket;    /* neither socket: to the kernel */
	__u64 early_drops;       /* the socket's slot over its threshold: dropped */
	__u64 ecn_marked;        /* the same, ECN-capable: CE, redirected */
};

/*
 * Receive congestion: one entry per XSKMAP slot, same index. The program
 * adds one to count for every frame it lets into the slot (a plain add:
 * it is count's only writer, and a queue's frames run on one CPU at a
 * time). The worker that polls the slot's socket publishes, in one 64-bit
 * store, the socket's rx ring occupancy and the count it read at that
 * moment (its mark), so the ring holds about
 *     depth = occ + (count - mark)
 * frames between two publishes, without a system call and without an
 * atomic operation here. The control plane sets limit: a threshold (0:
 * off) and XNIC_CONG_ECN. While the threshold is not 0 and depth reaches
 * it, a frame for the slot is dropped here, before the copy into UMEM, or
 * with XNIC_CONG_ECN and an ECN-capable frame (ECT(0), ECT(1), CE), marked
 * CE and let in. Each (guest, class) has its own slot, so one class's
 * backlog never costs another class a frame. Nothing is read unless
 * ctl.cong_on, which user space sets while some slot has a threshold.
 */
#define XNIC_CONG_ECN 0x80000000U /* in limit: mark CE instead of dropping */
#define XNIC_CONG_THRESH 0x7fffffffU /* in limit: the threshold */

struct occ_slot {
	__u64 pub;   /* occ | (__u64)mark << 32, as the worker last published */
	__u32 count; /* frames let into the slot, modulo 2^32 */
	__u32 limit; /* threshold | XNIC_CONG_ECN; threshold 0: off */
};

/* steer's verdict for a frame let in with CE: the caller, which has the
 * frame, marks it and returns XDP_REDIRECT. Never a program's verdict. */
#define XNIC_REDIRECT_CE (XDP_REDIRECT | 0x100)

/* The sockets: key = slot, see above. User space sets max_entries to
 * cfg_queues * cfg_guests * cfg_classes. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64 * 64 * 8);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* Receive congestion by slot, see struct occ_slot; max_entries as xsks. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 64 * 64 * 8);
	__type(key, __u32);
	__type(value, struct occ_slot);
} occupancy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rule_key);
	__type(value, struct rule_set);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct flow_key);
	__type(value, struct flow_target);
} flows SEC(".maps");

/* max_entries (a power of two) set by user space, cfg_fast_mask + 1. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct fast_bucket);
} fast_flows SEC(".maps");

/* Rule lookup outcomes by flow key; max_entries set by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct rule_cache_entry);
} rule_cache SEC(".maps");

/*
 * The rule memo: the last rule decisions of a CPU, per rx queue. The rules
 * decide on the destination address, the protocol and the destination
 * port only, so while the rules do not change (ctl.rule_gen is the same)
 * the decision for a frame with the same three is the same; and while no
 * rule has a port range (ctl.rule_ports is 0), the same for every port,
 * so the memo then leaves the port out: a guest's connections, each to
 * its own local port, share the entry of its address. A frame of a
 * busy flow then skips the fast rule index (or the trie walk) for a few
 * loads from this CPU's own memory: the index is shared memory, and in the
 * receive path, between two frames, the rest of the kernel's work evicts
 * it (xnic bench: the index's decision cost the catch-all receive 10% of
 * its rate, the memo takes back about a third of that; a miss costs 3-4 ns
 * in steer-prog). XNIC_MEMO_WAYS entries per queue,
 * direct-mapped by the address's low word and the port; an entry holds one
 * decision, a match (the rule's target) or XNIC_NO_MATCH, and is valid
 * while gen == ctl.rule_gen: the program reads the generation before it
 * decides, and user space bumps it after every rule change, so a decision
 * taken on older rules is never used again. The program reads rule_ports
 * after the generation, and user space changes rule_ports in a write of
 * its own before the one that bumps the generation: a program that read
 * the new generation reads the new rule_ports. Not pinned: a new program
 * starts with an empty memo. Per CPU, so no counter or entry is shared.
 */
#define XNIC_MEMO_WAYS 8

struct rule_memo {
	__u64 a0, a1; /* destination address, IPv4-mapped, as in xnic_match */
	__u32 tag;    /* family << 24 | proto << 16 | dport (0 while no rule
		       * has ports); 0: empty */
	__u32 gen;    /* ctl.rule_gen read before the decision */
	struct flow_target target; /* flags XNIC_NO_MATCH: no rule matched */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 64 * XNIC_MEMO_WAYS);
	__type(key, __u32);
	__type(value, struct rule_memo);
} rule_memos SEC(".maps");

/* The fast rule index, see struct rule_head. User space sets the number
 * of fast_rules buckets, a power of two, 1 << (64 - cfg_rules_shift). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rule_head);
} fast_rules_head SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct fast_rule_bucket);
} fast_rules SEC(".maps");

/* Control words written by user space, read per frame. */
struct steer_ctl {
	__u32 rule_gen;      /* bumped after every rule change */
	__u32 flows_in_use;  /* 0 until a flow is installed: skip the flow table */
	__u32 rule_cache_on; /* 0: the rule table is small, walk it every time */
	__u32 fast_in_use;   /* 0 until a flow is placed in fast_flows */
	__u32 cong_on;       /* 0 while no slot has a threshold: skip occupancy */
	__u32 rule_ports;    /* 0 while no rule has a port range: the rule memo
			      * then keys on the address and protocol only */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_ctl);
} ctl SEC(".maps");

/*
 * The program reads ctl and fast_rules_head, one-entry arrays, as global
 * data: xnic_ctl and xnic_head stand for their values, and LoadSteer
 * points the references to these sections at the maps themselves (see
 * directMaps in steer.go). A field is then one load from a constant
 * address, with no lookup, no key on the stack, no null check and no
 * call, across which the compiler spills what it keeps in registers.
 * Hidden, so that they are not variables of the collection, and not
 * static, so that the compiler never takes their contents for constant.
 */
#define XNIC_HIDDEN __attribute__((visibility("hidden")))
struct steer_ctl xnic_ctl SEC(".data.ctl") XNIC_HIDDEN;
struct rule_head xnic_head SEC(".data.fast_rules_head") XNIC_HIDDEN;

/* DSCP -> class, for rules and flows with XNIC_CLASS_FROM_DSCP. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} dscp_class SEC(".maps");

/* Per rx queue, per CPU. Frames on queues >= cfg_queues go to the kernel
 * uncounted. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct steer_stats);
} stats SEC(".maps");

/* Per (guest, class), per CPU: key guest * cfg_classes + class. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 64 * 8);
	__type(key, __u32);
	__type(value, struct steer_slot_stats);
} slot_stats SEC(".maps");

static __always_inline void count_malformed(struct steer_stats *st,
					    __u32 reason)
{
	__u32 i = reason - XNIC_FIRST_MALFORMED;
	__u64 *by_reason = &st->drop_trunc_ethernet;

	st->dropped_malformed++;
	if (i <= XNIC_LAST_MALFORMED - XNIC_FIRST_MALFORMED)
		by_reason[i]++;
}

static __always_inline int rule_matches(const struct rule *r,
					const struct xnic_match *m, int arp)
{
	if (r->family != m->family)
		return 0;
	if (r->proto == XNIC_RULE_ARP)
		return arp;
	if (arp)
		return 0;
	if (r->proto != XNIC_RULE_ANY && r->proto != m->proto)
		return 0;
	return m->dport >= r->port_lo && m->dport <= r->port_hi;
}

/*
 * walk_rules finds the first matching rule of the most specific prefix that
 * has one, trying up to XNIC_RULE_DEPTH prefixes; it starts with the
 * prefixes of length start and shorter, counting skip prefixes as tried.
 * It copies the target into *out and returns 1, or returns 0.
 */
static __always_inline int walk_rules(const struct xnic_match *m, int arp,
				      struct flow_target *out, __u32 start,
				      int skip)
{
	struct rule_key key = { .prefixlen = start };
	int depth, i;

	__builtin_memcpy(&key.addr[0], &m->a0, 8);
	__builtin_memcpy(&key.addr[8], &m->a1, 8);

	for (depth = skip; depth < XNIC_RULE_DEPTH; depth++) {
		struct rule_set *set = bpf_map_lookup_elem(&rules, &key);
		__u32 count;

		if (!set)
			return 0;
		count = set->count;
		for (i = 0; i < XNIC_RULES_PER_PREFIX; i++) {
			const struct rule *r = &set->rules[i];

			if (i >= count)
				break;
			if (rule_matches(r, m, arp)) {
				out->guest = r->guest;
				out->class = r->class;
				out->flags = r->flags;
				return 1;
			}
		}
		if (set->prefixlen == 0 || set->prefixlen > 128)
			return 0;
		key.prefixlen = set->prefixlen - 1;
	}
	return 0;
}

/* rule_buckets are the two candidate buckets of an exact prefix:
 * multiplicative hashes of the address, short in latency, as the program
 * waits for them; ruleBuckets in fastrules.go is the twin. For IPv4 a0 is
 * 0 and the address is the high half of a1, where the top bits of the
 * products take it from. */
static __always_inline void rule_buckets(const struct xnic_match *m,
					 __u32 *b1, __u32 *b2)
{
	__u64 x = m->a1 + m->a0 * 0xc2b2ae3d27d4eb4fULL;

	*b1 = (x * 0x9e3779b97f4a7c15ULL) >> cfg_rules_shift;
	*b2 = (x * 0x165667b19e3779f9ULL) >> cfg_rules_shift;
}

/* way_is says whether w holds the prefix of the frame's destination. */
static __always_inline int way_is(const struct fast_way *w,
				  const struct xnic_match *m)
{
	const __u64 *a = (const __u64 *)w->addr;

	return a[0] == m->a0 && a[1] == m->a1 && (w->flags & XNIC_WAY_USED);
}

/* fast_way_of returns the way of bucket idx that holds the frame's
 * destination, or 0. */
static __always_inline const struct fast_way *
fast_way_of(__u32 idx, const struct xnic_match *m)
{
	const struct fast_rule_bucket *b =
		bpf_map_lookup_elem(&fast_rules, &idx);

	if (!b)
		return 0;
	if (way_is(&b->way[0], m))
		return &b->way[0];
	if (way_is(&b->way[1], m))
		return &b->way[1];
	return 0;
}

/* fast_way_match: the first rule of w that matches an IP frame. */
static __always_inline int fast_way_match(const struct fast_way *w,
					  const struct xnic_match *m,
					  struct flow_target *out)
{
	__u32 n = w->count;
	int i;

	if (w->family != m->family)
		return 0;
#pragma unroll
	for (i = 0; i < XNIC_FAST_RULES; i++) {
		const struct fast_rule *r = &w->rules[i];

		if (i >= n)
			break;
		if (r->proto != XNIC_RULE_ANY && r->proto != m->proto)
			continue;
		if (m->dport < r->port_lo || m->dport > r->port_hi)
			continue;
		out->guest = r->guest;
		out->class = r->class;
		out->flags = r->flags;
		return 1;
	}
	return 0;
}

/* What the fast rule index says about a frame. */
enum {
	XNIC_FAST_NO_MATCH,  /* no rule matches */
	XNIC_FAST_MATCH,     /* *out is the matching rule's target */
	XNIC_FAST_WALK,      /* walk the trie */
	XNIC_FAST_WALK_LESS, /* the exact prefix has no match: walk below it */
};

/* fast_rules_read looks the IP frame up in the index, between the reads of
 * the sequence (fast_rules_decide). */
static __always_inline int fast_rules_read(const struct rule_head *h,
					   const struct xnic_match *m,
					   struct flow_target *out)
{
	const struct fast_way *w = 0;
	__u32 b1, b2;

	if (h->hashed) {
		rule_buckets(m, &b1, &b2);
		w = fast_way_of(b1, m);
		if (!w)
			w = fast_way_of(b2, m);
	} else if (h->in_head) {
		if (way_is(&h->exact[0], m))
			w = &h->exact[0];
		else if (way_is(&h->exact[1], m))
			w = &h->exact[1];
	}
	if (w) {
		if (w->flags & XNIC_WAY_TRIE)
			return XNIC_FAST_WALK;
		if (fast_way_match(w, m, out))
			return XNIC_FAST_MATCH;
		if (h->middles)
			return XNIC_FAST_WALK_LESS;
	} else if (h->middles || h->overflow) {
		return XNIC_FAST_WALK;
	}
	/* Below the exact prefix only the /0 of the frame's family can
	 * match: the other /0 holds only rules of the other family. */
	w = &h->any[m->family == 4 ? 0 : 1];
	if (w->flags & XNIC_WAY_TRIE)
		return XNIC_FAST_WALK;
	if ((w->flags & XNIC_WAY_USED) && fast_way_match(w, m, out))
		return XNIC_FAST_MATCH;
	return XNIC_FAST_NO_MATCH;
}

#define xnic_barrier() asm volatile("" ::: "memory")

/*
 * fast_rules_decide asks the index about an IP frame inside the sequence
 * lock: XNIC_FAST_WALK when the index is off or user space changed it
 * meanwhile, else what fast_rules_read said.
 */
static __always_inline int fast_rules_decide(const struct rule_head *h,
					     const struct xnic_match *m,
					     struct flow_target *out)
{
	__u32 seq;
	int res;

	if (!h->on)
		return XNIC_FAST_WALK;
	seq = *(const volatile __u32 *)&h->seq;
	if (seq & 1)
		return XNIC_FAST_WALK;
	xnic_barrier();
	res = fast_rules_read(h, m, out);
	xnic_barrier();
	if (*(const volatile __u32 *)&h->seq != seq)
		return XNIC_FAST_WALK;
	return res;
}

/* match_of is what the rules of a parsed frame are matched on. */
static __always_inline void match_of(const struct xnic_pkt *pkt,
				     struct xnic_match *m)
{
	if (pkt->arp) {
		m->a0 = 0;
		m->a1 = 0xffff0000ULL | ((__u64)pkt->arp_tpa << 32);
		m->family = 4;
		m->proto = 0;
		m->dport = 0;
		return;
	}
	__builtin_memcpy(&m->a0, &pkt->key.dst[0], 8);
	__builtin_memcpy(&m->a1, &pkt->key.dst[8], 8);
	m->family = pkt->key.family;
	m->proto = pkt->key.proto;
	m->dport = pkt->key.dport;
}

/*
 * xnic_walk walks the trie for an address (a0, a1) and what = family |
 * proto << 8 | dport << 16, starting at prefix length from & 0xff (128, or
 * 127 below an exact prefix that had no match, counted as tried), for ARP
 * when from & 0x100. It returns the target, guest | class << 8 | flags <<
 * 16, or -1. A global function, verified once for both paths that walk.
 */
__noinline int xnic_walk(__u64 a0, __u64 a1, __u32 what, __u32 from)
{
	struct xnic_match m = { .a0 = a0, .a1 = a1, .family = what & 0xff,
				.proto = (what >> 8) & 0xff, .dport = what >> 16 };
	struct flow_target t = {};
	__u32 start = from & 0xff;

	if (!walk_rules(&m, (from >> 8) & 1, &t, start, start < 128))
		return -1;
	return t.guest | (__u32)t.class << 8 | (__u32)t.flags << 16;
}

/* walk_for walks the trie where the index left off (XNIC_FAST_WALK or
 * XNIC_FAST_WALK_LESS): 1 and the target in *out, or 0. */
static __always_inline int walk_for(const struct xnic_match *m, int arp,
				    struct flow_target *out, int res)
{
	int t = xnic_walk(m->a0, m->a1,
			  m->family | (__u32)m->proto << 8 | (__u32)m->dport << 16,
			  (res == XNIC_FAST_WALK_LESS ? 127 : 128) | (arp ? 0x100 : 0));

	if (t < 0)
		return 0;
	out->guest = t;
	out->class = t >> 8;
	out->flags = t >> 16;
	return 1;
}

static __always_inline __u32 class_of(const struct flow_target *t, __u8 tos)
{
	__u32 dscp, *c;

	if (!(t->flags & XNIC_CLASS_FROM_DSCP))
		return t->class;
	dscp = tos >> 2;
	c = bpf_map_lookup_elem(&dscp_class, &dscp);
	return c ? *c : 0;
}

/* fast_hash mixes an IPv4 flow key; fastHash in fastflows.go is its twin.
 * The low word picks a flow's first bucket, the high word its second. */
static __always_inline __u64 fast_hash(__u32 src, __u32 dst, __u32 ports,
				       __u32 pv)
{
	__u64 h = (((__u64)src << 32) | dst) * 0x9e3779b97f4a7c15ULL;

	h ^= (((__u64)ports << 32) | pv) * 0xc2b2ae3d27d4eb4fULL;
	h ^= h >> 29;
	h *= 0x165667b19e3779f9ULL;
	h ^= h >> 32;
	return h;
}

/* fast_find looks for words (w0, w1 without target) in bucket idx. */
static __always_inline int fast_find(__u32 idx, __u64 w0, __u64 w1,
				     struct flow_target *out)
{
	const struct fast_bucket *b = bpf_map_lookup_elem(&fast_flows, &idx);
	int i;

	if (!b)
		return 0;
#pragma unroll
	for (i = 0; i < XNIC_FAST_WAYS; i++) {
		const volatile __u64 *w = (const volatile __u64 *)&b->way[i];
		__u64 got;

		if (w[0] != w0)
			continue;
		got = w[1];
		if ((got & XNIC_FAST_KEY_MASK) != w1)
			continue;
		out->guest = got >> 40;
		out->class = (got >> 48) & 0xf;
		out->flags = 0;
		return 1;
	}
	return 0;
}

/* fast_lookup finds an IPv4 flow in fast_flows, in its first bucket or
 * else its second: 1 and *out, or 0. src and dst are the addresses as
 * loaded from the frame, ports sport | dport << 16 in host order. */
static __always_inline int fast_lookup(__u32 src, __u32 dst, __u32 ports,
				       __u8 proto, __u16 vlan,
				       struct flow_target *out)
{
	__u32 pv;
	__u64 h, w0, w1;

	w0 = (__u64)src | ((__u64)dst << 32);
	if (w0 == 0)
		return 0; /* 0 marks an empty way: such flows are in the LRU hash */
	pv = (__u32)proto | ((__u32)vlan << 16);
	w1 = (__u64)ports | ((__u64)proto << 32) | ((__u64)vlan << 52);
	h = fast_hash(src, dst, ports, pv);
	if (fast_find((__u32)h & cfg_fast_mask, w0, w1, out))
		return 1;
	return fast_find((__u32)(h >> 32) & cfg_fast_mask, w0, w1, out);
}

/*
 * admit decides, while ctl.cong_on, whether slot, whose socket takes a
 * frame, lets it in (XDP_REDIRECT), lets it in with CE (XNIC_REDIRECT_CE)
 * or drops it (XDP_DROP, counted), see struct occ_slot. tos is the IPv4
 * TOS or IPv6 traffic class, 0 for ARP.
 */
static __always_inline int admit(__u32 slot, __u8 tos, struct steer_stats *st,
				 struct steer_slot_stats *ss)
{
	struct occ_slot *o = bpf_map_lookup_elem(&occupancy, &slot);
	__u32 limit, count;
	__u64 pub;

	if (!o)
		return XDP_REDIRECT;
	limit = *(volatile __u32 *)&o->limit;
	if (!(limit & XNIC_CONG_THRESH))
		return XDP_REDIRECT;
	pub = *(volatile __u64 *)&o->pub;
	count = o->count;
	/* occ + frames let in since the mark, modulo 2^32 like count. */
	if ((__u64)(__u32)pub + (__u32)(count - (__u32)(pub >> 32)) <
	    (limit & XNIC_CONG_THRESH)) {
		o->count = count + 1;
		return XDP_REDIRECT;
	}
	if ((limit & XNIC_CONG_ECN) && (tos & 3)) {
		o->count = count + 1;
		st->ecn_marked++;
		if (ss)
			ss->ecn_marked++;
		return XNIC_REDIRECT_CE;
	}
	st->early_drops++;
	if (ss)
		ss->early_drops++;
	return XDP_DROP;
}

/* steer redirects to the slot of (guest, class) on queue, or its class 0;
 * with cong (ctl.cong_on) the slot that would take the frame admits it
 * first. It may return XNIC_REDIRECT_CE. */
static __always_inline int steer(__u32 queue, __u32 guest, __u32 class,
				 __u32 len, __u8 tos, __u32 cong,
				 struct steer_stats *st)
{
	struct steer_slot_stats *ss;
	__u32 base, key;
	long act;

	if (guest >= cfg_guests) {
		st->pass_no_socket++;
		return XDP_PASS;
	}
	if (class >= cfg_classes)
		class = 0;
	/* The slot stats key, and the slot on queue 0. */
	key = guest * cfg_classes + class;
	base = queue * cfg_queue_slots + key - class;
	ss = bpf_map_lookup_elem(&slot_stats, &key);
	if (ss) {
		ss->packets++;
		ss->bytes += len;
	}

	/* A redirect that admit then refuses is harmless: bpf_redirect_map
	 * only notes the target, and only XDP_REDIRECT acts on it. */
	act = bpf_redirect_map(&xsks, base + class, XDP_ABORTED);
	if (act == XDP_REDIRECT) {
		if (cong && (act = admit(base + class, tos, st, ss)) == XDP_DROP)
			return act;
		st->redirected++;
		if (ss)
			ss->redirected++;
		return act;
	}
	if (class != 0) {
		act = bpf_redirect_map(&xsks, base, XDP_ABORTED);
		if (act == XDP_REDIRECT) {
			if (cong && (act = admit(base, tos, st, ss)) == XDP_DROP)
				return act;
			st->redirected++;
			st->redirected_class0++;
			if (ss)
				ss->redirected_class0++;
			return act;
		}
	}
	st->pass_no_socket++;
	if (ss)
		ss->pass_no_socket++;
	return XDP_PASS;
}

/*
 * xnic_steer_ip decides for a parsed frame that is IP or ARP: flow table,
 * rules (the fast index, else the rule cache or a trie walk), then the
 * socket. It is a global function, so the
 * verifier checks it once, for any pkt, instead of once per path through
 * the parser: that keeps the program well inside the limits of older
 * verifiers. It touches no packet data, only *pkt: for XNIC_REDIRECT_CE the
 * caller marks the frame.
 */
__noinline int xnic_steer_ip(struct xnic_pkt *pkt, __u32 queue, __u32 len)
{
	struct flow_target target = {};
	struct flow_target *ft;
	struct steer_stats *st;
	struct steer_ctl *c = &xnic_ctl;
	__u32 guest, class;
	struct xnic_match m;
	int res;

	if (!pkt)
		return XDP_PASS;
	st = bpf_map_lookup_elem(&stats, &queue);
	if (!st)
		return XDP_PASS; /* cannot happen: checked by the caller */

	if (!pkt->arp && pkt->key.family == 4 && c->fast_in_use &&
	    fast_lookup(*(__u32 *)&pkt->key.src[12], *(__u32 *)&pkt->key.dst[12],
			(__u32)pkt->key.sport | ((__u32)pkt->key.dport << 16),
			pkt->key.proto, pkt->key.vlan, &target)) {
		st->flow_hits++;
		goto steer;
	}
	if (!pkt->arp && c->flows_in_use) {
		ft = bpf_map_lookup_elem(&flows, &pkt->key);
		if (ft) {
			st->flow_hits++;
			target = *ft;
			goto steer;
		}
	}
	/* The fast rule index first (ARP always walks the trie); the rule
	 * cache only saves trie walks. */
	match_of(pkt, &m);
	res = XNIC_FAST_WALK;
	if (!pkt->arp)
		res = fast_rules_decide(&xnic_head, &m, &target);
	if (res == XNIC_FAST_NO_MATCH) {
		target.flags = XNIC_NO_MATCH;
	} else if (res == XNIC_FAST_MATCH) {
		/* target set */
	} else if (cfg_rule_cache && c->rule_cache_on && !pkt->arp) {
		struct rule_cache_entry *ce, entry = {};

		/* Read the generation before the rule lookup: an outcome
		 * computed from rules older than gen is never stored as gen. */
		entry.gen = *(volatile __u32 *)&c->rule_gen;
		ce = bpf_map_lookup_elem(&rule_cache, &pkt->key);
		if (ce && ce->gen == entry.gen) {
			st->rule_cache_hits++;
			target = ce->target;
		} else {
			if (!walk_for(&m, 0, &target, res))
				target.flags = XNIC_NO_MATCH;
			entry.target = target;
			bpf_map_update_elem(&rule_cache, &pkt->key, &entry,
					    BPF_ANY);
		}
	} else if (!walk_for(&m, pkt->arp, &target, res)) {
		target.flags = XNIC_NO_MATCH;
	}
	if (target.flags & XNIC_NO_MATCH) {
		if (pkt->arp)
			st->pass_non_ip++;
		else if (pkt->key.proto == XNIC_PROTO_ICMP ||
			 pkt->key.proto == XNIC_PROTO_ICMPV6)
			st->pass_control++;
		else
			st->pass_unmatched++;
		return XDP_PASS;
	}
	st->rule_hits++;
steer:
	guest = target.guest;
	class = class_of(&target, pkt->tos);
	return steer(queue, guest, class, len, pkt->tos, c->cong_on, st);
}

/*
 * mark_ce sets CE in the ECN field of the IP header at l3 (family 4 or 6),
 * of a frame steer found ECN-capable; for IPv4 it updates the header
 * checksum incrementally (RFC 1624: HC' = ~(~HC + ~m + m')), over the
 * 16-bit word of version, IHL and TOS.
 */
static __always_inline void mark_ce(void *l3, void *data_end, __u8 family)
{
	if (family == 4) {
		struct iphdr *iph = l3;
		__u16 old, new;
		__u32 sum;

		if ((void *)(iph + 1) > data_end)
			return;
		old = *(__u16 *)iph;
		new = old | bpf_htons(0x3); /* the TOS byte's ECN bits */
		if (new == old)
			return; /* already CE */
		sum = (__u16)~iph->check + (__u16)~old + new;
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		*(__u16 *)iph = new;
		iph->check = ~sum;
	} else if (family == 6) {
		__u8 *tc = l3;

		if ((void *)(tc + 2) > data_end)
			return;
		/* The traffic class's ECN bits are bits 5:4 of byte 1. */
		tc[1] |= 0x30;
	}
}

/*
 * rule_decision sets *out to the rules' decision for an IP frame of the
 * common path, a rule's target or flags XNIC_NO_MATCH: from this CPU's
 * rule memo, else from the fast rule index or a trie walk, and then keeps
 * it in the memo (see struct rule_memo). It returns -1, having decided
 * nothing, when a walk would need the rule cache, which wants the full
 * parser's flow key.
 */
static __always_inline int rule_decision(const struct steer_ctl *c,
					 const struct xnic_match *m,
					 __u32 queue, struct flow_target *out)
{
	struct rule_memo *memo;
	__u32 gen, mport, tag, key;
	int res;

	/* The generation, then rule_ports: see struct rule_memo. */
	gen = *(const volatile __u32 *)&c->rule_gen;
	mport = *(const volatile __u32 *)&c->rule_ports ? m->dport : 0;
	tag = (__u32)m->family << 24 | (__u32)m->proto << 16 | mport;
	key = queue * XNIC_MEMO_WAYS +
	      (((__u32)(m->a1 >> 32) ^ mport) & (XNIC_MEMO_WAYS - 1));
	memo = bpf_map_lookup_elem(&rule_memos, &key);
	if (memo && memo->tag == tag && memo->gen == gen &&
	    memo->a1 == m->a1 && memo->a0 == m->a0) {
		*out = memo->target;
		return 0;
	}
	res = fast_rules_decide(&xnic_head, m, out);
	if (res == XNIC_FAST_NO_MATCH) {
		out->flags = XNIC_NO_MATCH;
	} else if (res != XNIC_FAST_MATCH) {
		if (cfg_rule_cache && c->rule_cache_on)
			return -1;
		if (!walk_for(m, 0, out, res))
			out->flags = XNIC_NO_MATCH;
	}
	if (memo) {
		memo->a0 = m->a0;
		memo->a1 = m->a1;
		memo->tag = tag;
		memo->gen = gen;
		memo->target = *out;
	}
	return 0;
}

/* steer_l4 is the rest of steer_common once the IP header is read, inlined
 * once per family: with the family a constant, the compiler drops what
 * the other family needs (IPv4's a0 is 0) and keeps fewer values live. */
static __always_inline int steer_l4(void *data, void *data_end, __u32 queue,
				    __u32 len, struct steer_stats *st,
				    void *l3, void *l4, void *end,
				    struct xnic_match m, __u8 tos)
{
	const struct steer_ctl *c = &xnic_ctl;
	struct flow_target target = {};
	int res;

	/* The IP length inside the frame and the L4 header inside the IP
	 * length: otherwise malformed, for the full path. */
	if (end > data_end)
		return -1;
	if (m.proto == XNIC_PROTO_UDP) {
		if (l4 + 8 > end || l4 + 8 > data_end)
			return -1;
	} else if (m.proto == XNIC_PROTO_TCP) {
		__u32 hl;

		if (l4 + 20 > end || l4 + 20 > data_end)
			return -1;
		hl = (__u32)(((__u8 *)l4)[12] >> 4) * 4;
		if (hl < 20 || l4 + hl > end)
			return -1;
	} else {
		return -1;
	}
	m.dport = bpf_ntohs(*(__u16 *)(l4 + 2));

	if (m.family == 4 && c->fast_in_use) {
		struct iphdr *iph = l3;
		__u16 vlan = 0;

		if (l3 != data + sizeof(struct ethhdr))
			vlan = bpf_ntohs(*(__u16 *)(data + 14)) & 0x0fff;
		if (fast_lookup(iph->saddr, iph->daddr,
				(__u32)bpf_ntohs(*(__u16 *)l4) |
					((__u32)m.dport << 16),
				m.proto, vlan, &target)) {
			st->flow_hits++;
			goto steer;
		}
	}
	if (c->flows_in_use)
		return -1;
	if (rule_decision(c, &m, queue, &target) < 0)
		return -1;
	if (target.flags & XNIC_NO_MATCH)
		goto unmatched;
	st->rule_hits++;
steer:
	res = steer(queue, target.guest, class_of(&target, tos), len, tos,
		    c->cong_on, st);
	if (res == XNIC_REDIRECT_CE) {
		mark_ce(l3, data_end, m.family);
		res = XDP_REDIRECT;
	}
	return res;
unmatched:
	st->pass_unmatched++; /* UDP or TCP: not pass_control */
	return XDP_PASS;
}

/*
 * steer_common decides for the common frame without the full parser and
 * without a call: Ethernet with at most one VLAN tag, then IPv4 without
 * options and not a fragment, or IPv6 without extension headers, carrying
 * UDP or TCP with its header whole inside the IP length. For such a frame
 * xnic_parse says XNIC_OK, and steer_common reads the same key fields
 * (the tests run the corpus and mutated frames through both paths). It
 * decides with the fast flow table, the fast rule index and, where the
 * index says so, a trie walk (steer_l4, once per family); it returns -1
 * having counted nothing when the LRU flow table or the rule cache is on,
 * and for other frames: the full path decides those.
 */
static __always_inline int steer_common(void *data, void *data_end,
					__u32 queue, __u32 len,
					struct steer_stats *st)
{
	struct xnic_match m = {};
	void *l3 = data + sizeof(struct ethhdr), *l4, *end;
	__u8 tos;
	__u16 proto;

	/* Few values live at once: what only some frames need (the source
	 * address and port, the VLAN, the TOS) is read again from the frame
	 * when needed, rather than kept. */
	if (l3 + sizeof(struct iphdr) > data_end)
		return -1;
	proto = *(__u16 *)(data + 12);
	if (proto != bpf_htons(ETH_P_IP) && proto != bpf_htons(ETH_P_IPV6)) {
		if (proto != bpf_htons(ETH_P_8021Q) &&
		    proto != bpf_htons(ETH_P_8021AD) &&
		    proto != bpf_htons(XNIC_ETH_P_QINQ2))
			return -1;
		proto = *(__u16 *)(l3 + 2); /* the tag's EtherType */
		l3 += sizeof(struct xnic_vlan_hdr);
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = l3;

		if ((void *)(iph + 1) > data_end)
			return -1;
		if (*(__u8 *)iph != 0x45 || /* version 4, no options */
		    (iph->frag_off & bpf_htons(XNIC_IP_MF | XNIC_IP_OFFSET)))
			return -1;
		end = l3 + bpf_ntohs(iph->tot_len);
		m.proto = iph->protocol;
		m.family = 4;
		m.a1 = 0xffff0000ULL | ((__u64)iph->daddr << 32); /* ::ffff:dst */
		tos = iph->tos;
		l4 = l3 + sizeof(*iph);
		return steer_l4(data, data_end, queue, len, st, l3, l4, end, m,
				tos);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		if (ip6->version != 6)
			return -1;
		end = l3 + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		m.proto = ip6->nexthdr;
		m.family = 6;
		__builtin_memcpy(&m.a0, &ip6->daddr.in6_u.u6_addr8[0], 8);
		__builtin_memcpy(&m.a1, &ip6->daddr.in6_u.u6_addr8[8], 8);
		tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
		l4 = l3 + sizeof(*ip6);
		return steer_l4(data, data_end, queue, len, st, l3, l4, end, m,
				tos);
	}
	return -1;
}

SEC("xdp")
int xnic_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = data_end - data;
	__u32 queue = ctx->rx_queue_index;
	struct xnic_pkt pkt;
	struct steer_stats *st;
	int ret;

	if (queue >= cfg_queues)
		return XDP_PASS;
	st = bpf_map_lookup_elem(&stats, &queue);
	if (!st)
		return XDP_PASS;
	st->rx_packets++;
	st->rx_bytes += len;

	ret = steer_common(data, data_end, queue, len, st);
	if (ret >= 0)
		return ret;

	__builtin_memset(&pkt, 0, sizeof(pkt));
	xnic_parse(data, data_end, &pkt);
	switch (pkt.reason) {
	case XNIC_OK:
		break;
	case XNIC_FRAGMENT:
		st->rx_fragments++;
		break;
	case XNIC_UNKNOWN_L4:
		st->rx_unknown_l4++;
		break;
	case XNIC_NON_IP:
		if (pkt.arp)
			break;
		st->pass_non_ip++;
		return XDP_PASS;
	default:
		count_malformed(st, pkt.reason);
		return XDP_DROP;
	}
	ret = xnic_steer_ip(&pkt, queue, len);
	if (ret == XNIC_REDIRECT_CE) {
		__u32 off = pkt.l3_off;

		/* l3_off is at most Ethernet and two VLAN tags. */
		if (off <= 64)
			mark_ce(data + off, data_end, pkt.key.family);
		ret = XDP_REDIRECT;
	}
	return ret;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
