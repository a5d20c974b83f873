package lab_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
)

func bridgedOptions(ports int) lab.Options {
	opts := lab.DefaultOptions()
	opts.Name, opts.Ports, opts.PeerBridge = "", ports, true
	return opts
}

// sysctl reads /proc/sys/KEY in the caller's netns.
func sysctl(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + key)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// globalAddrs returns the addresses of link outside fe80::/10.
func globalAddrs(t *testing.T, h *netlink.Handle, link netlink.Link) []netlink.Addr {
	t.Helper()
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list addresses of %s: %v", link.Attrs().Name, err)
	}
	var global []netlink.Addr
	for _, a := range addrs {
		if !a.IP.IsLinkLocalUnicast() {
			global = append(global, a)
		}
	}
	return global
}

func TestBridgeUpStatusDown(t *testing.T) {
	l := up(t, bridgedOptions(2))
	br := l.Bridge
	if br == nil || br.Name != l.Name+"br" || br.IPv4 != netip.MustParseAddr("198.18.0.2") ||
		br.IPv6 != netip.MustParseAddr("2001:2::2") || len(l.Ports) != 2 {
		t.Fatalf("lab = %+v, bridge %+v", l, br)
	}
	peer := peerHandle(t, l)
	host, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()

	bl, err := peer.LinkByName(br.Name)
	if err != nil {
		t.Fatalf("bridge %s: %v", br.Name, err)
	}
	if bl.Type() != "bridge" || bl.Attrs().MTU != 1500 || bl.Attrs().Index != br.Ifindex ||
		bl.Attrs().HardwareAddr.String() != br.MAC.String() || bl.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("bridge link %s: type %s mtu %d index %d mac %s flags %s; want %+v",
			br.Name, bl.Type(), bl.Attrs().MTU, bl.Attrs().Index, bl.Attrs().HardwareAddr, bl.Attrs().Flags, br)
	}
	if br.MAC[0]&0x03 != 0x02 {
		t.Errorf("bridge MAC %s is not unicast, locally administered", br.MAC)
	}
	checkAddrs(t, peer, bl, "198.18.0.2/24", "2001:2::2/64")
	for i, p := range l.Ports {
		if p.PeerIPv4 != br.IPv4 || p.PeerIPv6 != br.IPv6 {
			t.Errorf("port %d peer addresses %s %s, want the bridge's", i, p.PeerIPv4, p.PeerIPv6)
		}
		if a := p.AddrIPv4(10); a != netip.MustParseAddr("198.18.0.10") {
			t.Errorf("port %d AddrIPv4(10) = %s, want 198.18.0.10 on every port", i, a)
		}
		if a := p.AddrIPv6(0x10); a != netip.MustParseAddr("2001:2::10") {
			t.Errorf("port %d AddrIPv6(0x10) = %s, want 2001:2::10", i, a)
		}
		hl := checkLink(t, host, p.Host, 1, 1500)
		pl := checkLink(t, peer, p.Peer, 1, 1500)
		if pl.Attrs().MasterIndex != br.Ifindex {
			t.Errorf("peer end %s: master %d, want bridge %d", p.Peer, pl.Attrs().MasterIndex, br.Ifindex)
		}
		if g := globalAddrs(t, peer, pl); len(g) != 0 {
			t.Errorf("peer end %s carries %v; the addresses belong on the bridge", p.Peer, g)
		}
		if v := sysctl(t, "net/ipv4/conf/"+p.Host+"/arp_ignore"); v != "1" {
			t.Errorf("%s arp_ignore = %s, want 1", p.Host, v)
		}
		if v := sysctl(t, "net/ipv4/conf/"+p.Host+"/arp_announce"); v != "2" {
			t.Errorf("%s arp_announce = %s, want 2", p.Host, v)
		}
		if i == 0 {
			checkAddrs(t, host, hl, "198.18.0.1/24", "2001:2::1/64")
			if p.HostIPv4 != lab.HostIPv4(0) || p.HostIPv6 != lab.HostIPv6(0) {
				t.Errorf("port 0 host addresses %s %s", p.HostIPv4, p.HostIPv6)
			}
		} else if g := globalAddrs(t, host, hl); len(g) != 0 || p.HostIPv4.IsValid() || p.HostIPv6.IsValid() {
			t.Errorf("host end %s: addresses %v (port %+v), want none beyond port 0", p.Host, g, p)
		}
	}

	// The peer reaches the host kernel through port 0, both families, and
	// only port 0 answered ARP for 198.18.0.1.
	echo(t, l, "udp4", l.Ports[0].HostIPv4)
	echo(t, l, "udp6", l.Ports[0].HostIPv6)
	neighs, err := peer.NeighList(br.Ifindex, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neighs {
		if n.IP.Equal(l.Ports[0].HostIPv4.AsSlice()) && n.HardwareAddr.String() != l.Ports[0].HostMAC.String() {
			t.Errorf("peer resolved %s to %s, want port 0's %s", n.IP, n.HardwareAddr, l.Ports[0].HostMAC)
		}
	}
	if port, ok, err := l.LearnedPort(l.Ports[0].HostMAC); err != nil || !ok || port != 0 {
		t.Errorf("LearnedPort(port 0's MAC) = %d, %v, %v; want port 0", port, ok, err)
	}

	st, err := l.Status()
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	b := st.Bridge
	if b == nil {
		t.Fatal("Status of a bridged lab has no bridge")
	}
	wantMembers := []string{l.Ports[0].Peer, l.Ports[1].Peer}
	if b.Name != br.Name || !reflect.DeepEqual(b.Members, wantMembers) || b.STP || b.ForwardDelay != 0 ||
		b.MulticastSnooping || b.AgeingTime != 300*time.Second || b.OperState != "up" || b.MTU != 1500 {
		t.Errorf("bridge status %+v, want members %v, stp off, forward delay 0, snooping off, ageing 5m, up", b, wantMembers)
	}
	if b.Offloads.AnyOn() {
		t.Errorf("bridge offloads %s, want all off (PeerOffloadsOff)", b.Offloads)
	}
	for i, ps := range st.Ports {
		if ps.Peer.Master != br.Name || ps.Host.Master != "" || ps.Peer.Offloads.AnyOn() {
			t.Errorf("status port %d: peer master %q offloads %s, host master %q", i, ps.Peer.Master, ps.Peer.Offloads, ps.Host.Master)
		}
	}
	s := st.String()
	for _, want := range []string{
		"bridge " + br.Name + " (peer), members " + strings.Join(wantMembers, " ") + ", stp off, forward delay 0s",
		"198.18.0.2/24", "master " + br.Name,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("Status.String lacks %q:\n%s", want, s)
		}
	}
	t.Logf("\n%s", s)

	if o, err := lab.Open(l.Name); err != nil || !reflect.DeepEqual(o, l) {
		t.Errorf("Open = %+v (bridge %+v), %v\nwant %+v (bridge %+v)", o, o.Bridge, err, l, l.Bridge)
	}

	// Down deletes the bridge explicitly: with the netns held open here,
	// nothing of the lab may be left in it.
	ns, err := netns.GetFromName(l.Netns)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := l.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	gone(t, l, 2)
	onlyLoopback(t, ns)
}

