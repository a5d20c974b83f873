package offloadbench

import (
	"testing"
	"time"
)

// TestLoopAllocs: the timed loops allocate nothing: a batch of every stage,
// and a whole timed measurement with its clock reads.
func TestLoopAllocs(t *testing.T) {
	stages, err := newStages(DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) != 8 {
		t.Fatalf("%d stages, want 8", len(stages))
	}
	done := make(chan struct{})
	for _, s := range stages {
		if a := testing.AllocsPerRun(200, s.runBatch); a != 0 {
			t.Errorf("%s: %.1f allocations per batch", s.name, a)
		}
		if a := testing.AllocsPerRun(5, func() { s.timed(time.Millisecond, done) }); a != 0 {
			t.Errorf("%s: %.1f allocations per timed measurement", s.name, a)
		}
		if err := s.check(); err != nil {
			t.Error(err)
		}
		if segs, _ := s.counters(); segs == 0 {
			t.Errorf("%s: no segments counted", s.name)
		}
	}
}

func BenchmarkBatch(b *testing.B) {
	stages, err := newStages(DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range stages {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.runBatch()
			}
			b.ReportMetric(float64(b.N)*float64(s.segsPerBatch)/b.Elapsed().Seconds()/1e6, "Mseg/s")
		})
	}
}
