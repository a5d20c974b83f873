package conn

import (
	"math/bits"

	"github.com/xnic/xnic/flows"
)

// Handle names a context in a Table: an index into its dense context array.
// A handle stays valid until its connection is deleted or aged out; the
// slot's Generation tells reuses apart.
type Handle uint32

// Verdict is the outcome of Table.Insert.
type Verdict uint8

const (
	Inserted Verdict = iota // a new context was created
	Exists                  // the key was already present; its handle is returned
	Full                    // the table is at capacity; nothing changed
)

func (v Verdict) String() string {
	switch v {
	case Inserted:
		return "inserted"
	case Exists:
		return "exists"
	case Full:
		return "full"
	}
	return "verdict(?)"
}

// TableOptions configure a Table.
type TableOptions struct {
	// Capacity is the most contexts the table holds: a power of two, at
	// most 1<<30. The hash index gets twice as many slots, so it is never
	// more than half full and probe sequences stay short.
	Capacity int
}

// DefaultTableOptions holds 1<<20 contexts: 128 MiB of contexts and 16 MiB
// of index.
func DefaultTableOptions() TableOptions { return TableOptions{Capacity: 1 << 20} }

// TableStats are a Table's event counters.
type TableStats struct {
	Len        int    // live contexts
	Capacity   int    // the most contexts the table holds
	Inserts    uint64 // contexts created
	Deletes    uint64 // contexts deleted, aged out included
	AgedOut    uint64 // contexts removed by AgeOut
	InsertFull uint64 // inserts refused because the table was full
}

// Table is the connection table, the "host memory": a fixed number of
// contexts in a dense, pointer-free array, found through an open-addressed
// hash index with linear probing and backward-shift deletion (no
// tombstones, so lookups stay short and correct however many deletions
// happen). Nothing allocates after construction.
//
// A Table belongs to one worker and takes no locks.
type Table struct {
	// Storage, fixed at construction. Pointer-free: the GC never scans it.
	ctx   []Context // indexed by Handle
	index []uint64  // 0 = empty, else hash>>32 << 32 | handle+1
	free  []uint32  // stack of free handles; free[:nfree] are free
	nfree int
	shift uint   // home slot of hash h is h >> shift
	mask  uint64 // len(index) - 1

	// Age-out scan position.
	ageNext int

	stats TableStats
}

// NewTable allocates a table of opts.Capacity contexts.
func NewTable(opts TableOptions) (*Table, error) {
	if !isPow2(opts.Capacity) || opts.Capacity > 1<<30 {
		return nil, optErr("table capacity", "must be a power of two in 1..1<<30, got %d", opts.Capacity)
	}
	n := opts.Capacity
	slots := 2 * n
	t := &Table{
		ctx:   make([]Context, n),
		index: make([]uint64, slots),
		free:  make([]uint32, n),
		nfree: n,
		shift: uint(64 - bits.TrailingZeros(uint(slots))),
		mask:  uint64(slots - 1),
	}
	// Pop from the end: handles come out as 0, 1, 2, ... so a young table
	// is dense at the front.
	for i := range t.free {
		t.free[i] = uint32(n - 1 - i)
	}
	t.stats.Capacity = n
	return t, nil
}

// Len is the number of live contexts.
func (t *Table) Len() int { return len(t.ctx) - t.nfree }

// Capacity is the most contexts the table holds.
func (t *Table) Capacity() int { return len(t.ctx) }

// Stats returns the table's counters.
func (t *Table) Stats() TableStats {
	s := t.stats
	s.Len = t.Len()
	return s
}

// Get returns the context of a live handle, or nil. When a Cache fronts the
// table, the table's copy of a cached context is stale until the cache
// writes it back (Cache.Sync, Cache.Flush).
func (t *Table) Get(h Handle) *Context {
	if int(h) >= len(t.ctx) || t.ctx[h].flags&flagInUse == 0 {
		return nil
	}
	return &t.ctx[h]
}

