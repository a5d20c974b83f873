package engine

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
	"github.com/xnic/xnic/umem"
)

// Addresses of the isolation tests: the guest of newTxWorker (testGuestMAC,
// 198.18.0.2) also owns 2001:2::2; another guest has otherMAC, 198.18.0.3
// and 2001:2::3; the host port is testHostMAC, 198.18.0.1.
var (
	otherMAC   = net.HardwareAddr{2, 0, 0, 0, 0, 3}
	guestV4    = netip.MustParseAddr("198.18.0.2")
	guestV6    = netip.MustParseAddr("2001:2::2")
	otherV4    = netip.MustParseAddr("198.18.0.3")
	otherV6    = netip.MustParseAddr("2001:2::3")
	hostV4     = netip.MustParseAddr("198.18.0.1")
	peerV6     = netip.MustParseAddr("2001:2::1")
	unassigned = netip.MustParseAddr("198.18.0.99")
)

func udpFrom(t testing.TB, mac net.HardwareAddr, src, dst netip.Addr) []byte {
	t.Helper()
	f, err := gen.BuildUDP(gen.FrameOptions{Size: 128, SrcMAC: mac, DstMAC: testHostMAC, SrcIP: src, DstIP: dst, SrcPort: 7, DstPort: 9})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// arpFrame is an ARP message (op 1 request, 2 reply) from the Ethernet
// source eth, naming sha/spa as its sender.
func arpFrame(eth, sha net.HardwareAddr, op uint16, spa, tpa netip.Addr) []byte {
	f := make([]byte, 60)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:], eth)
	binary.BigEndian.PutUint16(f[12:], 0x0806)
	a := f[14:]
	copy(a, []byte{0, 1, 0x08, 0x00, 6, 4})
	binary.BigEndian.PutUint16(a[6:], op)
	copy(a[8:], sha)
	s, d := spa.As4(), tpa.As4()
	copy(a[14:], s[:])
	copy(a[24:], d[:])
	return f
}

// ndFrame is a neighbour discovery message of type typ from src (Ethernet
// eth) with target tgt and, when opt is not 0, one link-layer address
// option of that type holding optMAC. The checksum is not set: the guard
// does not read it.
func ndFrame(eth net.HardwareAddr, src netip.Addr, typ byte, tgt netip.Addr, opt byte, optMAC net.HardwareAddr) []byte {
	n := 24
	if opt != 0 {
		n += 8
	}
	f := make([]byte, 14+40+n)
	copy(f, []byte{0x33, 0x33, 0, 0, 0, 1})
	copy(f[6:], eth)
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	ip := f[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(n))
	ip[6], ip[7] = 58, 255
	s, d := src.As16(), [16]byte{0xff, 0x02, 15: 1}
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	icmp := ip[40:]
	icmp[0] = typ
	tg := tgt.As16()
	copy(icmp[8:], tg[:])
	if opt != 0 {
		icmp[24], icmp[25] = opt, 1
		copy(icmp[26:], optMAC)
	}
	return f
}

func withVLAN(f []byte, vid uint16) []byte {
	o := append([]byte{}, f[:12]...)
	o = binary.BigEndian.AppendUint16(o, 0x8100)
	o = binary.BigEndian.AppendUint16(o, vid)
	return append(o, f[12:]...)
}

func withEtherType(f []byte, et uint16) []byte {
	o := append([]byte{}, f...)
	binary.BigEndian.PutUint16(o[12:], et)
	return o
}

// guestLinkLocal is the link-local address netstack derives from the
// guest's MAC.
func guestLinkLocal() netip.Addr { return netip.AddrFrom16(linkLocal([6]byte(testGuestMAC))) }

type spoofCase struct {
	name  string
	frame []byte
	want  SpoofReason
}

