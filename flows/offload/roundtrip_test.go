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

// resegment runs GSO over a delivered aggregate and returns the frames.
func resegment(t testing.TB, g *GSO, x got) [][]byte {
	t.Helper()
	if x.flags&AggPassThrough != 0 {
		return [][]byte{x.bytes}
	}
	r := Request{
		Head:    x.bytes[:x.pkt.PayloadOff],
		L3Off:   int(x.pkt.L3Off),
		Payload: x.segs,
		GSOSize: x.gsoSize,
		FixedID: x.flags&AggFixedID != 0,
	}
	out, sizes := bufs(Segments(x.length, x.gsoSize), int(x.pkt.PayloadOff)+max(x.gsoSize, x.length))
	n, err := g.Segment(&r, out, sizes)
	if err != nil {
		t.Fatalf("gso of aggregate %v: %v", x.handles, err)
	}
	fs := make([][]byte, n)
	for i := range n {
		fs[i] = out[i][:sizes[i]]
	}
	return fs
}

// sameFrame compares frames, taking the TCP/IPv4 checksum fields 0x0000
// and 0xffff as the same value.
func sameFrame(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if len(a) != len(b) {
		return false
	}
	var p flows.Packet
	flows.Parse(a, &p)
	if p.Reason != flows.ReasonOK {
		return false
	}
	a, b = bytes.Clone(a), bytes.Clone(b)
	norm := func(f []byte, off int) {
		if binary.BigEndian.Uint16(f[off:]) == 0xffff {
			binary.BigEndian.PutUint16(f[off:], 0)
		}
	}
	for _, f := range [][]byte{a, b} {
		if p.Family == 4 {
			norm(f, int(p.L3Off)+10)
		}
		if p.Proto == flows.ProtoTCP {
			norm(f, int(p.L4Off)+16)
		}
	}
	return bytes.Equal(a, b)
}

// mergeableTrain is a random train of one flow that GRO may merge: full
// MSS segments, a shorter last one, timestamps that tick now and then, IPv4
// IDs fixed or incrementing, PSH on the last segment or not.
func mergeableTrain(r *rand.Rand) ([]seg, string) {
	v6 := r.IntN(2) == 1
	mss := 1 + r.IntN(1460)
	if r.IntN(3) == 0 {
		mss = 1448
	}
	count := 1 + r.IntN(120)
	base := baseSeg(v6)
	base.seq = r.Uint32()
	base.ack = r.Uint32()
	base.id = uint16(r.Uint32())
	ts := r.IntN(2) == 1
	if !ts {
		base.opts = nil
	}
	fixed := !v6 && r.IntN(2) == 1
	base.df = !fixed || r.IntN(2) == 1
	lens := repeat(count, mss)
	lens[count-1] = 1 + r.IntN(mss)
	segs := train(base, lens)
	tsval := uint32(1000)
	for i := range segs {
		if ts && r.IntN(20) == 0 {
			tsval++
		}
		if ts {
			segs[i].opts = tsOpts(tsval, 99)
		}
		if fixed {
			segs[i].id = base.id
		}
	}
	if r.IntN(2) == 1 {
		segs[count-1].flags |= flows.TCPFlagPSH
	}
	return segs, fmt.Sprintf("v6=%v mss=%d count=%d ts=%v fixed=%v", v6, mss, count, ts, fixed)
}

// TestRoundTrip: GSO(GRO(train)) is the train, byte for byte.
func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	gso := newGSO(t, CsumFull)
	for iter := range 400 {
		segs, desc := mergeableTrain(r)
		for _, mode := range []CsumOut{CsumFull, CsumPartial, CsumMarkValidated} {
			opts := DefaultGROOptions()
			opts.CsumOut = mode
			h := newHarness(t, opts)
			in := frames(segs)
			// Batches of random size, as a receive loop would see.
			for i := 0; i < len(in); {
				k := min(len(in)-i, 1+r.IntN(64))
				h.feed(in[i : i+k]...)
				h.flush()
				i += k
			}
			var out [][]byte
			for _, x := range h.out {
				out = append(out, resegment(t, gso, x)...)
			}
			if len(out) != len(in) {
				t.Fatalf("iter %d %s %v: %d frames back, want %d", iter, desc, mode, len(out), len(in))
			}
			for i := range in {
				if !sameFrame(out[i], in[i]) {
					t.Fatalf("iter %d %s %v: frame %d differs", iter, desc, mode, i)
				}
			}
			if segsIn := len(in); h.g.Stats.Frames != uint64(segsIn) {
				t.Fatal("frames counted")
			}
		}
	}
}

