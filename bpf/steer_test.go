package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/xnic/xnic/engine/lab/labtest"
)

func loadSteerT(t *testing.T) *Steer {
	t.Helper()
	labtest.RequireRoot(t, "load xnic_steer")
	s, err := LoadSteer(DefaultSteerOptions())
	if err != nil {
		t.Fatalf("LoadSteer: %+v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close steer: %v", err)
		}
	})
	return s
}

// TestSteerVerdicts runs xnic_steer over hand-built frames with BPF_PROG_RUN
// and checks each verdict and the one counter it must bump.
func TestSteerVerdicts(t *testing.T) {
	s := loadSteerT(t)
	// Raw mode, without sockets: TCP and UDP match and find no socket.
	if _, err := s.AddCatchAll(0, 0); err != nil {
		t.Fatal(err)
	}

	udp4 := udpFrame(false, 1000, 2000, make([]byte, 18))
	udp6 := udpFrame(true, 1000, 2000, make([]byte, 18))
	icmp4 := append(ethHdr(ethIPv4), ipv4Packet(1, 0, []byte{8, 0, 0, 0, 0, 1, 0, 1})...)
	ns6 := append(ethHdr(ethIPv6), ipv6Packet(58, nil, make([]byte, 24))...)
	// MLD: hop-by-hop (router alert) then ICMPv6.
	hbh := []byte{58, 0, 5, 2, 0, 0, 1, 0}
	mld6 := append(ethHdr(ethIPv6), ipv6Packet(0, hbh, make([]byte, 24))...)
	tcp4 := append(ethHdr(ethIPv4), ipv4Packet(6, 0, make([]byte, 20))...) // data offset 0
	tcp4ok := append(ethHdr(ethIPv4), ipv4Packet(6, 0, append([]byte{0, 1, 0, 2, 11: 0, 12: 5 << 4}, make([]byte, 7)...))...)
	vlanUDP := append(ethHdr(ethIPv4, ethVLAN), udp4[14:]...)
	qinqUDP := append(ethHdr(ethIPv6, ethQinQ, ethVLAN), udp6[14:]...)
	arp := append(ethHdr(ethARP), make([]byte, 28)...)
	// A non-first fragment carries no UDP header: still IP traffic.
	frag4 := append(ethHdr(ethIPv4), ipv4Packet(17, 185, []byte{1, 2, 3})...)

	badIHL := append([]byte{}, udp4...)
	badIHL[14] = 0x44
	badVersion := append([]byte{}, udp6...)
	badVersion[14] = 0x40

	cases := []struct {
		name   string
		frame  []byte
		want   uint32
		bumped func(SteerStats) uint64
	}{
		{"arp", arp, xdpPass, func(s SteerStats) uint64 { return s.PassNonIp }},
		{"icmp4", icmp4, xdpPass, func(s SteerStats) uint64 { return s.PassControl }},
		{"icmp6-nd", ns6, xdpPass, func(s SteerStats) uint64 { return s.PassControl }},
		{"icmp6-mld-hbh", mld6, xdpPass, func(s SteerStats) uint64 { return s.PassControl }},
		{"udp4-no-socket", udp4, xdpPass, func(s SteerStats) uint64 { return s.PassNoSocket }},
		{"udp6-no-socket", udp6, xdpPass, func(s SteerStats) uint64 { return s.PassNoSocket }},
		{"tcp4-no-socket", tcp4ok, xdpPass, func(s SteerStats) uint64 { return s.PassNoSocket }},
		{"vlan-udp4", vlanUDP, xdpPass, func(s SteerStats) uint64 { return s.PassNoSocket }},
		{"qinq-udp6", qinqUDP, xdpPass, func(s SteerStats) uint64 { return s.PassNoSocket }},
		{"frag4-no-l4", frag4, xdpPass, func(s SteerStats) uint64 { return s.RxFragments }},
		{"frag4-no-l4-verdict", frag4, xdpPass, func(s SteerStats) uint64 { return s.PassNoSocket }},
		{"gre-unmatched", append(ethHdr(ethIPv4), ipv4Packet(47, 0, make([]byte, 8))...), xdpPass, func(s SteerStats) uint64 { return s.PassUnmatched }},
		{"gre-unknown-l4", append(ethHdr(ethIPv4), ipv4Packet(47, 0, make([]byte, 8))...), xdpPass, func(s SteerStats) uint64 { return s.RxUnknownL4 }},
		{"eth-only", ethHdr(ethIPv4), xdpDrop, func(s SteerStats) uint64 { return s.DropTruncIpv4 }},
		{"ipv4-truncated", udp4[:14+12], xdpDrop, func(s SteerStats) uint64 { return s.DropTruncIpv4 }},
		{"ipv4-bad-ihl", badIHL, xdpDrop, func(s SteerStats) uint64 { return s.DropBadIpv4 }},
		{"ipv4-ip-length", udp4[:len(udp4)-1], xdpDrop, func(s SteerStats) uint64 { return s.DropIpLength }},
		{"udp4-truncated", append(ethHdr(ethIPv4), ipv4Packet(17, 0, make([]byte, 4))...), xdpDrop, func(s SteerStats) uint64 { return s.DropTruncL4 }},
		{"tcp4-truncated", append(ethHdr(ethIPv4), ipv4Packet(6, 0, make([]byte, 10))...), xdpDrop, func(s SteerStats) uint64 { return s.DropTruncL4 }},
		{"tcp4-bad-offset", tcp4, xdpDrop, func(s SteerStats) uint64 { return s.DropBadTcpOffset }},
		{"ipv6-truncated", udp6[:14+39], xdpDrop, func(s SteerStats) uint64 { return s.DropTruncIpv6 }},
		{"ipv6-bad-version", badVersion, xdpDrop, func(s SteerStats) uint64 { return s.DropBadIpv6 }},
		{"ipv6-ext-truncated", append(ethHdr(ethIPv6), ipv6Packet(0, []byte{58, 0, 5, 2}, nil)...), xdpDrop, func(s SteerStats) uint64 { return s.DropTruncExtHeader }},
		{"vlan-truncated", ethHdr(ethVLAN)[:14], xdpDrop, func(s SteerStats) uint64 { return s.DropTruncVlan }},
		{"vlan-tag-truncated", append(ethHdr(ethVLAN), 0, 1), xdpDrop, func(s SteerStats) uint64 { return s.DropTruncVlan }},
		{"three-vlan-tags", append(ethHdr(ethIPv4, ethQinQ, ethVLAN, ethVLAN), udp4[14:]...), xdpDrop, func(s SteerStats) uint64 { return s.DropTooManyVlans }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, err := s.TotalStats()
			if err != nil {
				t.Fatal(err)
			}
			ret, err := s.Program().Run(&ebpf.RunOptions{Data: c.frame})
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if ret != c.want {
				t.Errorf("verdict %d, want %d", ret, c.want)
			}
			after, err := s.TotalStats()
			if err != nil {
				t.Fatal(err)
			}
			if d := c.bumped(after) - c.bumped(before); d != 1 {
				t.Errorf("expected counter moved by %d, want 1 (before %+v after %+v)", d, before, after)
			}
			if d := after.RxPackets - before.RxPackets; d != 1 {
				t.Errorf("rx_packets moved by %d, want 1", d)
			}
			if d := after.RxBytes - before.RxBytes; d != uint64(len(c.frame)) {
				t.Errorf("rx_bytes moved by %d, want %d", d, len(c.frame))
			}
			if d := after.DroppedMalformed - before.DroppedMalformed; c.want == xdpDrop && d != 1 {
				t.Errorf("dropped_malformed moved by %d, want 1", d)
			}
			if verdicts := after.Verdicts(); verdicts != after.RxPackets {
				t.Errorf("verdict counters sum to %d, rx_packets %d", verdicts, after.RxPackets)
			}
		})
	}
	per, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(per) != 64 {
		t.Fatalf("Stats returned %d queues, want 64", len(per))
	}
	for q := 1; q < len(per); q++ {
		if per[q] != (SteerStats{}) {
			t.Errorf("queue %d counted %+v, want nothing (tests run on queue 0)", q, per[q])
		}
	}
}

