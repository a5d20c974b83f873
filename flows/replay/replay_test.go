package replay

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/xnic/xnic/flows"
)

func optsFor(s Stage) Options {
	o := DefaultOptions()
	o.Stage = s
	return o
}

func replay(t testing.TB, in []byte, o Options) (*Report, []record) {
	t.Helper()
	var out bytes.Buffer
	rep, err := Run(context.Background(), bytes.NewReader(in), &out, o)
	if err != nil {
		t.Fatalf("replay %v: %v", o.Stage, err)
	}
	return rep, readPcap(t, out.Bytes())
}

func totalLen(fs [][]byte) uint64 {
	var n uint64
	for _, f := range fs {
		n += uint64(len(f))
	}
	return n
}

func TestGROBulkTrain(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		in := frames(train(baseSeg(v6), repeat(40, 1448)...)...)
		rep, out := replay(t, pcapOf(t, in), optsFor(StageGRO))
		if len(out) != 1 || rep.PacketsOut != 1 || rep.FramesIn != 40 {
			t.Fatalf("v6=%v: %d packets out (report %d), %d frames in", v6, len(out), rep.PacketsOut, rep.FramesIn)
		}
		agg := out[0].data
		if !bytes.Equal(payloadStream(t, datas(out)), payloadStream(t, in)) {
			t.Fatalf("v6=%v: payload stream differs", v6)
		}
		if rep.PayloadIn != 40*1448 || rep.PayloadOut != rep.PayloadIn || !rep.PayloadKept() {
			t.Fatalf("v6=%v: payload in %d out %d", v6, rep.PayloadIn, rep.PayloadOut)
		}
		hdr := 14 + 20 + 32
		if v6 {
			hdr = 14 + 40 + 32
		}
		if len(agg) != hdr+40*1448 || rep.BytesOut != uint64(len(agg)) || rep.BytesIn != totalLen(in) ||
			rep.BytesIn-rep.BytesOut != uint64(39*hdr) {
			t.Fatalf("v6=%v: aggregate %d bytes, report in %d out %d", v6, len(agg), rep.BytesIn, rep.BytesOut)
		}
		if !refVerifyL4(agg) || (!v6 && !refVerifyIPv4(agg)) {
			t.Fatalf("v6=%v: aggregate checksums do not verify", v6)
		}
		if !bytes.Equal(agg[:14], in[0][:14]) {
			t.Fatalf("v6=%v: Ethernet header changed", v6)
		}
		g := rep.GRO
		if g.Ratio != 40 || g.Merged != 39 || g.Segments != 40 || g.Aggregates != 1 {
			t.Fatalf("v6=%v: gro report %+v", v6, g)
		}
		if !maps.Equal(g.Flush, map[string]uint64{"batch_end": 1}) {
			t.Fatalf("v6=%v: flush %v", v6, g.Flush)
		}
		if !slices.Equal(g.SegsHist, []HistBucket{{"32-63", 1}}) {
			t.Fatalf("v6=%v: hist %v", v6, g.SegsHist)
		}
		if !out[0].ci.Timestamp.Equal(stamp(39)) {
			t.Fatalf("v6=%v: aggregate stamped %v, want the last frame's %v", v6, out[0].ci.Timestamp, stamp(39))
		}
	}
}

func TestGROBatches(t *testing.T) {
	in := frames(train(baseSeg(false), repeat(40, 1448)...)...)
	o := optsFor(StageGRO)
	o.BatchSize = 16
	rep, out := replay(t, pcapOf(t, in), o)
	if len(out) != 3 {
		t.Fatalf("%d packets, want 3 (batches of 16, 16, 8)", len(out))
	}
	for i, want := range []int{16, 16, 8} {
		var p flows.Packet
		flows.Parse(out[i].data, &p)
		if int(p.PayloadLen) != want*1448 {
			t.Fatalf("aggregate %d: %d payload bytes, want %d segments", i, p.PayloadLen, want)
		}
	}
	if g := rep.GRO; g.Ratio != 40.0/3 || g.Flush["batch_end"] != 3 ||
		!slices.Equal(g.SegsHist, []HistBucket{{"8-15", 1}, {"16-31", 2}}) {
		t.Fatalf("gro report %+v", g)
	}
	if !bytes.Equal(payloadStream(t, datas(out)), payloadStream(t, in)) {
		t.Fatal("payload stream differs")
	}
}

