package offload

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/xnic/xnic/flows"
)

// got is a delivered aggregate, copied out of GRO's storage.
type got struct {
	handles []uint64
	reason  FlushReason
	flags   AggFlags
	gsoSize int
	length  int
	bytes   []byte   // Head + Segs
	segs    [][]byte // copies of the payloads
	pkt     flows.Packet
}

type harness struct {
	t    testing.TB
	g    *GRO
	out  []got
	next uint64 // next handle
	orig [][]byte
}

func newHarness(t testing.TB, opts GROOptions) *harness {
	t.Helper()
	h := &harness{t: t}
	g, err := NewGRO(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.g = g
	return h
}

// take copies out every aggregate GRO has queued, as a caller must before
// its next call.
func (h *harness) take() {
	for a := h.g.Next(); a != nil; a = h.g.Next() {
		x := got{
			handles: slices.Clone(a.Handles),
			reason:  a.Reason,
			flags:   a.Flags,
			gsoSize: a.GSOSize,
			length:  a.Len,
			bytes:   a.AppendTo(nil),
			pkt:     a.Pkt,
		}
		for _, s := range a.Segs {
			x.segs = append(x.segs, slices.Clone(s))
		}
		h.out = append(h.out, x)
	}
}

// feed hands copies of frames to GRO; the handle is the index in the order
// of all frames fed so far.
func (h *harness) feed(fs ...[]byte) {
	for _, f := range fs {
		c := slices.Clone(f)
		h.orig = append(h.orig, f)
		p := parse(h.t, c)
		h.g.Receive(c, h.next, &p)
		h.next++
		h.take()
	}
}

// flush ends the batch: GRO's Flush, then take.
func (h *harness) flush() {
	h.g.Flush()
	h.take()
}

// flushOlderThan is GRO's FlushOlderThan, then take.
func (h *harness) flushOlderThan(now int64) {
	h.g.FlushOlderThan(now)
	h.take()
}

type want struct {
	h []uint64
	r FlushReason
}

func span(lo, hi uint64) []uint64 {
	var s []uint64
	for i := lo; i <= hi; i++ {
		s = append(s, i)
	}
	return s
}

func (h *harness) expect(w []want) {
	h.t.Helper()
	var gotS, wantS []string
	for _, x := range h.out {
		gotS = append(gotS, fmt.Sprintf("%v/%v", x.handles, x.reason))
	}
	for _, x := range w {
		wantS = append(wantS, fmt.Sprintf("%v/%v", x.h, x.r))
	}
	if !slices.Equal(gotS, wantS) {
		h.t.Fatalf("deliveries:\n got  %v\n want %v", gotS, wantS)
	}
}

// checkAggregates checks every delivered TCP aggregate against the frames
// it came from: the packet parses, its lengths and checksums are right and
// its payload is the frames' payloads in order.
func (h *harness) checkAggregates(csum CsumOut) {
	h.t.Helper()
	for _, x := range h.out {
		if x.flags&AggPassThrough != 0 {
			if len(x.handles) != 1 || !bytes.Equal(x.bytes, h.orig[x.handles[0]]) {
				h.t.Fatalf("pass-through %v changed the frame", x.handles)
			}
			continue
		}
		var pay []byte
		for i, hd := range x.handles {
			op := parse(h.t, h.orig[hd])
			want := op.Payload(h.orig[hd])
			if !bytes.Equal(x.segs[i], want) {
				h.t.Fatalf("aggregate %v: seg %d is not frame %d's payload", x.handles, i, hd)
			}
			pay = append(pay, want...)
		}
		if x.length != len(pay) {
			h.t.Fatalf("aggregate %v: Len %d, payload %d", x.handles, x.length, len(pay))
		}
		p := parse(h.t, x.bytes)
		if p.Reason != flows.ReasonOK || int(p.IPLen)+int(p.L3Off) != len(x.bytes) {
			h.t.Fatalf("aggregate %v does not parse whole: %v ipLen %d len %d", x.handles, p.Reason, p.IPLen, len(x.bytes))
		}
		if !bytes.Equal(p.Payload(x.bytes), pay) {
			h.t.Fatalf("aggregate %v: payload differs", x.handles)
		}
		if p.Family == 4 && x.flags&AggCsumBad == 0 && !VerifyIPv4Header(x.bytes[p.L3Off:p.L4Off]) {
			h.t.Fatalf("aggregate %v: bad IPv4 header checksum", x.handles)
		}
		if x.pkt.IPLen != p.IPLen || x.pkt.PayloadLen != p.PayloadLen || x.pkt.TCPFlags != p.TCPFlags {
			h.t.Fatalf("aggregate %v: Pkt not updated: %+v vs %+v", x.handles, x.pkt, p)
		}
		good := VerifyL4(x.bytes, &p)
		switch {
		case x.flags&AggCsumBad != 0:
			if good && (p.Family != 4 || VerifyIPv4Header(x.bytes[p.L3Off:p.L4Off])) {
				h.t.Fatalf("aggregate %v marked bad but verifies", x.handles)
			}
		case len(x.handles) == 1 || csum == CsumFull:
			if !good {
				h.t.Fatalf("aggregate %v: bad TCP checksum", x.handles)
			}
		case csum == CsumPartial:
			c := slices.Clone(x.bytes)
			if x.flags&AggCsumPartial == 0 || !CompletePartial(c, &p) || !VerifyL4(c, &p) {
				h.t.Fatalf("aggregate %v: partial checksum does not complete", x.handles)
			}
		}
		if len(x.handles) > 1 && x.gsoSize != len(x.segs[0]) {
			h.t.Fatalf("aggregate %v: GSOSize %d, first seg %d", x.handles, x.gsoSize, len(x.segs[0]))
		}
	}
}

// ruleCase is one merge or flush rule: a train of four 1000-byte segments
// (unless lens says otherwise), changed by mod, and the deliveries wanted.
type ruleCase struct {
	name   string
	only   int // 4 or 6: the rule is for one family
	lens   []int
	mod    func(i int, s *seg)
	want   []want
	flags  map[int]AggFlags // delivery index -> flags that must be set
	check  func(t *testing.T, h *harness)
	opts   func(o *GROOptions)
	noAggs bool // skip checkAggregates
}

var (
	batch = FlushByBatchEnd
	all4  = []want{{span(0, 3), FlushByBatchEnd}}
)

func ruleCases() []ruleCase {
	from2 := func(f func(s *seg)) func(i int, s *seg) {
		return func(i int, s *seg) {
			if i >= 2 {
				f(s)
			}
		}
	}
	at2 := func(f func(s *seg)) func(i int, s *seg) {
		return func(i int, s *seg) {
			if i == 2 {
				f(s)
			}
		}
	}
	split := func(r FlushReason) []want { return []want{{span(0, 1), r}, {span(2, 3), batch}} }
	alone := func(r FlushReason) []want {
		return []want{{span(0, 1), FlushByUnmergeable}, {[]uint64{2}, r}, {[]uint64{3}, batch}}
	}
	return []ruleCase{
		// Merge only if...
		{name: "merge/all match", want: all4},
		{name: "merge/other port is another flow", mod: func(i int, s *seg) {
			if i == 2 {
				s.dport++
			}
			if i == 3 {
				s.seq -= 1000
				s.id--
			}
		}, want: []want{{[]uint64{0, 1, 3}, batch}, {[]uint64{2}, batch}}},
		{name: "merge/other address is another flow", mod: func(i int, s *seg) {
			if i == 2 {
				s.src4[3]++
				s.src6[15]++
			}
			if i == 3 {
				s.seq -= 1000
				s.id--
			}
		}, want: []want{{[]uint64{0, 1, 3}, batch}, {[]uint64{2}, batch}}},
		{name: "merge/same ack", mod: from2(func(s *seg) { s.ack++ }), want: split(FlushByAck)},
		{name: "merge/same flags (ECE)", mod: from2(func(s *seg) { s.flags |= flows.TCPFlagECE }), want: split(FlushByMismatch)},
		{name: "merge/same window", mod: from2(func(s *seg) { s.window-- }), want: split(FlushByMismatch)},
		{name: "merge/same urgent pointer", mod: from2(func(s *seg) { s.urg = 9 }), want: split(FlushByMismatch)},
		{name: "merge/same timestamp option", mod: from2(func(s *seg) { s.opts = tsOpts(123457, 654321) }), want: split(FlushByMismatch)},
		{name: "merge/same options length", mod: from2(func(s *seg) { s.opts = nil }), want: split(FlushByMismatch)},
		{name: "merge/same TTL", mod: from2(func(s *seg) { s.ttl-- }), want: split(FlushByMismatch)},
		{name: "merge/same TOS", mod: from2(func(s *seg) { s.tos = 0x10 }), want: split(FlushByMismatch)},
		{name: "merge/same DF", only: 4, mod: from2(func(s *seg) { s.df = false }), want: split(FlushByMismatch)},
		{name: "merge/same flow label", only: 6, mod: from2(func(s *seg) { s.flowLabel = 0x12345 }), want: split(FlushByMismatch)},
		{name: "merge/same L2 header", mod: from2(func(s *seg) { s.srcMAC[5]++ }), want: split(FlushByMismatch)},
		{name: "merge/same VLAN", mod: from2(func(s *seg) { s.vlan = 7 }), want: []want{{span(0, 1), batch}, {span(2, 3), batch}}},
		{name: "merge/ipv4 id incrementing", only: 4, want: all4, flags: map[int]AggFlags{}},
		{name: "merge/ipv4 id fixed", only: 4, mod: func(i int, s *seg) { s.id = 100 }, want: all4, flags: map[int]AggFlags{0: AggFixedID}},
		{name: "merge/ipv4 id fixed without DF", only: 4, mod: func(i int, s *seg) { s.id, s.df = 100, false }, want: all4, flags: map[int]AggFlags{0: AggFixedID}},
		{name: "merge/ipv4 id jump", only: 4, mod: from2(func(s *seg) { s.id += 5 }), want: split(FlushByMismatch)},
		{name: "merge/ipv4 id fixed then incrementing", only: 4, mod: func(i int, s *seg) {
			s.id = 100
			if i == 3 {
				s.id = 101
			}
		}, want: []want{{span(0, 2), FlushByMismatch}, {[]uint64{3}, batch}}},
		{name: "merge/ipv4 id incrementing then fixed", only: 4, mod: func(i int, s *seg) {
			if i == 3 {
				s.id = 102
			}
		}, want: []want{{span(0, 2), FlushByMismatch}, {[]uint64{3}, batch}}},
		{name: "merge/contiguous seq (loss)", mod: from2(func(s *seg) { s.seq += 1000 }), want: split(FlushBySeq)},
		{name: "merge/contiguous seq (retransmit)", mod: at2(func(s *seg) { s.seq -= 1000 }),
			want: []want{{span(0, 1), FlushBySeq}, {[]uint64{2}, FlushBySeq}, {[]uint64{3}, batch}}},

		// Never merge...
		{name: "never/CWR", mod: at2(func(s *seg) { s.flags |= flows.TCPFlagCWR }), want: alone(DeliverUnmergeable)},
		{name: "never/IPv4 options", only: 4, mod: at2(func(s *seg) { s.ipOpts = []byte{1, 1, 1, 0} }), want: alone(DeliverUnmergeable)},
		{name: "never/IPv6 extension header", only: 6, mod: at2(func(s *seg) { s.ext = true }), want: alone(DeliverPassThrough)},
		{name: "never/fragment", mod: at2(func(s *seg) { s.frag = true }), want: alone(DeliverPassThrough)},
		{name: "never/larger than MSS", lens: []int{1000, 1000, 1200, 1000},
			want: []want{{span(0, 1), FlushByMSS}, {span(2, 3), FlushByShort}}},
		{name: "never/bad TCP checksum", mod: at2(func(s *seg) { s.badTCP = true }), want: alone(DeliverBadCsum),
			flags: map[int]AggFlags{1: AggCsumBad},
			check: func(t *testing.T, h *harness) {
				if h.g.Stats.Csum.BadTCP != 1 {
					t.Fatalf("BadTCP %d", h.g.Stats.Csum.BadTCP)
				}
			}},
		{name: "never/bad IPv4 header checksum", only: 4, mod: at2(func(s *seg) { s.badIP = true }), want: alone(DeliverBadCsum),
			flags: map[int]AggFlags{1: AggCsumBad},
			check: func(t *testing.T, h *harness) {
				if h.g.Stats.Csum.BadIPv4 != 1 {
					t.Fatalf("BadIPv4 %d", h.g.Stats.Csum.BadIPv4)
				}
			}},
		{name: "never/Ethernet padding", mod: at2(func(s *seg) { s.pad = 6 }), want: alone(DeliverUnmergeable), noAggs: true},
		{name: "never/no payload", lens: []int{1000, 1000, 0, 1000}, want: alone(DeliverUnmergeable)},

		// Flush...
		{name: "flush/short merges then flushes", lens: []int{1000, 1000, 500, 1000},
			want: []want{{span(0, 2), FlushByShort}, {[]uint64{3}, batch}}},
		{name: "flush/PSH merges then flushes", mod: at2(func(s *seg) { s.flags |= flows.TCPFlagPSH }),
			want: []want{{span(0, 2), FlushByPush}, {[]uint64{3}, batch}},
			check: func(t *testing.T, h *harness) {
				if h.out[0].pkt.TCPFlags&flows.TCPFlagPSH == 0 {
					t.Fatal("PSH not OR'ed into the head")
				}
			}},
		{name: "flush/FIN merges then flushes", mod: at2(func(s *seg) { s.flags |= flows.TCPFlagFIN }),
			want: []want{{span(0, 2), FlushByFIN}, {[]uint64{3}, batch}}},
		{name: "flush/PSH alone", mod: func(i int, s *seg) {
			if i == 0 {
				s.flags |= flows.TCPFlagPSH
			}
		}, want: []want{{[]uint64{0}, FlushByPush}, {span(1, 3), batch}}},
		{name: "flush/URG flushes then delivers", mod: at2(func(s *seg) { s.flags |= flows.TCPFlagURG; s.urg = 10 }), want: alone(DeliverUnmergeable)},
		{name: "flush/RST flushes then delivers", mod: at2(func(s *seg) { s.flags |= flows.TCPFlagRST }), want: alone(DeliverUnmergeable)},
		{name: "flush/SYN flushes then delivers", mod: at2(func(s *seg) { s.flags |= flows.TCPFlagSYN }), want: alone(DeliverUnmergeable)},
		{name: "flush/64KB", lens: repeat(50, 1448),
			want: []want{{span(0, 44), FlushBySize}, {span(45, 49), batch}},
			check: func(t *testing.T, h *harness) {
				if l := int(h.out[0].pkt.IPLen); l > 65535 || l+1448 <= 65535 {
					t.Fatalf("aggregate IP length %d", l)
				}
			}},
		{name: "flush/max segs", lens: repeat(70, 100), opts: func(o *GROOptions) { o.MaxSegs = 64 },
			want: []want{{span(0, 63), FlushBySize}, {span(64, 69), batch}}},
		{name: "flush/non-TCP passes through without flushing", mod: func(i int, s *seg) {
			if i == 2 {
				s.udp = true
			}
			if i == 3 {
				s.seq -= 1000
				s.id--
			}
		}, want: []want{{[]uint64{2}, DeliverPassThrough}, {[]uint64{0, 1, 3}, batch}}},
	}
}

// TestGRORules runs every rule case for IPv4 and IPv6, with and without
// the template fast path: both paths must decide alike.
func TestGRORules(t *testing.T) {
	for _, c := range ruleCases() {
		for _, run := range []struct {
			fam    int
			noFast bool
		}{{4, false}, {6, false}, {4, true}, {6, true}} {
			fam := run.fam
			if c.only != 0 && c.only != fam {
				continue
			}
			name := fmt.Sprintf("%s/ipv%d", c.name, fam)
			if run.noFast {
				name += "/slow"
			}
			t.Run(name, func(t *testing.T) {
				opts := DefaultGROOptions()
				if c.opts != nil {
					c.opts(&opts)
				}
				lens := c.lens
				if lens == nil {
					lens = repeat(4, 1000)
				}
				segs := train(baseSeg(fam == 6), lens)
				if c.mod != nil {
					for i := range segs {
						c.mod(i, &segs[i])
					}
				}
				h := newHarness(t, opts)
				h.g.noFast = run.noFast
				h.feed(frames(segs)...)
				h.flush()
				h.expect(c.want)
				if h.g.Held() != 0 {
					t.Fatalf("%d flows held after Flush", h.g.Held())
				}
				for i, f := range c.flags {
					if h.out[i].flags&f != f {
						t.Fatalf("delivery %d: flags %b, want %b set", i, h.out[i].flags, f)
					}
				}
				if c.flags != nil && c.flags[0] == 0 && h.out[0].flags&AggFixedID != 0 {
					t.Fatal("incrementing IDs marked fixed")
				}
				if !c.noAggs {
					h.checkAggregates(opts.CsumOut)
				}
				if c.check != nil {
					c.check(t, h)
				}
				// Every frame delivered once.
				var hs []uint64
				for _, x := range h.out {
					hs = append(hs, x.handles...)
				}
				slices.Sort(hs)
				if !slices.Equal(hs, span(0, uint64(len(segs)-1))) {
					t.Fatalf("handles delivered %v", hs)
				}
				st := &h.g.Stats
				if st.Frames != uint64(len(segs)) || st.Aggregates != uint64(len(h.out)) {
					t.Fatalf("stats frames %d aggregates %d", st.Frames, st.Aggregates)
				}
			})
		}
	}
}

func TestGROCsumOutModes(t *testing.T) {
	for _, mode := range []CsumOut{CsumFull, CsumPartial, CsumMarkValidated} {
		for _, verify := range []bool{true, false} {
			for _, v6 := range []bool{false, true} {
				opts := DefaultGROOptions()
				opts.CsumOut, opts.Verify = mode, verify
				h := newHarness(t, opts)
				// Odd payload lengths exercise the odd-offset sums.
				h.feed(frames(train(baseSeg(v6), []int{1001, 1001, 1001, 999}))...)
				h.flush()
				h.expect([]want{{span(0, 3), FlushByShort}})
				h.checkAggregates(mode)
				x := h.out[0]
				if x.flags&AggCsumValidated == 0 {
					t.Fatalf("%v verify=%v: not marked validated", mode, verify)
				}
				if mode == CsumMarkValidated {
					p := parse(t, x.bytes)
					if got, want := binary.BigEndian.Uint16(x.bytes[p.L4Off+16:]), binary.BigEndian.Uint16(h.orig[0][p.L4Off+16:]); got != want {
						t.Fatalf("mark-validated rewrote the checksum %04x -> %04x", want, got)
					}
				}
			}
		}
	}
}

func TestGROTimeout(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		opts := DefaultGROOptions()
		opts.FlushTimeout = 1000
		h := newHarness(t, opts)
		h.flushOlderThan(0)
		h.feed(frames(train(baseSeg(v6), repeat(3, 1000)))...)
		h.flushOlderThan(999)
		if len(h.out) != 0 || h.g.Held() != 1 {
			t.Fatalf("flushed before the timeout: %d", len(h.out))
		}
		// A second flow starts later and stays.
		s := baseSeg(v6)
		s.sport++
		h.feed(frames(train(s, repeat(2, 1000)))...)
		h.flushOlderThan(1000)
		h.expect([]want{{span(0, 2), FlushByTimeout}})
		h.flushOlderThan(1999)
		h.expect([]want{{span(0, 2), FlushByTimeout}, {span(3, 4), FlushByTimeout}})
		h.checkAggregates(CsumFull)
	}
}

