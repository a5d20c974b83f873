// Package flows holds xnic's per-packet logic, in pure Go and testable
// without root: header views and the zero-allocation parser, flow keys and
// their hashes, the connection table and context cache, the lookahead
// batcher, GRO, GSO/TSO and checksums.
//
// Header views are byte slices with accessor methods (type TCP []byte). They
// never copy and never check bounds beyond what the slice gives: the parser
// establishes that a header is whole before it hands out a view.
package flows
