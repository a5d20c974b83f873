package lab_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
)

// up builds a lab with a random test name; Down runs at cleanup in case the
// test does not get to it.
func up(t *testing.T, opts lab.Options) *lab.Lab {
	t.Helper()
	labtest.HoldSlot(t)
	if opts.Name == "" {
		opts.Name = lab.RandomName(labtest.Prefix)
	}
	l, err := lab.Up(opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return l
}

// peerHandle opens netlink inside the lab's netns.
func peerHandle(t *testing.T, l *lab.Lab) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromName(l.Netns)
	if err != nil {
		t.Fatalf("open netns %s: %v", l.Netns, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink in %s: %v", l.Netns, err)
	}
	t.Cleanup(h.Close)
	return h
}

func checkAddrs(t *testing.T, h *netlink.Handle, link netlink.Link, want ...string) {
	t.Helper()
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list addresses of %s: %v", link.Attrs().Name, err)
	}
	have := map[netip.Prefix]bool{}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		have[netip.PrefixFrom(ip.Unmap(), ones)] = true
	}
	for _, w := range want {
		if !have[netip.MustParsePrefix(w)] {
			t.Errorf("%s: address %s missing (have %v)", link.Attrs().Name, w, have)
		}
	}
}

func checkLink(t *testing.T, h *netlink.Handle, name string, queues, mtu int) netlink.Link {
	t.Helper()
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	a := link.Attrs()
	if link.Type() != "veth" || a.NumRxQueues != queues || a.NumTxQueues != queues || a.MTU != mtu {
		t.Errorf("%s: type %s rx queues %d tx queues %d mtu %d, want veth %d %d %d",
			name, link.Type(), a.NumRxQueues, a.NumTxQueues, a.MTU, queues, queues, mtu)
	}
	if a.Flags&net.FlagUp == 0 {
		t.Errorf("%s is not up", name)
	}
	return link
}

// ethtoolK returns the `ethtool -k` features of ifname, run in the peer netns
// when peer is set.
func ethtoolK(t *testing.T, l *lab.Lab, ifname string, peer bool) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ethtool", "-k", ifname)
	if peer {
		cmd = l.PeerCommand(ctx, "ethtool", "-k", ifname)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	f := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			f[strings.TrimSpace(k)], _, _ = strings.Cut(strings.TrimSpace(v), " ")
		}
	}
	return f
}

