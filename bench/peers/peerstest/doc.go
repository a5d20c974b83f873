// Package peerstest tests the peers that xnic's own AF_XDP receiver (xnic rx)
// is benchmarked against; the peers themselves live one level up in
// bench/peers (a Go package directory may not hold C files, hence this one).
// No product package imports anything under bench/.
//
// Every peer receives and drops as fast as it can on one interface for a
// duration and takes -iface IF -queue Q -duration D -json. It prints "ready"
// on stderr when its measurement window opens (its socket is registered), a
// human summary on stdout when it closes, and with -json a last stdout line
// holding one JSON object with name, iface, queue, packets, seconds and pps,
// plus the kernel statistics of its socket.
//
//   - ../rxdrop_libxdp.c: C on libxdp's ring helpers, batch 64, busy polling,
//     need_wakeup. Adds XDP_STATISTICS fields.
//   - ../asavie/: the github.com/asavie/xdp v0.3.3 receive loop as its docs
//     write it. Adds XDP_STATISTICS fields.
//   - ../afpacket/: AF_PACKET TPACKET_V3 on golang.org/x/sys/unix. Adds
//     PACKET_STATISTICS fields (tp_packets, tp_drops, tp_freeze_q_cnt).
//
// The two AF_XDP peers load no XDP program: each inserts its socket at
// key=queue into the XSKMAP pinned at -xskmap and removes it on exit, so all
// of them run behind the same XDP program. Build them with
// `make -C bench/peers OUT=/abs/dir`.
package peerstest
