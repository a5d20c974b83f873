package bpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/xnic/xnic/flows"
)

// ECN codepoints (RFC 3168), the low two bits of the TOS / traffic class.
const (
	ecnNotECT = 0
	ecnECT1   = 1
	ecnECT0   = 2
	ecnCE     = 3
)

// runOut runs xnic_steer over frame (rx queue 0) and returns the verdict
// and the frame as the program left it.
func runOut(t *testing.T, prog *ebpf.Program, frame []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+256)
	opts := &ebpf.RunOptions{Data: frame, DataOut: out}
	ret, err := prog.Run(opts)
	if err != nil {
		t.Fatalf("run %s: %v", prog, err)
	}
	return ret, opts.DataOut
}

// withIPv4Checksum sets the header checksum of the untagged IPv4 frame.
func withIPv4Checksum(frame []byte) []byte {
	h := frame[14:34]
	binary.BigEndian.PutUint16(h[10:], 0)
	binary.BigEndian.PutUint16(h[10:], ^onesSum(0, h))
	return frame
}

// ipv4HeaderOK: the header checksum of the untagged IPv4 frame verifies.
func ipv4HeaderOK(frame []byte) bool { return onesSum(0, frame[14:34]) == 0xffff }

// ipv6TC is the traffic class of the untagged IPv6 frame.
func ipv6TC(frame []byte) uint8 { return uint8(binary.BigEndian.Uint32(frame[14:]) >> 20) }

// congDelta runs frame and returns the verdict, what the program made of
// the frame, and how the queue counters and the slot counters of sl moved.
func congDelta(t *testing.T, s *Steer, sl Slot, frame []byte) (uint32, []byte, SteerStats, SlotStats) {
	t.Helper()
	before := snap(t, s)
	ret, out := runOut(t, s.Program(), frame)
	after := snap(t, s)
	d := subStats(after.total, before.total)
	if d.Verdicts() != d.RxPackets || d.RxPackets != 1 {
		t.Errorf("one frame moved the verdicts by %d and rx_packets by %d", d.Verdicts(), d.RxPackets)
	}
	return ret, out, d, subStats(after.slots[sl], before.slots[sl])
}

