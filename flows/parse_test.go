package flows_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/corpus"
)

// corpusFrame returns the corpus frame with the given name.
func corpusFrame(t testing.TB, name string) []byte {
	t.Helper()
	for _, c := range corpus.Frames() {
		if c.Name == name {
			return c.Frame
		}
	}
	t.Fatalf("no corpus frame %q", name)
	return nil
}

func TestCorpusShape(t *testing.T) {
	frames := corpus.Frames()
	if len(frames) < 40 {
		t.Errorf("corpus has %d frames, want at least 40", len(frames))
	}
	names := map[string]bool{}
	var reasons [flows.NumReasons]int
	for _, c := range frames {
		if names[c.Name] {
			t.Errorf("duplicate corpus name %q", c.Name)
		}
		names[c.Name] = true
		reasons[c.Reason]++
		if len(c.Frame) > 1500+flows.EthernetLen+2*flows.VLANLen {
			t.Errorf("%s: %d bytes, longer than an MTU frame", c.Name, len(c.Frame))
		}
	}
	for r, n := range reasons {
		if n == 0 {
			t.Errorf("no corpus frame for reason %s", flows.Reason(r))
		}
	}
	// Deterministic: two calls give the same bytes, and fresh slices.
	again := corpus.Frames()
	for i := range frames {
		if !bytes.Equal(frames[i].Frame, again[i].Frame) {
			t.Errorf("%s: frame differs between calls", frames[i].Name)
		}
	}
	frames[0].Frame[0] ^= 0xff
	if frames[0].Frame[0] == again[0].Frame[0] {
		t.Error("Corpus shares frame memory between calls")
	}
}

func TestParseCorpus(t *testing.T) {
	for _, c := range corpus.Frames() {
		t.Run(c.Name, func(t *testing.T) {
			var p flows.Packet
			flows.Parse(c.Frame, &p)
			checkInvariants(t, c.Frame, &p)
			if p.Reason != c.Reason {
				t.Errorf("reason %s, want %s", p.Reason, c.Reason)
			}
			if p.Family != c.Family || p.Key.Family != c.Family {
				t.Errorf("family %d (key %d), want %d", p.Family, p.Key.Family, c.Family)
			}
			if p.Proto != c.Proto || p.Key.Proto != c.Proto {
				t.Errorf("proto %d (key %d), want %d", p.Proto, p.Key.Proto, c.Proto)
			}
			if p.Key.SrcPort != c.SrcPort || p.Key.DstPort != c.DstPort {
				t.Errorf("ports %d -> %d, want %d -> %d", p.Key.SrcPort, p.Key.DstPort, c.SrcPort, c.DstPort)
			}
			if p.Key.VLAN != c.VLAN {
				t.Errorf("vlan %d, want %d", p.Key.VLAN, c.VLAN)
			}
			if p.Family == 4 && (p.Key.SrcAddr().String() != "198.18.0.2" || p.Key.DstAddr().String() != "198.18.0.1") {
				t.Errorf("addresses %s -> %s", p.Key.SrcAddr(), p.Key.DstAddr())
			}
			if p.Family == 6 && (p.Key.SrcAddr().String() != "2001:2::2" || p.Key.DstAddr().String() != "2001:2::1") {
				t.Errorf("addresses %s -> %s", p.Key.SrcAddr(), p.Key.DstAddr())
			}
		})
	}
}

