package conn

import (
	"errors"
	"math/rand"
	"testing"
	"unsafe"

	"github.com/xnic/xnic/flows"
)

func TestContextSize(t *testing.T) {
	if s := unsafe.Sizeof(Context{}); s != ContextSize {
		t.Fatalf("Context is %d bytes, want %d", s, ContextSize)
	}
}

func TestTableOptions(t *testing.T) {
	for _, c := range []int{0, -1, 3, 1000, 1 << 31} {
		if _, err := NewTable(TableOptions{Capacity: c}); !errors.Is(err, ErrOptions) {
			t.Errorf("capacity %d: err = %v, want ErrOptions", c, err)
		}
	}
	tb, err := NewTable(TableOptions{Capacity: 1})
	if err != nil {
		t.Fatalf("capacity 1: %v", err)
	}
	k := testKey(1, flows.ProtoUDP)
	if _, v := tb.Insert(&k, 0); v != Inserted {
		t.Fatalf("insert into capacity 1: %v", v)
	}
	k2 := testKey(2, flows.ProtoUDP)
	if _, v := tb.Insert(&k2, 0); v != Full {
		t.Fatalf("second insert into capacity 1: %v, want full", v)
	}
}

func TestTableFullAndAgeOut(t *testing.T) {
	const n = 1024
	tb := mustTable(t, n)
	handles := make(map[flows.Key]Handle)
	for i := range n {
		k := testKey(i, flows.ProtoTCP)
		// Even connections were last seen at 100, odd ones at 1000.
		now := int64(100)
		if i%2 == 1 {
			now = 1000
		}
		h, v := tb.Insert(&k, now)
		if v != Inserted {
			t.Fatalf("insert %d of %d: %v", i, n, v)
		}
		handles[k] = h
	}
	k := testKey(n, flows.ProtoTCP)
	if _, v := tb.Insert(&k, 0); v != Full {
		t.Fatalf("insert into a full table: %v, want full", v)
	}
	k0 := testKey(0, flows.ProtoTCP)
	if h, v := tb.Insert(&k0, 0); v != Exists || h != handles[k0] {
		t.Fatalf("insert of a present key into a full table: %v handle %d, want exists %d", v, h, handles[k0])
	}
	if s := tb.Stats(); s.Len != n || s.InsertFull != 1 {
		t.Fatalf("stats %+v", s)
	}

	// At 1100 with idle 500: the even ones (idle 1000) go, the odd (100) stay.
	// A budget of 100 needs 11 calls for a sweep; run 15 to show that extra
	// calls remove nothing more.
	removed := 0
	for range 15 {
		removed += tb.AgeOut(1100, 500, 100)
	}
	if removed != n/2 {
		t.Fatalf("aged out %d, want %d", removed, n/2)
	}
	for i := range n {
		k := testKey(i, flows.ProtoTCP)
		h, ok := tb.Lookup(&k)
		if want := i%2 == 1; ok != want {
			t.Fatalf("connection %d present = %v after age-out, want %v", i, ok, want)
		}
		if ok && h != handles[k] {
			t.Fatalf("connection %d moved from handle %d to %d", i, handles[k], h)
		}
	}
	if s := tb.Stats(); s.Len != n/2 || s.AgedOut != n/2 || s.Deletes != n/2 {
		t.Fatalf("stats after age-out %+v", s)
	}
	// The space is reusable, and a reused slot has a new generation.
	for i := n; i < n+n/2; i++ {
		k := testKey(i, flows.ProtoTCP)
		h, v := tb.Insert(&k, 2000)
		if v != Inserted {
			t.Fatalf("reinsert %d: %v", i, v)
		}
		if g := tb.Get(h).Generation(); g != 2 {
			t.Fatalf("reused handle %d has generation %d, want 2", h, g)
		}
	}
	k = testKey(2*n, flows.ProtoTCP)
	if _, v := tb.Insert(&k, 0); v != Full || tb.Len() != n {
		t.Fatalf("table refilled: %v, len %d, want full", v, tb.Len())
	}
	// Idle exactly equal to the timeout is not idle enough.
	if got := tb.AgeOut(1000+500, 500, n); got != 0 {
		t.Fatalf("AgeOut at the boundary removed %d", got)
	}
}

