package stack

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/corpus"
	"github.com/xnic/xnic/flows/offload"
)

// captured is a TxPacket copied out of the TxFunc.
type captured struct {
	frame []byte
	p     TxPacket // Head and Payload are nil: the views died with the call
}

// capture is a TxFunc that keeps copies of the packets.
type capture struct {
	ch chan captured
}

func newCapture() *capture { return &capture{ch: make(chan captured, 256)} }

func (c *capture) tx(p *TxPacket) bool {
	f := slices.Clone(p.Head)
	for _, s := range p.Payload {
		f = append(f, s...)
	}
	q := *p
	q.Head, q.Payload = nil, nil
	select {
	case c.ch <- captured{frame: f, p: q}:
		return true
	default:
		return false
	}
}

// next returns the next captured packet that match accepts.
func (c *capture) next(t *testing.T, what string, match func(f []byte, p *flows.Packet) bool) captured {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case x := <-c.ch:
			var p flows.Packet
			flows.Parse(x.frame, &p)
			if match(x.frame, &p) {
				return x
			}
		case <-timeout:
			t.Fatalf("no %s sent", what)
		}
	}
}

var (
	macX = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	ipX4 = netip.MustParseAddr("198.18.0.99")
)

func ethHeader(dst, src net.HardwareAddr, typ uint16) []byte {
	b := append(slices.Clone(dst), src...)
	return binary.BigEndian.AppendUint16(b, typ)
}

// ipv4Frame builds an Ethernet+IPv4 frame around an L4 message.
func ipv4Frame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	f := ethHeader(dstMAC, srcMAC, flows.EtherTypeIPv4)
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(ip[4:], 0x1234)
	ip[6] = 0x40 // DF
	ip[8] = 64
	ip[9] = proto
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	offload.SetIPv4HeaderChecksum(ip)
	f = append(f, ip...)
	return append(f, l4...)
}

// udp4Frame builds a UDP/IPv4 frame with a correct checksum.
func udp4Frame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, data []byte) []byte {
	u := make([]byte, 8, 8+len(data))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(data)))
	u = append(u, data...)
	f := ipv4Frame(dstMAC, srcMAC, src, dst, flows.ProtoUDP, u)
	var p flows.Packet
	flows.Parse(f, &p)
	offload.SetL4Checksum(f, &p)
	return f
}

func arpFrame(dstMAC, srcMAC net.HardwareAddr, op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	f := ethHeader(dstMAC, srcMAC, flows.EtherTypeARP)
	f = append(f, 0, 1, 0x08, 0, 6, 4)
	f = binary.BigEndian.AppendUint16(f, op)
	s4, t4 := spa.As4(), tpa.As4()
	f = append(f, sha...)
	f = append(f, s4[:]...)
	f = append(f, tha...)
	return append(f, t4[:]...)
}