// TestParseDetails checks the fields the corpus verdict leaves out.
func TestParseDetails(t *testing.T) {
	type want struct {
		etherType             uint16
		vlans                 [2]uint16
		numVLANs              uint8
		l3Off, l3Len, ipLen   uint16
		tos, ttl              uint8
		fragment, first, opts bool
		ext                   uint8
		l4Off, l4Len          uint16
		payOff, payLen        uint16
		tcpFlags              uint8
	}
	const e = flows.EthernetLen
	udpPay := uint16(len("xnic corpus udp payload"))
	tcpPay := uint16(len("xnic corpus tcp payload, a bit longer than the udp one"))
	tests := []struct {
		name string
		w    want
	}{
		{"ipv4-udp", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 20, ipLen: 20 + 8 + udpPay, ttl: 64,
			l4Off: e + 20, l4Len: 8, payOff: e + 28, payLen: udpPay}},
		{"ipv4-tcp-syn-opts", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 20, ipLen: 20 + 40, ttl: 64,
			l4Off: e + 20, l4Len: 40, payOff: e + 60, payLen: 0, tcpFlags: flows.TCPFlagSYN}},
		{"ipv4-tcp-ack-payload", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 20, ipLen: 40 + tcpPay, ttl: 64,
			l4Off: e + 20, l4Len: 20, payOff: e + 40, payLen: tcpPay, tcpFlags: flows.TCPFlagACK | flows.TCPFlagPSH}},
		{"ipv4-icmp-echo", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 20, ipLen: 28 + udpPay, ttl: 64,
			l4Off: e + 20, l4Len: 8, payOff: e + 28, payLen: udpPay}},
		{"ipv4-options-udp", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 24, ipLen: 24 + 8 + udpPay, ttl: 64, opts: true,
			l4Off: e + 24, l4Len: 8, payOff: e + 32, payLen: udpPay}},
		{"ipv4-options-max-tcp", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 60, ipLen: 80 + tcpPay, ttl: 64, opts: true,
			l4Off: e + 60, l4Len: 20, payOff: e + 80, payLen: tcpPay, tcpFlags: flows.TCPFlagACK}},
		{"ipv4-udp-padded", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 20, ipLen: 30, ttl: 64,
			l4Off: e + 20, l4Len: 8, payOff: e + 28, payLen: 2}},
		{"ipv4-dscp-ecn-udp", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 20, ipLen: 28 + udpPay, tos: 46<<2 | 1, ttl: 64,
			l4Off: e + 20, l4Len: 8, payOff: e + 28, payLen: udpPay}},
		{"ipv4-frag-first-udp", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 20, ipLen: 28 + udpPay, ttl: 64, fragment: true, first: true,
			l4Off: e + 20, l4Len: 8, payOff: e + 28, payLen: udpPay}},
		{"ipv4-frag-middle", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 20, ipLen: 20 + udpPay, ttl: 64, fragment: true,
			payOff: e + 20, payLen: udpPay}},
		{"ipv4-frag-last", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 20, ipLen: 20 + tcpPay, ttl: 64, fragment: true,
			payOff: e + 20, payLen: tcpPay}},
		{"ipv4-gre", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 20, ipLen: 44, ttl: 64,
			l4Off: e + 20, payOff: e + 20, payLen: 24}},
		{"qinq-88a8-ipv4-tcp", want{etherType: flows.EtherTypeIPv4, vlans: [2]uint16{200, 300}, numVLANs: 2, l3Off: e + 8, l3Len: 20,
			ipLen: 40 + tcpPay, ttl: 64, l4Off: e + 28, l4Len: 20, payOff: e + 48, payLen: tcpPay, tcpFlags: flows.TCPFlagACK}},
		{"vlan-pcp-ipv4-udp", want{etherType: flows.EtherTypeIPv4, vlans: [2]uint16{4094}, numVLANs: 1, l3Off: e + 4, l3Len: 20,
			ipLen: 28 + udpPay, ttl: 64, l4Off: e + 24, l4Len: 8, payOff: e + 32, payLen: udpPay}},
		{"vlan-3-tags", want{etherType: flows.EtherTypeVLAN, vlans: [2]uint16{1, 2}, numVLANs: 2}},
		{"trunc-vlan-inner", want{etherType: flows.EtherTypeVLAN, vlans: [2]uint16{5}, numVLANs: 1}},
		{"vlan-arp", want{etherType: flows.EtherTypeARP, vlans: [2]uint16{42}, numVLANs: 1, l3Off: e + 4}},
		{"ipv6-udp", want{etherType: flows.EtherTypeIPv6, l3Off: e, l3Len: 40, ipLen: 48 + udpPay, ttl: 64,
			l4Off: e + 40, l4Len: 8, payOff: e + 48, payLen: udpPay}},
		{"ipv6-chain-tcp", want{etherType: flows.EtherTypeIPv6, l3Off: e, l3Len: 40 + 8 + 24 + 16 + 8, ipLen: 96 + 20 + tcpPay, ttl: 64,
			fragment: true, first: true, ext: 4, l4Off: e + 96, l4Len: 20, payOff: e + 116, payLen: tcpPay, tcpFlags: flows.TCPFlagACK}},
		{"ipv6-chain-frag-last", want{etherType: flows.EtherTypeIPv6, l3Off: e, l3Len: 40 + 8 + 16 + 8, ipLen: 72 + tcpPay, ttl: 64,
			fragment: true, ext: 3, payOff: e + 72, payLen: tcpPay}},
		{"ipv6-8-ext-udp", want{etherType: flows.EtherTypeIPv6, l3Off: e, l3Len: 40 + 64, ipLen: 112 + udpPay, ttl: 64, ext: 8,
			l4Off: e + 104, l4Len: 8, payOff: e + 112, payLen: udpPay}},
		{"ipv6-9-ext", want{etherType: flows.EtherTypeIPv6, l3Off: e, l3Len: 40 + 64, ipLen: 120 + udpPay, ttl: 64, ext: 8}},
		{"ipv6-trunc-ext", want{etherType: flows.EtherTypeIPv6, l3Off: e, l3Len: 40, ipLen: 48, ttl: 64}},
		{"ipv6-no-next", want{etherType: flows.EtherTypeIPv6, l3Off: e, l3Len: 56, ipLen: 56, ttl: 64, ext: 1, l4Off: e + 56, payOff: e + 56}},
		{"trunc-ipv4-options", want{etherType: flows.EtherTypeIPv4, l3Off: e, ttl: 64, opts: true}},
		{"ipv4-ip-length", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 20, ttl: 64}},
		{"ipv4-trunc-udp-in-padding", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 20, ipLen: 24, ttl: 64, l4Off: e + 20}},
		{"ipv4-tcp-offset-short", want{etherType: flows.EtherTypeIPv4, l3Off: e, l3Len: 20, ipLen: 40 + tcpPay, ttl: 64, l4Off: e + 20}},
		{"trunc-ethernet", want{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := corpusFrame(t, tt.name)
			var p flows.Packet
			flows.Parse(frame, &p)
			got := want{p.EtherType, p.VLANs, p.NumVLANs, p.L3Off, p.L3Len, p.IPLen, p.TOS, p.TTL,
				p.Fragment, p.FirstFrag, p.IPOptions, p.ExtHeaders, p.L4Off, p.L4Len, p.PayloadOff, p.PayloadLen, p.TCPFlags}
			if got != tt.w {
				t.Errorf("reason %s\n got %+v\nwant %+v", p.Reason, got, tt.w)
			}
		})
	}
}

