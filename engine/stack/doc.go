// Package stack is a guest's own TCP/IP stack: gVisor's netstack with one
// Ethernet NIC whose wire is the xnic engine. The engine posts what it
// received for the guest (GRO aggregates and single frames) to the Stack,
// and the Stack hands every packet netstack sends to the engine through a
// TxFunc, as a TSO super-segment when it is larger than the MTU. Programs
// in the guest use the Stack like the net package: Listen, Dial,
// ListenPacket.
//
// Buffer lifecycle. On receive, the engine's worker hands GRO's Aggregate
// (a header and a chain of payload views into UMEM frames) to
// DeliverAggregate, or a lone frame to DeliverFrame. The Stack copies it
// once, headers and payloads back to back, into one buffer from netstack's
// pool, and passes that buffer up; it keeps no reference to the frames, so
// the worker returns them to the fill ring as soon as the call returns.
// netstack owns the copy from then on and frees it when the application
// has read the data. On transmit, netstack builds a packet in its own
// buffers (headers pushed into a reserved prefix, payload as views of the
// socket's send queue) and calls the endpoint's WritePackets on the
// writing goroutine; the Stack lays it out as a TxPacket (contiguous
// headers plus payload views, no copy) and calls the TxFunc, which copies
// it into free UMEM frames: for a TSO packet it segments it to the MSS with
// offload.GSO.Segment, for a CHECKSUM_PARTIAL one it completes the TCP
// checksum. When the TxFunc returns, netstack may free or reuse the
// packet, and the UMEM frames travel on through the tx ring and the
// completion ring back to the free list.
//
// Checksums. With Options.RxChecksumOffload the NIC advertises receive
// checksum offload, so netstack trusts every packet it is given; the Stack
// therefore verifies in software whatever the engine did not mark as
// validated (AggCsumValidated, or DeliverFrame's validated argument) before
// netstack sees it, except the L4 checksum of IP fragments. On transmit
// the NIC advertises no checksum offload, so netstack fills in every
// checksum except the TCP checksums of connections using TSO, which carry
// the pseudo-header sum only (TxPacket.CsumPartial).
//
// Concurrency. DeliverAggregate and DeliverFrame may be called from any
// goroutine, usually the engine worker. netstack mostly queues TCP
// segments to its own processor goroutines, but it handles some packets
// inline (ARP, NDP, ICMP, some TCP segments) and may then call the TxFunc
// from inside the delivery. The TxFunc is called from many goroutines at
// once. Counters are atomics, read with Stats.
package stack