func spoofCases(t testing.TB) []spoofCase {
	na := UnsolicitedNA(testGuestMAC, guestV6)
	fragNA := append([]byte{}, na...)
	// A fragment header (first fragment, more to come) before the ICMPv6.
	fragNA = append(fragNA[:14+40], append([]byte{58, 0, 0, 1, 0, 0, 0, 7}, na[14+40:]...)...)
	fragNA[14+6] = 44
	binary.BigEndian.PutUint16(fragNA[14+4:], uint16(len(fragNA)-14-40))
	badOpt := ndFrame(testGuestMAC, guestV6, icmp6NA, guestV6, ndOptTgtLL, testGuestMAC)
	badOpt[len(badOpt)-7] = 0 // option length 0
	return []spoofCase{
		// What a guest's stack sends.
		{"udp from its address", udpFrom(t, testGuestMAC, guestV4, hostV4), SpoofNone},
		{"tcp from its address", tcpFrame(4000, 1, 0, []byte("x"), 1), SpoofNone},
		{"udp6 from its address", udpFrom(t, testGuestMAC, guestV6, peerV6), SpoofNone},
		{"udp6 from its link-local", udpFrom(t, testGuestMAC, guestLinkLocal(), netip.MustParseAddr("fe80::1")), SpoofNone},
		{"gratuitous arp", GratuitousARP(testGuestMAC, guestV4), SpoofNone},
		{"arp reply from itself", arpFrame(testGuestMAC, testGuestMAC, 2, guestV4, hostV4), SpoofNone},
		{"arp probe", arpFrame(testGuestMAC, testGuestMAC, 1, netip.IPv4Unspecified(), guestV4), SpoofNone},
		{"unsolicited na", na, SpoofNone},
		{"na for its link-local", ndFrame(testGuestMAC, guestLinkLocal(), icmp6NA, guestLinkLocal(), ndOptTgtLL, testGuestMAC), SpoofNone},
		{"ns with its mac", ndFrame(testGuestMAC, guestV6, icmp6NS, peerV6, ndOptSrcLL, testGuestMAC), SpoofNone},
		{"dad ns from ::", ndFrame(testGuestMAC, netip.IPv6Unspecified(), icmp6NS, guestV6, 0, nil), SpoofNone},
		// Forgeries.
		{"another guest's mac and address", udpFrom(t, otherMAC, otherV4, hostV4), SpoofSrcMAC},
		{"the host's mac and address", udpFrom(t, testHostMAC, hostV4, otherV4), SpoofSrcMAC},
		{"its mac, another guest's address", udpFrom(t, testGuestMAC, otherV4, hostV4), SpoofSrcIP},
		{"its mac, an unassigned address", udpFrom(t, testGuestMAC, unassigned, hostV4), SpoofSrcIP},
		{"its mac, another guest's ipv6", udpFrom(t, testGuestMAC, otherV6, peerV6), SpoofSrcIP},
		{"udp6 from ::", udpFrom(t, testGuestMAC, netip.IPv6Unspecified(), peerV6), SpoofSrcIP},
		{"another's link-local", udpFrom(t, testGuestMAC, netip.AddrFrom16(linkLocal([6]byte(otherMAC))), netip.MustParseAddr("fe80::1")), SpoofSrcIP},
		{"arp reply claiming 198.18.0.1", arpFrame(testGuestMAC, testGuestMAC, 2, hostV4, otherV4), SpoofARP},
		{"arp reply with another's mac", arpFrame(testGuestMAC, otherMAC, 2, guestV4, hostV4), SpoofARP},
		{"arp for another guest's address", arpFrame(testGuestMAC, testGuestMAC, 1, otherV4, hostV4), SpoofARP},
		{"arp cut short", arpFrame(testGuestMAC, testGuestMAC, 2, guestV4, hostV4)[:14+20], SpoofARP},
		{"na claiming another's ipv6", ndFrame(testGuestMAC, guestV6, icmp6NA, otherV6, ndOptTgtLL, testGuestMAC), SpoofNDP},
		{"na with another's mac", ndFrame(testGuestMAC, guestV6, icmp6NA, guestV6, ndOptTgtLL, otherMAC), SpoofNDP},
		{"ns with another's mac", ndFrame(testGuestMAC, guestV6, icmp6NS, peerV6, ndOptSrcLL, otherMAC), SpoofNDP},
		{"na with a zero-length option", badOpt, SpoofNDP},
		{"fragmented na", fragNA, SpoofNDP},
		{"vlan-tagged", withVLAN(udpFrom(t, testGuestMAC, guestV4, hostV4), 7), SpoofVLAN},
		{"another ethertype", withEtherType(udpFrom(t, testGuestMAC, guestV4, hostV4), 0x88cc), SpoofEtherType},
	}
}