func newCaptureStack(t *testing.T, mod func(o *Options)) (*Stack, *capture) {
	t.Helper()
	c := newCapture()
	o := optsFor("a", macA, addrsA)
	if mod != nil {
		mod(&o)
	}
	s, err := New(o, c.tx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, c
}

// TestICMPEchoByHand sends a hand-built echo request from a host the
// stack does not know, answers the ARP request it makes, and checks the
// echo reply.
func TestICMPEchoByHand(t *testing.T) {
	s, c := newCaptureStack(t, nil)
	data := []byte("xnic echo payload 0123456789")
	icmpMsg := append([]byte{8, 0, 0, 0, 0x12, 0x34, 0, 7}, data...)
	binary.BigEndian.PutUint16(icmpMsg[2:], ^offload.Sum(icmpMsg, 0))
	s.DeliverFrame(ipv4Frame(macA, macX, ipX4, ipA4, flows.ProtoICMP, icmpMsg), false)

	req := c.next(t, "ARP request", func(f []byte, p *flows.Packet) bool { return p.EtherType == flows.EtherTypeARP })
	a := req.frame[14:]
	if !bytes.Equal(req.frame[:6], bytes.Repeat([]byte{0xff}, 6)) || binary.BigEndian.Uint16(a[6:]) != 1 ||
		!bytes.Equal(a[8:14], macA) || netip.AddrFrom4([4]byte(a[14:18])) != ipA4 || netip.AddrFrom4([4]byte(a[24:28])) != ipX4 {
		t.Fatalf("bad ARP request % x", req.frame)
	}
	if req.p.EtherType != flows.EtherTypeARP || req.p.L3Off != 14 || req.p.Proto != 0 || req.p.Len != len(req.frame) {
		t.Errorf("ARP TxPacket %+v", req.p)
	}
	s.DeliverFrame(arpFrame(macA, macX, 2, macX, ipX4, macA, ipA4), false)

	rep := c.next(t, "echo reply", func(f []byte, p *flows.Packet) bool { return p.Proto == flows.ProtoICMP })
	var p flows.Packet
	flows.Parse(rep.frame, &p)
	f := rep.frame
	ip := p.IPv4(f)
	switch {
	case p.Reason != flows.ReasonOK:
		t.Fatalf("reply does not parse: %v", p.Reason)
	case !bytes.Equal(f[:6], macX) || !bytes.Equal(f[6:12], macA):
		t.Errorf("reply MACs %x -> %x", f[6:12], f[:6])
	case netip.AddrFrom4(ip.Src()) != ipA4 || netip.AddrFrom4(ip.Dst()) != ipX4:
		t.Errorf("reply %v -> %v", ip.Src(), ip.Dst())
	case !offload.VerifyIPv4Header(f[p.L3Off:p.L4Off]):
		t.Error("reply IPv4 header checksum is bad")
	}
	m := f[p.L4Off : int(p.L3Off)+int(p.IPLen)]
	if m[0] != 0 || m[1] != 0 || !bytes.Equal(m[4:8], icmpMsg[4:8]) || !bytes.Equal(m[8:], data) {
		t.Errorf("reply ICMP % x, want type 0 with id, seq and data of % x", m, icmpMsg)
	}
	if offload.Sum(m, 0) != 0xffff {
		t.Error("reply ICMP checksum is bad")
	}
	if rep.p.Proto != flows.ProtoICMP || rep.p.L4Off != int(p.L4Off) || rep.p.GSOSize != 0 || rep.p.CsumPartial {
		t.Errorf("echo reply TxPacket %+v", rep.p)
	}
	if st := s.Stats(); st.RxPackets != 2 || st.RxFrames != 2 || st.TxPackets != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestICMPv6EchoOverWire pings A's IPv6 address from a ping socket on B,
// over the simulated wire (NDP first).
func TestICMPv6EchoOverWire(t *testing.T) {
	p := newPair(t, nil, wireOptions{}, wireOptions{viaFrame: true})
	var wq waiter.Queue
	ep, e := p.b.Netstack().NewEndpoint(icmp.ProtocolNumber6, ipv6.ProtocolNumber, &wq)
	if e != nil {
		t.Fatalf("ping endpoint: %s", e)
	}
	defer ep.Close()
	we, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)
	data := []byte("ping over the xnic wire")
	req := append([]byte{128, 0, 0, 0, 0, 0, 0, 9}, data...)
	to := tcpip.FullAddress{Addr: addrFromNetip(ipA6)}
	if _, e := ep.Write(bytes.NewReader(req), tcpip.WriteOptions{To: &to}); e != nil {
		t.Fatalf("write echo request: %s", e)
	}
	var got bytes.Buffer
	deadline := time.After(5 * time.Second)
	for {
		_, e := ep.Read(&got, tcpip.ReadOptions{})
		if e == nil {
			break
		}
		if _, ok := e.(*tcpip.ErrWouldBlock); !ok {
			t.Fatalf("read echo reply: %s", e)
		}
		select {
		case <-ready:
		case <-deadline:
			t.Fatal("no echo reply")
		}
	}
	r := got.Bytes()
	if len(r) < 8 || r[0] != 129 || !bytes.Equal(r[6:8], req[6:8]) || !bytes.Equal(r[8:], data) {
		t.Errorf("echo reply % x", r)
	}
	if p.ab.ndpFrames.Load() == 0 || p.ba.ndpFrames.Load() == 0 {
		t.Error("no NDP on the wire")
	}
}

// TestUDPEcho echoes datagrams of every size, fragmented ones included,
// over IPv4 and IPv6 through ListenPacket and Dial.
func TestUDPEcho(t *testing.T) {
	p := newPair(t, nil, wireOptions{viaFrame: true}, wireOptions{})
	srv, err := p.b.ListenPacket("udp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			if _, err := srv.WriteTo(buf[:n], from); err != nil {
				t.Errorf("echo to %v: %v", from, err)
			}
		}
	}()
	defer func() { srv.Close(); wg.Wait() }()

	sizes := []int{1, 100, 1472, 1473, 4000, 9000}
	check := func(name string, send func([]byte) error, recv func([]byte) (int, net.Addr, error), want string) {
		t.Helper()
		buf := make([]byte, 65536)
		for i, n := range sizes {
			msg := bytes.Repeat([]byte{byte(i + 1)}, n)
			if err := send(msg); err != nil {
				t.Fatalf("%s: send %d bytes: %v", name, n, err)
			}
			k, from, err := recv(buf)
			if err != nil {
				t.Fatalf("%s: receive the echo of %d bytes: %v", name, n, err)
			}
			if !bytes.Equal(buf[:k], msg) {
				t.Errorf("%s: echo of %d bytes came back as %d bytes", name, n, k)
			}
			if from != nil && from.String() != want {
				t.Errorf("%s: echo from %v, want %s", name, from, want)
			}
		}
	}
	for _, c := range []struct{ network, to, from string }{
		{"udp4", "198.18.0.2", "198.18.0.2:7"},
		{"udp6", "2001:2::b", "[2001:2::b]:7"},
	} {
		pc, err := p.a.ListenPacket(c.network, ":0")
		if err != nil {
			t.Fatal(err)
		}
		pc.SetDeadline(time.Now().Add(10 * time.Second))
		dst := &net.UDPAddr{IP: net.ParseIP(c.to), Port: 7} // 16-byte form for IPv4 too
		check(c.network+" listen", func(b []byte) error { _, err := pc.WriteTo(b, dst); return err }, pc.ReadFrom, c.from)
		pc.Close()

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := p.a.Dial(ctx, c.network, net.JoinHostPort(c.to, "7"))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		check(c.network+" dial", func(b []byte) error { _, err := conn.Write(b); return err },
			func(b []byte) (int, net.Addr, error) { n, err := conn.Read(b); return n, nil, err }, "")
		conn.Close()
	}
	if bad := p.a.Stats().Drops; bad != ([NumDropReasons]uint64{}) {
		t.Errorf("a dropped: %v", bad)
	}
	if p.a.Stats().RxVerified == 0 {
		t.Error("no UDP checksum verified in software on the pass-through path")
	}
}

