package qos

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// Rates from 1 Mbit/s to 100 Gbit/s, in bytes per second.
var testRates = []uint64{125_000, 1_250_000, 125_000_000, 1_250_000_000, 12_500_000_000}

// greedy sends packets of random sizes (64..1500) through b as fast as it
// lets them, waiting with NextAt, until count packets are sent; it returns
// the bytes sent and the clock at the end.
func greedy(t *testing.T, b *TokenBucket, r *rand.Rand, count int) (sent uint64, now int64) {
	t.Helper()
	n := uint32(64 + r.IntN(1437))
	for i := 0; i < count; {
		if b.Take(now, n) {
			sent += uint64(n)
			n = uint32(64 + r.IntN(1437))
			i++
			continue
		}
		next := b.NextAt(now, n)
		if next <= now {
			t.Fatalf("NextAt(%d, %d) = %d, yet Take failed", now, n, next)
		}
		now = next
	}
	return sent, now
}

func TestBucketLongRunRate(t *testing.T) {
	const burst = 3000
	for _, rate := range testRates {
		b, err := NewTokenBucket(rate, burst, 0)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(1, rate))
		sent, now := greedy(t, &b, r, 100_000)
		// Everything beyond the initial burst was earned at the rate.
		got := float64(sent-burst) / (float64(now) / 1e9)
		if e := got/float64(rate) - 1; e > 0.01 || e < -0.01 {
			t.Errorf("rate %d B/s: measured %.0f B/s, error %.3f%%", rate, got, 100*e)
		}
		// And never more than the bucket allows: burst + rate*time.
		if limit := burst + uint64(float64(rate)*float64(now)/1e9); sent > limit+1 {
			t.Errorf("rate %d B/s: sent %d bytes by %d ns, more than %d", rate, sent, now, limit)
		}
	}
}

// TestBucketPolledRate polls at random intervals, as a worker does, rather
// than at the exact times NextAt gives: no fraction of a token may be lost
// to the many small steps.
func TestBucketPolledRate(t *testing.T) {
	const burst = 1 << 20
	for _, rate := range testRates {
		b, _ := NewTokenBucket(rate, burst, 0)
		r := rand.New(rand.NewPCG(2, rate))
		// Drain the bucket, then poll for about 100k packets' worth.
		for b.Take(0, 1500) {
		}
		start := b.Tokens(0)
		var sent uint64
		var now int64
		period := int64(1500 * 100_000 * 1e9 / rate)
		for now < period {
			now += 1 + r.Int64N(int64(20*1500*1e9/rate)+1)
			for b.Take(now, 1500) {
				sent += 1500
			}
		}
		earned := float64(sent) + float64(b.Tokens(now)-start)
		want := float64(rate) * float64(now) / 1e9
		if e := earned/want - 1; e > 0.01 || e < -0.01 {
			t.Errorf("rate %d: earned %.0f bytes in %d ns, want %.0f (%.3f%%)", rate, earned, now, want, 100*e)
		}
	}
}

// TestBucketNoTokenLost steps the clock by 7 ns at 1 Mbit/s, where each step
// earns under a thousandth of a byte: the count must match rate*time
// exactly, rounded down.
func TestBucketNoTokenLost(t *testing.T) {
	const rate = 125_000
	b, _ := NewTokenBucket(rate, 1<<30, 0)
	for b.Take(0, 1<<20) {
	}
	base := b.Tokens(0)
	for i := int64(1); i <= 2_000_000; i++ {
		now := 7 * i
		got := b.Tokens(now) - base
		if want := rate * now / 1e9; got != want {
			t.Fatalf("after %d ns: %d tokens earned, want %d", now, got, want)
		}
	}
}

func TestBucketBurstExact(t *testing.T) {
	for _, rate := range testRates {
		for _, burst := range []uint64{1, 1500, 64 * 1024, 10 << 20} {
			b, err := NewTokenBucket(rate, burst, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, now := range []int64{0, 3_600 * 1e9, 1 << 62} {
				// At one instant a full bucket passes exactly burst bytes
				// of packets no larger than burst.
				var passed uint64
				n := uint32(min(burst, 1500))
				for b.Take(now, n) {
					passed += uint64(n)
				}
				for b.Take(now, 1) {
					passed++
				}
				if passed != burst {
					t.Errorf("rate %d burst %d at %d: %d bytes passed at once", rate, burst, now, passed)
				}
			}
		}
	}
}

func TestBucketNextAtExact(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, rate := range testRates {
		b, _ := NewTokenBucket(rate, 1500, 0)
		now := int64(0)
		for range 1000 {
			n := uint32(64 + r.IntN(1437))
			at := b.NextAt(now, n)
			if at < now {
				t.Fatalf("NextAt went back: %d < %d", at, now)
			}
			if at > now {
				probe := b
				if probe.Conform(at-1, n) {
					t.Fatalf("rate %d: %d bytes conform at %d, before NextAt %d", rate, n, at-1, at)
				}
			}
			if !b.Take(at, n) {
				t.Fatalf("rate %d: %d bytes do not conform at NextAt %d", rate, n, at)
			}
			now = at
		}
	}
}

func TestBucketOversize(t *testing.T) {
	b, _ := NewTokenBucket(1000, 1000, 0)
	if !b.Take(0, 1500) {
		t.Fatal("a 1500-byte packet does not conform to a full 1000-byte bucket")
	}
	if got := b.Tokens(0); got != -500 {
		t.Fatalf("tokens after oversized packet: %d, want -500", got)
	}
	// The debt is repaid first: one byte conforms after 501 bytes of time.
	if at := b.NextAt(0, 1); at != 501_000_000 {
		t.Fatalf("NextAt after debt: %d, want 501 ms", at)
	}
	// An oversized packet waits for a full bucket.
	if at := b.NextAt(0, 5000); at != 1_500_000_000 {
		t.Fatalf("NextAt oversized: %d, want 1.5 s", at)
	}
}

func TestBucketUnlimitedAndErrors(t *testing.T) {
	var b TokenBucket
	for i := range 1000 {
		if !b.Take(int64(i), MaxItemLen) || b.NextAt(5, 1<<31) != 5 {
			t.Fatal("the zero bucket is not unlimited")
		}
	}
	if _, err := NewTokenBucket(1000, 0, 0); !errors.Is(err, ErrBurst) {
		t.Fatalf("burst 0: %v", err)
	}
	if _, err := NewTokenBucket(1000, MaxBurst+1, 0); !errors.Is(err, ErrBurst) {
		t.Fatalf("burst too large: %v", err)
	}
	// A clock that runs backwards earns nothing and breaks nothing.
	c, _ := NewTokenBucket(1000, 1000, 1e9)
	c.Take(1e9, 1000)
	if c.Conform(0, 1) || c.Tokens(2e9) != 1000 {
		t.Fatal("backwards clock mishandled")
	}
}
