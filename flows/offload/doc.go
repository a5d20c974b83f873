// Package offload does in software what an offload NIC does in silicon:
// checksum validation and computation, receive aggregation (GRO) and
// segmentation (TSO/GSO), on frames in the UMEM, in pure Go, without
// allocating on the hot paths.
//
// Buffer lifecycle. On receive the worker parses each frame (flows.Parse)
// and hands it to GRO.Receive with its handle (a UMEM address), then takes
// what is ready with GRO.Next until it returns nil. GRO either holds the
// frame in its flow's aggregate or queues it at once; a held frame stays
// the caller's memory but must not be reused until Next has handed out its
// aggregate. An Aggregate is a chain of the original frames: the first
// frame's headers, rewritten in place for the whole aggregate, and a view
// of every frame's payload; nothing is copied. Next hands out every frame
// exactly once, in order within a flow, with the handles to release them
// by; the Aggregate itself is GRO's and valid until the next Receive, Flush
// or FlushOlderThan. Held aggregates are ended by the Linux rules, and by
// Flush at the end of every receive batch (or FlushOlderThan, with a
// timeout), so no frame stays in GRO across batches unless a timeout says so.
//
// On transmit GSO.Segment takes a large segment as headers plus a payload
// chain (a guest's buffer, or an Aggregate's Request) and writes MSS-sized
// frames into buffers the caller supplies (free UMEM frames), with every
// header and checksum filled in; the source stays the caller's and can be
// released once Segment returns.
package offload
