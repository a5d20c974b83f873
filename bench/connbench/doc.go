// Package connbench measures xnic's connection processing as a curve: how
// many context loads per packet, and how many nanoseconds per packet, the
// path lookahead (conn.Batcher) → context cache (conn.Cache) → connection
// table (conn.Table) → Context.Apply costs, against the number of
// connections N, for a grid of cache sizes and lookahead windows W. It is a
// normal package, so that `xnic bench conns` can run it without the test
// framework; WriteSVG draws the curve with gonum/plot and RenderMarkdown
// gives the README table.
//
// # Traffic
//
// The stream is UDP traffic (64-byte frames, already parsed: flows.Packet
// values with their keys) from N connections, pre-built once per N and read
// by every configuration. Connections take turns in a random order: each
// gets one burst of Burst packets, and a connection sends its next burst
// only after all N have had theirs (a fresh random order every round of N).
// Two models say how a burst's packets mix with those of other connections:
//
//   - ModelBlocks (the default): the stream is cut into blocks of Spread
//     packets. A block holds the bursts of Spread/Burst connections, whose
//     packets are shuffled together. A window of W = Spread aligned with the
//     blocks (batches and blocks both start at 0) sees exactly Burst packets
//     of each of its connections: the default Burst 4 and Spread 64 give 16
//     connections of 4 packets in every 64-packet window. (With fewer than
//     Spread/Burst connections, a connection sends several bursts a block.)
//   - ModelOverlap: a burst starts every Burst packets on average, and each
//     of its packets lands at a random place among the Spread packets that
//     follow its start. About Spread/Burst bursts are in flight at any point,
//     they overlap, and windows do not line up with them, so a window holds
//     fewer packets per connection than Burst.
//
// The expected loads per packet of a row is what lookahead alone would
// give: the connections per window divided by the packets per window
// (1/(packets per connection in the window)), counted in the stream with
// the row's batches and windows. The cache can only do better: it keeps
// contexts from one window to the next. With W = 1 the expectation is 1 load
// per packet; a cache larger than the connections in flight (Spread/Burst)
// catches the reuse inside a burst on its own, and then lookahead shows up in
// nanoseconds per packet (one cache lookup per connection and window, and the
// table misses prefetched) rather than in loads.
//
// # Measurement
//
// For every N, every cache size and every window, Run builds a fresh Table
// (capacity the power of two at or above 2N, so it is at most half full),
// inserts all N connections in a random order of their own (so the table's
// memory layout does not follow the stream), puts a Cache and a Processor in
// front of it, and runs one untimed warm-up pass over the stream. The timed
// passes follow, Rounds of them, the windows of one (N, cache) taking turns
// pass by pass so that they see the same machine load. A pass pushes the
// stream in batches of max(Batch, W) packets (a window never spans two
// batches), allocates nothing, and creates no context. A row reports the
// median ns per packet over its passes (and the fastest and slowest), the
// cache's loads and write-backs per packet over all its timed passes, and its
// speedup over the smallest window of the grid for the same N and cache.
package connbench
