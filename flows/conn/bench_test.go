package conn

import (
	"fmt"
	"math/bits"
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/xnic/xnic/flows"
)

// benchStream is interleaved UDP traffic from n connections in the pattern
// "bursts of b packets per connection, spread over blocks of span packets":
// the connections are taken span/b at a time from a random permutation
// (cycled), each puts b packets into the block, and the block is shuffled.
// So a window of W = span packets aligned with a block holds span/b
// connections with exactly b packets each, and every connection comes back
// only after all n have had their turn. The stream covers every connection
// at least once and is at least 6 x 64k packets long (so the side-by-side
// benchmarks can keep their configurations apart).
type benchStream struct {
	n, b, span int
	pkts       []flows.Packet
}

var benchStreams = map[[3]int]*benchStream{}

func getStream(n, b, span int) *benchStream {
	id := [3]int{n, b, span}
	if s := benchStreams[id]; s != nil {
		return s
	}
	rng := rand.New(rand.NewSource(int64(n*31 + b*7 + span)))
	per := span / b
	total := max(n*b, 6<<16)
	total = (total + span - 1) / span * span
	keys := make([]flows.Key, n)
	for i := range keys {
		keys[i] = testKey(i, flows.ProtoUDP)
	}
	s := &benchStream{n: n, b: b, span: span, pkts: make([]flows.Packet, 0, total)}
	perm := rng.Perm(n)
	next := 0
	block := make([]int, 0, span)
	for len(s.pkts) < total {
		block = block[:0]
		for range per {
			if next == len(perm) {
				perm = rng.Perm(n)
				next = 0
			}
			c := perm[next]
			next++
			for range b {
				block = append(block, c)
			}
		}
		rng.Shuffle(len(block), func(i, j int) { block[i], block[j] = block[j], block[i] })
		for _, c := range block {
			s.pkts = append(s.pkts, udpPacket(keys[c], 18))
		}
	}
	benchStreams = map[[3]int]*benchStream{id: s} // keep one stream alive at a time
	return s
}

var benchTables = map[*benchStream]*Table{}

// benchTable is a table holding every connection of s, built on first use.
func benchTable(b *testing.B, s *benchStream) *Table {
	if tb := benchTables[s]; tb != nil {
		return tb
	}
	capacity := 1 << bits.Len(uint(max(s.n, 1024)-1))
	tb := mustTable(b, capacity)
	// Create every connection with one pass, so the timed runs only load.
	c := mustCache(b, tb, 64, 8)
	p := mustProcessor(b, c, ProcessorOptions{Window: 64})
	p.Process(s.pkts, nil, 1, nil)
	c.Flush()
	if tb.Len() != s.n {
		b.Fatalf("table holds %d connections, want %d", tb.Len(), s.n)
	}
	benchTables = map[*benchStream]*Table{s: tb} // keep one alive at a time
	return tb
}

// runBench pushes b.N packets of s, in rx batches of 64 (or of W when W is
// larger), through a new cache of the given size (8-way) and a processor
// of window w.
func runBench(b *testing.B, n, burst, span, entries, w int, prefetch bool) {
	s := getStream(n, burst, span)
	tb := benchTable(b, s)
	c := mustCache(b, tb, entries, min(8, entries))
	p := mustProcessor(b, c, ProcessorOptions{Window: w, Prefetch: prefetch})
	defer c.Flush()
	batch := max(64, w)
	pkts := s.pkts
	off := 0
	now := int64(2)
	b.ReportAllocs()
	b.ResetTimer()
	done := 0
	for done < b.N {
		if off == len(pkts) {
			off = 0
		}
		p.Process(pkts[off:off+batch], nil, now, nil)
		off += batch
		done += batch
		now++
	}
	b.StopTimer()
	st := c.Stats()
	b.ReportMetric(float64(st.Loads())/float64(done), "loads/pkt")
	b.ReportMetric(float64(st.Evictions)/float64(done), "wb/pkt")
	b.ReportMetric(float64(done)/b.Elapsed().Seconds()/1e6, "Mpps")
	// done may pass b.N by less than a batch; ns/op is per packet.
}

// BenchmarkLookahead is the matrix: N connections (16, 1k, 100k,
// 1M), caches of 64 and 512 contexts, W=1 against W=64 (with prefetch, and
// without as W=64np). Traffic: bursts of 4 packets per connection spread
// over 64-packet blocks, so a 64-window holds 16 connections x 4 packets.
func BenchmarkLookahead(b *testing.B) {
	for _, n := range []int{16, 1 << 10, 100_000, 1 << 20} {
		for _, entries := range []int{64, 512} {
			for _, w := range []int{1, 64, -64} {
				name := fmt.Sprintf("N=%d/cache=%d/W=%d", n, entries, w)
				if w < 0 {
					name = fmt.Sprintf("N=%d/cache=%d/W=%dnp", n, entries, -w)
				}
				b.Run(name, func(b *testing.B) { runBench(b, n, 4, 64, entries, max(w, -w), w > 0) })
			}
		}
	}
}