// TestRoundTripGSOThenGRO: GRO(GSO(large segment)) is the large segment.
func TestRoundTripGSOThenGRO(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	gso := newGSO(t, CsumFull)
	for range 300 {
		s := baseSeg(r.IntN(2) == 1)
		s.seq = r.Uint32()
		s.flags |= []uint8{0, flows.TCPFlagPSH, flows.TCPFlagFIN | flows.TCPFlagPSH}[r.IntN(3)]
		mss := 536 + r.IntN(1000)
		n := 1 + r.IntN(min(60000, 64*mss)) // MaxSegs is 64
		src, sp := large(t, s, n)
		out, sizes := bufs(Segments(n, mss), 1600)
		k, err := gso.SegmentFrame(src, &sp, mss, false, out, sizes)
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, DefaultGROOptions())
		for i := range k {
			h.feed(out[i][:sizes[i]])
		}
		h.flush()
		if len(h.out) != 1 || !bytes.Equal(h.out[0].bytes, src) {
			t.Fatalf("mss %d n %d: %d aggregates, first %d bytes vs %d", mss, n, len(h.out), len(h.out[0].bytes), len(src))
		}
	}
}

// event kinds for arbitrary trains.
const (
	evNext = iota
	evReorder
	evDup
	evLoss
	evAckBump
	evTSTick
	evPush
	evPureAck
	evCWR
	evUDP
	evBadCsum
	evFlush
	numEvents
)

// arbitraryTrain interleaves a few flows with reordering, duplicates, loss,
// flag and header changes, non-TCP frames, bad checksums and batch ends.
// It returns the frames and, per frame, whether a Flush follows it.
func arbitraryTrain(r *rand.Rand, n int) ([][]byte, []bool) {
	type fs struct {
		s    seg
		last []byte
	}
	nf := 1 + r.IntN(4)
	fls := make([]*fs, nf)
	for i := range fls {
		s := baseSeg(r.IntN(2) == 1)
		s.sport += uint16(i)
		s.seq = r.Uint32()
		fls[i] = &fs{s: s}
	}
	mss := 100 + r.IntN(1400)
	var out [][]byte
	var flush []bool
	var pending []byte // a frame held back for reordering
	emit := func(f []byte) {
		out = append(out, f)
		flush = append(flush, false)
	}
	for len(out) < n {
		f := fls[r.IntN(nf)]
		s := f.s
		plen := mss
		if r.IntN(8) == 0 {
			plen = r.IntN(mss + 1)
		}
		s.payload = payloadOf(s.seq, plen)
		ev := r.IntN(numEvents)
		if r.IntN(2) == 0 {
			ev = evNext
		}
		switch ev {
		case evAckBump:
			f.s.ack += 1000
			s.ack = f.s.ack
		case evTSTick:
			f.s.opts = tsOpts(r.Uint32(), 1)
			s.opts = f.s.opts
		case evPush:
			s.flags |= flows.TCPFlagPSH
		case evPureAck:
			s.payload = nil
		case evCWR:
			s.flags |= flows.TCPFlagCWR
		case evBadCsum:
			s.badTCP = true
		case evUDP:
			u := s
			u.udp = true
			emit(u.frame())
			continue
		case evFlush:
			if len(flush) > 0 {
				flush[len(flush)-1] = true
			}
			continue
		case evDup:
			if f.last != nil {
				emit(f.last)
				continue
			}
		}
		fr := s.frame()
		f.s.seq += uint32(len(s.payload))
		f.s.id++
		switch ev {
		case evLoss:
			continue
		case evReorder:
			if pending == nil {
				pending = fr
				continue
			}
		}
		emit(fr)
		f.last = fr
		if pending != nil && r.IntN(2) == 0 {
			emit(pending)
			pending = nil
		}
	}
	if pending != nil {
		emit(pending)
	}
	return out, flush
}