func TestGROFlushReasons(t *testing.T) {
	base := baseSeg(false)
	syn := base
	syn.seq, syn.flags = base.seq-1, flows.TCPFlagSYN
	a := train(base, repeat(10, 1448)...) // PSH on the last one
	a[9].flags |= flows.TCPFlagPSH
	next := func(s []seg) seg {
		b := base
		last := s[len(s)-1]
		b.seq, b.id = last.seq+uint32(len(last.payload)), last.id+1
		return b
	}
	b := train(next(a), append(repeat(9, 1448), 500)...) // a short last one
	c := train(next(b), repeat(5, 1448)...)
	synMid := next(c) // a SYN of the same flow while c is held
	synMid.flags |= flows.TCPFlagSYN
	d := train(next(c), repeat(5, 1448)...) // held at the end of the batch
	udp := baseSeg(false)
	udp.udp, udp.payload = true, fill(9, 100)

	var segs []seg
	segs = append(append(append(segs, syn), a...), udp)
	segs = append(append(append(append(segs, b...), c...), synMid), d...)
	in := frames(segs...)
	rep, out := replay(t, pcapOf(t, in), optsFor(StageGRO))

	// syn | a | udp | b | c | synMid | d
	wantCounts := []int{1, 10, 1, 10, 5, 1, 5}
	if len(out) != len(wantCounts) {
		t.Fatalf("%d packets out, want %d", len(out), len(wantCounts))
	}
	i := 0
	for k, n := range wantCounts {
		if n == 1 {
			if !bytes.Equal(out[k].data, in[i]) {
				t.Fatalf("packet %d: not frame %d unchanged", k, i)
			}
		} else if !bytes.Equal(payloadStream(t, datas(out[k:k+1])), payloadStream(t, in[i:i+n])) {
			t.Fatalf("packet %d: not the payload of frames %d..%d", k, i, i+n-1)
		}
		i += n
	}
	want := map[string]uint64{"unmergeable": 2, "push": 1, "pass_through": 1, "short": 1,
		"unmergeable_next": 1, "batch_end": 1}
	g := rep.GRO
	if !maps.Equal(g.Flush, want) {
		t.Fatalf("flush %v, want %v", g.Flush, want)
	}
	if !slices.Equal(g.SegsHist, []HistBucket{{"1", 2}, {"4-7", 2}, {"8-15", 2}}) {
		t.Fatalf("hist %v", g.SegsHist)
	}
	if g.Ratio != float64(len(in))/float64(len(out)) || rep.FramesIn != uint64(len(in)) {
		t.Fatalf("ratio %v with %d frames in, %d out", g.Ratio, rep.FramesIn, len(out))
	}
	if !rep.PayloadKept() || rep.PayloadIn != uint64(len(payloadStream(t, in))) {
		t.Fatalf("payload in %d out %d", rep.PayloadIn, rep.PayloadOut)
	}
	// The UDP frame passed at once: its own timestamp.
	if !out[2].ci.Timestamp.Equal(stamp(11)) {
		t.Fatalf("pass-through stamped %v, want %v", out[2].ci.Timestamp, stamp(11))
	}
}

// pcapTimes writes frames with the given timestamps.
func pcapTimes(t testing.TB, fs [][]byte, ts []time.Time) []byte {
	t.Helper()
	var b bytes.Buffer
	w := pcapgo.NewWriterNanos(&b)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, f := range fs {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts[i], CaptureLength: len(f), Length: len(f)}, f); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func TestGROFlushTimeout(t *testing.T) {
	in := frames(train(baseSeg(false), repeat(20, 1448)...)...)
	ts := make([]time.Time, 20)
	for i := range ts {
		ts[i] = t0.Add(time.Duration(i) * time.Microsecond)
		if i >= 10 {
			ts[i] = ts[i].Add(5 * time.Millisecond) // a pause after 10 frames
		}
	}
	file := pcapTimes(t, in, ts)
	for _, c := range []struct {
		timeout time.Duration
		packets int
		flush   map[string]uint64
	}{
		{0, 1, map[string]uint64{"batch_end": 1}},
		{time.Millisecond, 2, map[string]uint64{"timeout": 1, "batch_end": 1}},
		{10 * time.Millisecond, 1, map[string]uint64{"batch_end": 1}},
	} {
		o := optsFor(StageGRO)
		o.FlushTimeout = c.timeout
		rep, out := replay(t, file, o)
		if len(out) != c.packets || !maps.Equal(rep.GRO.Flush, c.flush) {
			t.Fatalf("timeout %v: %d packets, flush %v; want %d, %v", c.timeout, len(out), rep.GRO.Flush, c.packets, c.flush)
		}
		if c.packets == 2 && (!out[0].ci.Timestamp.Equal(ts[9]) || !out[1].ci.Timestamp.Equal(ts[19])) {
			t.Fatalf("timestamps %v %v (nanosecond file)", out[0].ci.Timestamp, out[1].ci.Timestamp)
		}
		if (c.timeout == 0) != (rep.GRO.FlushTimeout == "") {
			t.Fatalf("report flush timeout %q", rep.GRO.FlushTimeout)
		}
	}
}