// TestSendRefusesForgeries sends each frame of spoofCases through a
// guest's send path: the legitimate ones reach the wire, each forgery is
// dropped and counted under its reason, for the guest and the worker.
func TestSendRefusesForgeries(t *testing.T) {
	w, g, u, k := newTxWorker(t)
	defer u.Close()
	g.Spec.Addrs = append(g.Spec.Addrs, netip.PrefixFrom(guestV6, 64))
	g.guard = newGuard(g.Spec)
	var want [numSpoofReasons]uint64
	for _, c := range spoofCases(t) {
		if err := g.Send(&WorkRequest{Head: c.frame}); err != nil {
			t.Fatal(err)
		}
		for w.Poll() > 0 {
		}
		sent := 0
		k.Send(func([]byte) { sent++ })
		if got := sent == 1; got != (c.want == SpoofNone) {
			t.Errorf("%s: %d frames on the wire, want the frame %s", c.name, sent, map[bool]string{true: "sent", false: "refused as " + c.want.String()}[c.want == SpoofNone])
		}
		want[c.want]++
		for r := SpoofSrcMAC; r < numSpoofReasons; r++ {
			if got := g.spoofed[r].Load(); got != want[r] {
				t.Fatalf("%s: %s counted %d, want %d", c.name, r, got, want[r])
			}
		}
	}
	for w.Poll() > 0 {
	}
	var refused uint64
	for _, n := range want[SpoofSrcMAC:] {
		refused += n
	}
	if got := g.Spoofed(); got.Total() != refused || got.SrcMAC != want[SpoofSrcMAC] || got.NDP != want[SpoofNDP] {
		t.Fatalf("Spoofed() = %+v, want %v by reason", got, want)
	}
	if got := w.Tx.Spoofed.Load(); got != refused {
		t.Fatalf("worker counted %d spoofed, want %d", got, refused)
	}
	if w.Tx.Dropped.Load() != 0 {
		t.Fatalf("spoofed frames also counted as dropped: %d", w.Tx.Dropped.Load())
	}
}

// TestSendSpoofCheckOff: with NoSpoofCheck, forgeries leave as they are.
func TestSendSpoofCheckOff(t *testing.T) {
	w, g, u, k := newTxWorker(t)
	defer u.Close()
	g.guard = nil // AttachGuest with GuestSpec.NoSpoofCheck
	n := 0
	for _, c := range spoofCases(t) {
		if c.want != SpoofNone {
			g.Send(&WorkRequest{Head: c.frame})
			n++
		}
	}
	for w.Poll() > 0 {
	}
	if sent := k.Send(nil); sent != n {
		t.Fatalf("%d of %d forgeries sent with spoof checking off", sent, n)
	}
}

// TestSendWithoutOwnMAC: a guest without a MAC sends with its port's (the
// endpoint's) and has no link-local address: the port's is the host's.
func TestSendWithoutOwnMAC(t *testing.T) {
	w, g, u, k := newTxWorker(t)
	defer u.Close()
	g.Spec.MAC = nil
	g.Spec.Addrs = append(g.Spec.Addrs, netip.PrefixFrom(guestV6, 64))
	g.guard = newGuard(g.Spec)
	ep := g.ports[0].eps[0]
	ep.hw = [6]byte(testHostMAC) // the port's MAC
	hostLL := netip.AddrFrom16(linkLocal([6]byte(testHostMAC)))
	for _, c := range []spoofCase{
		{"the port's mac", udpFrom(t, testHostMAC, guestV4, hostV4), SpoofNone},
		{"arp with the port's mac", GratuitousARP(testHostMAC, guestV4), SpoofNone},
		{"its own former mac", udpFrom(t, testGuestMAC, guestV4, hostV4), SpoofSrcMAC},
		{"the host's link-local", udpFrom(t, testHostMAC, hostLL, netip.MustParseAddr("fe80::1")), SpoofSrcIP},
	} {
		g.Send(&WorkRequest{Head: c.frame})
		for w.Poll() > 0 {
		}
		if sent := k.Send(nil); (sent == 1) != (c.want == SpoofNone) {
			t.Errorf("%s: %d sent, want refused: %v", c.name, sent, c.want != SpoofNone)
		}
	}
}