// Lookup finds the context of k.
func (t *Table) Lookup(k *flows.Key) (Handle, bool) {
	h, _, ok := t.lookup(k, k.Hash())
	return h, ok
}

// Insert creates a context for k, stamped first and last seen at now, and
// returns its handle. If k is present it returns the existing handle and
// Exists; if the table is full, Full.
func (t *Table) Insert(k *flows.Key, now int64) (Handle, Verdict) {
	return t.insert(k, k.Hash(), now)
}

// Delete removes the context of k and reports whether it was present.
func (t *Table) Delete(k *flows.Key) bool {
	_, slot, ok := t.lookup(k, k.Hash())
	if ok {
		t.deleteSlot(slot)
	}
	return ok
}

// lookup returns k's handle and index slot, or, when k is absent, the empty
// slot where it would go.
func (t *Table) lookup(k *flows.Key, hash uint64) (Handle, uint64, bool) {
	tag := hash >> 32
	i := hash >> t.shift
	for {
		e := t.index[i]
		if e == 0 {
			return 0, i, false
		}
		if e>>32 == tag {
			h := Handle(uint32(e) - 1)
			if keyEqual(&t.ctx[h].key, k) {
				return h, i, true
			}
		}
		i = (i + 1) & t.mask
	}
}

func (t *Table) insert(k *flows.Key, hash uint64, now int64) (Handle, Verdict) {
	h, slot, ok := t.lookup(k, hash)
	if ok {
		return h, Exists
	}
	if t.nfree == 0 {
		t.stats.InsertFull++
		return 0, Full
	}
	return t.insertAt(k, hash, slot, now), Inserted
}

// insertAt creates k's context in the empty index slot that lookup returned.
// The caller has checked that a handle is free.
func (t *Table) insertAt(k *flows.Key, hash, slot uint64, now int64) Handle {
	t.nfree--
	h := Handle(t.free[t.nfree])
	c := &t.ctx[h]
	*c = Context{key: *k, flags: flagInUse, gen: c.gen + 1, FirstSeen: now, LastSeen: now}
	t.index[slot] = hash>>32<<32 | (uint64(h) + 1)
	t.stats.Inserts++
	return h
}

// deleteSlot empties index slot i and frees its context, then shifts later
// members of the probe run back so no lookup ever crosses a hole it should
// not (backward-shift deletion).
func (t *Table) deleteSlot(i uint64) {
	h := uint32(t.index[i]) - 1
	t.ctx[h].flags = 0
	t.free[t.nfree] = h
	t.nfree++
	t.stats.Deletes++
	for j := (i + 1) & t.mask; ; j = (j + 1) & t.mask {
		e := t.index[j]
		if e == 0 {
			break
		}
		// e may move back to i unless its home lies cyclically in (i, j].
		home := e >> t.shift
		if (j-home)&t.mask >= (j-i)&t.mask {
			t.index[i] = e
			i = j
		}
	}
	t.index[i] = 0
}

// AgeOut looks at up to budget contexts, resuming where the last call
// stopped and wrapping around, and deletes those idle for longer than idle
// nanoseconds at now (now - LastSeen > idle). Contexts a Cache holds are
// skipped: their table copy is stale (Cache.AgeOut handles them). It
// returns how many it deleted. Run it from the worker loop with a small
// budget; a full sweep takes Capacity/budget calls.
func (t *Table) AgeOut(now, idle int64, budget int) int {
	budget = min(budget, len(t.ctx))
	removed := 0
	for ; budget > 0; budget-- {
		c := &t.ctx[t.ageNext]
		if t.ageNext++; t.ageNext == len(t.ctx) {
			t.ageNext = 0
		}
		if c.flags != flagInUse || now-c.LastSeen <= idle {
			continue
		}
		if _, slot, ok := t.lookup(&c.key, c.key.Hash()); ok {
			t.deleteSlot(slot)
			t.stats.AgedOut++
			removed++
		}
	}
	return removed
}