func TestGROChecksumOptions(t *testing.T) {
	segs := train(baseSeg(false), repeat(8, 1000)...)
	segs[3].badL4 = true
	in := frames(segs...)
	rep, out := replay(t, pcapOf(t, in), optsFor(StageGRO))
	// 0..2 | 3 (bad, alone, unchanged) | 4..7; the bad frame flushes 0..2.
	if len(out) != 3 || !bytes.Equal(out[1].data, in[3]) || rep.GRO.BadTCP != 1 ||
		rep.GRO.Flush["bad_csum"] != 1 || rep.GRO.Flush["unmergeable_next"] != 1 {
		t.Fatalf("%d packets, gro %+v", len(out), rep.GRO)
	}
	// The bad frame's payload is written too: nothing is dropped.
	if !rep.PayloadKept() {
		t.Fatal("payload not kept")
	}

	o := optsFor(StageGRO)
	o.Verify = false
	rep, out = replay(t, pcapOf(t, in), o)
	if len(out) != 1 || rep.GRO.BadTCP != 0 {
		t.Fatalf("without verify: %d packets, bad %d", len(out), rep.GRO.BadTCP)
	}

	o = optsFor(StageGRO)
	o.CsumPartial = true
	segs[3].badL4 = false
	_, out = replay(t, pcapOf(t, frames(segs...)), o)
	if len(out) != 1 || refVerifyL4(out[0].data) {
		t.Fatalf("partial: %d packets, full checksum %v", len(out), refVerifyL4(out[0].data))
	}
	var p flows.Packet
	flows.Parse(out[0].data, &p)
	ps := refFold(refSum(src4[:]) + refSum(dst4[:]) + flows.ProtoTCP + uint32(32+8000))
	if got := binary.BigEndian.Uint16(out[0].data[p.L4Off+16:]); got != ps {
		t.Fatalf("partial checksum field %#04x, want the pseudo-header sum %#04x", got, ps)
	}
}

// writeFile writes b under dir and returns the path.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRoundTripFiles: gso(gro(train)) is the train byte for byte, through
// two replays from file to file.
func TestRoundTripFiles(t *testing.T) {
	for _, c := range []struct {
		name    string
		v6      bool
		mss     int // the train's
		n       int
		last    int // the last segment's payload
		optMSS  int // the GSO stage's: 0 derives it from the MTU
		maxSegs int
		partial bool
	}{
		{"v4 derived mss", false, 1448, 40, 700, 0, 64, false},
		{"v6 derived mss", true, 1428, 40, 700, 0, 64, false},
		{"v6 mss 1448", true, 1448, 40, 700, 1448, 64, false},
		{"v4 partial aggregate", false, 1448, 40, 700, 1448, 64, true},
		// 64 × 1023 bytes: an aggregate longer than flows.MaxFrameLen.
		{"v4 longest aggregate", false, 1023, 64, 1023, 1023, 64, false},
		{"v4 two aggregates", false, 1448, 40, 700, 1448, 25, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			lens := repeat(c.n, c.mss)
			lens[c.n-1] = c.last
			segs := train(baseSeg(c.v6), lens...)
			segs[c.n-1].flags |= flows.TCPFlagPSH
			orig := frames(segs...)
			dir := t.TempDir()
			a := writeFile(t, dir, "a.pcap", pcapOf(t, orig))
			b, cc := filepath.Join(dir, "b.pcap"), filepath.Join(dir, "c.pcap")

			o := optsFor(StageGRO)
			o.MaxSegs, o.CsumPartial = c.maxSegs, c.partial
			rep, err := RunFile(context.Background(), a, b, o)
			if err != nil {
				t.Fatal(err)
			}
			wantAggs := (c.n + c.maxSegs - 1) / c.maxSegs
			if rep.PacketsOut != uint64(wantAggs) {
				t.Fatalf("gro: %d packets, want %d", rep.PacketsOut, wantAggs)
			}
			if c.name == "v4 longest aggregate" && rep.BytesOut <= flows.MaxFrameLen {
				t.Fatalf("aggregate of %d bytes is not longer than %d", rep.BytesOut, flows.MaxFrameLen)
			}

			o = optsFor(StageGSO)
			o.MSS = c.optMSS
			rep, err = RunFile(context.Background(), b, cc, o)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(cc)
			if err != nil {
				t.Fatal(err)
			}
			out := readPcap(t, raw)
			if len(out) != len(orig) {
				t.Fatalf("gso: %d frames back, want %d (report %+v)", len(out), len(orig), rep.GSO)
			}
			for i := range orig {
				if !bytes.Equal(out[i].data, orig[i]) {
					t.Fatalf("frame %d differs after the round trip", i)
				}
			}
			g := rep.GSO
			if g.Segmented != uint64(wantAggs) || g.Segments != uint64(len(orig)) || !rep.PayloadKept() {
				t.Fatalf("gso report %+v, payload %d/%d", g, rep.PayloadIn, rep.PayloadOut)
			}
			if c.partial && g.PartialIn != uint64(wantAggs) {
				t.Fatalf("partial in %d, want %d", g.PartialIn, wantAggs)
			}
			// Every segment has its aggregate's time, the last frame's.
			if !out[len(out)-1].ci.Timestamp.Equal(stamp(c.n - 1)) {
				t.Fatalf("last segment stamped %v, want %v", out[len(out)-1].ci.Timestamp, stamp(c.n-1))
			}
		})
	}
}