// echo sends a datagram from the peer netns to the host address and waits for
// the host to echo it back: neighbour resolution and delivery both ways.
func echo(t *testing.T, l *lab.Lab, network string, host netip.Addr) {
	t.Helper()
	srv, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(host, 0)))
	if err != nil {
		t.Fatalf("listen on %s: %v", host, err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			srv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := l.PeerDial(ctx, network, srv.LocalAddr().String())
	if err != nil {
		t.Fatalf("dial %s from the peer netns: %v", srv.LocalAddr(), err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	msg := "xnic lab " + host.String()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("send to %s: %v", host, err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != msg {
		t.Fatalf("echo from %s: %q, %v; want %q", host, buf[:n], err, msg)
	}
}

func gone(t *testing.T, l *lab.Lab, ports int) {
	t.Helper()
	if _, err := os.Lstat("/run/netns/" + l.Netns); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("netns %s still exists (%v)", l.Netns, err)
	}
	for i := range ports {
		if _, err := netlink.LinkByName(lab.HostLinkName(l.Name, i)); err == nil {
			t.Errorf("link %s still exists", lab.HostLinkName(l.Name, i))
		}
	}
}

func TestUpDown(t *testing.T) {
	opts := lab.DefaultOptions()
	opts.Name = ""
	opts.Ports, opts.Queues = 2, 2
	l := up(t, opts)

	if l.Netns != l.Name+"-peer" || len(l.Ports) != 2 {
		t.Fatalf("lab = %+v", l)
	}
	peer := peerHandle(t, l)
	host, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	for i, p := range l.Ports {
		if p.Index != i || p.Host != fmt.Sprintf("%s%d", l.Name, i) || p.Peer != fmt.Sprintf("%sp%d", l.Name, i) {
			t.Errorf("port %d: %+v", i, p)
		}
		hl := checkLink(t, host, p.Host, 2, 1500)
		pl := checkLink(t, peer, p.Peer, 2, 1500)
		if hl.Attrs().Index != p.HostIfindex || pl.Attrs().Index != p.PeerIfindex ||
			hl.Attrs().HardwareAddr.String() != p.HostMAC.String() || pl.Attrs().HardwareAddr.String() != p.PeerMAC.String() {
			t.Errorf("port %d: ifindexes/MACs %+v do not match the links", i, p)
		}
		checkAddrs(t, host, hl, fmt.Sprintf("198.18.%d.1/24", i), fmt.Sprintf("2001:2:0:%x::1/64", i))
		checkAddrs(t, peer, pl, fmt.Sprintf("198.18.%d.2/24", i), fmt.Sprintf("2001:2:0:%x::2/64", i))
		if _, err := peer.LinkByName(p.Host); err == nil {
			t.Errorf("host link %s is in the peer netns", p.Host)
		}
		if _, err := netlink.LinkByName(p.Peer); err == nil {
			t.Errorf("peer link %s is in the caller's netns", p.Peer)
		}

		if _, err := exec.LookPath("ethtool"); err == nil {
			pf := ethtoolK(t, l, p.Peer, true)
			for _, k := range []string{"tx-checksumming", "tcp-segmentation-offload",
				"generic-segmentation-offload", "generic-receive-offload", "large-receive-offload",
				"tx-udp-segmentation"} {
				if pf[k] != "off" {
					t.Errorf("peer %s: ethtool -k %s = %q, want off", p.Peer, k, pf[k])
				}
			}
			if hf := ethtoolK(t, l, p.Host, false); hf["tx-checksumming"] != "on" {
				t.Errorf("host %s: tx-checksumming = %q, want on (HostOffloadsOff is false)", p.Host, hf["tx-checksumming"])
			}
		} else {
			t.Logf("ethtool not installed: offloads checked through Status only")
		}

		echo(t, l, "udp4", p.HostIPv4)
		echo(t, l, "udp6", p.HostIPv6)
	}

	st, err := l.Status()
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for i, ps := range st.Ports {
		h, p := ps.Host, ps.Peer
		if h.Name != l.Ports[i].Host || p.Name != l.Ports[i].Peer || h.OperState != "up" || p.OperState != "up" {
			t.Errorf("status port %d: host %s %s, peer %s %s", i, h.Name, h.OperState, p.Name, p.OperState)
		}
		// Each echo is one datagram each way, after neighbour resolution.
		if p.TxPackets < 2 || h.RxPackets < 2 || h.TxPackets < 2 || p.RxPackets < 2 {
			t.Errorf("status port %d counters: host rx %d tx %d, peer rx %d tx %d, want >= 2",
				i, h.RxPackets, h.TxPackets, p.RxPackets, p.TxPackets)
		}
		if p.Offloads.AnyOn() || !h.Offloads.TxChecksum {
			t.Errorf("status port %d offloads: host %s, peer %s", i, h.Offloads, p.Offloads)
		}
		if h.XDP.Attached || p.XDP.Attached || h.Queues != (lab.Queues{Rx: 2, Tx: 2}) {
			t.Errorf("status port %d: xdp %+v/%+v queues %+v", i, h.XDP, p.XDP, h.Queues)
		}
	}
	if s := st.String(); !strings.Contains(s, l.Ports[1].Peer) || !strings.Contains(s, "198.18.1.2/24") {
		t.Errorf("Status.String lacks port 1:\n%s", s)
	}
	t.Logf("\n%s", st)

	if err := l.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	gone(t, l, 2)
	if err := l.Down(); err != nil {
		t.Errorf("second Down: %v", err)
	}
	if _, err := lab.Open(l.Name); !errors.Is(err, lab.ErrNotFound) {
		t.Errorf("Open after Down: %v, want ErrNotFound", err)
	}
}

func TestUpRefusesExisting(t *testing.T) {
	opts := lab.DefaultOptions()
	opts.Name = ""
	l := labtest.New(t, opts)
	opts.Name = l.Name
	_, err := lab.Up(opts)
	if !errors.Is(err, lab.ErrExists) {
		t.Fatalf("Up over an existing lab: %v, want ErrExists", err)
	}
	want := fmt.Sprintf("run `xnic lab down --name %s`", l.Name)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	// A second lab under another name would share the subnets.
	opts.Name = lab.RandomName(labtest.Prefix)
	if _, err := lab.Up(opts); !errors.Is(err, lab.ErrAddrInUse) ||
		!strings.Contains(err.Error(), "198.18.0.1 already on "+l.Ports[0].Host) {
		t.Errorf("Up of a second lab: %v, want ErrAddrInUse naming %s", err, l.Ports[0].Host)
	}
	gone(t, &lab.Lab{Name: opts.Name, Netns: lab.NetnsName(opts.Name)}, 1)
	// The refusals left the existing lab alone.
	if o, err := lab.Open(l.Name); err != nil || !reflect.DeepEqual(o, l) {
		t.Errorf("Open after the refusals: %+v, %v", o, err)
	}
}

func TestUpUnwindsHalfway(t *testing.T) {
	labtest.HoldSlot(t)
	opts := lab.DefaultOptions()
	opts.Name, opts.Ports = lab.RandomName(labtest.Prefix), 3
	injected := errors.New("injected failure")
	var built []int
	lab.SetHookPortDone(&opts, func(i int) error {
		built = append(built, i)
		// Port 1 is complete in the system when Up fails.
		if _, err := netlink.LinkByName(lab.HostLinkName(opts.Name, i)); err != nil {
			t.Errorf("hook: port %d: %v", i, err)
		}
		if i == 1 {
			return injected
		}
		return nil
	})
	l, err := lab.Up(opts)
	if err == nil {
		l.Down()
		t.Fatal("Up with a failing port 1 succeeded")
	}
	if !errors.Is(err, injected) || !strings.Contains(err.Error(), "port 1") {
		t.Errorf("Up error = %v, want the injected failure at port 1", err)
	}
	if !reflect.DeepEqual(built, []int{0, 1}) {
		t.Errorf("ports built = %v, want [0 1]", built)
	}
	gone(t, &lab.Lab{Name: opts.Name, Netns: lab.NetnsName(opts.Name)}, 3)
}

func TestOpenFindsTheSamePorts(t *testing.T) {
	opts := lab.DefaultOptions()
	opts.Name, opts.Ports = "", 3
	l := labtest.New(t, opts)
	o, err := lab.Open(l.Name)
	if err != nil {
		t.Fatalf("Open(%s): %v", l.Name, err)
	}
	if !reflect.DeepEqual(o, l) {
		t.Errorf("Open = %+v\nUp   = %+v", o, l)
	}
	if _, err := lab.Open(lab.RandomName("xq")); !errors.Is(err, lab.ErrNotFound) {
		t.Errorf("Open of a missing lab: %v, want ErrNotFound", err)
	}
	// Down through the opened lab, as `xnic lab down` does from another process.
	if err := o.Down(); err != nil {
		t.Fatalf("Down of the opened lab: %v", err)
	}
	gone(t, l, 3)
}

func TestDownLeavesForeignLinks(t *testing.T) {
	opts := lab.DefaultOptions()
	opts.Name = ""
	l := labtest.New(t, opts)
	// NAME5 and NAMEp5 follow the naming convention, but both ends sit in
	// the caller's netns: they are not a port of this lab.
	attrs := netlink.NewLinkAttrs()
	attrs.Name = lab.HostLinkName(l.Name, 5)
	foreign := &netlink.Veth{LinkAttrs: attrs, PeerName: lab.PeerLinkName(l.Name, 5), PeerTxQLen: -1}
	if err := netlink.LinkAdd(foreign); err != nil {
		t.Fatalf("add veth %s: %v", foreign.Name, err)
	}
	t.Cleanup(func() { netlink.LinkDel(foreign) })
	if err := l.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	gone(t, l, 1)
	for _, name := range []string{foreign.Name, foreign.PeerName} {
		if _, err := netlink.LinkByName(name); err != nil {
			t.Errorf("Down removed the foreign link %s: %v", name, err)
		}
	}
}

func TestIPv4Only(t *testing.T) {
	opts := lab.DefaultOptions()
	opts.Name, opts.IPv6, opts.PeerOffloadsOff, opts.HostOffloadsOff = "", false, false, true
	l := labtest.New(t, opts)
	p := l.Ports[0]
	if p.HostIPv6.IsValid() || p.PeerIPv6.IsValid() {
		t.Errorf("IPv6 addresses on an IPv4-only lab: %+v", p)
	}
	hl, err := netlink.LinkByName(p.Host)
	if err != nil {
		t.Fatal(err)
	}
	if v6, err := netlink.AddrList(hl, netlink.FAMILY_V6); err != nil || len(v6) != 0 {
		t.Errorf("%s IPv6 addresses = %v, %v; want none", p.Host, v6, err)
	}
	echo(t, l, "udp4", p.HostIPv4)
	st, err := l.Status()
	if err != nil {
		t.Fatal(err)
	}
	if h, pe := st.Ports[0].Host.Offloads, st.Ports[0].Peer.Offloads; h.AnyOn() || !pe.TxChecksum {
		t.Errorf("offloads: host %s (want all off), peer %s (want tx-csum on)", h, pe)
	}
	o, err := lab.Open(l.Name)
	if err != nil || !reflect.DeepEqual(o, l) {
		t.Errorf("Open = %+v, %v; want %+v", o, err, l)
	}
}

func TestInPeer(t *testing.T) {
	opts := lab.DefaultOptions()
	opts.Name = ""
	l := labtest.New(t, opts)
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	err = l.InPeer(func() error {
		if _, err := net.InterfaceByName(l.Ports[0].Peer); err != nil {
			return fmt.Errorf("peer link not visible: %w", err)
		}
		if _, err := net.InterfaceByName(l.Ports[0].Host); err == nil {
			return errors.New("host link visible inside the peer netns")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("InPeer: %v", err)
	}
	sentinel := errors.New("from fn")
	if err := l.InPeer(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("InPeer error = %v, want fn's error", err)
	}
	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !before.Equal(after) {
		t.Errorf("netns changed from %s to %s", before, after)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := l.PeerCommand(ctx, "ip", "-br", "link", "show", l.Ports[0].Peer).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), l.Ports[0].Peer+"@") {
		t.Errorf("PeerCommand ip link: %q, %v", out, err)
	}
}

func TestStatusShowsXDP(t *testing.T) {
	opts := lab.DefaultOptions()
	opts.Name = ""
	l := labtest.New(t, opts)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Logf("remove memlock rlimit (continuing): %v", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.XDP,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 2), // XDP_PASS
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("load XDP program: %v", err)
	}
	defer prog.Close()
	xl, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: l.Ports[0].HostIfindex, Flags: link.XDPDriverMode})
	if err != nil {
		t.Fatalf("attach XDP to %s: %v", l.Ports[0].Host, err)
	}
	defer xl.Close()
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	st, err := l.Status()
	if err != nil {
		t.Fatal(err)
	}
	want := lab.XDPStatus{Attached: true, ProgID: uint32(id), Mode: "drv"}
	if got := st.Ports[0].Host.XDP; got != want {
		t.Errorf("host XDP = %+v, want %+v", got, want)
	}
	if got := st.Ports[0].Peer.XDP; got.Attached {
		t.Errorf("peer XDP = %+v, want none", got)
	}
	if s := st.String(); !strings.Contains(s, fmt.Sprintf("xdp id %d (drv)", id)) {
		t.Errorf("Status.String does not show the XDP program:\n%s", s)
	}
}