// TestSteerEarlyDrop: with a threshold on a (guest, class) slot and the
// slot's occupancy published at or over it, xnic_steer drops the slot's
// frames (or marks ECN-capable ones CE when ECN is on) and counts them,
// on both of its paths (the inline common path and the full parser's);
// other classes of the guest, and the slot below its threshold, are let
// in.
func TestSteerEarlyDrop(t *testing.T) {
	s := loadSteerOptsT(t, smallSteerOptions())
	slotSockets(t, s, Slot{1, 0}, Slot{1, 1}, Slot{2, 0})
	for _, r := range []Rule{
		{Prefix: pfx("198.18.1.0/24"), Proto: ProtoUDP, Guest: 1, Class: 1},
		{Prefix: pfx("198.18.2.0/24"), Proto: ProtoUDP, Guest: 1, Class: 0},
		{Prefix: pfx("198.18.3.0/24"), Guest: 1, Class: 1},                  // any protocol: fragments and ICMP take the full path
		{Prefix: pfx("198.18.4.0/24"), Proto: ProtoUDP, Guest: 1, Class: 3}, // no socket: to class 0
		{Prefix: pfx("2001:2:0:1::/64"), Guest: 1, Class: 1},
	} {
		if _, err := s.AddRule(r); err != nil {
			t.Fatalf("AddRule(%s): %v", r, err)
		}
	}
	b := s.OccupancyBoard()
	if b == nil || b.Len() != s.Options().Slots() {
		t.Fatalf("OccupancyBoard() = %v, want %d slots", b, s.Options().Slots())
	}
	c1, c0 := b.Slot(0, 1, 1), b.Slot(0, 1, 0)
	if c1 != int(s.Options().SlotIndex(0, 1, 1)) || c0 != int(s.Options().SlotIndex(0, 1, 0)) {
		t.Fatalf("Slot(0, 1, 1) = %d, Slot(0, 1, 0) = %d; SlotIndex says %d, %d",
			c1, c0, s.Options().SlotIndex(0, 1, 1), s.Options().SlotIndex(0, 1, 0))
	}
	udp := func(dst string, tos uint8) []byte {
		return withIPv4Checksum(pkt{dst: addr(dst), proto: flows.ProtoUDP, sport: 1, dport: 2, tos: tos}.frame())
	}
	udp6 := func(tos uint8) []byte {
		return pkt{dst: addr("2001:2:0:1::5"), proto: flows.ProtoUDP, sport: 1, dport: 2, tos: tos}.frame()
	}
	// The full path: a non-first fragment, an ICMPv6 echo.
	frag := func(tos uint8) []byte {
		return withIPv4Checksum(pkt{dst: addr("198.18.3.5"), proto: flows.ProtoUDP, fragOff: 185, tos: tos}.frame())
	}
	icmp6 := func(tos uint8) []byte {
		return pkt{dst: addr("2001:2:0:1::5"), proto: flows.ProtoICMPv6, tos: tos}.frame()
	}
	g1c1 := Slot{1, 1}

	expect := func(name string, sl Slot, frame []byte, verdict uint32, early, marked uint64) []byte {
		t.Helper()
		ret, out, d, ds := congDelta(t, s, sl, frame)
		if ret != verdict {
			t.Errorf("%s: verdict %d, want %d", name, ret, verdict)
		}
		wantRedirected := uint64(0)
		if verdict == xdpRedirect {
			wantRedirected = 1
		}
		if d.EarlyDrops != early || d.EcnMarked != marked || d.Redirected != wantRedirected {
			t.Errorf("%s: queue early_drops %d, ecn_marked %d, redirected %d; want %d, %d, %d",
				name, d.EarlyDrops, d.EcnMarked, d.Redirected, early, marked, wantRedirected)
		}
		if ds.Packets != 1 || ds.EarlyDrops != early || ds.EcnMarked != marked ||
			ds.Packets != ds.Redirected+ds.RedirectedClass0+ds.PassNoSocket+ds.EarlyDrops {
			t.Errorf("%s: slot %s moved by %+v, want 1 packet, %d early drops, %d marked", name, sl, ds, early, marked)
		}
		return out
	}

	// No threshold: occupancy is not looked at, since is not kept.
	if s.ctl.CongOn != 0 {
		t.Fatal("ctl.cong_on set with no threshold")
	}
	b.Publish(c1, 1000)
	expect("no-threshold", g1c1, udp("198.18.1.5", 0), xdpRedirect, 0, 0)
	// A threshold written behind the control plane's back stays unread
	// while cong_on is off: the program's cost without thresholds is the
	// cost before receive congestion existed.
	b.setThreshold(c1, 8, false)
	b.Publish(c1, 1000)
	expect("cong-off", g1c1, udp("198.18.1.5", 0), xdpRedirect, 0, 0)
	if _, since := b.Occupancy(c1); since != 0 {
		t.Errorf("since = %d with cong_on off, want 0", since)
	}
	b.setThreshold(c1, 0, false)

	// Threshold 8, occupancy 8: dropped, on both paths, both families.
	if err := s.SetClassThreshold(0, 1, 1, 8, false); err != nil {
		t.Fatal(err)
	}
	if s.ctl.CongOn != 1 {
		t.Fatal("ctl.cong_on off with a threshold set")
	}
	if th, ecn, err := s.ClassThreshold(0, 1, 1); err != nil || th != 8 || ecn {
		t.Errorf("ClassThreshold(0, 1, 1) = %d, %v, %v; want 8, false", th, ecn, err)
	}
	if !b.Publish(c1, 8) {
		t.Fatal("Publish refused a slot of the board")
	}
	expect("over-udp4", g1c1, udp("198.18.1.5", 0), xdpDrop, 1, 0)
	expect("over-udp4-ect0-no-ecn", g1c1, udp("198.18.1.5", ecnECT0), xdpDrop, 1, 0)
	expect("over-udp6", g1c1, udp6(0), xdpDrop, 1, 0)
	expect("over-fragment", g1c1, frag(0), xdpDrop, 1, 0)
	expect("over-icmp6", g1c1, icmp6(0), xdpDrop, 1, 0)
	// Another class of the same guest, without a threshold, and one
	// below its own: let in while class 1 is congested.
	expect("class0-no-threshold", Slot{1, 0}, udp("198.18.2.5", 0), xdpRedirect, 0, 0)
	if err := s.SetClassThreshold(0, 1, 0, 100, false); err != nil {
		t.Fatal(err)
	}
	b.Publish(c0, 99)
	expect("class0-below", Slot{1, 0}, udp("198.18.2.5", 0), xdpRedirect, 0, 0)
	// The same slot on another queue is another slot.
	if th, _, _ := s.ClassThreshold(1, 1, 1); th != 0 {
		t.Errorf("threshold of queue 1 guest 1 class 1 = %d, want 0", th)
	}
	// Below its threshold, class 1 is let in again.
	b.Publish(c1, 7)
	expect("below", g1c1, udp("198.18.1.5", 0), xdpRedirect, 0, 0)
	if occ, since := b.Occupancy(c1); occ != 7 || since != 1 {
		t.Errorf("after one frame let in: occ %d, since %d; want 7, 1", occ, since)
	}
	// ... and that frame counts: 7 + 1 reaches the threshold.
	expect("below-then-over", g1c1, udp("198.18.1.5", 0), xdpDrop, 1, 0)

	// since accumulates: threshold 16, occupancy 12, 8 frames: the first
	// 4 are let in, the last 4 dropped.
	if err := s.SetClassThreshold(0, 1, 1, 16, false); err != nil {
		t.Fatal(err)
	}
	b.Publish(c1, 12)
	var verdicts []uint32
	for range 8 {
		ret, _ := runOut(t, s.Program(), udp("198.18.1.5", 0))
		verdicts = append(verdicts, ret)
	}
	want := []uint32{xdpRedirect, xdpRedirect, xdpRedirect, xdpRedirect, xdpDrop, xdpDrop, xdpDrop, xdpDrop}
	if fmt.Sprint(verdicts) != fmt.Sprint(want) {
		t.Errorf("8 frames at occupancy 12 of 16: verdicts %v, want %v", verdicts, want)
	}
	if _, since := b.Occupancy(c1); since != 4 {
		t.Errorf("since = %d after 4 frames let in, want 4", since)
	}
	// A publish starts over.
	b.Publish(c1, 0)
	expect("published-empty", g1c1, udp("198.18.1.5", 0), xdpRedirect, 0, 0)

	// ECN: ECN-capable frames get CE and are let in; the rest is dropped.
	if err := s.SetClassThreshold(0, 1, 1, 8, true); err != nil {
		t.Fatal(err)
	}
	b.Publish(c1, 8)
	for _, tc := range []struct {
		name string
		tos  uint8
	}{{"ect0", ecnECT0}, {"ect1-dscp46", 46<<2 | ecnECT1}, {"ect0-dscp10", 10<<2 | ecnECT0}} {
		in := udp("198.18.1.5", tc.tos)
		out := expect("ecn-udp4-"+tc.name, g1c1, in, xdpRedirect, 0, 1)
		if got := out[15]; got != tc.tos|ecnCE {
			t.Errorf("ecn-udp4-%s: TOS %#x after, want %#x", tc.name, got, tc.tos|ecnCE)
		}
		if !ipv4HeaderOK(out) {
			t.Errorf("ecn-udp4-%s: IPv4 header checksum %#04x does not verify", tc.name, binary.BigEndian.Uint16(out[24:]))
		}
		// Nothing else changed.
		o := bytes.Clone(out)
		o[15] = in[15]
		copy(o[24:26], in[24:26])
		if !bytes.Equal(o, in) {
			t.Errorf("ecn-udp4-%s: bytes other than TOS and checksum changed:\n got %x\nwant %x", tc.name, out, in)
		}
	}
	// Already CE: let in unchanged, counted as marked.
	ce := udp("198.18.1.5", ecnCE)
	if out := expect("ecn-udp4-ce", g1c1, ce, xdpRedirect, 0, 1); !bytes.Equal(out, ce) {
		t.Errorf("a CE frame changed: %x, was %x", out, ce)
	}
	expect("ecn-udp4-not-ect", g1c1, udp("198.18.1.5", ecnNotECT), xdpDrop, 1, 0)
	expect("ecn-udp6-not-ect", g1c1, udp6(46<<2), xdpDrop, 1, 0)
	for _, tc := range []struct {
		name  string
		frame func(uint8) []byte
	}{{"udp6", udp6}, {"icmp6-full-path", icmp6}} {
		in := tc.frame(46<<2 | ecnECT0)
		out := expect("ecn-"+tc.name, g1c1, in, xdpRedirect, 0, 1)
		if got := ipv6TC(out); got != 46<<2|ecnCE {
			t.Errorf("ecn-%s: traffic class %#x after, want %#x", tc.name, got, 46<<2|ecnCE)
		}
		o := bytes.Clone(out)
		o[15] = in[15]
		if !bytes.Equal(o, in) {
			t.Errorf("ecn-%s: bytes other than the traffic class changed:\n got %x\nwant %x", tc.name, out, in)
		}
	}
	in := frag(ecnECT1)
	out := expect("ecn-fragment-full-path", g1c1, in, xdpRedirect, 0, 1)
	if out[15] != ecnCE || !ipv4HeaderOK(out) {
		t.Errorf("ecn-fragment: TOS %#x, checksum ok %v; want CE and ok", out[15], ipv4HeaderOK(out))
	}
	expect("ecn-fragment-not-ect", g1c1, frag(0), xdpDrop, 1, 0)
	// Marked frames count in since: the threshold holds what they add.
	if _, since := b.Occupancy(c1); since != 7 {
		t.Errorf("since = %d after 7 frames marked and let in, want 7", since)
	}

	// A class without a socket goes to class 0, admitted by class 0's
	// slot, and counts in its own slot.
	b.Publish(c0, 100)
	expect("class3-to-congested-class0", Slot{1, 3}, udp("198.18.4.5", 0), xdpDrop, 1, 0)
	b.Publish(c0, 0)
	before := snap(t, s)
	if ret := runProg(t, s.Program(), udp("198.18.4.5", 0)); ret != xdpRedirect {
		t.Errorf("class 3 to class 0 below its threshold: verdict %d", ret)
	}
	if d := subStats(snap(t, s).slots[Slot{1, 3}], before.slots[Slot{1, 3}]); d.RedirectedClass0 != 1 || d.EarlyDrops != 0 {
		t.Errorf("class 3 to class 0 below its threshold: slot moved by %+v", d)
	}

	// Thresholds off: cong_on off again, frames let in whatever the
	// occupancy.
	for _, cl := range []int{0, 1} {
		if err := s.SetClassThreshold(0, 1, cl, 0, false); err != nil {
			t.Fatal(err)
		}
	}
	if s.ctl.CongOn != 0 || s.thresholds != 0 {
		t.Errorf("all thresholds off: cong_on %d, %d thresholds counted", s.ctl.CongOn, s.thresholds)
	}
	b.Publish(c1, 1000)
	expect("threshold-off", g1c1, udp("198.18.1.5", 0), xdpRedirect, 0, 0)
}