// onlyLoopback fails unless lo is the only link left in ns.
func onlyLoopback(t *testing.T, ns netns.NsHandle) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, link := range links {
		if link.Attrs().Name != "lo" {
			t.Errorf("link %s (%s) left in the lab's netns", link.Attrs().Name, link.Type())
		}
	}
}

func TestBridgeUnwindsHalfway(t *testing.T) {
	labtest.HoldSlot(t)
	opts := bridgedOptions(3)
	opts.Name = lab.RandomName(labtest.Prefix)
	injected := errors.New("injected failure")
	var ns netns.NsHandle
	lab.SetHookPortDone(&opts, func(i int) error {
		if i != 1 {
			return nil
		}
		var err error
		if ns, err = netns.GetFromName(lab.NetnsName(opts.Name)); err != nil {
			t.Errorf("hook: %v", err)
		}
		return injected
	})
	l, err := lab.Up(opts)
	if err == nil {
		l.Down()
		t.Fatal("Up with a failing port 1 succeeded")
	}
	if !errors.Is(err, injected) {
		t.Errorf("Up error = %v, want the injected failure", err)
	}
	gone(t, &lab.Lab{Name: opts.Name, Netns: lab.NetnsName(opts.Name)}, 3)
	if ns.IsOpen() {
		defer ns.Close()
		onlyLoopback(t, ns)
	}
}