// checkPreserved checks GRO's output against its input: every frame is
// delivered once; within a flow, frames come out in input order; each seg
// is its frame's payload; aggregates of more than one frame parse and
// checksum right, and GSO gives back their frames.
func checkPreserved(t testing.TB, h *harness, in [][]byte, gso *GSO) {
	t.Helper()
	seen := make([]bool, len(in))
	lastOf := map[flows.Key]int{}
	total := 0
	payIn := map[flows.Key][]byte{}
	payOut := map[flows.Key][]byte{}
	for i, f := range in {
		var p flows.Packet
		flows.Parse(f, &p)
		if p.Reason == flows.ReasonOK && p.Proto == flows.ProtoTCP {
			payIn[p.Key] = append(payIn[p.Key], p.Payload(f)...)
		}
		_ = i
	}
	for _, x := range h.out {
		total += len(x.handles)
		if x.flags&AggPassThrough == 0 && len(x.segs) != len(x.handles) {
			t.Fatalf("aggregate %v has %d segs", x.handles, len(x.segs))
		}
		for i, hd := range x.handles {
			if hd >= uint64(len(in)) || seen[hd] {
				t.Fatalf("handle %d delivered twice or unknown", hd)
			}
			seen[hd] = true
			var p flows.Packet
			flows.Parse(in[hd], &p)
			if p.Reason == flows.ReasonOK {
				if l, ok := lastOf[p.Key]; ok && l > int(hd) {
					t.Fatalf("flow %v: frame %d delivered after %d", p.Key, hd, l)
				}
				lastOf[p.Key] = int(hd)
			}
			if x.flags&AggPassThrough != 0 {
				if !bytes.Equal(x.bytes, in[hd]) {
					t.Fatalf("pass-through frame %d changed", hd)
				}
				if p.Reason == flows.ReasonOK && p.Proto == flows.ProtoTCP {
					// A TCP segment GRO does not merge (a fragment, an
					// IPv6 extension header) is delivered whole: its
					// payload is in the flow's stream.
					payOut[p.Key] = append(payOut[p.Key], p.Payload(in[hd])...)
				}
				continue
			}
			if !bytes.Equal(x.segs[i], p.Payload(in[hd])) {
				t.Fatalf("aggregate %v: seg %d is not frame %d's payload", x.handles, i, hd)
			}
			if p.Proto == flows.ProtoTCP {
				payOut[p.Key] = append(payOut[p.Key], x.segs[i]...)
			}
		}
		if len(x.handles) > 1 {
			var p flows.Packet
			flows.Parse(x.bytes, &p)
			if p.Reason != flows.ReasonOK || int(p.L3Off)+int(p.IPLen) != len(x.bytes) || !VerifyL4(x.bytes, &p) ||
				(p.Family == 4 && !VerifyIPv4Header(x.bytes[p.L3Off:p.L4Off])) {
				t.Fatalf("aggregate %v is not a good packet", x.handles)
			}
			if gso != nil {
				fs := resegment(t, gso, x)
				if len(fs) != len(x.handles) {
					t.Fatalf("aggregate %v: gso made %d frames", x.handles, len(fs))
				}
				for i, hd := range x.handles {
					if !sameFrame(fs[i], in[hd]) {
						t.Fatalf("aggregate %v: gso frame %d differs from frame %d", x.handles, i, hd)
					}
				}
			}
		}
	}
	if total != len(in) {
		t.Fatalf("%d frames delivered, %d in", total, len(in))
	}
	for k, b := range payIn {
		if !bytes.Equal(payOut[k], b) {
			t.Fatalf("flow %v: delivered byte stream differs (%d vs %d bytes)", k, len(payOut[k]), len(b))
		}
	}
}

// TestPreservation: for arbitrary trains, GRO keeps every flow's byte
// stream and frame order, and the segment count.
func TestPreservation(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	gso := newGSO(t, CsumFull)
	var seenReasons [NumFlushReasons]uint64
	var merged uint64
	defer func() {
		// The trains must have exercised the rules, not only passed through.
		for _, r := range []FlushReason{FlushByPush, FlushByShort, FlushByBatchEnd, FlushBySeq, FlushByAck,
			FlushByMismatch, FlushByUnmergeable, FlushByEvict, DeliverUnmergeable, DeliverBadCsum, DeliverPassThrough} {
			if seenReasons[r] == 0 {
				t.Errorf("no %v in any train", r)
			}
		}
		if merged < 1000 {
			t.Errorf("only %d segments merged", merged)
		}
	}()
	for iter := range 300 {
		in, fl := arbitraryTrain(r, 1+r.IntN(300))
		opts := DefaultGROOptions()
		if iter%3 == 1 {
			opts.Buckets, opts.FlowsPerBucket = 1, 2 // evictions
		}
		if iter%5 == 2 {
			opts.MaxSegs = 1 + r.IntN(8)
		}
		h := newHarness(t, opts)
		h.g.noFast = iter%2 == 1
		for i, f := range in {
			h.feed(f)
			if fl[i] {
				h.flush()
			}
		}
		h.flush()
		checkPreserved(t, h, in, gso)
		for r, c := range h.g.Stats.Flush {
			seenReasons[r] += c
		}
		merged += h.g.Stats.Merged
		n := uint64(0)
		for _, c := range h.g.Stats.SegsHist {
			n += c
		}
		if st := h.g.Stats; st.Aggregates != uint64(len(h.out)) || n+st.Flush[DeliverPassThrough] != st.Aggregates {
			t.Fatalf("stats %+v", st)
		}
	}
}