// BenchmarkBurst sweeps the packets per connection in a 64-window (B) at
// 100k connections, cache 64, W=1 against W=64 side by side: loads/pkt
// with lookahead should track 1/B.
func BenchmarkBurst(b *testing.B) {
	for _, burst := range []int{1, 2, 4, 8, 16} {
		b.Run(fmt.Sprintf("B=%d", burst), func(b *testing.B) { speedup(b, 100_000, burst, 64, 64, 64) })
	}
}

// BenchmarkSpread spreads each connection's 4 packets over 512-packet
// blocks (128 connections per block): more connections in flight than the
// 64-entry cache holds, so without lookahead LRU thrashes, W=64 sees
// mostly one packet per connection, and only a window of 512 (batches of
// 512) groups them.
func BenchmarkSpread(b *testing.B) {
	for _, w := range []int{64, 512} {
		b.Run(fmt.Sprintf("N=100000/cache=64/W=%d", w), func(b *testing.B) { speedup(b, 100_000, 4, 512, 64, w) })
	}
}

// BenchmarkSpeedup measures W=1, W=64 and W=64 without prefetch side by
// side on the same table and stream, alternating in chunks of 64k packets
// so all see the same machine load. The configurations read the stream a
// third of it apart, so none finds another's connections still in the CPU
// caches, and each flushes its cache before handing the table on. It
// reports ns/pkt from the fastest chunk of each (the one least disturbed
// by whatever else the machine runs; -med from the median chunk), and the
// speedups over W=1. ns/op is the time per packet of all three together.
func BenchmarkSpeedup(b *testing.B) {
	for _, n := range []int{16, 1 << 10, 100_000, 1 << 20} {
		for _, entries := range []int{64, 512} {
			b.Run(fmt.Sprintf("N=%d/cache=%d", n, entries), func(b *testing.B) {
				speedup(b, n, 4, 64, entries, 64)
			})
		}
	}
}

// speedup compares W=1 with W=w (prefetch on and off) side by side, on the
// stream of n connections with burst packets each per span-packet block.
// Batches are 64 packets, or w when w is larger.
func speedup(b *testing.B, n, burst, span, entries, w int) {
	s := getStream(n, burst, span)
	tb := benchTable(b, s)
	cfgs := []struct {
		name     string
		w        int
		prefetch bool
	}{{"W1", 1, false}, {fmt.Sprintf("W%d", w), w, true}, {fmt.Sprintf("W%dnp", w), w, false}}
	procs := make([]*Processor, len(cfgs))
	for i, cfg := range cfgs {
		c := mustCache(b, tb, entries, min(8, entries))
		procs[i] = mustProcessor(b, c, ProcessorOptions{Window: cfg.w, Prefetch: cfg.prefetch})
	}
	const chunk = 1 << 16
	batch := max(64, w)
	spent := make([][]time.Duration, len(cfgs))
	loads := make([]uint64, len(cfgs))
	offs := make([]int, len(cfgs))
	for i := range offs {
		offs[i] = len(s.pkts) * i / len(cfgs) / batch * batch
	}
	now := int64(2)
	b.ReportAllocs()
	b.ResetTimer()
	done := 0
	for done < b.N {
		for i, p := range procs {
			off := offs[i]
			before := p.Cache().Stats().Loads()
			t0 := time.Now()
			for range chunk / batch {
				if off+batch > len(s.pkts) {
					off = 0
				}
				p.Process(s.pkts[off:off+batch], nil, now, nil)
				off += batch
				now++
			}
			spent[i] = append(spent[i], time.Since(t0))
			loads[i] += p.Cache().Stats().Loads() - before
			offs[i] = off
			p.Cache().Flush() // hand the table over to the next one
		}
		done += chunk
	}
	b.StopTimer()
	best := make([]float64, len(cfgs))
	med := make([]float64, len(cfgs))
	for i, cfg := range cfgs {
		slices.Sort(spent[i])
		best[i] = float64(spent[i][0].Nanoseconds()) / chunk
		med[i] = float64(spent[i][len(spent[i])/2].Nanoseconds()) / chunk
		b.ReportMetric(best[i], "ns/pkt-"+cfg.name)
		b.ReportMetric(med[i], "ns/pkt-med-"+cfg.name)
		b.ReportMetric(float64(loads[i])/float64(done), "loads/pkt-"+cfg.name)
		if i > 0 {
			b.ReportMetric(best[0]/best[i], "x-"+cfg.name)
			b.ReportMetric(med[0]/med[i], "x-med-"+cfg.name)
		}
	}
}
