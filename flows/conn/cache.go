package conn

import "github.com/xnic/xnic/flows"

// Result says how Cache.Load and Cache.LoadOrCreate found a context.
type Result uint8

const (
	Hit       Result = iota // already in the cache
	Loaded                  // loaded from the table (a miss)
	Created                 // not in the table: created there and cached
	NotFound                // Load only: not in the table either
	TableFull               // LoadOrCreate only: not in the table, and the table is full
)

func (r Result) String() string {
	switch r {
	case Hit:
		return "hit"
	case Loaded:
		return "loaded"
	case Created:
		return "created"
	case NotFound:
		return "not_found"
	case TableFull:
		return "table_full"
	}
	return "result(?)"
}

// CacheOptions configure a Cache.
type CacheOptions struct {
	Entries int // contexts held: a power of two
	Ways    int // associativity: a power of two, 1..64, at most Entries
}

// DefaultCacheOptions is a 512-entry, 8-way cache (64 KiB of contexts).
func DefaultCacheOptions() CacheOptions { return CacheOptions{Entries: 512, Ways: 8} }

// CacheStats are a Cache's event counters.
type CacheStats struct {
	Hits      uint64 // lookups served from the cache
	Misses    uint64 // contexts loaded from the table: the "loads"
	Creates   uint64 // contexts created in the table on a miss
	Evictions uint64 // contexts written back to make room: the "write-backs"
	Flushes   uint64 // contexts written back by Sync and Flush
	Stale     uint64 // write-backs dropped because the table slot was deleted meanwhile
}

// Loads is the number of contexts brought into the cache: loads and creates.
func (s CacheStats) Loads() uint64 { return s.Misses + s.Creates }

// Cache is the context cache, the "on-chip" memory: a small set-associative
// cache of contexts in front of a Table, with LRU replacement inside a set.
// It holds copies: a miss copies the context in from the table, and the
// copy is written back when its way is evicted, or by Sync and Flush. While
// a context is cached the table marks it, and Table.AgeOut leaves it alone.
//
// Pointers returned by Load and LoadOrCreate point into the cache. They stay
// valid until the next Load, LoadOrCreate, Flush, Delete or AgeOut call on
// the cache, any of which may evict.
//
// A Cache belongs to one worker, like its Table, and takes no locks.
type Cache struct {
	t       *Table
	ways    int
	setMask uint64

	// Ways, set-major: set s holds ways [s*ways, (s+1)*ways).
	tag    []uint64 // key hash of the way's context
	stamp  []uint64 // LRU time of last use; 0 = invalid way
	handle []Handle // the context's table handle
	ctx    []Context

	clock uint64 // LRU time
	epoch uint64 // bumped whenever a way is filled or emptied
	sink  uint64 // prefetch loads land here so the compiler keeps them

	stats CacheStats
}

// NewCache builds a cache in front of t.
func NewCache(t *Table, opts CacheOptions) (*Cache, error) {
	if t == nil {
		return nil, optErr("cache table", "must not be nil")
	}
	if !isPow2(opts.Entries) {
		return nil, optErr("cache entries", "must be a power of two, got %d", opts.Entries)
	}
	if !isPow2(opts.Ways) || opts.Ways > 64 || opts.Ways > opts.Entries {
		return nil, optErr("cache ways", "must be a power of two in 1..min(64, entries %d), got %d", opts.Entries, opts.Ways)
	}
	sets := opts.Entries / opts.Ways
	return &Cache{
		t:       t,
		ways:    opts.Ways,
		setMask: uint64(sets - 1),
		tag:     make([]uint64, opts.Entries),
		stamp:   make([]uint64, opts.Entries),
		handle:  make([]Handle, opts.Entries),
		ctx:     make([]Context, opts.Entries),
	}, nil
}

// Table is the table behind the cache.
func (c *Cache) Table() *Table { return c.t }

// Stats returns the cache's counters.
func (c *Cache) Stats() CacheStats { return c.stats }

// Load returns the context of k, loading it from the table on a miss.
// Result is Hit, Loaded, or NotFound (with a nil context).
func (c *Cache) Load(k *flows.Key) (*Context, Result) {
	return c.load(k, k.Hash(), false, 0)
}