func TestGSOFrames(t *testing.T) {
	big := func(v6, udp bool, n int) seg {
		s := baseSeg(v6)
		s.udp, s.payload = udp, fill(3, n)
		return s
	}
	smallPartial := big(false, false, 100)
	smallPartial.partial = true
	smallGood := big(true, false, 100)
	bigUDP := big(false, true, 3000)
	bigPartial := big(true, false, 5000)
	bigPartial.partial = true
	bigBad := big(false, false, 5000)
	bigBad.badL4 = true
	in := frames(smallPartial, smallGood, bigUDP, bigPartial, bigBad)
	file := pcapOf(t, in)

	rep, out := replay(t, file, optsFor(StageGSO))
	// smallPartial (completed) | smallGood | bigUDP (not without UDPGSO) |
	// bigPartial: 5000 at 1500-40-32 = 1428 → 4 | bigBad unchanged.
	if len(out) != 1+1+1+4+1 {
		t.Fatalf("%d packets out", len(out))
	}
	if !refVerifyL4(out[0].data) || len(out[0].data) != len(in[0]) || bytes.Equal(out[0].data, in[0]) {
		t.Fatal("small partial frame not completed")
	}
	if !bytes.Equal(out[1].data, in[1]) || !bytes.Equal(out[2].data, in[2]) || !bytes.Equal(out[7].data, in[4]) {
		t.Fatal("frames to pass were changed")
	}
	for i := 3; i < 7; i++ {
		var p flows.Packet
		flows.Parse(out[i].data, &p)
		if !refVerifyL4(out[i].data) || (i < 6 && p.PayloadLen != 1428) {
			t.Fatalf("segment %d: payload %d, checksum %v", i, p.PayloadLen, refVerifyL4(out[i].data))
		}
	}
	g := rep.GSO
	if g.Segmented != 1 || g.Segments != 4 || g.PartialIn != 1 || g.Completed != 1 || g.BadCsum != 1 || g.Refused != 0 {
		t.Fatalf("gso report %+v", g)
	}
	if !rep.PayloadKept() {
		t.Fatal("payload not kept")
	}

	// UDP GSO at gso_size 1000, without verification: the bad frame is
	// segmented too, with fresh checksums.
	o := optsFor(StageGSO)
	o.UDPGSO, o.MSS, o.Verify = true, 1000, false
	rep, out = replay(t, file, o)
	// 1 | 1 | 3 | 5 | 5
	if len(out) != 15 || rep.GSO.Segmented != 3 || rep.GSO.Segments != 13 || rep.GSO.BadCsum != 0 {
		t.Fatalf("udp gso: %d packets, report %+v", len(out), rep.GSO)
	}
	for i := 2; i < 5; i++ {
		var p flows.Packet
		flows.Parse(out[i].data, &p)
		if p.Proto != flows.ProtoUDP || !refVerifyL4(out[i].data) || p.PayloadLen != 1000 {
			t.Fatalf("udp segment %d: proto %d payload %d", i, p.Proto, p.PayloadLen)
		}
	}
	if !bytes.Equal(payloadStream(t, datas(out[2:5])), payloadStream(t, in[2:3])) || !rep.PayloadKept() {
		t.Fatal("udp payload differs")
	}

	// MSS 1: a segment per payload byte.
	o = optsFor(StageGSO)
	o.MSS = 1
	rep, out = replay(t, pcapOf(t, in[3:4]), o)
	if len(out) != 5000 || rep.GSO.Segments != 5000 || !rep.PayloadKept() ||
		!bytes.Equal(payloadStream(t, datas(out)), payloadStream(t, in[3:4])) {
		t.Fatalf("mss 1: %d segments, report %+v", len(out), rep.GSO)
	}

	// MTU 1280 with 40 bytes of TCP options: MSS 1200. A first IPv4
	// fragment over the MSS is refused, unchanged.
	o = optsFor(StageGSO)
	o.MTU = MinMTU
	s := big(false, false, 1300)
	s.opts = make([]byte, 40)
	frag := big(false, false, 3000).frame()
	frag[14+6] |= 0x20 // MF
	frag[14+10], frag[14+11] = 0, 0
	binary.BigEndian.PutUint16(frag[14+10:], ^refFold(refSum(frag[14:34])))
	rep, out = replay(t, pcapOf(t, [][]byte{s.frame(), frag}), o)
	if rep.GSO.Segmented != 1 || rep.GSO.Refused != 1 || len(out) != 3 || !bytes.Equal(out[2].data, frag) {
		t.Fatalf("mtu %d: %+v", MinMTU, rep.GSO)
	}
	var p flows.Packet
	flows.Parse(out[0].data, &p)
	if p.PayloadLen != 1200 {
		t.Fatalf("mtu %d: first segment carries %d bytes, want 1200", MinMTU, p.PayloadLen)
	}
}

