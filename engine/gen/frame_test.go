package gen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	macA = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 1}
	macB = net.HardwareAddr{0x02, 0xbb, 0, 0, 0, 2}
)

func frameOpts(ipv6 bool, size int) FrameOptions {
	o := FrameOptions{Size: size, SrcMAC: macA, DstMAC: macB, SrcIP: DefaultSrcIPv4, DstIP: DefaultDstIPv4, SrcPort: 1234, DstPort: 9}
	if ipv6 {
		o.SrcIP, o.DstIP = DefaultSrcIPv6, DefaultDstIPv6
	}
	return o
}

// checkFrame verifies a BuildUDP frame field by field.
func checkFrame(t *testing.T, f []byte, o FrameOptions) {
	t.Helper()
	ipv6 := o.SrcIP.Is6()
	if len(f) != o.Size {
		t.Fatalf("frame of %d bytes, want %d", len(f), o.Size)
	}
	if !bytes.Equal(f[0:6], o.DstMAC) || !bytes.Equal(f[6:12], o.SrcMAC) {
		t.Errorf("macs % x / % x", f[0:6], f[6:12])
	}
	l4 := UDPOffset(ipv6)
	udpLen := o.Size - l4
	if ipv6 {
		if et := binary.BigEndian.Uint16(f[12:]); et != 0x86dd {
			t.Errorf("ethertype %#x", et)
		}
		ip := f[14:l4]
		if ip[0]>>4 != 6 || ip[6] != 17 || ip[7] != 64 || int(binary.BigEndian.Uint16(ip[4:])) != udpLen {
			t.Errorf("ipv6 header % x", ip)
		}
		if netip.AddrFrom16([16]byte(ip[8:24])) != o.SrcIP || netip.AddrFrom16([16]byte(ip[24:40])) != o.DstIP {
			t.Errorf("ipv6 addresses % x", ip[8:40])
		}
	} else {
		if et := binary.BigEndian.Uint16(f[12:]); et != 0x0800 {
			t.Errorf("ethertype %#x", et)
		}
		ip := f[14:l4]
		if ip[0] != 0x45 || ip[9] != 17 || ip[8] != 64 || int(binary.BigEndian.Uint16(ip[2:])) != 20+udpLen {
			t.Errorf("ipv4 header % x", ip)
		}
		if foldSum(addBytes(0, ip)) != 0xffff {
			t.Errorf("bad ipv4 header checksum % x", ip)
		}
		if netip.AddrFrom4([4]byte(ip[12:16])) != o.SrcIP || netip.AddrFrom4([4]byte(ip[16:20])) != o.DstIP {
			t.Errorf("ipv4 addresses % x", ip[12:20])
		}
	}
	udp := f[l4:]
	if binary.BigEndian.Uint16(udp) != o.SrcPort || binary.BigEndian.Uint16(udp[2:]) != o.DstPort ||
		int(binary.BigEndian.Uint16(udp[4:])) != udpLen {
		t.Errorf("udp header % x", udp[:8])
	}
	if binary.BigEndian.Uint16(udp[6:]) == 0 {
		t.Error("udp checksum is zero")
	}
	if !UDPChecksumValid(o.SrcIP, o.DstIP, udp) {
		t.Errorf("bad udp checksum %#x", binary.BigEndian.Uint16(udp[6:]))
	}
	if !bytes.HasPrefix(udp[8:], o.Payload) {
		t.Errorf("payload % x, want prefix % x", udp[8:], o.Payload)
	}
}

func TestBuildUDP(t *testing.T) {
	for _, ipv6 := range []bool{false, true} {
		for _, size := range []int{MinSize(ipv6), 64, 65, 128, 1514, MaxFrameSize} {
			o := frameOpts(ipv6, size)
			if room := size - PayloadOffset(ipv6); room >= 3 {
				o.Payload = []byte{1, 2, 3}
			}
			f, err := BuildUDP(o)
			if err != nil {
				t.Fatalf("ipv6=%v size %d: %v", ipv6, size, err)
			}
			checkFrame(t, f, o)
		}
	}
	// A frame whose checksum is 0 must carry 0xffff: search a source port
	// that makes it so.
	o := frameOpts(false, 60)
	for p := range 65536 {
		o.SrcPort = uint16(p)
		f, err := BuildUDP(o)
		if err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint16(f[40:]) == 0xffff {
			checkFrame(t, f, o)
			return
		}
	}
	t.Error("no source port gives checksum 0xffff")
}

