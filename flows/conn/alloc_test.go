package conn

import (
	"math/rand"
	"testing"

	"github.com/xnic/xnic/flows"
)

// TestZeroAllocs: nothing on the path lookahead → cache → table allocates,
// per packet or per batch, whether contexts hit, load, get created or are
// evicted, and whatever the window.
func TestZeroAllocs(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	items := genTraffic(rng, 3000, 20)
	pkts := make([]flows.Packet, len(items))
	frames := make([][]byte, len(items))
	for i, it := range items {
		pkts[i], frames[i] = it.pkt, it.frame
	}
	var staged int
	stage := Stage(func(ctx *Context, idx []int32) { staged += len(idx) })
	for _, w := range []int{1, 64} {
		tb := mustTable(t, 1<<12)
		c := mustCache(t, tb, 64, 4)
		p := mustProcessor(t, c, ProcessorOptions{Window: w, Dir: DirRX, Prefetch: true, Classify: classifyTest})
		const batch = 64
		off := 0
		now := int64(0)
		// The first runs create every context; later ones hit and load.
		allocs := testing.AllocsPerRun(2000, func() {
			if off+batch > len(pkts) {
				off = 0
			}
			now++
			p.Process(pkts[off:off+batch], frames[off:off+batch], now, stage)
			off += batch
			if now%50 == 0 {
				c.AgeOut(now, 1<<40, 16)
			}
		})
		if allocs != 0 {
			t.Errorf("W=%d: %.2f allocations per batch of %d", w, allocs, batch)
		}
		s := c.Stats()
		if s.Creates == 0 || s.Misses == 0 || s.Evictions == 0 || s.Hits == 0 {
			t.Fatalf("W=%d: the run did not cover every path: %+v", w, s)
		}
	}
	if staged == 0 {
		t.Fatal("the stage never ran")
	}
	// TopN into a buffer with room, and the table operations on their own.
	tb := mustTable(t, 1<<10)
	dst := make([]Entry, 0, 16)
	k := testKey(1, flows.ProtoUDP)
	if a := testing.AllocsPerRun(1000, func() {
		tb.Insert(&k, 0)
		tb.Lookup(&k)
		tb.Delete(&k)
		tb.Insert(&k, 0)
		tb.AgeOut(1, 0, 8)
		dst = tb.TopN(16, dst)
	}); a != 0 {
		t.Errorf("table operations: %.2f allocations", a)
	}
}