// TestSetClassThresholdErrors: the slot is checked and named, the
// threshold count follows set and reset, and a closed Steer refuses.
func TestSetClassThresholdErrors(t *testing.T) {
	s := loadSteerOptsT(t, smallSteerOptions()) // 4 queues, 8 guests, 4 classes
	for _, c := range []struct{ q, g, cl int }{{4, 0, 0}, {-1, 0, 0}, {0, 8, 0}, {0, 0, 4}} {
		if err := s.SetClassThreshold(c.q, c.g, c.cl, 1, false); err == nil {
			t.Errorf("SetClassThreshold(%d, %d, %d) accepted", c.q, c.g, c.cl)
		}
	}
	if err := s.SetClassThreshold(0, 0, 0, MaxClassThreshold+1, false); err == nil {
		t.Error("SetClassThreshold accepted a threshold over MaxClassThreshold")
	}
	for range 2 { // setting the same slot twice counts it once
		if err := s.SetClassThreshold(3, 7, 3, 5, true); err != nil {
			t.Fatal(err)
		}
	}
	if s.thresholds != 1 || s.ctl.CongOn != 1 {
		t.Errorf("one slot set twice: %d thresholds, cong_on %d", s.thresholds, s.ctl.CongOn)
	}
	var ctl steerSteerCtl
	if err := s.objs.Ctl.Lookup(uint32(0), &ctl); err != nil || ctl.CongOn != 1 {
		t.Errorf("ctl map: cong_on %d, %v; want 1", ctl.CongOn, err)
	}
	if err := s.SetClassThreshold(3, 7, 3, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := s.objs.Ctl.Lookup(uint32(0), &ctl); err != nil || ctl.CongOn != 0 || s.thresholds != 0 {
		t.Errorf("after reset: ctl map cong_on %d (%v), %d thresholds; want 0, 0", ctl.CongOn, err, s.thresholds)
	}
	b := s.OccupancyBoard()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.SetClassThreshold(0, 0, 0, 1, false); err == nil {
		t.Error("SetClassThreshold on a closed Steer accepted")
	}
	// A board kept past Close stays usable (and affects nothing).
	if !b.Publish(0, 3) {
		t.Error("Publish after Close refused")
	}
	if occ, _ := b.Occupancy(0); occ != 3 {
		t.Errorf("occupancy %d after Publish(0, 3) past Close", occ)
	}
}

// TestOccupancyPinReuse: thresholds survive a restart over pinned maps,
// with cong_on; occupancy published by the earlier process does not.
func TestOccupancyPinReuse(t *testing.T) {
	opts := smallSteerOptions()
	opts.PinDir = tempPinDir(t)
	s1 := loadSteerOptsT(t, opts)
	if err := s1.SetClassThreshold(2, 3, 1, 40, true); err != nil {
		t.Fatal(err)
	}
	b1 := s1.OccupancyBoard()
	b1.Publish(b1.Slot(2, 3, 1), 50)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := loadSteerOptsT(t, opts)
	if th, ecn, err := s2.ClassThreshold(2, 3, 1); err != nil || th != 40 || !ecn {
		t.Errorf("threshold after restart %d, ecn %v, %v; want 40, true", th, ecn, err)
	}
	if s2.thresholds != 1 || s2.ctl.CongOn != 1 {
		t.Errorf("after restart: %d thresholds, cong_on %d; want 1, 1", s2.thresholds, s2.ctl.CongOn)
	}
	b2 := s2.OccupancyBoard()
	if occ, since := b2.Occupancy(b2.Slot(2, 3, 1)); occ != 0 || since != 0 {
		t.Errorf("occupancy after restart %d, since %d; want 0, 0", occ, since)
	}
}

// TestOccupancyBoard: slot indices agree with SlotIndex, bad input is
// refused without a panic, and Publish allocates nothing.
func TestOccupancyBoard(t *testing.T) {
	o := smallSteerOptions()
	b := &OccupancyBoard{slots: make([]steerOccSlot, o.Slots()), queues: o.Queues, guests: o.Guests, classes: o.Classes}
	for q := range o.Queues {
		for g := range o.Guests {
			for c := range o.Classes {
				if got, want := b.Slot(q, g, c), int(o.SlotIndex(q, g, c)); got != want {
					t.Fatalf("Slot(%d, %d, %d) = %d, SlotIndex %d", q, g, c, got, want)
				}
			}
		}
	}
	for _, c := range []struct{ q, g, cl int }{{o.Queues, 0, 0}, {0, o.Guests, 0}, {0, 0, o.Classes}, {-1, 0, 0}, {0, -1, 0}, {0, 0, -1}} {
		if got := b.Slot(c.q, c.g, c.cl); got != -1 {
			t.Errorf("Slot(%d, %d, %d) = %d, want -1", c.q, c.g, c.cl, got)
		}
	}
	for _, sl := range []int{-1, b.Len()} {
		if b.Publish(sl, 1) {
			t.Errorf("Publish(%d) accepted", sl)
		}
		if th, _ := b.Threshold(sl); th != 0 {
			t.Errorf("Threshold(%d) = %d", sl, th)
		}
	}
	sl := b.Slot(3, 7, 3)
	// The program has let in 9 frames; the worker publishes 5 in its
	// ring; the program lets in 3 more.
	b.slots[sl].Count = 9
	if !b.Publish(sl, 5) || b.slots[sl].Pub != 5|9<<32 {
		t.Errorf("after Publish(%d, 5): %+v", sl, b.slots[sl])
	}
	b.slots[sl].Count += 3
	if occ, since := b.Occupancy(sl); occ != 5 || since != 3 {
		t.Errorf("Occupancy = %d, %d; want 5, 3", occ, since)
	}
	// count wraps: since is still the frames let in since the mark.
	b.slots[sl].Count = 1<<32 - 2
	b.Publish(sl, 1)
	b.slots[sl].Count += 5
	if occ, since := b.Occupancy(sl); occ != 1 || since != 5 {
		t.Errorf("Occupancy across count's wrap = %d, %d; want 1, 5", occ, since)
	}
	if old := b.setThreshold(sl, 6, true); old != 0 {
		t.Errorf("setThreshold returned %d, want 0", old)
	}
	// Turning a threshold on restarts the count since the last publish.
	if occ, since := b.Occupancy(sl); occ != 1 || since != 0 {
		t.Errorf("Occupancy after the threshold went on = %d, %d; want 1, 0", occ, since)
	}
	if th, ecn := b.Threshold(sl); th != 6 || !ecn {
		t.Errorf("Threshold = %d, %v; want 6, true", th, ecn)
	}
	if n := testing.AllocsPerRun(1000, func() { b.Publish(sl, 17) }); n != 0 {
		t.Errorf("Publish allocates %.1f times per call", n)
	}
}

// BenchmarkOccupancyPublish is a worker's cost of publishing one slot.
func BenchmarkOccupancyPublish(b *testing.B) {
	o := DefaultSteerOptions()
	bd := &OccupancyBoard{slots: make([]steerOccSlot, o.Slots()), queues: o.Queues, guests: o.Guests, classes: o.Classes}
	sl := bd.Slot(1, 2, 3)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		bd.Publish(sl, uint32(i))
	}
}