// LoadOrCreate is Load that creates a context stamped now when the table
// has none. Result is Hit, Loaded, Created, or TableFull (nil context).
func (c *Cache) LoadOrCreate(k *flows.Key, now int64) (*Context, Result) {
	return c.load(k, k.Hash(), true, now)
}

// LoadHashed is Load (create false) or LoadOrCreate (create true) for a
// caller that already has k's hash, such as a stage working from
// Batcher.Group. hash must be k.Hash().
func (c *Cache) LoadHashed(k *flows.Key, hash uint64, create bool, now int64) (*Context, Result) {
	return c.load(k, hash, create, now)
}

// find returns k's way, or -1.
func (c *Cache) find(k *flows.Key, hash uint64) int {
	base := int(hash&c.setMask) * c.ways
	for w := base; w < base+c.ways; w++ {
		if c.tag[w] == hash && c.stamp[w] != 0 && keyEqual(&c.ctx[w].key, k) {
			return w
		}
	}
	return -1
}

func (c *Cache) load(k *flows.Key, hash uint64, create bool, now int64) (*Context, Result) {
	if w := c.find(k, hash); w >= 0 {
		c.clock++
		c.stamp[w] = c.clock
		c.stats.Hits++
		return &c.ctx[w], Hit
	}
	return c.miss(k, hash, create, now)
}

// miss loads k into the cache from the table, or creates it there.
func (c *Cache) miss(k *flows.Key, hash uint64, create bool, now int64) (*Context, Result) {
	h, slot, ok := c.t.lookup(k, hash)
	res := Loaded
	if !ok {
		if !create {
			return nil, NotFound
		}
		if c.t.nfree == 0 {
			c.t.stats.InsertFull++
			return nil, TableFull
		}
		// insert repeats the lookup; use the slot we already have.
		h = c.t.insertAt(k, hash, slot, now)
		res = Created
		c.stats.Creates++
	} else {
		c.stats.Misses++
	}
	w := c.victim(hash)
	if c.stamp[w] != 0 {
		c.writeBack(w)
		c.stats.Evictions++
	}
	c.epoch++
	tc := &c.t.ctx[h]
	tc.flags |= flagCached
	c.ctx[w] = *tc
	c.tag[w] = hash
	c.handle[w] = h
	c.clock++
	c.stamp[w] = c.clock
	return &c.ctx[w], res
}

// victim picks the way to fill in hash's set: an invalid way, or the least
// recently used.
func (c *Cache) victim(hash uint64) int {
	base := int(hash&c.setMask) * c.ways
	// Branch-free: the smallest stamp<<6 | way (the clock never reaches 2^58).
	m := uint64(1<<64 - 1)
	for w, s := range c.stamp[base : base+c.ways] {
		m = min(m, s<<6|uint64(w))
	}
	return base + int(m&63)
}

// writeBack copies way w back to the table, unless the connection was
// deleted from the table in the meantime.
func (c *Cache) writeBack(w int) {
	tc := &c.t.ctx[c.handle[w]]
	if tc.flags&flagInUse == 0 || tc.gen != c.ctx[w].gen {
		c.stats.Stale++
		return
	}
	*tc = c.ctx[w]
	tc.flags &^= flagCached
}

// Sync writes every cached context back to the table and keeps it cached,
// so the table is up to date (for Table.TopN, say).
func (c *Cache) Sync() {
	for w := range c.stamp {
		if c.stamp[w] == 0 {
			continue
		}
		tc := &c.t.ctx[c.handle[w]]
		if tc.flags&flagInUse == 0 || tc.gen != c.ctx[w].gen {
			c.stamp[w] = 0 // deleted behind our back: drop it
			c.epoch++
			c.stats.Stale++
			continue
		}
		*tc = c.ctx[w] // flagCached stays set
		c.stats.Flushes++
	}
}

// Flush writes every cached context back to the table and empties the
// cache. Afterwards the table alone holds all state.
func (c *Cache) Flush() {
	for w := range c.stamp {
		if c.stamp[w] != 0 {
			c.writeBack(w)
			c.stamp[w] = 0
			c.stats.Flushes++
		}
	}
	c.epoch++
}

