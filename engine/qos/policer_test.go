package qos

import (
	"errors"
	"testing"
)

type meterStep struct {
	at    int64 // ns
	n     uint32
	color Color
}

func runMeter(t *testing.T, name string, m *Policer, steps []meterStep) {
	t.Helper()
	for i, s := range steps {
		if got := m.Color(s.at, s.n); got != s.color {
			t.Errorf("%s step %d (t=%d ns, %d B): %s, want %s", name, i, s.at, s.n, got, s.color)
		}
	}
}

// TestSrTCM walks RFC 2697 §3 by hand: CIR 1000 B/s, CBS 2000, EBS 3000,
// both buckets full at 0. A packet is green if Tc holds it, else yellow if
// Te holds it, else red; tokens refill Tc first and overflow into Te.
func TestSrTCM(t *testing.T) {
	m, err := NewPolicer(PolicerParams{CIR: 1000, CBS: 2000, EBS: 3000}, 0)
	if err != nil {
		t.Fatal(err)
	}
	runMeter(t, "srTCM", &m, []meterStep{
		{0, 1500, Green},              // Tc 2000 -> 500
		{0, 1500, Yellow},             // Tc short; Te 3000 -> 1500
		{0, 1500, Yellow},             // Te 1500 -> 0
		{0, 100, Green},               // Tc 500 -> 400
		{0, 500, Red},                 // Tc 400, Te 0: neither holds 500
		{500_000_000, 900, Green},     // +500 to Tc: 900 -> 0
		{1_000_000_000, 600, Red},     // +500 to Tc: 500; Te 0
		{10_000_000_000, 2000, Green}, // +9000: Tc to 2000 (+1500), Te to 3000 (+3000), rest lost
		{10_000_000_000, 3000, Yellow},
		{10_000_000_000, 1, Red},
		// Tc refills before Te: 1 s later Tc holds 1000, Te still 0.
		{11_000_000_000, 1001, Red},
		{11_000_000_000, 1000, Green},
		// A packet above CBS can only be yellow.
		{20_000_000_000, 2500, Yellow},
	})
}

// TestTrTCM walks RFC 2698 §3 by hand: CIR 1000 B/s, CBS 1000, PIR 2000 B/s,
// PBS 3000. Red if Tp is short, else yellow (Tp taken) if Tc is short, else
// green (both taken); Tc and Tp refill independently.
func TestTrTCM(t *testing.T) {
	m, err := NewPolicer(PolicerParams{CIR: 1000, CBS: 1000, PIR: 2000, PBS: 3000}, 0)
	if err != nil {
		t.Fatal(err)
	}
	runMeter(t, "trTCM", &m, []meterStep{
		{0, 800, Green},           // Tc 200, Tp 2200
		{0, 800, Yellow},          // Tc short; Tp 1400
		{0, 1500, Red},            // Tp short: nothing taken
		{0, 1400, Yellow},         // Tp 0
		{0, 1, Red},               //
		{500_000_000, 700, Green}, // Tc 200+500=700 -> 0, Tp 0+1000 -> 300
		{500_000_000, 301, Red},
		{500_000_000, 300, Yellow}, // Tp 0
		// Over the PBS the packet is always red, however long the wait.
		{100_000_000_000, 3001, Red},
		// Both full again: Tc 1000, Tp 3000.
		{100_000_000_000, 1000, Green},
		{100_000_000_000, 2000, Yellow},
		{100_000_000_000, 1, Red},
	})
}

// TestPolicerRate: offered twice CIR, an srTCM passes green at CIR in the
// long run (beyond its two bursts).
func TestPolicerRate(t *testing.T) {
	const cir = 1_250_000_000 // 10 Gbit/s
	m, _ := NewPolicer(PolicerParams{CIR: cir, CBS: 15000, EBS: 15000}, 0)
	var green, yellow uint64
	var now int64
	const gap = 600 // ns between 1500-byte packets: 2.5 GB/s offered
	for range 1_000_000 {
		now += gap
		switch m.Color(now, 1500) {
		case Green:
			green += 1500
		case Yellow:
			yellow += 1500
		}
	}
	want := float64(cir) * float64(now) / 1e9
	if got := float64(green + yellow); got < want || got > want+30000 {
		t.Fatalf("green+yellow %.0f bytes, want %.0f + at most both bursts", got, want)
	}
}

func TestPolicerParams(t *testing.T) {
	for _, c := range []struct {
		p   PolicerParams
		err error
	}{
		{PolicerParams{CBS: 1}, ErrRate},
		{PolicerParams{CIR: 1}, ErrBurst},
		{PolicerParams{CIR: 1, EBS: 1}, nil},
		{PolicerParams{CIR: 2, PIR: 1, CBS: 1, PBS: 1}, ErrRate},
		{PolicerParams{CIR: 1, PIR: 2, CBS: 1}, ErrBurst},
		{PolicerParams{CIR: 1, PIR: 2, CBS: 1, PBS: 1}, nil},
	} {
		if _, err := NewPolicer(c.p, 0); !errors.Is(err, c.err) {
			t.Errorf("%+v: %v, want %v", c.p, err, c.err)
		}
	}
}