// TestMalformedFrames feeds broken frames and aggregates and checks that
// each is counted under its reason and dropped, and that the stack still
// answers afterwards.
func TestMalformedFrames(t *testing.T) {
	s, c := newCaptureStack(t, nil)
	good := udp4Frame(macA, macX, ipX4, ipA4, 1000, 2000, []byte("payload"))
	tcpF := ipv4Frame(macA, macX, ipX4, ipA4, flows.ProtoTCP, make([]byte, 20))
	tcpF[14+20+12] = 2 << 4 // data offset 2
	longIP := slices.Clone(good)
	binary.BigEndian.PutUint16(longIP[16:], 1000)
	badUDP := slices.Clone(good)
	badUDP[len(badUDP)-1] ^= 0xff
	badIP := slices.Clone(good)
	badIP[14+8]-- // TTL, under the header checksum
	vlan := append(ethHeader(macA, macX, flows.EtherTypeVLAN), 0, 5)
	vlan = append(vlan, good[12:]...)
	lldp := append(ethHeader(macA, macX, 0x88cc), make([]byte, 40)...)

	cases := []struct {
		name  string
		frame []byte
		valid bool
		want  DropReason
	}{
		{"nil", nil, false, RxDropMalformed},
		{"3 bytes", []byte{1, 2, 3}, false, RxDropMalformed},
		{"truncated ipv4", good[:14+10], false, RxDropMalformed},
		{"ip length past the frame", longIP, false, RxDropMalformed},
		{"tcp data offset 2", tcpF, true, RxDropMalformed},
		{"truncated udp", good[:14+20+4], true, RxDropMalformed},
		{"vlan tag", vlan, false, RxDropUnsupported},
		{"lldp", lldp, false, RxDropUnsupported},
		{"bad udp checksum", badUDP, false, RxDropCsumBad},
		{"bad ipv4 header checksum", badIP, false, RxDropCsumBad},
	}
	for _, x := range cases {
		before := s.Stats()
		s.DeliverFrame(x.frame, x.valid)
		after := s.Stats()
		if after.Drops[x.want] != before.Drops[x.want]+1 || after.RxPackets != before.RxPackets {
			t.Errorf("%s: drops %v -> %v, packets %d -> %d; want one more %v", x.name,
				before.Drops, after.Drops, before.RxPackets, after.RxPackets, x.want)
		}
	}

	// Aggregates: one GRO marked bad, a pass-through of a broken frame,
	// one with a head too short for Ethernet, a VLAN-tagged TCP one.
	var pk, vk flows.Packet
	flows.Parse(good[:14+10], &pk)
	vtcp := append(ethHeader(macA, macX, flows.EtherTypeVLAN), 0, 5)
	vtcp = append(vtcp, tcp4Frame(1000, 80, 5000, flows.TCPFlagPSH, []byte("tagged"))[12:]...)
	flows.Parse(vtcp, &vk)
	aggs := []struct {
		name string
		a    offload.Aggregate
		want DropReason
	}{
		{"csum bad", offload.Aggregate{Head: tcpF, Flags: offload.AggCsumBad, Handles: []uint64{1}}, RxDropCsumBad},
		{"pass-through malformed", offload.Aggregate{Head: good[:14+10], Pkt: pk, Flags: offload.AggPassThrough, Handles: []uint64{1}}, RxDropMalformed},
		{"short head", offload.Aggregate{Head: good[:10], Segs: [][]byte{good[10:]}, Flags: offload.AggCsumValidated, Handles: []uint64{1}}, RxDropMalformed},
		{"vlan-tagged tcp", offload.Aggregate{Head: vtcp[:vk.PayloadOff], Segs: [][]byte{vtcp[vk.PayloadOff:]}, Pkt: vk,
			Flags: offload.AggCsumValidated, Handles: []uint64{1}}, RxDropUnsupported},
	}
	for _, x := range aggs {
		before := s.Stats()
		s.DeliverAggregate(&x.a)
		after := s.Stats()
		if after.Drops[x.want] != before.Drops[x.want]+1 || after.RxPackets != before.RxPackets || after.RxAggregates != before.RxAggregates+1 {
			t.Errorf("aggregate %s: drops %v -> %v; want one more %v", x.name, before.Drops, after.Drops, x.want)
		}
	}
	if st := s.Stats(); st.RxFrames != uint64(len(cases)+len(aggs)) || st.TxPackets != 0 {
		t.Errorf("stats after the bad frames: %+v", st)
	}

	// Still alive: an ARP request for A gets a reply.
	s.DeliverFrame(arpFrame(bytes.Repeat([]byte{0xff}, 6), macX, 1, macX, ipX4, make(net.HardwareAddr, 6), ipA4), false)
	rep := c.next(t, "ARP reply", func(f []byte, p *flows.Packet) bool { return p.EtherType == flows.EtherTypeARP })
	if binary.BigEndian.Uint16(rep.frame[20:]) != 2 || !bytes.Equal(rep.frame[22:28], macA) || !bytes.Equal(rep.frame[:6], macX) {
		t.Errorf("bad ARP reply % x", rep.frame)
	}

	s.Close()
	s.DeliverFrame(good, true)
	if st := s.Stats(); st.Drops[RxDropClosed] != 1 {
		t.Errorf("delivery after close: %v", st.Drops)
	}
}