func TestBuildUDPErrors(t *testing.T) {
	cases := map[string]func(*FrameOptions){
		"src mac":     func(o *FrameOptions) { o.SrcMAC = nil },
		"dst mac":     func(o *FrameOptions) { o.DstMAC = macA[:4] },
		"no ip":       func(o *FrameOptions) { o.DstIP = netip.Addr{} },
		"mixed":       func(o *FrameOptions) { o.DstIP = DefaultDstIPv6 },
		"too small":   func(o *FrameOptions) { o.Size = 59 },
		"too big":     func(o *FrameOptions) { o.Size = MaxFrameSize + 1 },
		"big payload": func(o *FrameOptions) { o.Payload = make([]byte, 19) },
	}
	for name, mod := range cases {
		o := frameOpts(false, 60)
		mod(&o)
		if _, err := BuildUDP(o); err == nil || !strings.HasPrefix(err.Error(), "build udp frame: ") {
			t.Errorf("%s: err %v", name, err)
		}
	}
	o := frameOpts(true, 61)
	if _, err := BuildUDP(o); err == nil {
		t.Error("61-byte IPv6 frame accepted")
	}
}

func FuzzBuildUDP(f *testing.F) {
	f.Add(false, 60, uint16(1), uint16(2), []byte("x"))
	f.Add(true, 1514, uint16(65535), uint16(0), []byte{})
	f.Fuzz(func(t *testing.T, ipv6 bool, size int, sport, dport uint16, payload []byte) {
		o := frameOpts(ipv6, size)
		o.SrcPort, o.DstPort, o.Payload = sport, dport, payload
		fr, err := BuildUDP(o)
		if err != nil {
			if size >= MinSize(ipv6) && size <= MaxFrameSize && len(payload) <= size-PayloadOffset(ipv6) {
				t.Fatalf("valid options refused: %v", err)
			}
			return
		}
		checkFrame(t, fr, o)
		// Any single bit flip in the datagram breaks the checksum.
		udp := fr[UDPOffset(ipv6):]
		i := int(sport) % len(udp)
		if i >= 6 && i < 8 {
			return // flipping the checksum itself may land on the 0/0xffff alias
		}
		udp[i] ^= 1 << (dport % 8)
		if UDPChecksumValid(o.SrcIP, o.DstIP, udp) {
			t.Fatalf("checksum still valid after flipping byte %d", i)
		}
	})
}

func TestOptionsValidate(t *testing.T) {
	ok := DefaultOptions()
	ok.Iface = "veth0"
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cases := []struct {
		mod  func(*Options)
		want string
	}{
		{func(o *Options) { o.Iface = "" }, "gen: iface: must be set"},
		{func(o *Options) { o.Flows = 0 }, "gen: flows: must be 1..4194304, got 0"},
		{func(o *Options) { o.Flows = 1<<22 + 1 }, "gen: flows: must be 1..4194304, got 4194305"},
		{func(o *Options) { o.SrcPortBase, o.Flows = 65535, 300 },
			"gen: flows: 300 flows over 1 source ports need 300 source addresses from 198.18.0.2: the varied address byte would pass 255"},
		{func(o *Options) { o.DstPort = 0 }, "gen: dst port: must be 1..65535, got 0"},
		{func(o *Options) { o.FrameSize = 59 }, "gen: frame size: must be 60..3072, got 59"},
		{func(o *Options) { o.FrameSize, o.IPv6 = 60, true }, "gen: frame size: must be 62..3072, got 60"},
		{func(o *Options) { o.FrameSize = 4000 }, "gen: frame size: must be 60..3072, got 4000"},
		{func(o *Options) { o.Duration = -time.Second }, "gen: duration: must not be negative, got -1s"},
		{func(o *Options) { o.Threads = 0 }, "gen: threads: must be 1..256, got 0"},
		{func(o *Options) { o.BatchSize = 257 }, "gen: batch size: must be 1..256, got 257"},
		{func(o *Options) { o.Repeat = 0 }, "gen: repeat: must be 1..16777216, got 0"},
		{func(o *Options) { o.SrcMAC = net.HardwareAddr{1} }, "gen: src mac: must be 6 bytes, got 1"},
		{func(o *Options) { o.DstIP = DefaultDstIPv6 }, "gen: dst ip: 2001:2::1 is not IPv4"},
		{func(o *Options) { o.IPv6, o.FrameSize, o.SrcIP = true, 80, DefaultSrcIPv4 }, "gen: src ip: 198.18.0.2 is not IPv6"},
	}
	for _, c := range cases {
		o := ok
		c.mod(&o)
		err := o.Validate()
		if err == nil || err.Error() != c.want {
			t.Errorf("got %v, want %q", err, c.want)
			continue
		}
		if !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%v does not match ErrInvalidOptions", err)
		}
	}
	src, dst := Options{IPv6: true}.addresses()
	if src != DefaultSrcIPv6 || dst != DefaultDstIPv6 {
		t.Errorf("IPv6 default addresses %s -> %s", src, dst)
	}
}
