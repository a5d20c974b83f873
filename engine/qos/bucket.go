package qos

import (
	"fmt"
	"math"
	"math/bits"
)

// Never is the time NextEligible and NextAt return when nothing will become
// eligible by waiting alone (nothing is queued).
const Never int64 = math.MaxInt64

// nsPerSec is the clock's unit: every time in this package is an int64 count
// of nanoseconds on the caller's clock.
const nsPerSec = 1_000_000_000

// MaxBurst bounds every burst and bucket size, so token counts and the
// arithmetic on them stay in int64.
const MaxBurst = 1 << 40

// credit turns elapsed time into whole bytes at a fixed rate without losing
// the fractions: frac carries the remainder, in units of 1/1e9 byte, from one
// call to the next, so time observed in many small steps earns exactly what
// one large step would. The product rate*elapsed is taken in 128 bits, so no
// rate or gap overflows. (DPDK's rte_sched and rte_meter get the same effect
// by advancing time in whole periods and keeping the remainder of the time.)
type credit struct {
	rate uint64 // bytes per second
	frac uint64 // remainder from the last call, < 1e9
	last int64  // clock of the last call
}

// earn advances the clock to now and returns the whole bytes earned since
// the last call, at most room. When the bytes reach room the bucket is full
// and the remainder is dropped with the excess, as a full bucket discards.
// A clock that goes backwards earns nothing and is ignored.
func (c *credit) earn(now int64, room uint64) uint64 {
	if now <= c.last {
		return 0
	}
	dt := uint64(now - c.last)
	c.last = now
	if room == 0 {
		c.frac = 0
		return 0
	}
	hi, lo := bits.Mul64(c.rate, dt)
	var carry uint64
	lo, carry = bits.Add64(lo, c.frac, 0)
	hi += carry
	var q, r uint64
	if hi == 0 {
		q, r = lo/nsPerSec, lo%nsPerSec
	} else if hi < nsPerSec {
		q, r = bits.Div64(hi, lo, nsPerSec)
	} else {
		q = math.MaxUint64 // more than 64 bits of bytes: certainly full
	}
	if q >= room {
		c.frac = 0
		return room
	}
	c.frac = r
	return q
}

// after returns how many nanoseconds after the last call need more bytes
// are earned (need > 0), rounded up; Never when that is out of range.
func (c *credit) after(need uint64) int64 {
	hi, lo := bits.Mul64(need, nsPerSec)
	var borrow uint64
	lo, borrow = bits.Sub64(lo, c.frac, 0)
	hi -= borrow
	lo, carry := bits.Add64(lo, c.rate-1, 0)
	hi += carry
	if hi >= c.rate {
		return Never
	}
	q, _ := bits.Div64(hi, lo, c.rate)
	if q > math.MaxInt64/2 {
		return Never
	}
	return int64(q)
}

// TokenBucket is a byte token bucket: it fills at Rate bytes per second up
// to Burst bytes and starts full. A rate of 0 means unlimited; the zero
// value is an unlimited bucket. The arithmetic is exact in integers (no
// token is lost to rounding however often it is polled), from 1 byte/s to
// far beyond 100 Gbit/s, on a nanosecond clock.
//
// A packet conforms when the bucket holds at least its length. A packet
// longer than Burst could never conform, so it conforms when the bucket is
// full and takes the bucket below zero: the debt is repaid before anything
// else conforms, and the long-run rate stays exact.
type TokenBucket struct {
	credit
	burst  int64
	tokens int64 // <= burst; below zero only after an oversized packet
}

// NewTokenBucket returns a full bucket of rate bytes per second and burst
// bytes, on a clock that reads now. rate 0 is an unlimited bucket.
func NewTokenBucket(rate, burst uint64, now int64) (TokenBucket, error) {
	if rate == 0 {
		return TokenBucket{}, nil
	}
	if burst == 0 || burst > MaxBurst {
		return TokenBucket{}, fmt.Errorf("token bucket: burst %d: %w", burst, ErrBurst)
	}
	return TokenBucket{
		credit: credit{rate: rate, last: now},
		burst:  int64(burst),
		tokens: int64(burst),
	}, nil
}

// Rate is the bucket's rate in bytes per second; 0 means unlimited.
func (b *TokenBucket) Rate() uint64 { return b.rate }

// Burst is the bucket's size in bytes.
func (b *TokenBucket) Burst() uint64 { return uint64(b.burst) }

// Tokens returns the bytes in the bucket at now (negative while an
// oversized packet's debt is repaid).
func (b *TokenBucket) Tokens(now int64) int64 {
	b.refill(now)
	return b.tokens
}

func (b *TokenBucket) refill(now int64) {
	b.tokens += int64(b.earn(now, uint64(b.burst-b.tokens)))
}

// need is the byte count at which an n-byte packet conforms.
func (b *TokenBucket) need(n uint32) int64 {
	return min(int64(n), b.burst)
}

// Conform reports whether n bytes conform at now, without taking them.
func (b *TokenBucket) Conform(now int64, n uint32) bool {
	if b.rate == 0 {
		return true
	}
	b.refill(now)
	return b.tokens >= b.need(n)
}

// Take takes n bytes at now if they conform and reports whether it did.
func (b *TokenBucket) Take(now int64, n uint32) bool {
	if b.rate == 0 {
		return true
	}
	b.refill(now)
	if b.tokens < b.need(n) {
		return false
	}
	b.tokens -= int64(n)
	return true
}

// NextAt returns the earliest time, not before now, at which n bytes will
// conform if nothing else is taken: now if they conform already.
func (b *TokenBucket) NextAt(now int64, n uint32) int64 {
	if b.rate == 0 {
		return now
	}
	b.refill(now)
	short := b.need(n) - b.tokens
	if short <= 0 {
		return now
	}
	d := b.after(uint64(short))
	if d == Never {
		return Never
	}
	// The bucket's clock is at now unless now ran backwards.
	at := b.last + d
	if at < now {
		return now
	}
	return at
}
