package connbench

import (
	"fmt"
	"testing"
)

// TestTimedPassAllocs: a timed pass (the measured loop, with its clock
// reads and its bookkeeping) allocates nothing, with and without
// lookahead, whether contexts hit or load.
func TestTimedPassAllocs(t *testing.T) {
	o := smallOptions()
	o.Rounds = 50
	for _, n := range []int{16, 1000} {
		s, err := buildStream(n, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []int{1, 64} {
			cfg, err := newConfig(s, 64, w, o)
			if err != nil {
				t.Fatal(err)
			}
			pkts := s.pkts[:4096]
			if allocs := testing.AllocsPerRun(20, func() { cfg.timedPass(pkts) }); allocs != 0 {
				t.Errorf("N=%d W=%d: %.1f allocations per pass", n, w, allocs)
			}
			if n == 1000 && cfg.loads == 0 {
				t.Errorf("N=%d W=%d: no loads, so the pass never missed the cache", n, w)
			}
		}
	}
}

func BenchmarkPass(b *testing.B) {
	o := smallOptions()
	s, err := buildStream(100_000, o)
	if err != nil {
		b.Fatal(err)
	}
	for _, w := range []int{1, 64} {
		cfg, err := newConfig(s, 64, w, o)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("W=%d", w), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				cfg.pass(s.pkts)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(s.pkts)), "ns/pkt")
		})
	}
}