// nopDispatcher takes packets and does nothing, to measure the endpoint
// alone.
type nopDispatcher struct{ n int }

func (d *nopDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {
	d.n++
}
func (*nopDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {}

// TestAllocs proves that the receive copy and the transmit layout
// allocate nothing per packet.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	o := optsFor("a", macA, addrsA)
	var got TxPacket
	var gotPay int
	s := &Stack{opts: o}
	stats := func() Stats {
		var st Stats
		s.c.snapshot(&st)
		return st
	}
	s.ep = newEndpoint(&s.opts, func(p *TxPacket) bool {
		got = *p
		gotPay = 0
		for _, b := range p.Payload {
			gotPay += len(b)
		}
		return true
	}, &s.c)
	d := &nopDispatcher{}
	s.ep.Attach(d)

	// Receive: a 40-segment aggregate and a lone UDP frame (verified
	// here).
	head := ipv4Frame(macA, macX, ipX4, ipA4, flows.ProtoTCP, make([]byte, 32))
	head[14+20+12] = 8 << 4
	segs := make([][]byte, 40)
	for i := range segs {
		segs[i] = make([]byte, 1448)
	}
	var pk flows.Packet
	flows.Parse(head, &pk)
	agg := offload.Aggregate{Head: head, Segs: segs, Pkt: pk, Flags: offload.AggCsumValidated, Handles: make([]uint64, 40)}
	udp := udp4Frame(macA, macX, ipX4, ipA4, 1, 2, make([]byte, 200))
	if n := testing.AllocsPerRun(500, func() { s.DeliverAggregate(&agg) }); n != 0 {
		t.Errorf("DeliverAggregate: %.1f allocations", n)
	}
	if n := testing.AllocsPerRun(500, func() { s.DeliverFrame(udp, false) }); n != 0 {
		t.Errorf("DeliverFrame: %.1f allocations", n)
	}
	if st := stats(); st.RxPackets != uint64(d.n) || d.n < 1000 || st.RxBytes < 500*40*1448 {
		t.Errorf("delivered %d packets, stats %+v", d.n, st)
	}

	// Transmit: a TSO packet as netstack builds it.
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{
		ReserveHeaderBytes: 14 + 20 + 32,
		Payload:            buffer.MakeWithData(make([]byte, 8000)),
	})
	defer pkt.DecRef()
	th := pkt.TransportHeader().Push(32)
	th[12] = 8 << 4
	ih := pkt.NetworkHeader().Push(20)
	ih[0], ih[6] = 0x45, 0x40
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	pkt.EgressRoute.RemoteLinkAddress = tcpip.LinkAddress(macB)
	s.ep.AddHeader(pkt)
	pkt.GSOOptions = gstack.GSO{Type: gstack.GSOTCPv4, NeedsCsum: true, MSS: 1448, L3HdrLen: 20}
	var l gstack.PacketBufferList
	l.PushBack(pkt)
	if n := testing.AllocsPerRun(500, func() { s.ep.WritePackets(l) }); n != 0 {
		t.Errorf("WritePackets: %.1f allocations", n)
	}
	s.ep.WritePackets(l)
	if len(got.Head) != 66 || gotPay != 8000 || got.Len != 8066 || got.L3Off != 14 || got.L4Off != 34 ||
		got.GSOSize != 1448 || !got.CsumPartial || !got.FixedID || got.Proto != flows.ProtoTCP || got.EtherType != flows.EtherTypeIPv4 {
		t.Errorf("TxPacket: head %d, payload %d, %+v", len(got.Head), gotPay, got)
	}
	if !bytes.Equal(got.Head[:6], macB) || !bytes.Equal(got.Head[6:12], macA) {
		t.Errorf("Ethernet header % x", got.Head[:14])
	}
	st := stats()
	if st.TxPackets != 502 || st.TxGSOPackets != st.TxPackets || st.TxCsumPartial != st.TxPackets || st.TxBytes != st.TxPackets*(66+8000) {
		t.Errorf("tx stats %+v", st)
	}
}