// tap is an AF_PACKET socket on one host end that sees every frame the
// link receives.
type tap struct {
	fd      int
	ifindex int
	name    string
}

func newTap(t *testing.T, p lab.Port) *tap {
	t.Helper()
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatalf("AF_PACKET socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: p.HostIfindex}); err != nil {
		t.Fatalf("bind AF_PACKET to %s: %v", p.Host, err)
	}
	tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return &tap{fd: fd, ifindex: p.HostIfindex, name: p.Host}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// wait reads received frames until match accepts one or d passes; it reports
// whether one matched.
func (tp *tap) wait(t *testing.T, d time.Duration, match func(frame []byte) bool) bool {
	t.Helper()
	buf := make([]byte, 2048)
	for end := time.Now().Add(d); time.Now().Before(end); {
		n, from, err := unix.Recvfrom(tp.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("read %s: %v", tp.name, err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if match(buf[:n]) {
			return true
		}
	}
	return false
}

// send transmits frame on the tap's link, as if a guest on that port sent it.
func (tp *tap) send(t *testing.T, frame []byte) {
	t.Helper()
	to := &unix.SockaddrLinklayer{Ifindex: tp.ifindex, Halen: 6}
	copy(to.Addr[:], frame[:6])
	if err := unix.Sendto(tp.fd, frame, 0, to); err != nil {
		t.Fatalf("send on %s: %v", tp.name, err)
	}
}

// clearError reads and clears the socket's pending error: an AF_PACKET socket
// bound to a link that went down reports ENETDOWN once, on its next call.
func (tp *tap) clearError(t *testing.T) {
	t.Helper()
	if _, err := unix.GetsockoptInt(tp.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil {
		t.Fatal(err)
	}
}

const (
	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	arpRequest    = 1
)

// isARPRequest matches a broadcast ARP request for target.
func isARPRequest(target netip.Addr) func([]byte) bool {
	return func(f []byte) bool {
		if len(f) < 42 || binary.BigEndian.Uint16(f[12:]) != etherTypeARP {
			return false
		}
		arp := f[14:]
		return bytes.Equal(f[:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) &&
			binary.BigEndian.Uint16(arp[6:]) == arpRequest && netip.AddrFrom4([4]byte(arp[24:28])) == target
	}
}

// isIPv4With matches an IPv4 frame to dst MAC whose bytes hold marker.
func isIPv4With(dst net.HardwareAddr, marker string) func([]byte) bool {
	return func(f []byte) bool {
		return len(f) > 14 && bytes.Equal(f[:6], dst) && binary.BigEndian.Uint16(f[12:]) == etherTypeIPv4 &&
			bytes.Contains(f[14:], []byte(marker))
	}
}

// gratuitousARP is the announcement a guest sends from a port after it
// moved there: a broadcast ARP request from mac for its own address.
func gratuitousARP(mac net.HardwareAddr, ip netip.Addr) []byte {
	f := make([]byte, 42)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:], mac)
	binary.BigEndian.PutUint16(f[12:], etherTypeARP)
	arp := f[14:]
	binary.BigEndian.PutUint16(arp[0:], 1) // Ethernet
	binary.BigEndian.PutUint16(arp[2:], etherTypeIPv4)
	arp[4], arp[5] = 6, 4
	binary.BigEndian.PutUint16(arp[6:], arpRequest)
	copy(arp[8:], mac)
	a := ip.As4()
	copy(arp[14:], a[:])
	copy(arp[24:], a[:])
	return f
}

// TestBridgeForwardsByLearnedMAC shows the lab behaves as a switch: the
// peer's broadcast reaches every host port, a unicast frame to a MAC the
// bridge has not learned floods too, and once the MAC has sent a frame from
// one port the bridge forwards to that port alone, and follows it when it
// sends from another. A port whose link goes down loses what was learned on
// it.
func TestBridgeForwardsByLearnedMAC(t *testing.T) {
	l := labtest.New(t, bridgedOptions(2))
	taps := []*tap{newTap(t, l.Ports[0]), newTap(t, l.Ports[1])}
	guest := l.Ports[1].AddrIPv4(77)
	guestMAC := net.HardwareAddr{0x02, 0x78, 0x6e, 0x69, 0x63, 0x77}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := l.PeerDial(ctx, "udp4", netip.AddrPortFrom(guest, 9).String())
	if err != nil {
		t.Fatalf("dial %s from the peer: %v", guest, err)
	}
	defer c.Close()
	n := 0
	send := func() string {
		t.Helper()
		n++
		marker := fmt.Sprintf("xnic-bridge-test-%d.", n)
		if _, err := c.Write([]byte(marker)); err != nil {
			t.Fatalf("send from the peer: %v", err)
		}
		return marker
	}
	// expect checks that frame reaches exactly the ports in want.
	expect := func(what string, match func([]byte) bool, want ...int) {
		t.Helper()
		for i, tp := range taps {
			wanted := false
			for _, w := range want {
				wanted = wanted || w == i
			}
			d := 2 * time.Second
			if !wanted {
				d = 300 * time.Millisecond // after the wanted ports were seen
			}
			if got := tp.wait(t, d, match); got != wanted {
				t.Errorf("%s: seen on port %d = %v, want %v", what, i, got, wanted)
			}
		}
	}

	// No one has the address yet: the peer's ARP request is broadcast
	// through the bridge to every port.
	send()
	expect("ARP request for "+guest.String(), isARPRequest(guest), 0, 1)

	// The peer knows the guest's MAC; the bridge has not seen it send.
	peer := peerHandle(t, l)
	err = peer.NeighSet(&netlink.Neigh{LinkIndex: l.Bridge.Ifindex, Family: unix.AF_INET,
		State: netlink.NUD_PERMANENT, IP: guest.AsSlice(), HardwareAddr: guestMAC})
	if err != nil {
		t.Fatalf("peer neighbour %s: %v", guest, err)
	}
	if _, ok, err := l.LearnedPort(guestMAC); err != nil || ok {
		t.Fatalf("LearnedPort before the guest spoke: %v, %v", ok, err)
	}
	m := send()
	expect("unicast to an unlearned MAC", isIPv4With(guestMAC, m), 0, 1)

	for _, port := range []int{1, 0, 1} {
		taps[port].send(t, gratuitousARP(guestMAC, guest))
		labtest.WaitLearned(t, l, guestMAC, port, 2*time.Second)
		m := send()
		expect(fmt.Sprintf("unicast after the guest spoke on port %d", port), isIPv4With(guestMAC, m), port)
	}

	// Pulling port 1's cable, at either end, flushes what the bridge
	// learned there; the frame floods again, to the port that is left.
	for _, end := range []lab.End{lab.HostEnd, lab.PeerEnd} {
		labtest.LinkDown(t, l, 1, end)
		waitUnlearned(t, l, guestMAC)
		m = send()
		if !taps[0].wait(t, 2*time.Second, isIPv4With(guestMAC, m)) {
			t.Errorf("after port 1's %s end went down, the frame did not flood to port 0", end)
		}
		labtest.LinkUp(t, l, 1, end)
		taps[1].clearError(t) // the ENETDOWN the socket was told of
		taps[1].send(t, gratuitousARP(guestMAC, guest))
		labtest.WaitLearned(t, l, guestMAC, 1, 2*time.Second)
	}
}

// waitUnlearned waits until the bridge of l has no entry for mac.
func waitUnlearned(t *testing.T, l *lab.Lab, mac net.HardwareAddr) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		port, ok, err := l.LearnedPort(mac)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bridge kept %s on port %d", mac, port)
		}
	}
}

