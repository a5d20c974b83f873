package conn

import (
	"errors"
	"math/rand"
	"testing"

	"github.com/xnic/xnic/flows"
)

func TestCacheOptions(t *testing.T) {
	tb := mustTable(t, 16)
	for _, o := range []CacheOptions{{0, 1}, {3, 1}, {8, 0}, {8, 3}, {8, 16}, {256, 128}} {
		if _, err := NewCache(tb, o); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: err = %v, want ErrOptions", o, err)
		}
	}
	if _, err := NewCache(nil, DefaultCacheOptions()); !errors.Is(err, ErrOptions) {
		t.Errorf("nil table: err = %v, want ErrOptions", err)
	}
}

// keysInSet returns n connection keys that fall in cache set `set`.
func keysInSet(c *Cache, set uint64, n int) []flows.Key {
	var ks []flows.Key
	for i := 0; len(ks) < n; i++ {
		k := testKey(i, flows.ProtoUDP)
		if k.Hash()&c.setMask == set {
			ks = append(ks, k)
		}
	}
	return ks
}

func TestCacheLRUAndWriteBack(t *testing.T) {
	tb := mustTable(t, 64)
	c := mustCache(t, tb, 4, 2) // 2 sets of 2 ways
	ks := keysInSet(c, 1, 3)
	a, b, d := &ks[0], &ks[1], &ks[2]

	if ctx, r := c.Load(a); ctx != nil || r != NotFound {
		t.Fatalf("Load of an unknown key: %v %v", ctx, r)
	}
	ca, r := c.LoadOrCreate(a, 10)
	if r != Created || ca.FirstSeen != 10 || ca.Key() != *a {
		t.Fatalf("LoadOrCreate(a): %v %+v", r, ca)
	}
	ca.PacketsIn = 7
	if _, r := c.LoadOrCreate(b, 11); r != Created {
		t.Fatalf("LoadOrCreate(b): %v", r)
	}
	if ctx, r := c.Load(a); r != Hit || ctx.PacketsIn != 7 {
		t.Fatalf("Load(a) again: %v, packets %d", r, ctx.PacketsIn)
	}
	// The table copy of a is stale while it is cached.
	ha, _ := tb.Lookup(a)
	if tb.Get(ha).PacketsIn != 0 {
		t.Fatal("the table copy changed before write-back")
	}
	// b is now least recently used: loading d evicts it, not a.
	if _, r := c.LoadOrCreate(d, 12); r != Created {
		t.Fatalf("LoadOrCreate(d): %v", r)
	}
	if c.find(b, b.Hash()) >= 0 || c.find(a, a.Hash()) < 0 {
		t.Fatal("LRU evicted the wrong way")
	}
	if s := c.Stats(); s.Evictions != 1 || s.Creates != 3 || s.Hits != 1 || s.Misses != 0 {
		t.Fatalf("stats %+v", s)
	}
	// Touch d, load b: a is evicted now and written back.
	c.Load(d)
	if _, r := c.Load(b); r != Loaded {
		t.Fatalf("Load(b) after eviction: %v, want loaded", r)
	}
	if got := tb.Get(ha).PacketsIn; got != 7 {
		t.Fatalf("a written back with %d packets, want 7", got)
	}
	if tb.Get(ha).flags&flagCached != 0 {
		t.Fatal("a is still marked cached in the table after eviction")
	}
	if c.Len() != 2 {
		t.Fatalf("cache holds %d, want 2", c.Len())
	}
	// Sync writes back but keeps; Flush empties.
	cb, _ := c.Load(b)
	cb.BytesIn = 99
	c.Sync()
	hb, _ := tb.Lookup(b)
	if tb.Get(hb).BytesIn != 99 || c.Len() != 2 {
		t.Fatalf("after Sync: table bytes %d, cache len %d", tb.Get(hb).BytesIn, c.Len())
	}
	c.Flush()
	if c.Len() != 0 || tb.Get(hb).flags&flagCached != 0 {
		t.Fatal("Flush left contexts cached")
	}
}