// TestTableVsMap runs 1M random inserts, deletes and lookups against a Go
// map, on a table small enough to fill up, and checks every answer.
func TestTableVsMap(t *testing.T) {
	ops := 1_000_000
	if testing.Short() {
		ops = 100_000
	}
	const capacity = 1 << 14
	const keys = capacity * 3 / 2 // more keys than room: inserts hit Full
	tb := mustTable(t, capacity)
	ref := make(map[flows.Key]Handle)
	rng := rand.New(rand.NewSource(1))
	var full, deleted int
	check := func() {
		if tb.Len() != len(ref) {
			t.Fatalf("Len %d, reference %d", tb.Len(), len(ref))
		}
		for k, h := range ref {
			got, ok := tb.Lookup(&k)
			if !ok || got != h {
				t.Fatalf("lookup %v: %d %v, want %d", k, got, ok, h)
			}
			if c := tb.Get(h); c == nil || c.Key() != k {
				t.Fatalf("Get(%d) does not hold %v", h, k)
			}
		}
	}
	for op := range ops {
		k := testKey(rng.Intn(keys), uint8(flows.ProtoUDP+rng.Intn(2)*(flows.ProtoTCP-flows.ProtoUDP)))
		want, present := ref[k]
		switch r := rng.Intn(100); {
		case r < 45:
			h, v := tb.Insert(&k, int64(op))
			switch {
			case present:
				if v != Exists || h != want {
					t.Fatalf("op %d insert present %v: %v %d, want exists %d", op, k, v, h, want)
				}
			case len(ref) == capacity:
				if v != Full {
					t.Fatalf("op %d insert into full table: %v", op, v)
				}
				full++
			default:
				if v != Inserted {
					t.Fatalf("op %d insert %v: %v", op, k, v)
				}
				ref[k] = h
			}
		case r < 75:
			if ok := tb.Delete(&k); ok != present {
				t.Fatalf("op %d delete %v: %v, want %v", op, k, ok, present)
			}
			if present {
				deleted++
			}
			delete(ref, k)
		default:
			h, ok := tb.Lookup(&k)
			if ok != present || (ok && h != want) {
				t.Fatalf("op %d lookup %v: %d %v, want %d %v", op, k, h, ok, want, present)
			}
		}
		if op%100_000 == 0 {
			check()
		}
	}
	check()
	if full == 0 || deleted == 0 {
		t.Fatalf("the run never filled the table (%d) or never deleted (%d)", full, deleted)
	}
	t.Logf("%d ops: %d inserts refused as full, %d deletes, %d live", ops, full, deleted, len(ref))
}

func TestTopN(t *testing.T) {
	tb := mustTable(t, 256)
	rng := rand.New(rand.NewSource(2))
	bytes := make(map[Handle]uint64)
	for i := range 200 {
		k := testKey(i, flows.ProtoUDP)
		h, _ := tb.Insert(&k, 0)
		c := tb.Get(h)
		c.BytesIn = uint64(rng.Intn(1000))
		c.BytesOut = uint64(rng.Intn(1000))
		bytes[h] = c.Bytes()
	}
	dst := make([]Entry, 0, 10)
	got := tb.TopN(10, dst)
	if len(got) != 10 {
		t.Fatalf("TopN returned %d entries", len(got))
	}
	// Reference: the 10th largest byte count.
	counts := make([]int, 2001)
	for _, b := range bytes {
		counts[b]++
	}
	for i, e := range got {
		if e.Context.Bytes() != bytes[e.Handle] {
			t.Fatalf("entry %d: bytes %d, table has %d", i, e.Context.Bytes(), bytes[e.Handle])
		}
		if i > 0 && entryLess(&got[i-1], &got[i]) {
			t.Fatalf("entries %d and %d out of order: %d < %d", i-1, i, got[i-1].Context.Bytes(), e.Context.Bytes())
		}
	}
	above := 0
	for b := int(got[9].Context.Bytes()) + 1; b < len(counts); b++ {
		above += counts[b]
	}
	if above > 9 {
		t.Fatalf("%d connections have more bytes than the 10th entry", above)
	}
	if allocs := testing.AllocsPerRun(10, func() { got = tb.TopN(10, got) }); allocs != 0 {
		t.Fatalf("TopN with room allocates %.1f", allocs)
	}
	if n := len(tb.TopN(500, nil)); n != 200 {
		t.Fatalf("TopN(500) of 200 returned %d", n)
	}
}

