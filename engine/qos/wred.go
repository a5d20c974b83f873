package qos

import (
	"fmt"
	"math"
)

// WREDParams configure random early detection on one queue. The zero value
// (MaxTh 0) turns it off.
type WREDParams struct {
	// MinTh and MaxTh are the average depths, in packets, where early drops
	// start and where every packet is dropped. 0 < MinTh < MaxTh.
	MinTh, MaxTh uint32
	// MaxP is the drop probability pb reached at MaxTh, in (0, 1].
	MaxP float64
	// WqLog2 sets the EWMA weight of the average depth, wq = 2^-WqLog2,
	// as DPDK's wq_log2 (1..12). 0 means DefaultWqLog2.
	WqLog2 uint8
	// PacketTime is how long the link takes to send a typical packet, in
	// nanoseconds: while the queue is empty, the average decays as if one
	// empty-queue sample arrived per PacketTime (DPDK's idle-time decay).
	// 0 means DefaultPacketTime.
	PacketTime int64
	// ECN marks ECN-capable packets instead of dropping them early
	// (RFC 3168 §7): only below MaxTh; above it they are dropped.
	ECN bool
	// Seed seeds the drop decisions' generator; 0 picks a fixed seed.
	Seed uint64
}

// DefaultWqLog2 is DPDK's default: wq = 1/512.
const DefaultWqLog2 = 9

// DefaultPacketTime is a 1500-byte frame at 10 Gbit/s.
const DefaultPacketTime = 1200

// REDVerdict is what WRED decides for one arriving packet.
type REDVerdict uint8

const (
	Admit REDVerdict = iota // queue it
	Mark                    // queue it with CE set
	Drop                    // drop it
)

// WRED keeps a queue's average depth and decides, per arriving packet,
// whether to admit, mark or drop it, as Floyd and Jacobson's RED (RFC 2309):
// below MinTh it admits; between MinTh and MaxTh it drops with probability
//
//	pb = MaxP * (avg - MinTh) / (MaxTh - MinTh)
//	pa = pb / (1 - count*pb)
//
// where count is the packets admitted since the last drop, so drops are
// spread evenly (the gap between drops is uniform on 1..1/pb, and the
// long-run drop ratio is 1/E[gap], about 2pb/(1+pb)); at or above MaxTh it
// drops every packet. With ECN on, an ECN-capable packet is marked where it
// would have been dropped early, but never above MaxTh. Its random numbers
// come from a per-instance xorshift generator, so a run is reproducible.
type WRED struct {
	minTh, maxTh float64
	maxP         float64
	wq           float64
	log1mWq      float64 // ln(1 - wq), for the idle decay
	pktTime      int64
	ecn          bool

	avg   float64 // average depth, packets
	count uint64  // packets admitted since the last drop or mark
	idle  int64   // when the queue last became empty
	rng   uint64  // xorshift64* state, never 0
}

// NewWRED validates p and returns a WRED with an average of 0, its queue
// empty since now.
func NewWRED(p WREDParams, now int64) (WRED, error) {
	if p.MinTh == 0 || p.MaxTh <= p.MinTh {
		return WRED{}, fmt.Errorf("red: min %d, max %d: %w", p.MinTh, p.MaxTh, ErrThresholds)
	}
	if !(p.MaxP > 0 && p.MaxP <= 1) {
		return WRED{}, fmt.Errorf("red: max_p %g: %w", p.MaxP, ErrMaxP)
	}
	wl := p.WqLog2
	if wl == 0 {
		wl = DefaultWqLog2
	}
	if wl > 12 {
		return WRED{}, fmt.Errorf("red: wq_log2 %d: %w", wl, ErrWq)
	}
	pt := p.PacketTime
	if pt <= 0 {
		pt = DefaultPacketTime
	}
	wq := 1 / float64(uint64(1)<<wl)
	seed := p.Seed
	if seed == 0 {
		seed = 0x9e3779b97f4a7c15
	}
	return WRED{
		minTh: float64(p.MinTh), maxTh: float64(p.MaxTh), maxP: p.MaxP,
		wq: wq, log1mWq: math.Log1p(-wq), pktTime: pt, ecn: p.ECN,
		idle: now, rng: seed,
	}, nil
}

// Avg returns the average depth in packets.
func (w *WRED) Avg() float64 { return w.avg }

// QueueEmpty records that the queue became empty at now; the average decays
// from then until the next arrival.
func (w *WRED) QueueEmpty(now int64) { w.idle = now }

// Decide updates the average with the queue's depth at an arrival (in
// packets, before this one) and returns the verdict for a packet that is
// ECN-capable (ECT(0), ECT(1) or CE) or not.
func (w *WRED) Decide(now int64, depth int, ect bool) REDVerdict {
	if depth <= 0 {
		// An arrival at an empty queue: decay the average by (1-wq)^m for
		// the m packet times the queue stood idle, and admit (DPDK does
		// not drop here either).
		w.count++
		if now > w.idle {
			m := (now - w.idle) / w.pktTime
			w.avg *= math.Exp(float64(m) * w.log1mWq)
			w.idle += m * w.pktTime // keep the part of a packet time
		}
		return Admit
	}
	w.avg += (float64(depth) - w.avg) * w.wq
	if w.avg < w.minTh {
		w.count++
		return Admit
	}
	if w.avg >= w.maxTh {
		w.count = 0
		return Drop
	}
	pb := w.maxP * (w.avg - w.minTh) / (w.maxTh - w.minTh)
	den := 1 - float64(w.count)*pb
	if den > 0 && w.uniform()*den >= pb {
		w.count++
		return Admit
	}
	w.count = 0
	if w.ecn && ect {
		return Mark
	}
	return Drop
}

// uniform returns a number in [0, 1) from xorshift64*.
func (w *WRED) uniform() float64 {
	x := w.rng
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	w.rng = x
	return float64((x*0x2545f4914f6cdd1d)>>11) / (1 << 53)
}
