package tests

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/engine/stack"
)

// peerCapture records every frame the peer end of a lab port receives
// (not those it sends), from the moment it is made until the test ends:
// what left the engine's port, as a wire tap would see it.
type peerCapture struct {
	fd     int
	mu     sync.Mutex
	frames [][]byte
	stop   atomic.Bool
	done   chan struct{}
}

func newPeerCapture(t *testing.T, l *lab.Lab, port int) *peerCapture {
	t.Helper()
	c := &peerCapture{fd: -1, done: make(chan struct{})}
	proto := uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8 // network order
	err := l.InPeer(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("af_packet socket: %w", err)
		}
		c.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: l.Ports[port].PeerIfindex}); err != nil {
			return fmt.Errorf("bind af_packet to %s: %w", l.Ports[port].Peer, err)
		}
		tv := unix.NsecToTimeval((20 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		t.Fatal(err)
	}
	go c.read()
	t.Cleanup(func() {
		c.stop.Store(true)
		<-c.done
		unix.Close(c.fd)
	})
	return c
}

func (c *peerCapture) read() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for !c.stop.Load() {
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			continue // the timeout, to look at stop
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		c.mu.Lock()
		c.frames = append(c.frames, bytes.Clone(buf[:n]))
		c.mu.Unlock()
	}
}

// count is how many captured frames match.
func (c *peerCapture) count(match func([]byte) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, f := range c.frames {
		if match(f) {
			n++
		}
	}
	return n
}

