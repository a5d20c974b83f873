// Package bpf holds xnic's XDP programs and the Go API that loads them and
// gives typed access to their maps.
//
// The programs are written in C (steer.bpf.c, drop.bpf.c, gen.bpf.c,
// sharing include/parse.h) and compiled by bpf2go (see gen.go); the
// generated *_bpfel.go and *_bpfel.o files are committed.
//
//   - [Steer] (xnic_steer, version 2) is the receive steering program. It
//     parses every frame once (include/parse.h, the C twin of flows.Parse,
//     checked against it over corpus.Frames), drops malformed frames counted
//     by reason, and matches the rest to a [Slot] (guest, class): first the
//     exact flow table ([Steer.InstallFlow]; IPv4 flows in a lock-free
//     array of cache-line buckets written through mmap, see fastflows.go,
//     the rest in an LRU hash), then the rules ([Rule]: LPM
//     on the destination prefix, protocol, destination port range; ARP by
//     its target address), with the class from the rule or from the DSCP
//     ([Steer.SetDSCPClass]). The rules of exact and /0 prefixes are also
//     kept in the fast rule index (fastrules.go), two mmap'ed arrays read
//     under a sequence lock, which answers most lookups without a trie
//     walk; the common frame (at most one VLAN tag, IPv4 without options
//     or IPv6 without extension headers, UDP or TCP) is decided inline,
//     without the full parser. It redirects to the AF_XDP socket of that
//     slot on the frame's rx queue ([Steer.RegisterSlot]), or else of the
//     guest's class 0; unmatched frames and frames without a socket go to
//     the kernel. An optional rule cache (SteerOptions.RuleCache, off by
//     default), invalidated on every rule change, saves the trie walk for
//     the next frames of a flow. Receive congestion (occupancy.go): with a
//     threshold on a slot ([Steer.SetClassThreshold]) and the slot's rx
//     ring occupancy published by its worker ([OccupancyBoard.Publish],
//     through mmap), the program drops the slot's frames early, before the
//     copy into UMEM, or marks ECN-capable ones CE, once the ring is over
//     the threshold.
//   - [Counter] (xnic_drop, xnic_pass) counts frames and drops or passes them:
//     the XDP_DROP ceiling of the benchmarks, and the XDP program that lets a
//     veth deliver live-frames traffic to kernel sockets.
//   - [Gen] (xnic_gen) is the live-frames traffic generator, run through
//     BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES by a [LiveRunner].
//
// Programs for the tests and benchmarks only (the parser writing its result
// into a map, steer version 1's raw path) live apart, in package
// bpf/bpftest, built from the same include/parse.h.
//
// Lifecycle: Load* creates the maps and programs, Attach links a program to
// an interface through a bpf_link (so a crashed process never leaves it
// behind), and Close detaches, unpins and frees everything. A Steer loaded
// with SteerOptions.PinDir is the exception: its maps stay pinned after
// Close and the next LoadSteer with the same PinDir reuses them, rules,
// flows, DSCP classes, receive thresholds and counters included; Unpin
// removes them.
//
// Pin layout (Steer.Pin or SteerOptions.PinDir, one directory per port,
// e.g. /sys/fs/bpf/xnic/<port>/): xsks, stats, slot_stats, rules, flows,
// fast_flows, dscp_class, rule_cache, ctl, fast_rules_head, fast_rules,
// occupancy.
// Their values are BTF-typed, so `bpftool map dump pinned DIR/stats` prints
// field names. The fast rule index is rebuilt from the pinned rules by
// every LoadSteer, also over maps pinned before it existed. Counters are
// per-CPU arrays, by rx queue (stats) or by guest*Classes+class
// (slot_stats); Stats and SlotStats sum them over CPUs.
package bpf
