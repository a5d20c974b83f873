// Package flows holds xnic's per-packet basics, in pure Go and testable
// without root: header views, the zero-allocation parser (Parse into a
// Packet the caller owns) and flow keys with their hashes. The packages
// under it build on them: conn (the connection table, the context cache
// and the lookahead batcher), offload (GRO, GSO/TSO and checksums) and
// replay (those offloads over a capture file).
//
// Header views are byte slices with accessor methods (type TCP []byte). They
// never copy and never check bounds beyond what the slice gives: the parser
// establishes that a header is whole before it hands out a view.
package flows