// TestKernelBoundaries states, for bulk trains, the aggregate boundaries
// Linux's rules give, derived by hand from tcp_gro_receive, inet_gro_receive
// and skb_gro_receive (6.18):
//
// Train 1: 100 segments of 1448 bytes, timestamps, DF, incrementing IDs.
//   - The timestamp value ticks at segments 30 and 70 (the sender's clock
//     moving on). tcp_gro_receive compares the options word by word, so the
//     flush is set; the held skb is completed (pp = p, since the new skb is
//     not same_flow) and the new one, without flags, starts the next list.
//     Boundaries at 30 and 70, reason "mismatch".
//   - Segment 50 has no payload (a window update). (len - 1) >= mss wraps,
//     so it does not merge; at out_check_final len < mss, so it is flushed
//     and so is the held skb (pp = p): [30,50) goes up, then 50 alone.
//   - Segment 99 is shorter (1000 bytes) and has PSH: it merges, since
//     (len - 1) < mss, then flushes, since len < mss and PSH.
//
// Train 2: 100 full segments. skb_gro_receive refuses a merge once
// p->len + len >= 65536; p->len is the IP packet so far. With 52 bytes of
// IPv4 and TCP headers 45 segments make 65212 bytes and a 46th would make
// 66660; with IPv6 (72 bytes) 65232 and 66680. So [0,45), [45,90) go up when
// the next segment does not fit ("size") and [90,100) at the batch end.
//
// xnic differs from Linux only where Linux leaves the order to chance: a
// segment with IP options, a fragment or a bad checksum of a held flow never
// reaches tcp_gro_receive in Linux and is delivered before the held skb;
// xnic flushes the held aggregate first. That changes no boundary of a good
// stream. TestKernelGRO (kernel_test.go) checks these trains against the
// running kernel.
func TestKernelBoundaries(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		lens := repeat(100, 1448)
		lens[50] = 0
		lens[99] = 1000
		segs := train(baseSeg(v6), lens)
		ts := uint32(5000)
		for i := range segs {
			if i == 30 || i == 70 {
				ts++
			}
			segs[i].opts = tsOpts(ts, 42)
		}
		segs[99].flags |= flows.TCPFlagPSH
		h := newHarness(t, DefaultGROOptions())
		h.feed(frames(segs)...)
		h.flush()
		h.expect([]want{
			{span(0, 29), FlushByMismatch},
			{span(30, 49), FlushByUnmergeable},
			{[]uint64{50}, DeliverUnmergeable},
			{span(51, 69), FlushByMismatch},
			{span(70, 99), FlushByPush},
		})
		h.checkAggregates(CsumFull)

		// The byte limit: 45 segments of 1448 with 52 (IPv4) or 72 (IPv6)
		// bytes of headers.
		h = newHarness(t, DefaultGROOptions())
		h.feed(frames(train(baseSeg(v6), repeat(100, 1448)))...)
		h.flush()
		h.expect([]want{{span(0, 44), FlushBySize}, {span(45, 89), FlushBySize}, {span(90, 99), batch}})
	}
}

func TestGROAllocs(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		fs := frames(train(baseSeg(v6), repeat(64, 1448)))
		pristine := make([][]byte, len(fs))
		pk := make([]flows.Packet, len(fs))
		for i, f := range fs {
			pristine[i] = slices.Clone(f)
			flows.Parse(f, &pk[i])
		}
		g, err := NewGRO(DefaultGROOptions())
		if err != nil {
			t.Fatal(err)
		}
		run := func() {
			for i, f := range fs {
				g.Receive(f, uint64(i), &pk[i])
				restore(g, pristine)
			}
			g.Flush()
			restore(g, pristine)
		}
		run()
		if n := testing.AllocsPerRun(100, run); n != 0 {
			t.Fatalf("v6=%v: %v allocs per batch of 64", v6, n)
		}
		if g.Stats.Csum.BadTCP != 0 || g.Stats.Merged == 0 {
			t.Fatalf("stats %+v", g.Stats)
		}
	}
}