// Delete removes k's context from the cache, without writing it back, and
// from the table. It reports whether the table held it.
func (c *Cache) Delete(k *flows.Key) bool {
	hash := k.Hash()
	if w := c.find(k, hash); w >= 0 {
		c.stamp[w] = 0
		c.epoch++
	}
	_, slot, ok := c.t.lookup(k, hash)
	if ok {
		c.t.deleteSlot(slot)
	}
	return ok
}

// AgeOut evicts (with write-back) every cached context idle for longer than
// idle at now, so that the table can age it, then runs Table.AgeOut with
// budget. It returns how many contexts the table deleted.
func (c *Cache) AgeOut(now, idle int64, budget int) int {
	for w := range c.stamp {
		if c.stamp[w] != 0 && now-c.ctx[w].LastSeen > idle {
			c.writeBack(w)
			c.stamp[w] = 0
			c.epoch++
			c.stats.Flushes++
		}
	}
	return c.t.AgeOut(now, idle, budget)
}

// probeScratch is per-window scratch for Cache.probe, sized to W.
type probeScratch struct {
	ways   []int32 // per group: the way holding its key, or wayMissed
	misses []int32 // the groups that missed, in order
}

func newProbeScratch(w int) probeScratch {
	return probeScratch{ways: make([]int32, w), misses: make([]int32, w)}
}

// probe looks a window's group keys up in the cache ahead of use: ways[g]
// gets the way holding keys[g], or wayMissed, and misses lists the groups that
// missed. It returns the number of misses.
func (c *Cache) probe(keys []*flows.Key, hashes []uint64, s *probeScratch) int {
	m := 0
	for g, hash := range hashes {
		w := int32(c.find(keys[g], hash))
		if w < 0 {
			w = wayMissed
		}
		s.ways[g] = w
		if w == wayMissed {
			s.misses[m] = int32(g)
			m++
		}
	}
	return m
}

// touchIndex and touchContext read, ahead of use, the table memory that
// loading the context of hash will need: its index slot, then (once the
// index slot has arrived) the two cache lines of the context it names.
// Issued a few groups ahead of the group being processed, these loads
// overlap with that processing instead of stalling it: that is what
// lookahead buys besides fewer loads. They change no state but c.sink.
func (c *Cache) touchIndex(hash uint64) {
	c.sink += c.t.index[hash>>c.t.shift]
}

func (c *Cache) touchContext(hash uint64) {
	t := c.t
	tag := hash >> 32
	for i := hash >> t.shift; ; i = (i + 1) & t.mask {
		e := t.index[i]
		if e == 0 {
			return
		}
		if e>>32 == tag {
			tc := &t.ctx[uint32(e)-1]
			c.sink += uint64(tc.key.Family) + uint64(tc.LastSeen)
			return
		}
	}
}

// loadWay is load with a way from probe: a way that still holds k is a hit
// without a search, and wayMissed (a miss at probe time, and no other group
// of the window has k) goes straight to the table. The caller makes sure that only
// its own loads changed the cache since the probe (see Cache.epoch).
func (c *Cache) loadWay(k *flows.Key, hash uint64, way int32, now int64) (*Context, Result) {
	if way == wayMissed {
		return c.miss(k, hash, true, now)
	}
	if w := int(way); c.tag[w] == hash && c.stamp[w] != 0 && keyEqual(&c.ctx[w].key, k) {
		c.clock++
		c.stamp[w] = c.clock
		c.stats.Hits++
		return &c.ctx[w], Hit
	}
	// Evicted since the probe by another group's load.
	return c.load(k, hash, true, now)
}

// Len is the number of contexts cached.
func (c *Cache) Len() int {
	n := 0
	for _, s := range c.stamp {
		if s != 0 {
			n++
		}
	}
	return n
}

// Entries and Ways are the cache's geometry.
func (c *Cache) Entries() int { return len(c.ctx) }
func (c *Cache) Ways() int    { return c.ways }