func TestCsum(t *testing.T) {
	good := baseSeg(false)
	good.payload = fill(1, 200)
	goodUDP6 := baseSeg(true)
	goodUDP6.udp, goodUDP6.payload = true, fill(2, 301)
	noCsum := baseSeg(false)
	noCsum.udp, noCsum.noUDPCsum, noCsum.payload = true, true, fill(3, 50)
	badTCP := good
	badTCP.badL4 = true
	badIP := good
	badIP.badIP = true
	partTCP := good
	partTCP.partial = true
	partUDP6 := goodUDP6
	partUDP6.partial = true
	arp := make([]byte, 60)
	binary.BigEndian.PutUint16(arp[12:], flows.EtherTypeARP)
	in := append(frames(good, goodUDP6, noCsum, badTCP, badIP, partTCP, partUDP6), arp)
	file := pcapOf(t, in)

	for _, fix := range []bool{false, true} {
		o := optsFor(StageCsum)
		o.Fix = fix
		rep, out := replay(t, file, o)
		want := CsumReport{Good: 3, Partial: 2, Bad: 2, BadIPv4: 1, BadTCP: 1, Completed: 2, Unchecked: 1}
		if fix {
			want.Fixed = 2
		}
		if *rep.Csum != want {
			t.Fatalf("fix=%v: %+v, want %+v", fix, *rep.Csum, want)
		}
		if len(out) != len(in) || rep.BytesIn != rep.BytesOut || !rep.PayloadKept() {
			t.Fatalf("fix=%v: %d packets, bytes %d/%d", fix, len(out), rep.BytesIn, rep.BytesOut)
		}
		for _, i := range []int{0, 1, 2, 7} {
			if !bytes.Equal(out[i].data, in[i]) {
				t.Fatalf("fix=%v: good frame %d changed", fix, i)
			}
		}
		for _, i := range []int{5, 6} {
			if !refVerifyL4(out[i].data) || !sameButL4Csum(out[i].data, in[i]) {
				t.Fatalf("fix=%v: partial frame %d not completed (or changed elsewhere)", fix, i)
			}
		}
		for _, i := range []int{3, 4} {
			ok := refVerifyL4(out[i].data) && refVerifyIPv4(out[i].data)
			if fix != ok || (!fix && !bytes.Equal(out[i].data, in[i])) {
				t.Fatalf("fix=%v: bad frame %d verifies %v", fix, i, ok)
			}
		}
		for i, r := range out {
			if !r.ci.Timestamp.Equal(stamp(i)) {
				t.Fatalf("frame %d stamped %v", i, r.ci.Timestamp)
			}
		}
	}
}

// sameButL4Csum reports whether frames a and b are the same but for their
// TCP/UDP checksum field.
func sameButL4Csum(a, b []byte) bool {
	var p flows.Packet
	flows.Parse(a, &p)
	if len(a) != len(b) || p.Reason != flows.ReasonOK {
		return false
	}
	off := int(p.L4Off) + 16
	if p.Proto == flows.ProtoUDP {
		off = int(p.L4Off) + 6
	}
	return bytes.Equal(a[:off], b[:off]) && bytes.Equal(a[off+2:], b[off+2:])
}