func TestLinkDownUpAndDeletePort(t *testing.T) {
	l := labtest.New(t, bridgedOptions(2))
	host, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	peer := peerHandle(t, l)
	operState := func(h *netlink.Handle, name string) string {
		t.Helper()
		link, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return link.Attrs().OperState.String()
	}
	waitState := func(h *netlink.Handle, name, want string) {
		t.Helper()
		for end := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			got := operState(h, name)
			if got == want {
				return
			}
			if time.Now().After(end) {
				t.Fatalf("%s oper state %s, want %s", name, got, want)
			}
		}
	}
	waitNotUp := func(h *netlink.Handle, name string) {
		t.Helper()
		for end := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			got := operState(h, name)
			if got != "up" {
				t.Logf("%s: oper state %s", name, got)
				return
			}
			if time.Now().After(end) {
				t.Fatalf("%s still up after its other end went down", name)
			}
		}
	}
	p := l.Ports[1]
	// The peer end down: the host end loses its carrier, as a NIC port
	// whose switch port is shut.
	labtest.LinkDown(t, l, 1, lab.PeerEnd)
	waitState(peer, p.Peer, "down")
	waitNotUp(host, p.Host)
	labtest.LinkUp(t, l, 1, lab.PeerEnd)
	waitState(host, p.Host, "up")
	// The host end down: the bridge port loses its carrier.
	labtest.LinkDown(t, l, 1, lab.HostEnd)
	waitState(host, p.Host, "down")
	waitNotUp(peer, p.Peer)
	labtest.LinkUp(t, l, 1, lab.HostEnd)
	waitState(peer, p.Peer, "up")

	if err := l.SetLinkDown(2, lab.HostEnd); err == nil || !strings.Contains(err.Error(), "no such port") {
		t.Errorf("SetLinkDown of port 2 of 2: %v", err)
	}

	if err := l.DeletePort(0); err != nil {
		t.Fatalf("DeletePort(0): %v", err)
	}
	if _, err := host.LinkByName(l.Ports[0].Host); err == nil {
		t.Errorf("%s survived DeletePort", l.Ports[0].Host)
	}
	if _, err := peer.LinkByName(l.Ports[0].Peer); err == nil {
		t.Errorf("%s survived DeletePort", l.Ports[0].Peer)
	}
	if err := l.DeletePort(0); err != nil {
		t.Errorf("second DeletePort(0): %v", err)
	}
	// The bridge stays, with its address and MAC, over the port left.
	bl, err := peer.LinkByName(l.Bridge.Name)
	if err != nil {
		t.Fatal(err)
	}
	if bl.Attrs().HardwareAddr.String() != l.Bridge.MAC.String() || bl.Attrs().MTU != 1500 {
		t.Errorf("bridge after losing a port: mac %s mtu %d, want %s 1500", bl.Attrs().HardwareAddr, bl.Attrs().MTU, l.Bridge.MAC)
	}
	checkAddrs(t, peer, bl, "198.18.0.2/24")
	if _, err := lab.Open(l.Name); err == nil || !strings.Contains(err.Error(), "port 0 missing") {
		t.Errorf("Open of a lab without port 0: %v", err)
	}
}

func TestLearnedPortNeedsBridge(t *testing.T) {
	opts := lab.DefaultOptions()
	opts.Name = ""
	l := labtest.New(t, opts)
	if _, _, err := l.LearnedPort(l.Ports[0].HostMAC); !errors.Is(err, lab.ErrNotBridged) {
		t.Errorf("LearnedPort on a lab without a bridge: %v, want ErrNotBridged", err)
	}
	if l.Bridge != nil {
		t.Errorf("Bridge = %+v on a lab without PeerBridge", l.Bridge)
	}
	if p := l.Ports[0]; p.AddrIPv4(10) != netip.MustParseAddr("198.18.0.10") || p.AddrIPv6(0x10) != netip.MustParseAddr("2001:2::10") {
		t.Errorf("port 0 AddrIPv4(10) %s AddrIPv6(0x10) %s", p.AddrIPv4(10), p.AddrIPv6(0x10))
	}
}
