package offload

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/xnic/xnic/flows"
)

// ackSeg is a pure ACK of the base flow acknowledging ack.
func ackSeg(v6 bool, ack uint32) seg {
	s := baseSeg(v6)
	s.ack = ack
	s.payload = nil
	return s
}

func ackOpts() GROOptions {
	o := DefaultGROOptions()
	o.CoalesceAcks = true
	return o
}

// TestGROCoalesceAcks: one case per rule of a run of pure ACKs, for IPv4
// and IPv6. Every delivered aggregate is checked whole (checkAggregates),
// and a run must deliver exactly its last ACK's headers.
func TestGROCoalesceAcks(t *testing.T) {
	data := func(v6 bool, seq uint32) seg {
		s := baseSeg(v6)
		s.seq = seq
		s.payload = payloadOf(seq, 1000)
		return s
	}
	cases := []struct {
		name  string
		segs  func(v6 bool) []seg
		want  []want
		merge uint64 // AcksCoalesced
	}{
		{"advancing ACKs make one run", func(v6 bool) []seg {
			return []seg{ackSeg(v6, 1000), ackSeg(v6, 3000), ackSeg(v6, 5000), ackSeg(v6, 9000)}
		}, []want{{span(0, 3), batch}}, 3},
		{"window and timestamps may change", func(v6 bool) []seg {
			a, b := ackSeg(v6, 1000), ackSeg(v6, 2000)
			b.window, b.opts, b.id = 9000, tsOpts(999, 888), 4242
			return []seg{a, b}
		}, []want{{span(0, 1), batch}}, 1},
		{"a duplicate ACK ends the run", func(v6 bool) []seg {
			return []seg{ackSeg(v6, 1000), ackSeg(v6, 2000), ackSeg(v6, 2000), ackSeg(v6, 2000)}
		}, []want{{span(0, 1), FlushByAck}, {span(2, 2), FlushByAck}, {span(3, 3), batch}}, 1},
		{"an older ACK ends the run", func(v6 bool) []seg {
			return []seg{ackSeg(v6, 5000), ackSeg(v6, 4000)}
		}, []want{{span(0, 0), FlushByAck}, {span(1, 1), batch}}, 0},
		{"SACK is never coalesced", func(v6 bool) []seg {
			a, b := ackSeg(v6, 1000), ackSeg(v6, 2000)
			b.opts = []byte{1, 1, 5, 10, 0, 0, 0x10, 0, 0, 0, 0x20, 0} // NOP NOP SACK(1 block)
			return []seg{a, b}
		}, []want{{span(0, 0), FlushByUnmergeable}, {span(1, 1), DeliverUnmergeable}}, 0},
		{"another sequence number ends the run", func(v6 bool) []seg {
			a, b := ackSeg(v6, 1000), ackSeg(v6, 2000)
			b.seq++
			return []seg{a, b}
		}, []want{{span(0, 0), FlushBySeq}, {span(1, 1), batch}}, 0},
		{"another TTL ends the run", func(v6 bool) []seg {
			a, b := ackSeg(v6, 1000), ackSeg(v6, 2000)
			b.ttl = 3
			return []seg{a, b}
		}, []want{{span(0, 0), FlushByMismatch}, {span(1, 1), batch}}, 0},
		{"FIN, PSH or ECE is not a pure ACK", func(v6 bool) []seg {
			a, b, c, d := ackSeg(v6, 1000), ackSeg(v6, 2000), ackSeg(v6, 3000), ackSeg(v6, 4000)
			b.flags |= flows.TCPFlagPSH
			c.flags |= flows.TCPFlagECE
			return []seg{a, b, c, d}
		}, []want{{span(0, 0), FlushByUnmergeable}, {span(1, 1), DeliverUnmergeable},
			{span(2, 2), DeliverUnmergeable}, {span(3, 3), batch}}, 0},
		{"data ends the run, in order", func(v6 bool) []seg {
			return []seg{ackSeg(v6, 1000), ackSeg(v6, 2000), data(v6, 1_000_000), data(v6, 1_001_000), ackSeg(v6, 3000)}
		}, []want{{span(0, 1), FlushByMismatch}, {span(2, 3), FlushByUnmergeable}, {span(4, 4), batch}}, 1},
		{"another flow does not end the run", func(v6 bool) []seg {
			o := ackSeg(v6, 1)
			o.sport++
			return []seg{ackSeg(v6, 1000), o, ackSeg(v6, 2000)}
		}, []want{{[]uint64{0, 2}, batch}, {span(1, 1), batch}}, 1},
		{"Ethernet padding is dropped", func(v6 bool) []seg {
			a, b := ackSeg(v6, 1000), ackSeg(v6, 2000)
			a.opts, b.opts = nil, nil
			a.pad, b.pad = 6, 6
			return []seg{a, b}
		}, []want{{span(0, 1), batch}}, 1},
	}
	for _, fam := range []bool{false, true} {
		for _, c := range cases {
			t.Run(fmt.Sprintf("v6=%t/%s", fam, c.name), func(t *testing.T) {
				h := newHarness(t, ackOpts())
				fs := frames(c.segs(fam))
				h.feed(fs...)
				h.flush()
				h.expect(c.want)
				h.checkAggregates(CsumFull)
				if got := h.g.Stats.AcksCoalesced; got != c.merge {
					t.Errorf("AcksCoalesced %d, want %d", got, c.merge)
				}
				// A run delivers as its last ACK, byte for byte (padding aside).
				for _, x := range h.out {
					if x.length != 0 {
						continue // data
					}
					last := fs[x.handles[len(x.handles)-1]]
					p := parse(t, last)
					if !bytes.Equal(x.bytes, last[:int(p.L3Off)+int(p.IPLen)]) {
						t.Fatalf("delivery %v is not its last frame:\n got  %x\n want %x", x.handles, x.bytes, last)
					}
				}
			})
		}
	}
}

// TestGROCoalesceAcksOff: by default every pure ACK is delivered alone, as
// Linux does.
func TestGROCoalesceAcksOff(t *testing.T) {
	h := newHarness(t, DefaultGROOptions())
	h.feed(frames([]seg{ackSeg(false, 1000), ackSeg(false, 2000), ackSeg(false, 3000)})...)
	h.flush()
	h.expect([]want{{span(0, 0), DeliverUnmergeable}, {span(1, 1), DeliverUnmergeable}, {span(2, 2), DeliverUnmergeable}})
	if h.g.Stats.AcksCoalesced != 0 {
		t.Fatalf("AcksCoalesced %d with the option off", h.g.Stats.AcksCoalesced)
	}
}

// TestGROCoalesceAcksLimits: a run stops at MaxSegs, and a bad checksum is
// never part of one.
func TestGROCoalesceAcksLimits(t *testing.T) {
	o := ackOpts()
	o.MaxSegs = 3
	h := newHarness(t, o)
	var segs []seg
	for i := range 7 {
		segs = append(segs, ackSeg(false, uint32(1000*(i+1))))
	}
	h.feed(frames(segs)...)
	h.flush()
	h.expect([]want{{span(0, 2), FlushBySize}, {span(3, 5), FlushBySize}, {span(6, 6), batch}})

	h = newHarness(t, ackOpts())
	bad := ackSeg(false, 2000)
	bad.badTCP = true
	h.feed(frames([]seg{ackSeg(false, 1000), bad, ackSeg(false, 3000)})...)
	h.flush()
	h.expect([]want{{span(0, 0), FlushByUnmergeable}, {span(1, 1), DeliverBadCsum}, {span(2, 2), batch}})
}
