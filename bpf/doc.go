// Package bpf holds xnic's XDP programs and the Go API that loads them and
// gives typed access to their maps.
//
// The programs are written in C (steer.bpf.c, drop.bpf.c, gen.bpf.c, sharing
// include/parse.h) and compiled by bpf2go (see gen.go); the generated
// *_bpfel.go and *_bpfel.o files are committed.
//
//   - [Steer] (xnic_steer) is the receive steering program: IP traffic goes to
//     the AF_XDP socket registered for the rx queue in its XSKMAP, while
//     non-IP frames, ICMP/ICMPv6 (ping, NDP) and traffic on queues without a
//     socket go to the kernel. Malformed frames are dropped and counted.
//   - [Counter] (xnic_drop, xnic_pass) counts frames and drops or passes them:
//     the XDP_DROP ceiling of the benchmarks, and the XDP program that lets a
//     veth deliver live-frames traffic to kernel sockets.
//   - [Gen] (xnic_gen) is the live-frames traffic generator, run through
//     BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES by a [LiveRunner].
//
// Lifecycle: Load* creates the maps and programs, Attach links a program to
// an interface through a bpf_link (so a crashed process never leaves it
// behind), and Close detaches, unpins and frees everything. Counters are
// per-CPU arrays keyed by rx queue; Stats sums them over CPUs.
package bpf