// TestReceiveOnlyAddressedFrames: of the frames steered to a guest, those
// to its MAC, broadcast and multicast reach its handler and its pipeline
// sink, in order; a frame to another unicast MAC reaches neither, is
// counted, and its frame goes back to the fill ring with the rest.
func TestReceiveOnlyAddressedFrames(t *testing.T) {
	u, err := umem.NewInMemory(umem.Options{NumFrames: 4096, FrameSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	s, k, err := umem.NewSimSocket(u, umem.SocketOptions{RxSize: 2048, FillSize: 4096, CompletionSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	var handled, sunk []byte
	g := &Guest{ID: 1, Spec: GuestSpec{Name: "g", MAC: testGuestMAC}}
	g.handler = func(_ *Guest, _ *Endpoint, descs []umem.Desc) {
		for _, d := range descs {
			handled = append(handled, u.Bytes(d)[d.Len-1])
		}
	}
	g.sink = func(_ *Endpoint, a *offload.Aggregate) { sunk = append(sunk, a.Head[len(a.Head)-1]) }
	ep := &Endpoint{Sock: s, Guest: 1, Owner: g, hw: [6]byte(testGuestMAC)}
	w := NewWorker(u, []*Endpoint{ep}, 64, 0, nil)
	if w.pipe, err = newRxPipeline(u, 64, DefaultPipelineOptions(), nil); err != nil {
		t.Fatal(err)
	}
	w.Prime()
	frame := func(dst net.HardwareAddr, tag byte) []byte {
		f, err := gen.BuildUDP(gen.FrameOptions{Size: 100, SrcMAC: testHostMAC, DstMAC: dst,
			SrcIP: hostV4, DstIP: guestV4, SrcPort: 9, DstPort: 7 + uint16(tag)})
		if err != nil {
			t.Fatal(err)
		}
		f[len(f)-1] = tag
		return f
	}
	batch := [][]byte{
		frame(testGuestMAC, 1), frame(otherMAC, 2), frame(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 3),
		frame(otherMAC, 4), frame(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, 5), frame(testHostMAC, 6), frame(testGuestMAC, 7),
	}
	free := u.Free()
	k.Deliver(batch)
	for w.Poll() > 0 {
	}
	if string(handled) != "\x01\x03\x05\x07" || string(sunk) != "\x01\x03\x05\x07" {
		t.Fatalf("handler saw %v, sink %v; want [1 3 5 7]", handled, sunk)
	}
	if g.RxWrongMAC.Load() != 3 || w.Stats().RxWrongMAC != 3 || g.RxPackets.Load() != 4 {
		t.Fatalf("wrong mac %d (worker %d), received %d; want 3 and 4", g.RxWrongMAC.Load(), w.Stats().RxWrongMAC, g.RxPackets.Load())
	}
	if u.Free() != free {
		t.Fatalf("%d frames free after the batch, %d before: the filtered frames did not go back", u.Free(), free)
	}
	r, err := u.Audit()
	if err != nil {
		t.Fatal(err)
	}
	if r.Engine != 0 {
		t.Fatalf("frames left with the engine: %s", r)
	}
	allocs := testing.AllocsPerRun(100, func() {
		k.Deliver(batch[1:2])
		w.Poll()
	})
	if allocs != 0 {
		t.Fatalf("receive filter: %.1f allocations per batch, want 0", allocs)
	}
}

// TestFindOverlap: two guests may share a subnet, and rules on different
// protocols or ports of one prefix, but not a MAC, an address, a rule on
// the other's address, or rules matching the same traffic.
func TestFindOverlap(t *testing.T) {
	pfx := netip.MustParsePrefix
	a := GuestSpec{Name: "a", MAC: testGuestMAC, Addrs: []netip.Prefix{pfx("198.18.0.2/24"), pfx("2001:2::2/64")},
		Rules: []RuleSpec{{Dst: pfx("198.18.0.2/32")}, {Dst: pfx("198.18.1.0/24"), Proto: 17, PortLo: 5000, PortHi: 5999}}}
	for _, c := range []struct {
		name string
		b    GuestSpec
		want OverlapKind // 0: none
		msg  string
	}{
		{"apart", GuestSpec{Name: "b", MAC: otherMAC, Addrs: []netip.Prefix{pfx("198.18.0.3/24")},
			Rules: []RuleSpec{{Dst: pfx("198.18.0.3/32")}, {Dst: pfx("198.18.1.0/24"), Proto: 17, PortLo: 6000, PortHi: 6000},
				{Dst: pfx("198.18.1.0/25"), Proto: 6}, {Dst: pfx("198.18.1.7/32"), Proto: ProtoARP}}}, 0, ""},
		{"same mac", GuestSpec{Name: "b", MAC: testGuestMAC}, OverlapMAC, "mac 02:00:00:00:00:02 is guest a's too"},
		{"same address", GuestSpec{Name: "b", Addrs: []netip.Prefix{pfx("2001:2::2/128")}}, OverlapAddr, "address 2001:2::2 is guest a's too"},
		{"rule on a's address", GuestSpec{Name: "b", Rules: []RuleSpec{{Dst: pfx("198.18.0.0/24"), Proto: 17, PortLo: 9, PortHi: 9}}},
			OverlapRuleOnAddr, "rule 198.18.0.0/24 udp 9 matches guest a's address 198.18.0.2"},
		{"address under a's rule", GuestSpec{Name: "b", Addrs: []netip.Prefix{pfx("198.18.1.5/24")}},
			OverlapAddrUnderRule, "address 198.18.1.5 is matched by guest a's rule 198.18.1.0/24 udp 5000-5999"},
		{"overlapping rules", GuestSpec{Name: "b", Rules: []RuleSpec{{Dst: pfx("198.18.1.128/25"), Proto: 17, PortLo: 5999, PortHi: 7000}}},
			OverlapRules, "rule 198.18.1.128/25 udp 5999-7000 overlaps guest a's rule 198.18.1.0/24 udp 5000-5999"},
		{"any-protocol rule", GuestSpec{Name: "b", Rules: []RuleSpec{{Dst: pfx("198.18.0.0/16")}}},
			OverlapRuleOnAddr, "rule 198.18.0.0/16 any matches guest a's address 198.18.0.2"},
	} {
		o, ok := FindOverlap(c.b, a)
		if ok != (c.want != 0) || o.Kind != c.want {
			t.Errorf("%s: overlap %v %+v, want kind %d", c.name, ok, o, c.want)
			continue
		}
		if ok && o.Describe(c.b, a) != c.msg {
			t.Errorf("%s: %q, want %q", c.name, o.Describe(c.b, a), c.msg)
		}
		if _, back := FindOverlap(a, c.b); back != ok {
			t.Errorf("%s: not symmetric", c.name)
		}
	}
}

// TestAttachRefusesOverlap: the engine refuses, naming both guests, a guest
// that overlaps an attached one, before it makes any socket.
func TestAttachRefusesOverlap(t *testing.T) {
	a := &Guest{ID: 1, Spec: GuestSpec{Name: "a", MAC: testGuestMAC, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}}}
	e := &Engine{guests: []*Guest{nil, a, nil}, ports: []*Port{{Name: "xnic0"}}}
	_, err := e.AttachGuest(GuestSpec{Name: "b", Port: "xnic0",
		Rules: []RuleSpec{{Dst: netip.MustParsePrefix("198.18.0.2/32"), Proto: 6, PortLo: 80, PortHi: 80}}}, nil)
	if !errors.Is(err, ErrGuestOverlap) || !strings.Contains(err.Error(), "attach guest b: rule 198.18.0.2/32 tcp 80 matches guest a's address 198.18.0.2") {
		t.Fatalf("attach over another guest's address: %v", err)
	}
	_, err = e.AttachGuest(GuestSpec{Name: "b", Port: "xnic0", MAC: net.HardwareAddr{3, 0, 0, 0, 0, 1}}, nil)
	if err == nil || !strings.Contains(err.Error(), "want a unicast Ethernet address") {
		t.Fatalf("attach with a multicast mac: %v", err)
	}
}

// BenchmarkSpoofCheck: the send path's check of one request, for a UDP
// frame from the guest's second address and for a neighbour advertisement
// (the longest walk: target and options).
func BenchmarkSpoofCheck(b *testing.B) {
	spec := GuestSpec{MAC: testGuestMAC, Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.9/24"), netip.PrefixFrom(guestV4, 24), netip.PrefixFrom(guestV6, 64)}}
	gd := newGuard(spec)
	hw := [6]byte(testGuestMAC)
	for _, c := range []struct {
		name  string
		frame []byte
	}{{"udp", udpFrom(b, testGuestMAC, guestV4, hostV4)}, {"na", UnsolicitedNA(testGuestMAC, guestV6)}} {
		var p flows.Packet
		flows.Parse(c.frame, &p)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if gd.check(c.frame, &p, &hw) != SpoofNone {
					b.Fatal("refused")
				}
			}
		})
	}
}