// TestParseViews reads ports, payload and addresses back through the header
// views for every frame that parses whole.
func TestParseViews(t *testing.T) {
	for _, c := range corpus.Frames() {
		var p flows.Packet
		flows.Parse(c.Frame, &p)
		if p.Reason != flows.ReasonOK {
			continue
		}
		switch p.Family {
		case 4:
			h := p.IPv4(c.Frame)
			if h.Version() != 4 || h.HeaderLen() != int(p.L3Len) || flows.MapIPv4(h.Src()) != p.Key.Src || h.TOS() != p.TOS {
				t.Errorf("%s: ipv4 view disagrees", c.Name)
			}
		case 6:
			h := p.IPv6(c.Frame)
			if h.Version() != 6 || h.Src() != p.Key.Src || h.Dst() != p.Key.Dst || h.HopLimit() != p.TTL {
				t.Errorf("%s: ipv6 view disagrees", c.Name)
			}
		}
		switch p.Proto {
		case flows.ProtoTCP:
			h := p.TCP(c.Frame)
			if h.SrcPort() != p.Key.SrcPort || h.DstPort() != p.Key.DstPort || h.Flags() != p.TCPFlags || h.DataOffset() != len(h) {
				t.Errorf("%s: tcp view disagrees", c.Name)
			}
		case flows.ProtoUDP:
			h := p.UDP(c.Frame)
			if h.SrcPort() != p.Key.SrcPort || h.DstPort() != p.Key.DstPort || int(h.Length()) != flows.UDPLen+int(p.PayloadLen) {
				t.Errorf("%s: udp view disagrees (length %d, payload %d)", c.Name, h.Length(), p.PayloadLen)
			}
		}
		pay := p.Payload(c.Frame)
		if len(pay) > 0 && !bytes.HasPrefix(pay, []byte("xnic corpus")) && !bytes.HasPrefix(pay, []byte("hi")) {
			t.Errorf("%s: payload %q", c.Name, pay)
		}
	}
}

func TestParsePaddingExcluded(t *testing.T) {
	frame := corpusFrame(t, "ipv4-udp-padded")
	if len(frame) != 60 {
		t.Fatalf("frame is %d bytes, want 60", len(frame))
	}
	for _, pad := range []int{0, 1, 16, 200} {
		f := append(frame[:len(frame):len(frame)], make([]byte, pad)...)
		var p flows.Packet
		flows.Parse(f, &p)
		if p.Reason != flows.ReasonOK || p.PayloadLen != 2 || string(p.Payload(f)) != "hi" {
			t.Errorf("pad %d: reason %s, payload %q", pad, p.Reason, p.Payload(f))
		}
	}
}