// malformedFrames are broken in ways flows.Parse names.
func malformedFrames() [][]byte {
	ipLen := baseSeg(false)
	ipLen.payload = fill(4, 100)
	f1 := ipLen.frame()
	f1 = f1[:len(f1)-30] // the IP length says 30 bytes more
	bad := baseSeg(false).frame()
	bad[14] = 0x35 // IPv4 version 3
	return [][]byte{f1, bad, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
}

func TestMalformedPassed(t *testing.T) {
	bad := malformedFrames()
	tr := frames(train(baseSeg(false), repeat(6, 1448)...)...)
	// Malformed frames between the segments of a held train.
	in := [][]byte{tr[0], tr[1], bad[0], tr[2], bad[1], tr[3], tr[4], bad[2], tr[5]}
	for _, st := range []Stage{StageGRO, StageGSO, StageCsum} {
		rep, out := replay(t, pcapOf(t, in), optsFor(st))
		if rep.Malformed != 3 || !maps.Equal(rep.MalformedBy, map[string]uint64{
			flows.ReasonIPLength.String(): 1, flows.ReasonBadIPv4.String(): 1, flows.ReasonTruncEthernet.String(): 1}) {
			t.Fatalf("%v: malformed %d %v", st, rep.Malformed, rep.MalformedBy)
		}
		for _, b := range bad {
			if !slices.ContainsFunc(out, func(r record) bool { return bytes.Equal(r.data, b) }) {
				t.Fatalf("%v: malformed frame % x not written unchanged", st, b[:10])
			}
		}
		if !rep.PayloadKept() || !bytes.Equal(payloadStream(t, datas(out)), payloadStream(t, tr)) {
			t.Fatalf("%v: payload not kept", st)
		}
	}
}

func TestTruncatedTail(t *testing.T) {
	in := frames(train(baseSeg(false), repeat(5, 1448)...)...)
	file := pcapOf(t, in)
	for _, cut := range []int{10, len(in[4]), len(in[4]) + 8} { // in the data; all data; in the record header
		rep, out := replay(t, file[:len(file)-cut], optsFor(StageGRO))
		if !rep.TruncatedTail || rep.FramesIn != 4 || len(out) != 1 ||
			!bytes.Equal(payloadStream(t, datas(out)), payloadStream(t, in[:4])) {
			t.Fatalf("cut %d: truncated %v, %d frames in, %d out", cut, rep.TruncatedTail, rep.FramesIn, len(out))
		}
		var b strings.Builder
		if err := rep.WriteText(&b); err != nil || !strings.Contains(b.String(), "last record") {
			t.Fatalf("cut %d: text report does not say so:\n%s", cut, b.String())
		}
	}
	rep, _ := replay(t, file, optsFor(StageGRO))
	if rep.TruncatedTail {
		t.Fatal("a whole file reported truncated")
	}
}

func TestBadInput(t *testing.T) {
	good := pcapOf(t, frames(train(baseSeg(false), 100, 100)...))
	hugeRecord := slices.Clone(good)
	binary.LittleEndian.PutUint32(hugeRecord[24+8:], MaxSnaplen+1) // the first record's captured length
	binary.LittleEndian.PutUint32(hugeRecord[24+12:], MaxSnaplen+1)
	for _, c := range []struct {
		name string
		file []byte
		err  error
		msg  string
	}{
		{"empty", nil, ErrFormat, "empty file"},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"), ErrFormat, "magic 47455420"},
		{"short", []byte{0xd4, 0xc3}, ErrFormat, "2 bytes"},
		{"cut header", good[:20], ErrFormat, "read pcap header"},
		{"wifi", pcapLink(t, layers.LinkTypeIEEE802_11, nil), ErrLinkType, "link type 105"},
		{"raw ip", pcapLink(t, layers.LinkTypeRaw, nil), ErrLinkType, "link type 101"},
		{"huge record", hugeRecord, ErrFormat, "record 1"},
		{"bad gzip", []byte{0x1f, 0x8b, 0, 0}, ErrFormat, "gzip"},
	} {
		var out bytes.Buffer
		rep, err := Run(context.Background(), bytes.NewReader(c.file), &out, optsFor(StageGRO))
		if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.msg) || rep != nil {
			t.Errorf("%s: error %v, want %v mentioning %q", c.name, err, c.err, c.msg)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		field string
		set   func(*Options)
	}{
		{"Stage", func(o *Options) { o.Stage = 0 }},
		{"BatchSize", func(o *Options) { o.BatchSize = 0 }},
		{"BatchSize", func(o *Options) { o.BatchSize = MaxBatchSize + 1 }},
		{"FlushTimeout", func(o *Options) { o.FlushTimeout = -1 }},
		{"MaxSegs", func(o *Options) { o.MaxSegs = 300 }},
		{"MSS", func(o *Options) { o.Stage, o.MSS = StageGSO, -1 }},
		{"MSS", func(o *Options) { o.Stage, o.MSS = StageGSO, MaxMSS+1 }},
		{"MTU", func(o *Options) { o.Stage, o.MTU = StageGSO, 500 }},
		{"Verify", func(o *Options) { o.Stage, o.Verify = StageCsum, false }},
	} {
		o := DefaultOptions()
		c.set(&o)
		_, err := Run(context.Background(), bytes.NewReader(nil), &bytes.Buffer{}, o)
		if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %v", c.field, err)
		}
	}
	for _, name := range []string{"gro", "gso", "csum"} {
		if s, err := ParseStage(name); err != nil || s.String() != name {
			t.Errorf("ParseStage(%q) = %v, %v", name, s, err)
		}
	}
	if _, err := ParseStage("tso"); !errors.Is(err, ErrOptions) {
		t.Errorf("ParseStage(tso): %v", err)
	}
}