func TestGROEvict(t *testing.T) {
	opts := DefaultGROOptions()
	opts.Buckets, opts.FlowsPerBucket = 1, 2
	h := newHarness(t, opts)
	var fs [][]byte
	for i := range 3 {
		s := baseSeg(false)
		s.sport += uint16(i)
		s.payload = payloadOf(uint32(i), 1000)
		fs = append(fs, s.frame())
	}
	h.feed(fs...)
	h.feed(fs[1]) // a duplicate of flow 1's segment: not contiguous
	h.flush()
	h.expect([]want{{[]uint64{0}, FlushByEvict}, {[]uint64{1}, FlushBySeq}, {[]uint64{2}, batch}, {[]uint64{3}, batch}})
	if h.g.Stats.Flush[FlushByEvict] != 1 {
		t.Fatalf("evictions %d", h.g.Stats.Flush[FlushByEvict])
	}
}

// TestGRONext: the pull side. A table of one flow ends its held aggregate
// and starts another in one Receive (the spare flow), a Receive that
// queues two aggregates leaves both valid until the next call, and a call
// drops what the caller left queued.
func TestGRONext(t *testing.T) {
	opts := DefaultGROOptions()
	opts.Buckets, opts.FlowsPerBucket = 1, 1
	g, err := NewGRO(opts)
	if err != nil {
		t.Fatal(err)
	}
	a := train(baseSeg(false), repeat(4, 1000))
	a[2].seq += 7 // a gap: frame 2 ends the aggregate of frame 1
	a[3] = a[2]
	a[3].seq += 1000
	a[3].flags |= flows.TCPFlagURG // never merges: ends 2's aggregate, then alone
	a[3].urg = 1
	fs := frames(a)
	b := baseSeg(false)
	b.sport++
	fb := frames(train(b, repeat(1, 1000)))
	c := b
	c.sport++
	fc := frames(train(c, repeat(1, 1000)))
	recv := func(f []byte, handle uint64) {
		t.Helper()
		p := parse(t, f)
		g.Receive(f, handle, &p)
	}
	next := func() *Aggregate { return g.Next() }

	recv(fs[0], 0)
	recv(fs[1], 1)
	if x := next(); x != nil {
		t.Fatalf("merging queued %v", x.Handles)
	}
	recv(fs[2], 2)
	if x := next(); x == nil || !slices.Equal(x.Handles, []uint64{0, 1}) || x.Reason != FlushBySeq {
		t.Fatalf("the gap: got %+v, want frames 0 and 1 by seq", x)
	}
	if next() != nil || g.Held() != 1 {
		t.Fatalf("after the gap: more queued, or %d held, want 1", g.Held())
	}
	recv(fs[3], 3)
	x, y := next(), next()
	if next() != nil || x == nil || y == nil {
		t.Fatal("the URG segment: want two aggregates queued")
	}
	if !slices.Equal(x.Handles, []uint64{2}) || x.Reason != FlushByUnmergeable ||
		!slices.Equal(y.Handles, []uint64{3}) || y.Reason != DeliverUnmergeable || !bytes.Equal(y.Head, fs[3][:len(y.Head)]) {
		t.Fatalf("the URG segment: got %v/%v and %v/%v, want [2]/%v then [3]/%v",
			x.Handles, x.Reason, y.Handles, y.Reason, FlushByUnmergeable, DeliverUnmergeable)
	}
	recv(fb[0], 4)
	recv(fc[0], 5) // evicts 4 (one flow per bucket); the caller leaves it queued
	g.Flush()      // drops 4's aggregate, queues 5's
	if x := next(); x == nil || !slices.Equal(x.Handles, []uint64{5}) || next() != nil {
		t.Fatalf("after Flush: got %+v, want frame 5 alone", x)
	}
	if g.Held() != 0 || len(g.free) != len(g.flows)-1 {
		t.Fatalf("after Flush: %d held, %d of %d flows free; want 0 and all but the queued one", g.Held(), len(g.free), len(g.flows))
	}
	recv(fb[0], 6)
	g.Flush()
	if x := next(); x == nil || !slices.Equal(x.Handles, []uint64{6}) || len(g.free) != len(g.flows)-1 {
		t.Fatalf("a flow reused: got %+v", x)
	}
}

