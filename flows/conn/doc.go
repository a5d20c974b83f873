// Package conn is xnic's connection processing: the connection table (the
// "host memory" of an offload NIC), the context cache (its "on-chip"
// memory), and the lookahead batcher that groups a window of packets or
// work requests by connection so that each context is loaded once per
// window.
//
// A context's life: the first packet of a connection misses the cache and
// the table, so LoadOrCreate creates the context in the table (Created) and
// copies it into a cache way, marking the table copy as cached. Later
// packets hit the cache way, or, once the way has been evicted (written back
// to the table), miss and load it again (Loaded). While cached, the cache
// holds the only current copy and the table's AgeOut skips it; Sync writes
// every cached copy back and keeps it cached, Flush writes back and empties
// the cache. A context idle for longer than the timeout is evicted from the
// cache by Cache.AgeOut and then deleted from the table, whose handle goes
// back on the free list with its generation bumped on reuse.
//
// A Processor runs a batch of parsed packets through all three: the
// Batcher plans a window of W packets into per-connection groups, the
// Processor looks the window's connections up in the cache at once and,
// while it works through the groups, touches the table memory of the
// misses a few groups ahead (so that loads from a table larger than the CPU
// caches overlap instead of stalling), loads each context once per group,
// applies the group's packets to it in order, and hands the group back to
// its caller (Begin, then Next per group), which calls the next stage
// itself.
//
// The table and the cache are pointer-free arrays sized at construction:
// no allocation and no GC scanning on the data path, whatever the number of
// connections. A Table, its Cache, its Batchers and its Processors belong
// to one worker and take no locks.
package conn
