// Package gen is xnic's in-kernel traffic generator.
//
// It builds a template Ethernet + IPv4/IPv6 + UDP frame ([BuildUDP]) and has
// the kernel send it, again and again, with BPF_PROG_RUN in live-frames mode
// (BPF_F_TEST_XDP_LIVE_FRAMES): the xnic_gen XDP program from package bpf
// runs on every copy, varies the UDP source port over the flows, stamps a
// sequence number, fixes the UDP checksum and returns XDP_TX, so the frame
// leaves through the interface named in the context (the peer end of a veth,
// inside its netns) and arrives at the other end. That other end must have
// an XDP program attached, or veth drops the frames.
//
// Buffer lifecycle: the template is copied once into each worker's runner;
// the kernel copies it into page-pool pages, which it recycles without
// copying the template again, so xnic_gen rewrites the varying fields from
// what the page holds. Nothing is allocated per call in the run loop.
package gen