// cooked rewrites Ethernet frames as Linux cooked (SLL or SLL2) records.
func cooked(fs [][]byte, v2 bool) [][]byte {
	out := make([][]byte, len(fs))
	for i, f := range fs {
		et := f[12:14]
		var h []byte
		if v2 {
			h = make([]byte, sll2Len)
			copy(h[0:], et)
			h[8], h[9] = 0, 1 // ARPHRD_ETHER
			h[10], h[11] = 0, 6
			copy(h[12:], f[6:12])
		} else {
			h = make([]byte, sllLen)
			h[3] = 1
			h[5] = 6
			copy(h[6:], f[6:12])
			copy(h[14:], et)
		}
		out[i] = append(h, f[14:]...)
	}
	return out
}

func TestCookedCaptures(t *testing.T) {
	eth := frames(train(baseSeg(true), repeat(10, 1428)...)...)
	for _, c := range []struct {
		link layers.LinkType
		v2   bool
	}{{layers.LinkTypeLinuxSLL, false}, {layers.LinkTypeLinuxSLL2, true}} {
		in := append(cooked(eth, c.v2), []byte{1, 2, 3})
		rep, out := replay(t, pcapLink(t, c.link, in), optsFor(StageGRO))
		if len(out) != 2 || rep.GRO.Ratio != 11.0/2 || rep.MalformedBy["trunc_cooked"] != 1 {
			t.Fatalf("%v: %d packets, report %+v", c.link, len(out), rep)
		}
		// Ethernet now: the source MAC from the cooked header, no destination.
		agg := out[1].data
		if !bytes.Equal(agg[6:14], eth[0][6:14]) || !bytes.Equal(agg[:6], make([]byte, 6)) {
			t.Fatalf("%v: Ethernet header % x", c.link, agg[:14])
		}
		if !bytes.Equal(out[0].data, []byte{1, 2, 3}) {
			t.Fatalf("%v: short record changed", c.link)
		}
		if !bytes.Equal(payloadStream(t, [][]byte{agg}), payloadStream(t, eth)) || !rep.PayloadKept() {
			t.Fatalf("%v: payload differs", c.link)
		}
		if rep.LinkType != c.link.String() {
			t.Fatalf("report link type %q", rep.LinkType)
		}
	}
}

func TestPcapngAndGzip(t *testing.T) {
	in := frames(train(baseSeg(false), repeat(4, 1000)...)...)
	var ng bytes.Buffer
	w, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	ts := make([]time.Time, len(in))
	for i, f := range in {
		ts[i] = t0.Add(time.Duration(i)*time.Millisecond + 7) // nanoseconds survive
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts[i], CaptureLength: len(f), Length: len(f)}, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(pcapOf(t, in))
	zw.Close()

	for _, c := range []struct {
		format string
		file   []byte
		ts     []time.Time
	}{{"pcapng", ng.Bytes(), ts}, {"pcap+gzip", gz.Bytes(), []time.Time{stamp(0), stamp(1), stamp(2), stamp(3)}}} {
		rep, out := replay(t, c.file, optsFor(StageCsum))
		if rep.Format != c.format || len(out) != len(in) || rep.Csum.Good != 4 {
			t.Fatalf("%s: format %q, %d packets, csum %+v", c.format, rep.Format, len(out), rep.Csum)
		}
		for i := range out {
			if !bytes.Equal(out[i].data, in[i]) || !out[i].ci.Timestamp.Equal(c.ts[i]) {
				t.Fatalf("%s: frame %d: stamped %v, want %v", c.format, i, out[i].ci.Timestamp, c.ts[i])
			}
		}
	}
}