// fullIPv6TCP is a VLAN-tagged IPv6/TCP frame with an extension header
// chain, TCP options and a payload.
func fullIPv6TCP() []byte {
	opts := []byte{2, 4, 0x05, 0xb4, 1, 1, 4, 2}
	seg := corpus.TCP(443, 50000, flows.TCPFlagACK|flows.TCPFlagPSH, opts, []byte("hello, parser"))
	ip := corpus.V6{Exts: []corpus.Ext{corpus.Opts(flows.ProtoHopByHop, 8), corpus.Routing(corpus.IPv6Dst), corpus.Opts(flows.ProtoDestOpts, 16)}, Proto: flows.ProtoTCP}.Bytes(seg)
	return append(corpus.Eth(flows.EtherTypeIPv6, corpus.Tag{TPID: flows.EtherTypeVLAN, TCI: 77}), ip...)
}

// TestParseEveryPrefix cuts a full frame at every length. Cut as a wire
// would cut it, the IP length no longer fits; cut with the IPv6 payload
// length adjusted, every layer's own truncation shows.
func TestParseEveryPrefix(t *testing.T) {
	full := fullIPv6TCP()
	var p flows.Packet
	flows.Parse(full, &p)
	if p.Reason != flows.ReasonOK || p.ExtHeaders != 3 || p.L4Len != 28 || p.Key.DstPort != 50000 || p.Key.VLAN != 77 {
		t.Fatalf("full frame: %+v", p)
	}
	const l3 = flows.EthernetLen + flows.VLANLen
	payloadOff := int(p.PayloadOff)
	for n := 0; n < len(full); n++ {
		frame := full[:n:n]
		flows.Parse(frame, &p)
		checkInvariants(t, frame, &p)
		var want flows.Reason
		switch {
		case n < flows.EthernetLen:
			want = flows.ReasonTruncEthernet
		case n < l3:
			want = flows.ReasonTruncVLAN
		case n < l3+flows.IPv6Len:
			want = flows.ReasonTruncIPv6
		default:
			want = flows.ReasonIPLength
		}
		if p.Reason != want {
			t.Errorf("cut at %d: reason %s, want %s", n, p.Reason, want)
		}

		if n < l3+flows.IPv6Len {
			continue
		}
		// The same cut, with a payload length that agrees with it.
		fixed := append([]byte(nil), frame...)
		binary.BigEndian.PutUint16(fixed[l3+4:], uint16(n-l3-flows.IPv6Len))
		flows.Parse(fixed, &p)
		checkInvariants(t, fixed, &p)
		switch {
		case n < l3+flows.IPv6Len+8+24+16:
			want = flows.ReasonTruncExtHeader
		case n < l3+flows.IPv6Len+48+flows.TCPMinLen:
			want = flows.ReasonTruncL4
		case n < payloadOff:
			want = flows.ReasonBadTCPOffset // options cut off: the offset points past the segment
		default:
			want = flows.ReasonOK
		}
		if p.Reason != want {
			t.Errorf("cut at %d, length fixed: reason %s, want %s", n, p.Reason, want)
		}
		if want == flows.ReasonOK && p.PayloadLen != uint16(n-payloadOff) {
			t.Errorf("cut at %d, length fixed: payload %d, want %d", n, p.PayloadLen, n-payloadOff)
		}
	}
}

// TestParseResets parses into a Packet already full of another frame.
func TestParseResets(t *testing.T) {
	frames := corpus.Frames()
	for _, a := range frames {
		var dirty flows.Packet
		flows.Parse(fullIPv6TCP(), &dirty)
		dirty.Fragment, dirty.FirstFrag, dirty.IPOptions = true, true, true
		flows.Parse(a.Frame, &dirty)
		var clean flows.Packet
		flows.Parse(a.Frame, &clean)
		if dirty != clean {
			t.Errorf("%s: parse into a used Packet differs:\n%+v\n%+v", a.Name, dirty, clean)
		}
	}
}

