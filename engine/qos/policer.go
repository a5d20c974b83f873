package qos

import "fmt"

// Color is a policer's verdict on a packet.
type Color uint8

const (
	Green  Color = iota // within the committed rate and burst
	Yellow              // beyond the committed, within the excess or peak
	Red                 // beyond both
)

func (c Color) String() string {
	switch c {
	case Green:
		return "green"
	case Yellow:
		return "yellow"
	case Red:
		return "red"
	}
	return "invalid"
}

// PolicerParams configure a three-colour marker, in bytes per second and
// bytes. With PIR 0 it is a single-rate marker (srTCM, RFC 2697: CIR, CBS,
// EBS); with PIR set, a two-rate marker (trTCM, RFC 2698: CIR, CBS, PIR,
// PBS). The zero value (CIR and PIR 0) turns policing off.
type PolicerParams struct {
	CIR, CBS uint64
	EBS      uint64 // srTCM only
	PIR, PBS uint64 // trTCM only
}

// Policer is a colour-blind srTCM or trTCM meter. Its two buckets start
// full and fill with the same exact integer arithmetic as TokenBucket.
// Make one with NewPolicer; the zero value colours everything red.
type Policer struct {
	twoRate bool
	c, p    credit // c fills Tc at CIR (and Te after it, srTCM); p fills Tp at PIR
	cbs, eb uint64 // eb: EBS (srTCM) or PBS (trTCM)
	tc, te  uint64 // te: Te (srTCM) or Tp (trTCM)
}

// NewPolicer validates p and returns a policer with full buckets on a clock
// that reads now.
func NewPolicer(p PolicerParams, now int64) (Policer, error) {
	if p.PIR == 0 {
		if p.CIR == 0 {
			return Policer{}, fmt.Errorf("policer: cir 0: %w", ErrRate)
		}
		// RFC 2697 §2: at least one of CBS and EBS is larger than 0.
		if p.CBS+p.EBS == 0 || p.CBS > MaxBurst || p.EBS > MaxBurst {
			return Policer{}, fmt.Errorf("policer: cbs %d, ebs %d: %w", p.CBS, p.EBS, ErrBurst)
		}
		return Policer{c: credit{rate: p.CIR, last: now}, cbs: p.CBS, eb: p.EBS, tc: p.CBS, te: p.EBS}, nil
	}
	// RFC 2698 §2: PIR >= CIR, and both bursts larger than 0.
	if p.CIR == 0 || p.PIR < p.CIR {
		return Policer{}, fmt.Errorf("policer: cir %d, pir %d: %w", p.CIR, p.PIR, ErrRate)
	}
	if p.CBS == 0 || p.PBS == 0 || p.CBS > MaxBurst || p.PBS > MaxBurst {
		return Policer{}, fmt.Errorf("policer: cbs %d, pbs %d: %w", p.CBS, p.PBS, ErrBurst)
	}
	return Policer{
		twoRate: true,
		c:       credit{rate: p.CIR, last: now},
		p:       credit{rate: p.PIR, last: now},
		cbs:     p.CBS, eb: p.PBS, tc: p.CBS, te: p.PBS,
	}, nil
}

// Color meters an n-byte packet arriving at now, colour-blind, and takes
// its bytes from the buckets its colour says.
func (m *Policer) Color(now int64, n uint32) Color {
	b := uint64(n)
	if m.twoRate {
		// RFC 2698 §3: Tc and Tp fill independently at CIR and PIR.
		m.tc += m.c.earn(now, m.cbs-m.tc)
		m.te += m.p.earn(now, m.eb-m.te)
		if m.te < b {
			return Red
		}
		if m.tc < b {
			m.te -= b
			return Yellow
		}
		m.tc -= b
		m.te -= b
		return Green
	}
	// RFC 2697 §3.1: tokens at CIR go to Tc while it is below CBS, then to
	// Te while it is below EBS.
	got := m.c.earn(now, (m.cbs-m.tc)+(m.eb-m.te))
	toC := min(got, m.cbs-m.tc)
	m.tc += toC
	m.te += got - toC
	if m.tc >= b {
		m.tc -= b
		return Green
	}
	if m.te >= b {
		m.te -= b
		return Yellow
	}
	return Red
}