func TestParseFrameLarge(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		s := baseSeg(v6)
		n := 0xffff - 20 - 32 // IPv4: the largest total length
		if v6 {
			n = 0xffff - 32 // IPv6: the largest payload length that IPLen still holds
			n -= 40
		}
		s.payload = fill(5, n)
		f := s.frame()
		if len(f) <= flows.MaxFrameLen {
			t.Fatalf("frame of %d bytes is not long", len(f))
		}
		orig := slices.Clone(f)
		var p flows.Packet
		flows.Parse(f, &p)
		if p.Reason != flows.ReasonIPLength {
			t.Fatalf("v6=%v: flows.Parse says %v; the test needs ReasonIPLength", v6, p.Reason)
		}
		parseFrame(f, &p)
		if p.Reason != flows.ReasonOK || int(p.PayloadLen) != n || int(p.L3Off)+int(p.IPLen) != len(f) {
			t.Fatalf("v6=%v: %v payload %d ipLen %d len %d", v6, p.Reason, p.PayloadLen, p.IPLen, len(f))
		}
		if !bytes.Equal(f, orig) {
			t.Fatalf("v6=%v: parseFrame left the frame changed", v6)
		}
		cut := f[:len(f)-1] // now really short
		parseFrame(cut, &p)
		if p.Reason != flows.ReasonIPLength {
			t.Fatalf("v6=%v: a short frame parses %v", v6, p.Reason)
		}
		// The csum stage checks it, the GSO stage splits it.
		rep, _ := replay(t, pcapOf(t, [][]byte{f}), optsFor(StageCsum))
		if rep.Csum.Good != 1 || rep.PayloadIn != uint64(n) {
			t.Fatalf("v6=%v: csum %+v payload %d", v6, rep.Csum, rep.PayloadIn)
		}
		o := optsFor(StageGSO)
		o.MSS = 1448
		rep, out := replay(t, pcapOf(t, [][]byte{f}), o)
		if len(out) != (n+1447)/1448 || !rep.PayloadKept() ||
			!bytes.Equal(payloadStream(t, datas(out)), s.payload) {
			t.Fatalf("v6=%v: %d segments, payload %d/%d", v6, len(out), rep.PayloadIn, rep.PayloadOut)
		}
	}
}

func TestRunFileLeavesNoPartialFile(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.pcap", []byte("not a capture at all"))
	out := filepath.Join(dir, "out.pcap")
	if _, err := RunFile(context.Background(), bad, out, optsFor(StageGRO)); !errors.Is(err, ErrFormat) {
		t.Fatalf("error %v", err)
	}
	// An existing output stays as it was.
	prev := writeFile(t, dir, "prev.pcap", []byte("previous"))
	if _, err := RunFile(context.Background(), bad, prev, optsFor(StageGRO)); err == nil {
		t.Fatal("no error")
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"bad.pcap", "prev.pcap"}) {
		t.Fatalf("files left: %v", names)
	}
	if b, _ := os.ReadFile(prev); string(b) != "previous" {
		t.Fatal("existing output changed")
	}
	// A cancelled context is an error too, and leaves nothing.
	good := writeFile(t, dir, "good.pcap", pcapOf(t, frames(train(baseSeg(false), 100)...)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RunFile(ctx, good, out, optsFor(StageGRO)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("output written by a cancelled run")
	}
	// In place: the input replaced by the output.
	rep, err := RunFile(context.Background(), good, good, optsFor(StageCsum))
	if err != nil || rep.FramesIn != 1 {
		t.Fatalf("in place: %v", err)
	}
}

func TestReportText(t *testing.T) {
	rep, _ := replay(t, pcapOf(t, frames(train(baseSeg(false), repeat(40, 1448)...)...)), optsFor(StageGRO))
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"replay gro", "40 frames", "1 packets", "40.00 frames per packet", "batch_end=1", "[32-63]=1", "(kept)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, b.String())
		}
	}
	j, err := rep.JSON()
	if err != nil || !bytes.Contains(j, []byte(`"ratio":40`)) || !bytes.Contains(j, []byte(`"flush":{"batch_end":1}`)) {
		t.Fatalf("json %s: %v", j, err)
	}
}

// TestGROCoalesceAcks: with CoalesceAcks a run of pure ACKs is written as
// its last ACK, and the report counts the ACKs folded; without it every
// ACK is written.
func TestGROCoalesceAcks(t *testing.T) {
	var segs []seg
	for i := range 10 {
		s := baseSeg(false)
		s.ack = 7777 + uint32(1000*i)
		segs = append(segs, s)
	}
	in := frames(segs...)
	o := optsFor(StageGRO)
	rep, out := replay(t, pcapOf(t, in), o)
	if len(out) != 10 || rep.GRO.AcksCoalesced != 0 {
		t.Fatalf("off: %d packets out, %d ACKs coalesced; want 10 and 0", len(out), rep.GRO.AcksCoalesced)
	}
	o.CoalesceAcks = true
	rep, out = replay(t, pcapOf(t, in), o)
	if len(out) != 1 || rep.GRO.AcksCoalesced != 9 || rep.PacketsOut != 1 {
		t.Fatalf("on: %d packets out, %d ACKs coalesced; want 1 and 9", len(out), rep.GRO.AcksCoalesced)
	}
	if !bytes.Equal(out[0].data, in[9]) {
		t.Fatalf("the run was not written as its last ACK:\n got  %x\n want %x", out[0].data, in[9])
	}
	var txt bytes.Buffer
	if err := rep.WriteText(&txt); err != nil || !bytes.Contains(txt.Bytes(), []byte("9 pure ACKs coalesced")) {
		t.Fatalf("text report: %v\n%s", err, txt.String())
	}
}