func TestParseOddInputs(t *testing.T) {
	flows.Parse(corpusFrame(t, "ipv4-udp"), nil) // must not panic

	var p flows.Packet
	flows.Parse(nil, &p)
	if p.Reason != flows.ReasonTruncEthernet {
		t.Errorf("nil frame: reason %s", p.Reason)
	}

	// A frame longer than MaxFrameLen is parsed as if cut there.
	big := make([]byte, flows.MaxFrameLen+100)
	ip := corpus.V4{Proto: flows.ProtoUDP}.Bytes(corpus.UDP(1, 2, make([]byte, 60000)))
	copy(big, corpus.Eth(flows.EtherTypeIPv4))
	copy(big[flows.EthernetLen:], ip)
	flows.Parse(big, &p)
	checkInvariants(t, big, &p)
	if p.Reason != flows.ReasonOK || p.PayloadLen != 60000 {
		t.Errorf("jumbo frame: reason %s, payload %d", p.Reason, p.PayloadLen)
	}
	binary.BigEndian.PutUint16(big[flows.EthernetLen+2:], 0xffff)
	flows.Parse(big, &p)
	checkInvariants(t, big, &p)
	if p.Reason != flows.ReasonIPLength {
		t.Errorf("ip length 65535 at offset 14: reason %s, want %s", p.Reason, flows.ReasonIPLength)
	}
}

func TestParseAllocs(t *testing.T) {
	var p flows.Packet
	for _, c := range corpus.Frames() {
		frame := c.Frame
		if n := testing.AllocsPerRun(100, func() { flows.Parse(frame, &p) }); n != 0 {
			t.Errorf("%s: %v allocs per Parse, want 0", c.Name, n)
		}
	}
}

func TestReasonStrings(t *testing.T) {
	seen := map[string]bool{}
	for r := flows.Reason(0); int(r) < flows.NumReasons; r++ {
		s := r.String()
		if s == "" || s == "reason(?)" || seen[s] {
			t.Errorf("reason %d: name %q", r, s)
		}
		seen[s] = true
	}
	if flows.Reason(flows.NumReasons).String() != "reason(?)" {
		t.Errorf("out of range reason: %q", flows.Reason(flows.NumReasons).String())
	}
	for _, r := range []flows.Reason{flows.ReasonOK, flows.ReasonNonIP, flows.ReasonUnknownL4, flows.ReasonFragment} {
		if r.Malformed() {
			t.Errorf("%s counted as malformed", r)
		}
	}
	for _, r := range []flows.Reason{flows.ReasonTruncEthernet, flows.ReasonTooManyVLANs, flows.ReasonIPLength, flows.ReasonBadTCPOffset, flows.ReasonTooManyExtHeaders} {
		if !r.Malformed() {
			t.Errorf("%s not counted as malformed", r)
		}
	}
}

// TestParseEveryPrefixIPv4 cuts a QinQ IPv4/TCP frame with IP options at
// every length.
func TestParseEveryPrefixIPv4(t *testing.T) {
	seg := corpus.TCP(1, 2, flows.TCPFlagSYN, []byte{2, 4, 0x05, 0xb4}, []byte("payload"))
	ip := corpus.V4{Proto: flows.ProtoTCP, Opts: corpus.RecordRoute(11)}.Bytes(seg)
	full := append(corpus.Eth(flows.EtherTypeIPv4, corpus.Tag{TPID: flows.EtherTypeQinQ, TCI: 1}, corpus.Tag{TPID: flows.EtherTypeVLAN, TCI: 2}), ip...)
	const l3 = flows.EthernetLen + 2*flows.VLANLen
	var p flows.Packet
	flows.Parse(full, &p)
	if p.Reason != flows.ReasonOK || p.L3Len != 32 || !p.IPOptions || p.L4Len != 24 {
		t.Fatalf("full frame: %+v", p)
	}
	for n := 0; n < len(full); n++ {
		frame := full[:n:n]
		flows.Parse(frame, &p)
		checkInvariants(t, frame, &p)
		var want flows.Reason
		switch {
		case n < flows.EthernetLen:
			want = flows.ReasonTruncEthernet
		case n < l3:
			want = flows.ReasonTruncVLAN
		case n < l3+32:
			want = flows.ReasonTruncIPv4
		default:
			want = flows.ReasonIPLength
		}
		if p.Reason != want {
			t.Errorf("cut at %d: reason %s, want %s", n, p.Reason, want)
		}
		if want == flows.ReasonTruncIPv4 && n >= l3+flows.IPv4MinLen && (p.Family != 4 || !p.IPOptions || p.L3Len != 0) {
			t.Errorf("cut at %d in the options: %+v", n, p)
		}
	}
}