// FuzzDeliverFrame feeds arbitrary frames to a live stack: nothing may
// panic, and every frame is either delivered or dropped under a reason.
func FuzzDeliverFrame(f *testing.F) {
	for _, c := range corpus.Frames() {
		f.Add(c.Frame, false)
		f.Add(c.Frame, true)
	}
	f.Add(udp4Frame(macA, macX, ipX4, ipA4, 1, 7, []byte("hi")), false)
	s, err := New(optsFor("a", macA, addrsA), func(*TxPacket) bool { return true })
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Fuzz(func(t *testing.T, frame []byte, validated bool) {
		before := s.Stats()
		s.DeliverFrame(frame, validated)
		after := s.Stats()
		var dropped uint64
		for r := range NumDropReasons {
			dropped += after.Drops[r] - before.Drops[r]
		}
		if d := after.RxPackets - before.RxPackets + dropped; d != 1 {
			t.Fatalf("frame % x: %d outcomes counted, want 1", frame, d)
		}
	})
}

// TestAddressErrors checks that the library API refuses what it cannot
// serve, with errors, and that a dial to nobody ends with its context.
func TestAddressErrors(t *testing.T) {
	s, _ := newCaptureStack(t, func(o *Options) { o.Addrs = addrsA[:1] }) // IPv4 only
	ctx := context.Background()
	for _, c := range []struct{ op, network, addr string }{
		{"listen", "tcp", "localhost:80"},
		{"listen", "tcp6", ":80"},
		{"listen", "udp", ":80"},
		{"listen", "tcp", "198.18.0.1:http"},
		{"listen", "tcp", "198.18.0.1"},
		{"listen", "tcp", "[fe80::1%eth0]:80"},
		{"dial", "tcp", ":80"},
		{"dial", "tcp4", "[2001:2::b]:80"},
		{"dial", "unix", "/tmp/x"},
		{"listenpacket", "tcp", ":80"},
		{"listenpacket", "udp6", ":80"},
	} {
		var err error
		switch c.op {
		case "listen":
			_, err = s.Listen(c.network, c.addr)
		case "dial":
			_, err = s.Dial(ctx, c.network, c.addr)
		case "listenpacket":
			_, err = s.ListenPacket(c.network, c.addr)
		}
		if err == nil {
			t.Errorf("%s %s %s: no error", c.op, c.network, c.addr)
		}
	}

	// No one answers ARP for .77: the dial ends with its context.
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Dial(ctx, "tcp", "198.18.0.77:80"); err == nil {
		t.Error("dial to an absent host succeeded")
	} else if el := time.Since(start); el > 3*time.Second {
		t.Errorf("dial to an absent host took %v", el)
	}

	// WriteTo takes any net.Addr without panicking, and refuses the wrong
	// family.
	pc, err := s.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP("2001:2::b"), Port: 9}); err == nil {
		t.Error("an IPv6 destination on an IPv4 socket was accepted")
	}
	if _, err := pc.WriteTo([]byte("x"), &net.TCPAddr{IP: net.ParseIP("198.18.0.2"), Port: 9}); err != nil {
		t.Errorf("write to a *net.TCPAddr: %v", err)
	}
	if _, err := pc.WriteTo([]byte("x"), &net.UnixAddr{Name: "/x", Net: "unix"}); err == nil {
		t.Error("a unix address was accepted")
	}
	pc.Close()

	s.Close()
	if _, err := s.Listen("tcp", ":80"); !errors.Is(err, ErrClosed) {
		t.Errorf("listen after close: %v", err)
	}
}

