// Package bench holds xnic's lab benchmarks, each measuring xnic side by side
// with its peers in one run, on one veth lab:
//
//   - Run, the receive benchmark: XDP_DROP, xnic's own AF_XDP receiver
//     (`xnic rx`, also through the receive pipeline with W=1 and W=64) and
//     its peers (a C rxdrop on libxdp's ring helpers, the asavie/xdp receive
//     loop and an AF_PACKET TPACKET_V3 loop), with one generator;
//   - RunTCP, the TCP benchmark: goodput both ways and HTTP requests per
//     second of a guest with its own stack (GRO and TSO on, then off), of
//     gVisor netstack on gVisor's own AF_XDP endpoint and of the host
//     kernel's TCP, from kernel TCP clients in the peer netns (see tcp.go);
//   - RunMigrate, the migration benchmark: how long a guest's download
//     stalls at the peer around a commanded migration and a link-down
//     failover between two ports, against a steady control (see
//     migrate.go).
//
// The receive benchmark is described below.
//
// Method. Run builds one lab (one veth pair, one queue) and, for each round,
// measures every contender in a fixed order:
//
//   - xdp-drop: the xnic_drop counting program, attached natively to the
//     host veth. Its rate is the packets it counted over a window of
//     Options.Duration that opens Options.Slack after the generator starts:
//     the ceiling every receiver is a fraction of.
//   - xnic-rx: `xnic rx --iface HOST --queue 0 --duration D --json --quiet
//     --attach native`, which loads and attaches its own steering program.
//   - libxdp-bare, asavie-own: the AF_XDP peers as their users run them,
//     each on the XDP program it loads itself: rxdrop_libxdp -bare attaches
//     a program that only redirects to the queue's socket, asavie -own-prog
//     the library's own program.
//   - libxdp-steer, asavie-steer: the same peers behind xnic_steer, loaded
//     here with its XSKMAP pinned in a fresh directory under /sys/fs/bpf and
//     attached natively; the peer inserts its socket into the pinned map.
//     Against xnic-rx they differ only in the user-space loop; against the
//     bare and own-program runs they show what the steering program costs.
//   - afpacket: the xnic_pass counting program attached natively, since veth
//     drops live frames unless the receiving end runs an XDP program; the
//     peer reads what the stack passes to its AF_PACKET ring.
//
// A receiver's rate is what it reports itself (its JSON "pps") over its own
// window, which opens when it prints its ready line. The generator starts
// right after that line and stops right after the receiver exits, so the
// whole window is under load; the time the generator takes to start is
// recorded as StartLag. Everything is detached and unpinned between
// contenders; subprocesses run in their own process group and are stopped by
// PID (SIGTERM, then SIGKILL) on error or cancellation.
//
// The generator is package gen: xnic_gen run in-kernel with BPF_PROG_RUN in
// live-frames mode from the lab's peer netns, XDP_TX out of the peer veth;
// on a kernel that refuses live frames, an AF_XDP tx ring on the peer veth
// instead (the report's generator line says which).
// On veth the receiving side's XDP program, the copy into an AF_XDP socket
// (copy mode) or the skb and the stack for AF_PACKET all run in the softirq
// of the CPU that sends, so the generator's CPU carries the whole kernel
// side and the receiver's CPU only the user-space loop. CPU placement is
// Options.GenCPU for this whole process (the generator's thread included)
// and Options.RxCPU for the receiver subprocess, the same for every
// contender, and the report states it.
//
// Each measurement also records Noise: the CPU time that tasks other than
// this process and its receiver used meanwhile. The machine must be idle
// for the figures to mean anything; the report warns when it was not.
//
// Run takes the lab slot of package labtest (an flock on
// /run/xnic/labtest/lock) while its lab is up, because every lab uses the
// same subnets: privileged tests then wait for the benchmark instead of
// failing, and the benchmark does not measure while a test runs.
package bench