func TestKeyEqual(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	base := testKey(12345, flows.ProtoTCP)
	base.VLAN = 7
	if !keyEqual(&base, &base) {
		t.Fatal("a key differs from itself")
	}
	// Flipping any bit of any field makes keys differ, for == and keyEqual alike.
	for i := range 2000 {
		k := base
		switch i % 7 {
		case 0:
			k.Src[rng.Intn(16)] ^= 1 << rng.Intn(8)
		case 1:
			k.Dst[rng.Intn(16)] ^= 1 << rng.Intn(8)
		case 2:
			k.SrcPort ^= 1 << rng.Intn(16)
		case 3:
			k.DstPort ^= 1 << rng.Intn(16)
		case 4:
			k.Proto ^= 1 << rng.Intn(8)
		case 5:
			k.Family ^= 1 << rng.Intn(8)
		case 6:
			k.VLAN ^= 1 << rng.Intn(16)
		}
		if keyEqual(&k, &base) != (k == base) || keyEqual(&k, &base) {
			t.Fatalf("keyEqual(%v, %v) = %v", k, base, keyEqual(&k, &base))
		}
	}
}

// TestTableHashCollisions drives the table and a cache with hashes forced
// to collide (a handful of values for thousands of keys), so that every
// probe meets other keys with the same home and tag: only the key compare
// tells them apart.
func TestTableHashCollisions(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	tb := mustTable(t, 1<<12)
	c := mustCache(t, tb, 16, 4)
	hashOf := func(k *flows.Key) uint64 { return uint64(k.SrcPort%5) * 0x9e3779b97f4a7c15 }
	ref := make(map[flows.Key]uint64)
	for op := range 200_000 {
		k := testKey(rng.Intn(3000), flows.ProtoUDP)
		h := hashOf(&k)
		switch r := rng.Intn(10); {
		case r < 7:
			ctx, res := c.load(&k, h, true, int64(op))
			if ctx == nil {
				t.Fatalf("op %d: %v", op, res)
			}
			if _, ok := ref[k]; ok == (res == Created) {
				t.Fatalf("op %d: %v for a key present=%v", op, res, ok)
			}
			ctx.PacketsIn++
			ref[k]++
		default:
			if w := c.find(&k, h); w >= 0 {
				c.stamp[w] = 0
			}
			_, slot, ok := tb.lookup(&k, h)
			if _, want := ref[k]; ok != want {
				t.Fatalf("op %d: lookup %v = %v, want %v", op, k, ok, want)
			}
			if ok {
				tb.deleteSlot(slot)
			}
			delete(ref, k)
		}
	}
	c.Flush()
	if tb.Len() != len(ref) {
		t.Fatalf("table holds %d, reference %d", tb.Len(), len(ref))
	}
	for k, n := range ref {
		hd, _, ok := tb.lookup(&k, hashOf(&k))
		if !ok || tb.Get(hd).PacketsIn != n {
			t.Fatalf("%v: found %v, packets %d, want %d", k, ok, tb.Get(hd).PacketsIn, n)
		}
	}
}