// tcp4Frame builds a TCP/IPv4 frame with a 20-byte header and a correct
// checksum.
func tcp4Frame(sport, dport uint16, seq uint32, flags uint8, data []byte) []byte {
	h := make([]byte, 20, 20+len(data))
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint32(h[4:], seq)
	h[12] = 5 << 4
	h[13] = flags
	binary.BigEndian.PutUint16(h[14:], 65535)
	f := ipv4Frame(macA, macX, ipX4, ipA4, flows.ProtoTCP, append(h, data...))
	var p flows.Packet
	flows.Parse(f, &p)
	offload.SetL4Checksum(f, &p)
	return f
}

// TestAggregatePaths covers aggregates the engine did not validate (good
// and bad checksums, verified here) and one larger than netstack's biggest
// pooled buffer (copied into two views). netstack answers each delivered
// segment to a closed port with a RST whose ACK proves it read the whole
// segment.
func TestAggregatePaths(t *testing.T) {
	s, c := newCaptureStack(t, nil)
	s.AddNeighbor(ipX4, macX) // no ARP before the RSTs
	// agg splits a whole frame into an aggregate as GRO delivers it: Pkt
	// is the parse of the first segment's frame, lengths set for the
	// whole (a frame past 64 KiB does not parse whole).
	agg := func(f []byte, flags offload.AggFlags) *offload.Aggregate {
		first := slices.Clone(f[:min(len(f), 14+40+1448)])
		binary.BigEndian.PutUint16(first[16:], uint16(len(first)-14))
		var p flows.Packet
		flows.Parse(first, &p)
		po := int(p.PayloadOff)
		p.IPLen = uint16(len(f) - 14)
		p.PayloadLen = uint16(len(f) - po)
		segs := [][]byte{}
		for b := f[po:]; len(b) > 0; {
			n := min(len(b), 1448)
			segs = append(segs, b[:n])
			b = b[n:]
		}
		return &offload.Aggregate{Head: f[:po], Segs: segs, Pkt: p, Flags: flags, Handles: make([]uint64, len(segs)), Len: int(p.PayloadLen)}
	}
	rst := func(what string, wantAck uint32) {
		t.Helper()
		x := c.next(t, what, func(f []byte, p *flows.Packet) bool {
			return p.Proto == flows.ProtoTCP && p.TCPFlags&flows.TCPFlagRST != 0
		})
		var p flows.Packet
		flows.Parse(x.frame, &p)
		if ack := p.TCP(x.frame).Ack(); ack != wantAck {
			t.Errorf("%s: RST acks %d, want %d", what, ack, wantAck)
		}
	}
	data := make([]byte, 10*1448)
	for i := range data {
		data[i] = byte(i * 7)
	}

	before := s.Stats()
	s.DeliverAggregate(agg(tcp4Frame(1000, 80, 5000, flows.TCPFlagPSH, data), 0))
	rst("RST for a verified aggregate", 5000+uint32(len(data)))
	bad := tcp4Frame(1000, 80, 5000, flows.TCPFlagACK, data)
	bad[len(bad)-1] ^= 1
	s.DeliverAggregate(agg(bad, 0))
	after := s.Stats()
	if after.RxVerified != before.RxVerified+1 || after.Drops[RxDropCsumBad] != before.Drops[RxDropCsumBad]+1 || after.RxPackets != before.RxPackets+1 {
		t.Errorf("unvalidated aggregates: %+v -> %+v", before, after)
	}

	// 65495 bytes of payload: a 65549-byte frame, past the 64 KiB chunk.
	big := make([]byte, 65495)
	for i := range big {
		big[i] = byte(i)
	}
	f := tcp4Frame(1001, 80, 9000, flows.TCPFlagPSH, big)
	if len(f) <= buffer.MaxChunkSize {
		t.Fatalf("frame of %d bytes fits one chunk", len(f))
	}
	s.DeliverAggregate(agg(f, offload.AggCsumValidated))
	rst("RST for a 64 KiB aggregate", 9000+uint32(len(big)))
	if st := s.Stats(); st.RxBytes != after.RxBytes+uint64(len(f)) {
		t.Errorf("received %d bytes, want %d more than %d", st.RxBytes, len(f), after.RxBytes)
	}
}