// TestGROOrderAcrossBatches: a flow split across two batches keeps its
// order, and Flush empties the table.
func TestGROOrderAcrossBatches(t *testing.T) {
	h := newHarness(t, DefaultGROOptions())
	fs := frames(train(baseSeg(true), repeat(6, 1000)))
	h.feed(fs[:3]...)
	h.flush()
	h.feed(fs[3:]...)
	h.flush()
	h.expect([]want{{span(0, 2), batch}, {span(3, 5), batch}})
	h.checkAggregates(CsumFull)
}

func TestGROOptionsValidate(t *testing.T) {
	bad := []func(o *GROOptions){
		func(o *GROOptions) { o.Buckets = 3 },
		func(o *GROOptions) { o.Buckets = 0 },
		func(o *GROOptions) { o.FlowsPerBucket = 0 },
		func(o *GROOptions) { o.MaxSegs = 0 },
		func(o *GROOptions) { o.MaxSegs = MaxSegsLimit + 1 },
		func(o *GROOptions) { o.MaxBytes = 70000 },
		func(o *GROOptions) { o.MaxBytes = 10 },
		func(o *GROOptions) { o.CsumOut = 9 },
		func(o *GROOptions) { o.FlushTimeout = -1 },
	}
	for i, f := range bad {
		o := DefaultGROOptions()
		f(&o)
		if _, err := NewGRO(o); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
	if _, err := NewGRO(DefaultGROOptions()); err != nil {
		t.Error(err)
	}
}

func TestFlushReasonStrings(t *testing.T) {
	seen := map[string]bool{}
	for r := range FlushReason(NumFlushReasons) {
		s := r.String()
		if s == "" || seen[s] {
			t.Fatalf("reason %d: %q", r, s)
		}
		seen[s] = true
	}
	if FlushReason(200).String() != "flush_reason(?)" {
		t.Fatal("out of range reason")
	}
}

func TestEqSmallAndKeyEq(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for range 20000 {
		n := r.IntN(45)
		a := randBytes(r, n)
		b := bytes.Clone(a)
		if n > 0 && r.IntN(2) == 0 {
			b[r.IntN(n)] ^= byte(1 + r.IntN(255))
		}
		if eqSmall(a, b) != bytes.Equal(a, b) {
			t.Fatalf("eqSmall(%x, %x)", a, b)
		}
		if eqSmall(a, b[:len(b)/2]) != (len(b)/2 == len(a) && bytes.Equal(a, b[:len(b)/2])) {
			t.Fatal("eqSmall lengths")
		}
		var k flows.Key
		copy(k.Src[:], randBytes(r, 16))
		copy(k.Dst[:], randBytes(r, 16))
		k.SrcPort, k.DstPort, k.Proto, k.Family, k.VLAN = 1, 2, 6, 4, 5
		o := k
		switch r.IntN(8) {
		case 0:
			o.Src[r.IntN(16)]++
		case 1:
			o.Dst[r.IntN(16)]++
		case 2:
			o.SrcPort++
		case 3:
			o.DstPort++
		case 4:
			o.Proto++
		case 5:
			o.Family++
		case 6:
			o.VLAN++
		}
		if keyEq(&k, &o) != (k == o) {
			t.Fatalf("keyEq %v %v", k, o)
		}
	}
}