const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

func TestSteerRegisterSocketErrors(t *testing.T) {
	s := loadSteerT(t)
	for _, q := range []int{-1, 64} {
		if err := s.RegisterSocket(q, 0); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("RegisterSocket(%d) = %v, want ErrInvalidOptions", q, err)
		}
		if err := s.UnregisterSocket(q); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("UnregisterSocket(%d) = %v, want ErrInvalidOptions", q, err)
		}
	}
	// Not an AF_XDP socket: the kernel refuses it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := s.RegisterSocket(0, int(r.Fd())); err == nil {
		t.Error("RegisterSocket accepted a pipe")
	}
	if err := s.UnregisterSocket(3); err != nil {
		t.Errorf("UnregisterSocket on an empty slot: %v", err)
	}
}

func TestSteerPin(t *testing.T) {
	s := loadSteerT(t)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xnic-test-%08x", rand.Uint32()))
	t.Cleanup(func() { os.RemoveAll(dir) })

	if err := s.Pin(dir); err != nil {
		t.Fatalf("Pin: %v", err)
	}
	if got := s.PinDir(); got != dir {
		t.Errorf("PinDir = %q, want %q", got, dir)
	}
	if err := s.Pin(dir); !errors.Is(err, os.ErrExist) {
		t.Errorf("second Pin = %v, want os.ErrExist", err)
	}
	if len(s.Maps()) != len(pinNames) {
		t.Errorf("Maps() has %d maps, want %d", len(s.Maps()), len(pinNames))
	}
	for name, m := range s.Maps() {
		pinned, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			t.Fatalf("load pinned %s: %v", name, err)
		}
		pi, err1 := pinned.Info()
		mi, err2 := m.Info()
		pinned.Close()
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		pid, _ := pi.ID()
		mid, _ := mi.ID()
		if pid != mid {
			t.Errorf("pinned %s is map %d, want %d", name, pid, mid)
		}
	}
	if pi, _ := s.XSKMap().Info(); pi.Type != ebpf.XSKMap {
		t.Errorf("xsks map type %s, want XSKMap", pi.Type)
	}

	// A second Steer cannot take the same directory while it is in use.
	s2 := loadSteerT(t)
	if err := s2.Pin(dir); !errors.Is(err, os.ErrExist) {
		t.Errorf("Pin over live pins = %v, want os.ErrExist", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("failed Pin of a second Steer removed the directory: %v", err)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir still there after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestSteerRedirectLive attaches xnic_steer to a veth, registers an AF_XDP
// socket on queue 0 and sends frames into it (live frames, or AF_PACKET from
// the peer where the kernel refuses them): UDP is redirected, ICMP is not,
// and after UnregisterSocket UDP goes to the kernel.
func TestSteerRedirectLive(t *testing.T) {
	s := loadSteerT(t)
	lab := newVethLab(t)

	a, err := s.Attach(lab.hostIndex, AttachNative)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if a.Mode() != AttachNative || a.Ifindex() != lab.hostIndex {
		t.Errorf("attachment mode %s ifindex %d", a.Mode(), a.Ifindex())
	}
	xsk := newTestXSK(t, lab.hostIndex, 0)
	if err := s.RegisterSocket(0, xsk); err != nil {
		t.Fatalf("RegisterSocket: %v", err)
	}
	if _, err := s.AddCatchAll(0, 0); err != nil {
		t.Fatalf("AddCatchAll: %v", err)
	}

	g := loadGenT(t, GenOptions{Flows: 4, SrcPortBase: 3000, L4Offset: GenL4OffsetIPv4, SeqOffset: GenL4OffsetIPv4 + 8})
	icmp := append(ethHdr(ethIPv4), ipv4Packet(1, 0, []byte{8, 0, 0xf7, 0xff, 0, 0, 0, 0})...)
	send := func(frame []byte, n uint32) {
		t.Helper()
		lab.sendFrames(t, g, frame, n)
	}
	// xnic_gen rewrites a UDP header at offset 34; an ICMP echo there is
	// rewritten too, but stays ICMP for the steering program.
	send(udpFrame(false, 1, 7, make([]byte, 18)), 1000)
	send(icmp, 100)

	st, err := s.TotalStats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after 1000 UDP + 100 ICMP frames: %+v", st)
	if st.Redirected == 0 || st.Redirected > 1000 {
		t.Errorf("redirected %d, want 1..1000", st.Redirected)
	}
	if st.PassControl == 0 {
		t.Errorf("pass_control 0 after ICMP frames: %+v", st)
	}

	if err := s.UnregisterSocket(0); err != nil {
		t.Fatalf("UnregisterSocket: %v", err)
	}
	send(udpFrame(false, 1, 7, make([]byte, 18)), 100)
	st2, err := s.TotalStats()
	if err != nil {
		t.Fatal(err)
	}
	if st2.Redirected != st.Redirected {
		t.Errorf("redirected moved from %d to %d with no socket", st.Redirected, st2.Redirected)
	}
	if st2.PassNoSocket <= st.PassNoSocket {
		t.Errorf("pass_no_socket did not move after UnregisterSocket: %+v", st2)
	}
	if err := a.Close(); err != nil {
		t.Errorf("detach: %v", err)
	}
	if lab.xdpAttached(t) {
		t.Error("XDP program still attached after Attachment.Close")
	}
}

func TestSteerCloseDetaches(t *testing.T) {
	s := loadSteerT(t)
	lab := newVethLab(t)
	if _, err := s.Attach(lab.hostIndex, AttachAuto); err != nil {
		t.Fatalf("attach: %v", err)
	}
	if !lab.xdpAttached(t) {
		t.Fatal("no XDP program attached")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if lab.xdpAttached(t) {
		t.Error("XDP program still attached after Steer.Close")
	}
	if _, err := s.Attach(lab.hostIndex, AttachAuto); !errors.Is(err, ErrClosed) {
		t.Errorf("Attach after Close = %v, want ErrClosed", err)
	}
	if err := s.RegisterSocket(0, 3); !errors.Is(err, ErrClosed) {
		t.Errorf("RegisterSocket after Close = %v, want ErrClosed", err)
	}
	if err := s.UnregisterSocket(0); !errors.Is(err, ErrClosed) {
		t.Errorf("UnregisterSocket after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats after Close = %v, want ErrClosed", err)
	}
}

// be16 reads a big-endian port.
func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