// wait waits up to d for a captured frame that matches.
func (c *peerCapture) wait(t *testing.T, d time.Duration, what string, match func([]byte) bool) {
	t.Helper()
	for end := time.Now().Add(d); c.count(match) == 0; {
		if time.Now().After(end) {
			t.Fatalf("%s never reached the peer", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// marked is a UDP frame whose payload is mark, and markedWith matches it.
func marked(t *testing.T, srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, dport uint16, mark string) []byte {
	t.Helper()
	size := max(gen.PayloadOffset(src.Is6())+len(mark), gen.MinSize(src.Is6()))
	f, err := gen.BuildUDP(gen.FrameOptions{Size: size, SrcMAC: srcMAC, DstMAC: dstMAC, SrcIP: src, DstIP: dst,
		SrcPort: 40000, DstPort: dport, Payload: []byte(mark)})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func markedWith(mark string) func([]byte) bool {
	return func(f []byte) bool { return bytes.Contains(f, []byte(mark)) }
}

// arpReply is an ARP reply from sha/spa (also the Ethernet source) to tha/tpa.
func arpReply(sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	f := make([]byte, 60)
	copy(f, tha)
	copy(f[6:], sha)
	binary.BigEndian.PutUint16(f[12:], 0x0806)
	a := f[14:]
	copy(a, []byte{0, 1, 0x08, 0x00, 6, 4, 0, 2})
	s, d := spa.As4(), tpa.As4()
	copy(a[8:], sha)
	copy(a[14:], s[:])
	copy(a[18:], tha)
	copy(a[24:], d[:])
	return f
}

// isARPFrom matches an ARP message whose sender is mac claiming spa.
func isARPFrom(mac net.HardwareAddr, spa netip.Addr) func([]byte) bool {
	s := spa.As4()
	return func(f []byte) bool {
		return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == 0x0806 &&
			bytes.Equal(f[22:28], mac) && bytes.Equal(f[28:32], s[:])
	}
}

// ndMessage is a neighbour discovery message (NS or NA) from mac and src
// to dst with target tgt and, if opt is not 0, a link-layer address option
// of that type holding mac; its checksum is right.
func ndMessage(mac net.HardwareAddr, src, dst netip.Addr, typ byte, tgt netip.Addr, opt byte) []byte {
	n := 24
	if opt != 0 {
		n += 8
	}
	f := make([]byte, 14+40+n)
	d16 := dst.As16()
	copy(f, []byte{0x33, 0x33, d16[12], d16[13], d16[14], d16[15]})
	copy(f[6:], mac)
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	ip := f[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(n))
	ip[6], ip[7] = 58, 255
	s16 := src.As16()
	copy(ip[8:], s16[:])
	copy(ip[24:], d16[:])
	icmp := ip[40:]
	icmp[0] = typ
	if typ == 136 {
		binary.BigEndian.PutUint32(icmp[4:], 0x20000000) // override
	}
	t16 := tgt.As16()
	copy(icmp[8:], t16[:])
	if opt != 0 {
		icmp[24], icmp[25] = opt, 1
		copy(icmp[26:], mac)
	}
	var sum uint32
	for i := 8; i < 40; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	sum += uint32(n) + 58
	for i := 0; i < n; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(icmp[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(icmp[2:], ^uint16(sum))
	return f
}

// isND matches a neighbour discovery message of type typ for target tgt.
func isND(typ byte, tgt netip.Addr) func([]byte) bool {
	t16 := tgt.As16()
	return func(f []byte) bool {
		return len(f) >= 14+40+24 && binary.BigEndian.Uint16(f[12:]) == 0x86dd && f[14+6] == 58 &&
			f[14+40] == typ && bytes.Equal(f[14+40+8:14+40+24], t16[:])
	}
}

// solicitedNode is the solicited-node multicast group of a.
func solicitedNode(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
}

// TestGuestsIsolated is issue 15's attack on guest isolation, on a lab
// port with two stack guests, a and b:
//   - a config giving one guest a rule on another's address is refused by
//     `xnic run`, naming both and the line, and changes nothing;
//   - the engine refuses to attach guests that would take a's or b's
//     traffic (a rule on a's address, b's MAC, a's address, a rule
//     overlapping another guest's rule), naming both;
//   - frames from the peer to b's MAC but a's address are not delivered to
//     a, and are counted;
//   - b's Go API sending forged frames (a's MAC and address, the host
//     port's MAC and 198.18.0.1, an unassigned address, a's address, an ARP
//     reply claiming 198.18.0.1, an NA claiming a's IPv6): none reaches the
//     peer, each is counted by reason, and the peer's neighbour tables keep
//     the truth; b's legitimate frames (its own UDP, a DAD probe, a
//     gratuitous ARP) do reach it;
//   - a guest with spoof_check off sends what it likes;
//   - ARP, NDP, ping and TCP both ways still work for both guests, and
//     their stacks send nothing the checks refuse;
//   - `xnic stats --guests` shows the counters, text and JSON.
func TestGuestsIsolated(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// A config that gives guest db a rule on web's address never starts.
	dir := t.TempDir()
	cfg := "ports:\n  - iface: " + p.Host + "\nguests:\n  - name: web\n    ipv4: [198.18.0.10/24]\n" +
		"  - name: db\n    ipv4: [198.18.0.11/24]\n    rules:\n      - {dst: 198.18.0.0/24, proto: udp, ports: 53}\n"
	os.WriteFile(dir+"/steal.yaml", []byte(cfg), 0o644)
	r := runXnic(t, 20*time.Second, "run", "--config", dir+"/steal.yaml", "--duration", "1s")
	want := "steal.yaml:9: guests[1].rules[0]: rule 198.18.0.0/24 udp 53 matches guest web's address 198.18.0.10 (guests[0].ipv4[0])"
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("overlapping config: exit %d, %q; want %q", r.code, r.stderr, want)
	}
	if out, _ := exec.Command("ip", "-o", "link", "show", p.Host).CombinedOutput(); strings.Contains(string(out), "xdp") {
		t.Fatalf("a refused config left an XDP program on %s", p.Host)
	}

	e := startStackEngine(t, l, true)
	a := attachStackGuest(t, e, l, stackGuestSpec{name: "a", idx: 10, gro: true, tso: true})
	b := attachStackGuest(t, e, l, stackGuestSpec{name: "b", idx: 11, gro: true, tso: true})
	av4, av6 := guestAddrs(a)
	bv4, bv6 := guestAddrs(b)
	amac, bmac := a.Options().MAC, b.Options().MAC
	ag, bg := a.EngineGuest(), b.EngineGuest()
	sock := dir + "/ctl.sock"
	cs, err := e.ServeControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })

	// Attaching what would overlap a or b is refused, naming both.
	pfx := func(a netip.Addr, bits int) netip.Prefix { return netip.PrefixFrom(a, bits) }
	for _, c := range []struct {
		spec engine.GuestSpec
		want string
	}{
		{engine.GuestSpec{Name: "thief", Port: p.Host, Rules: []engine.RuleSpec{{Dst: pfx(av4, 32), Proto: 17, PortLo: 9000, PortHi: 9000}}},
			"attach guest thief: rule 198.18.0.10/32 udp 9000 matches guest a's address 198.18.0.10"},
		{engine.GuestSpec{Name: "mimic", Port: p.Host, MAC: bmac, Addrs: []netip.Prefix{pfx(p.AddrIPv4(20), 24)}},
			"attach guest mimic: mac " + bmac.String() + " is guest b's too"},
		{engine.GuestSpec{Name: "twin", Port: p.Host, Addrs: []netip.Prefix{pfx(av6, 64)}},
			"attach guest twin: address " + av6.String() + " is guest a's too"},
		{engine.GuestSpec{Name: "wide", Port: p.Host, Rules: []engine.RuleSpec{{Dst: netip.MustParsePrefix("198.18.0.0/16"), Proto: 6}}},
			"attach guest wide: rule 198.18.0.0/16 tcp matches guest a's address 198.18.0.10"},
	} {
		if g, err := e.AttachGuest(c.spec, nil); !errors.Is(err, engine.ErrGuestOverlap) || !strings.Contains(err.Error(), c.want) {
			if g != nil {
				e.DetachGuest(g)
			}
			t.Fatalf("attach %s: %v; want %q", c.spec.Name, err, c.want)
		}
	}
	r1, err := e.AttachGuest(engine.GuestSpec{Name: "r1", Port: p.Host,
		Rules: []engine.RuleSpec{{Dst: netip.MustParsePrefix("198.18.0.128/25"), Proto: 17, PortLo: 5000, PortHi: 5999}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.AttachGuest(engine.GuestSpec{Name: "r2", Port: p.Host,
		Rules: []engine.RuleSpec{{Dst: netip.MustParsePrefix("198.18.0.192/26"), Proto: 17, PortLo: 5500, PortHi: 5500}}}, nil)
	if want := "attach guest r2: rule 198.18.0.192/26 udp 5500 overlaps guest r1's rule 198.18.0.128/25 udp 5000-5999"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("attach over r1's rule: %v; want %q", err, want)
	}
	if err := e.DetachGuest(r1); err != nil {
		t.Fatal(err)
	}
	if n := len(e.Guests()); n != 2 {
		t.Fatalf("%d guests attached after the refusals, want a and b", n)
	}

	// From the peer: b's MAC with a's address is steered to a by address,
	// and not delivered; a's MAC is.
	pc, err := a.ListenPacket("udp", net.JoinHostPort(av4.String(), "9000"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got := make(chan string, 64)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- strings.TrimRight(string(buf[:n]), "\x00") // the payload of a minimum-size frame is padded
		}
	}()
	ps := newPeerSender(t, l, 0)
	const wrongMAC = 20
	for i := range wrongMAC {
		ps.send(t, marked(t, p.PeerMAC, bmac, p.PeerIPv4, av4, 9000, fmt.Sprintf("to b's mac %d", i)))
	}
	ps.send(t, marked(t, p.PeerMAC, amac, p.PeerIPv4, av4, 9000, "to a's mac"))
	select {
	case m := <-got:
		if m != "to a's mac" {
			t.Fatalf("a's socket got %q, sent to b's MAC", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a never got the datagram sent to its MAC")
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case m := <-got:
		t.Fatalf("a's socket got %q as well", m)
	default:
	}
	if n := ag.RxWrongMAC.Load(); n != wrongMAC {
		t.Fatalf("a counted %d frames to another MAC, want %d", n, wrongMAC)
	}

	// b's Go API sends forgeries, then legitimate frames; the capture on
	// the peer end must see only the latter.
	capt := newPeerCapture(t, l, 0)
	forged := []struct {
		what  string
		frame []byte
		seen  func([]byte) bool
	}{
		{"a's MAC and address", marked(t, amac, p.PeerMAC, av4, p.PeerIPv4, 9, "forged 1"), markedWith("forged 1")},
		{"the host port's MAC and 198.18.0.1", marked(t, p.HostMAC, p.PeerMAC, p.HostIPv4, p.PeerIPv4, 9, "forged 2"), markedWith("forged 2")},
		{"an unassigned address", marked(t, bmac, p.PeerMAC, p.AddrIPv4(99), p.PeerIPv4, 9, "forged 3"), markedWith("forged 3")},
		{"a's address with b's MAC", marked(t, bmac, p.PeerMAC, av4, p.PeerIPv4, 9, "forged 4"), markedWith("forged 4")},
		{"an ARP reply claiming 198.18.0.1", arpReply(bmac, p.HostIPv4, p.PeerMAC, p.PeerIPv4), isARPFrom(bmac, p.HostIPv4)},
		{"an NA claiming a's IPv6", ndMessage(bmac, bv6, netip.MustParseAddr("ff02::1"), 136, av6, 2), isND(136, av6)},
	}
	for _, f := range forged {
		if err := bg.Send(&engine.WorkRequest{Head: f.frame}); err != nil {
			t.Fatal(err)
		}
	}
	legit := []struct {
		what  string
		frame []byte
		seen  func([]byte) bool
	}{
		{"b's own UDP", marked(t, bmac, p.PeerMAC, bv4, p.PeerIPv4, 9, "legit 1"), markedWith("legit 1")},
		{"b's own UDP over IPv6", marked(t, bmac, p.PeerMAC, bv6, p.PeerIPv6, 9, "legit 2"), markedWith("legit 2")},
		{"a gratuitous ARP", engine.GratuitousARP(bmac, bv4), func(f []byte) bool {
			s := bv4.As4()
			return isARPFrom(bmac, bv4)(f) && bytes.Equal(f[38:42], s[:]) // target = sender: an announcement
		}},
		{"a DAD probe from ::", ndMessage(bmac, netip.IPv6Unspecified(), solicitedNode(bv6), 135, bv6, 0), isND(135, bv6)},
	}
	for _, f := range legit {
		if err := bg.Send(&engine.WorkRequest{Head: f.frame}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range legit {
		capt.wait(t, 10*time.Second, f.what, f.seen)
	}
	time.Sleep(200 * time.Millisecond) // sent before the legitimate ones: had they left, they would be here
	for _, f := range forged {
		if n := capt.count(f.seen); n != 0 {
			t.Errorf("forged frame (%s) reached the peer %d times", f.what, n)
		}
	}
	wantSpoof := engine.SpoofCounts{SrcMAC: 2, SrcIP: 2, ARP: 1, NDP: 1}
	if s := bg.Spoofed(); s != wantSpoof {
		t.Fatalf("b's spoofed sends %+v, want %+v", s, wantSpoof)
	}
	neigh, _ := l.PeerCommand(ctx, "ip", "neigh", "show", p.HostIPv4.String()).CombinedOutput()
	if strings.Contains(string(neigh), bmac.String()) {
		t.Fatalf("the peer believes 198.18.0.1 is at b's MAC: %s", neigh)
	}

	// A guest with spoof checking off is trusted: its forgery leaves.
	free, err := e.AttachGuest(engine.GuestSpec{Name: "router", Port: p.Host, MAC: net.HardwareAddr{0x02, 0x78, 0x6e, 0x69, 0x63, 30},
		Addrs: []netip.Prefix{pfx(p.AddrIPv4(30), 24)}, NoSpoofCheck: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := free.Send(&engine.WorkRequest{Head: marked(t, amac, p.PeerMAC, p.AddrIPv4(99), p.PeerIPv4, 9, "unchecked")}); err != nil {
		t.Fatal(err)
	}
	capt.wait(t, 10*time.Second, "the unchecked guest's forgery", markedWith("unchecked"))
	if err := e.DetachGuest(free); err != nil {
		t.Fatal(err)
	}

	// The guests' own traffic: ARP, NDP, ping and TCP both ways.
	for _, g := range []struct {
		name   string
		v4, v6 netip.Addr
	}{{"a", av4, av6}, {"b", bv4, bv6}} {
		for _, addr := range []netip.Addr{g.v4, g.v6} {
			if out, err := l.PeerCommand(ctx, "ping", "-c", "2", "-i", "0.2", "-W", "2", addr.String()).CombinedOutput(); err != nil {
				t.Fatalf("ping %s %s: %v\n%s", g.name, addr, err, out)
			}
		}
	}
	for i, addr := range []netip.Addr{av4, av6, bv4, bv6} {
		g := a
		if i >= 2 {
			g = b
		}
		if err := bulkErr(ctx, l, g, addr, uint16(5001+i), 4<<20, 4<<20); err != nil {
			t.Fatalf("tcp with %s: %v", addr, err)
		}
	}
	// The guests dial out: they resolve the peer themselves (ARP, NS).
	ln, err := l.PeerListen("tcp", ":7070")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("peer"))
			c.Close()
		}
	}()
	for _, g := range []*stack.Guest{a, b} {
		for _, dst := range []netip.Addr{p.PeerIPv4, p.PeerIPv6} {
			c, err := g.Dial(ctx, "tcp", net.JoinHostPort(dst.String(), "7070"))
			if err != nil {
				t.Fatalf("%s dials %s: %v", g.Options().Name, dst, err)
			}
			buf := make([]byte, 4)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(buf); err != nil || string(buf) != "peer" {
				t.Fatalf("%s reads from %s: %q %v", g.Options().Name, dst, buf, err)
			}
			c.Close()
		}
	}
	if s := ag.Spoofed(); s.Total() != 0 {
		t.Fatalf("a's own stack had sends refused: %+v", s)
	}
	if s := bg.Spoofed(); s != wantSpoof {
		t.Fatalf("b's own stack had sends refused: %+v, want only the forgeries %+v", s, wantSpoof)
	}
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.TxSpoofed != wantSpoof.Total() || st.RxWrongMAC != wrongMAC {
		t.Fatalf("engine stats: %d spoofed, %d to a wrong MAC; want %d and %d", st.TxSpoofed, st.RxWrongMAC, wantSpoof.Total(), wrongMAC)
	}

	// The CLI shows the counters per guest.
	js := runXnic(t, 20*time.Second, "stats", "--guests", "--ctl", sock, "--json")
	var gs []engine.GuestStats
	if err := json.Unmarshal([]byte(js.stdout), &gs); err != nil || js.code != 0 || len(gs) != 2 {
		t.Fatalf("stats --guests --json: exit %d, %v\n%s%s", js.code, err, js.stdout, js.stderr)
	}
	for _, g := range gs {
		switch {
		case !g.SpoofCheck:
			t.Errorf("guest %s: spoof_check false in stats", g.Name)
		case g.Name == "a" && (g.RxWrongMAC != wrongMAC || g.TxSpoofed.Total() != 0):
			t.Errorf("guest a in stats: %+v", g)
		case g.Name == "b" && (g.RxWrongMAC != 0 || g.TxSpoofed != wantSpoof):
			t.Errorf("guest b in stats: %+v", g)
		}
	}
	text := runXnic(t, 20*time.Second, "stats", "--guests", "--ctl", sock)
	if !strings.Contains(text.stdout, "spoofed sends dropped: src_mac 2, src_ip 2, arp 1, ndp 1") || !strings.Contains(text.stdout, "wrong mac") {
		t.Fatalf("stats --guests:\n%s%s", text.stdout, text.stderr)
	}
}
