package qos

import (
	"errors"
	"math"
	"testing"
)

// settle feeds w arrivals at a constant depth until its average is that
// depth (the EWMA converges geometrically: after 40/wq arrivals the
// distance left is e^-40 of the start).
func settle(w *WRED, depth int) {
	for range 40 << DefaultWqLog2 {
		w.Decide(0, depth, false)
	}
}

// redGap returns the mean and variance of the number of arrivals from one
// drop to the next at probability pb, for pa = pb/(1-count*pb): the chance
// that the gap exceeds k is 1-k*pb while that is positive.
func redGap(pb float64) (mean, variance float64) {
	var m1, m2 float64
	prev := 1.0 // P(gap > k-1)
	for k := 1.0; prev > 0; k++ {
		next := max(0, 1-k*pb) // P(gap > k)
		p := prev - next
		m1 += k * p
		m2 += k * k * p
		prev = next
	}
	return m1, m2 - m1*m1
}

// TestWREDCurve holds the average depth at points across the thresholds and
// compares the measured drop ratio with RED's: 0 below MinTh, 1/E[gap]
// between (pb rising linearly to MaxP), 1 from MaxTh. The tolerance is five
// standard deviations of the ratio over n arrivals; drops are a renewal
// process, so the count of drops has variance n*Var(gap)/E[gap]^3. The
// average approaches its depth from below, so depth MaxTh itself is left
// out. The generator is seeded, so the run is reproducible; the bound says the
// curve, not the seed, is what the test checks.
func TestWREDCurve(t *testing.T) {
	p := WREDParams{MinTh: 20, MaxTh: 60, MaxP: 0.1}
	const n = 400_000
	for _, depth := range []int{5, 19, 20, 25, 30, 40, 50, 59, 61, 80} {
		w, err := NewWRED(p, 0)
		if err != nil {
			t.Fatal(err)
		}
		settle(&w, depth)
		if math.Abs(w.Avg()-float64(depth)) > 1e-6 {
			t.Fatalf("average %.6f, want %d", w.Avg(), depth)
		}
		drops := 0
		for range n {
			if w.Decide(0, depth, false) == Drop {
				drops++
			}
		}
		got := float64(drops) / n
		var want, tol float64
		switch {
		case depth < int(p.MinTh):
			want, tol = 0, 0
		case depth >= int(p.MaxTh):
			want, tol = 1, 0
		default:
			pb := p.MaxP * float64(depth-int(p.MinTh)) / float64(p.MaxTh-p.MinTh)
			if pb == 0 {
				want, tol = 0, 0
				break
			}
			mean, variance := redGap(pb)
			want = 1 / mean
			tol = 5 * math.Sqrt(n*variance/(mean*mean*mean)) / n
		}
		if math.Abs(got-want) > tol {
			t.Errorf("depth %d: drop ratio %.5f, want %.5f ± %.5f", depth, got, want, tol)
		}
	}
}

func TestWREDECN(t *testing.T) {
	p := WREDParams{MinTh: 10, MaxTh: 30, MaxP: 0.5, ECN: true}
	w, _ := NewWRED(p, 0)
	settle(&w, 25)
	var marks, drops, nonECTMarks int
	for i := range 100_000 {
		ect := i%2 == 0
		switch w.Decide(0, 25, ect) {
		case Mark:
			marks++
			if !ect {
				nonECTMarks++
			}
		case Drop:
			drops++
			if ect {
				t.Fatal("an ECN-capable packet dropped early with ECN on")
			}
		}
	}
	if marks == 0 || drops == 0 || nonECTMarks != 0 {
		t.Fatalf("marks %d (of non-ECT %d), drops %d", marks, nonECTMarks, drops)
	}
	// Above MaxTh even ECN-capable packets are dropped (RFC 3168 §7).
	settle(&w, 40)
	for range 1000 {
		if v := w.Decide(0, 40, true); v != Drop {
			t.Fatalf("above max_th: %d, want Drop", v)
		}
	}
	// With ECN off an ECN-capable packet is dropped, never marked.
	p.ECN = false
	w, _ = NewWRED(p, 0)
	settle(&w, 25)
	for range 10_000 {
		if w.Decide(0, 25, true) == Mark {
			t.Fatal("marked with ECN off")
		}
	}
}

// TestWREDIdleDecay: after the queue stands empty for m packet times, the
// average is (1-wq)^m of what it was, as DPDK's rte_red_enqueue_empty.
func TestWREDIdleDecay(t *testing.T) {
	p := WREDParams{MinTh: 10, MaxTh: 30, MaxP: 0.1, PacketTime: 1000}
	for _, m := range []int64{0, 1, 100, 512, 5000} {
		w, _ := NewWRED(p, 0)
		settle(&w, 20)
		w.QueueEmpty(1e6)
		w.Decide(1e6+m*1000+999, 0, false) // the 999 ns are not a whole packet time
		want := 20 * math.Pow(1-1.0/512, float64(m))
		if math.Abs(w.Avg()-want) > 1e-9*20 {
			t.Errorf("idle %d packet times: average %.6f, want %.6f", m, w.Avg(), want)
		}
	}
}

func TestWREDParams(t *testing.T) {
	for _, c := range []struct {
		p   WREDParams
		err error
	}{
		{WREDParams{MinTh: 0, MaxTh: 10, MaxP: 0.1}, ErrThresholds},
		{WREDParams{MinTh: 10, MaxTh: 10, MaxP: 0.1}, ErrThresholds},
		{WREDParams{MinTh: 1, MaxTh: 10, MaxP: 0}, ErrMaxP},
		{WREDParams{MinTh: 1, MaxTh: 10, MaxP: 1.5}, ErrMaxP},
		{WREDParams{MinTh: 1, MaxTh: 10, MaxP: math.NaN()}, ErrMaxP},
		{WREDParams{MinTh: 1, MaxTh: 10, MaxP: 1, WqLog2: 13}, ErrWq},
		{WREDParams{MinTh: 1, MaxTh: 10, MaxP: 1, WqLog2: 12}, nil},
	} {
		if _, err := NewWRED(c.p, 0); !errors.Is(err, c.err) {
			t.Errorf("%+v: %v, want %v", c.p, err, c.err)
		}
	}
}