func TestCacheFullTable(t *testing.T) {
	tb := mustTable(t, 2)
	c := mustCache(t, tb, 2, 1)
	for i := range 2 {
		k := testKey(i, flows.ProtoUDP)
		if _, r := c.LoadOrCreate(&k, 0); r != Created {
			t.Fatalf("create %d: %v", i, r)
		}
	}
	k := testKey(2, flows.ProtoUDP)
	if ctx, r := c.LoadOrCreate(&k, 0); ctx != nil || r != TableFull {
		t.Fatalf("create in a full table: %v %v", ctx, r)
	}
}

// TestCacheStaleWriteBack: a context deleted from the table behind the
// cache's back is not written over its slot's next tenant.
func TestCacheStaleWriteBack(t *testing.T) {
	tb := mustTable(t, 4)
	c := mustCache(t, tb, 1, 1)
	a, b := testKey(0, flows.ProtoUDP), testKey(1, flows.ProtoUDP)
	ca, _ := c.LoadOrCreate(&a, 0)
	ca.PacketsIn = 5
	tb.Delete(&a)
	hb, v := tb.Insert(&b, 0) // reuses a's handle with a new generation
	if v != Inserted {
		t.Fatal(v)
	}
	c.Flush()
	if s := c.Stats(); s.Stale != 1 {
		t.Fatalf("stale write-backs %d, want 1", s.Stale)
	}
	if got := tb.Get(hb); got.Key() != b || got.PacketsIn != 0 {
		t.Fatalf("b's context was overwritten: %+v", got)
	}
	// Cache.Delete removes from both.
	cb, _ := c.Load(&b)
	cb.PacketsIn = 1
	if !c.Delete(&b) || c.Len() != 0 || tb.Len() != 0 {
		t.Fatalf("Cache.Delete left cache %d table %d", c.Len(), tb.Len())
	}
}

func TestCacheAgeOut(t *testing.T) {
	tb := mustTable(t, 64)
	c := mustCache(t, tb, 8, 2)
	// 20 connections created at 0; the first 4 stay busy until 900.
	for i := range 20 {
		k := testKey(i, flows.ProtoUDP)
		c.LoadOrCreate(&k, 0)
	}
	for i := range 4 {
		k := testKey(i, flows.ProtoUDP)
		ctx, _ := c.LoadOrCreate(&k, 900)
		ctx.LastSeen = 900
	}
	// The table's own AgeOut must not remove the busy ones, whose table
	// copies still say 0: they are cached.
	tb.AgeOut(1000, 500, 64)
	for i := range 4 {
		k := testKey(i, flows.ProtoUDP)
		if _, ok := tb.Lookup(&k); !ok {
			t.Fatalf("table AgeOut removed cached busy connection %d", i)
		}
	}
	c.AgeOut(1000, 500, 64)
	if tb.Len() != 4 {
		t.Fatalf("%d connections left after age-out, want 4", tb.Len())
	}
	c.Flush()
	for i := range 4 {
		k := testKey(i, flows.ProtoUDP)
		h, ok := tb.Lookup(&k)
		if !ok || tb.Get(h).LastSeen != 900 {
			t.Fatalf("busy connection %d lost or stale", i)
		}
	}
}

// TestCacheNoLoss: random updates through a cache much smaller than the
// working set end, after Flush, exactly where a map would.
func TestCacheNoLoss(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	const conns = 5000
	tb := mustTable(t, 8192)
	c := mustCache(t, tb, 64, 4)
	ref := make(map[flows.Key]uint64)
	for i := range 500_000 {
		// Skewed choice: some connections are hot, most are cold.
		n := rng.Intn(conns)
		if rng.Intn(2) == 0 {
			n = rng.Intn(32)
		}
		k := testKey(n, flows.ProtoUDP)
		ctx, r := c.LoadOrCreate(&k, int64(i))
		if ctx == nil {
			t.Fatalf("op %d: %v", i, r)
		}
		add := uint64(rng.Intn(1500))
		ctx.BytesIn += add
		ref[k] += add
	}
	s := c.Stats()
	if s.Evictions < 100_000 {
		t.Fatalf("only %d evictions: the test does not stress write-back", s.Evictions)
	}
	c.Flush()
	if tb.Len() != len(ref) {
		t.Fatalf("table holds %d, reference %d", tb.Len(), len(ref))
	}
	for k, want := range ref {
		h, _ := tb.Lookup(&k)
		if got := tb.Get(h).BytesIn; got != want {
			t.Fatalf("%v: %d bytes, want %d", k, got, want)
		}
	}
	t.Logf("%+v", s)
}
