// Package corpus builds the shared frame corpus: hand-built frames covering
// every header kind and every flows.Reason, with the verdict the Go parser
// gives each. The parser's tests, the C/Go parse agreement test and the
// stack tests use it; no product package imports it.
package corpus

import (
	"encoding/binary"

	"github.com/xnic/xnic/flows"
)

// Frame is one frame of the shared parser corpus with the verdict the
// Go parser gives it. The same frames go through the XDP program (with
// BPF_PROG_RUN) to check that the Go and C classifiers agree.
//
// The expected fields follow Parse's rules: Family is set once the fixed IP
// header is whole and its version matches the EtherType; Proto once the IP
// layer (IPv6 extension headers included) is whole and valid; ports only
// with ReasonOK; VLAN is the outer VLAN id of a whole tag.
type Frame struct {
	Name  string
	Frame []byte

	Reason  flows.Reason
	Family  uint8
	Proto   uint8
	SrcPort uint16
	DstPort uint16
	VLAN    uint16
}

// Addresses and ports of the corpus frames (benchmarking ranges only).
var (
	MACSrc  = [6]byte{0x02, 0x00, 0x5e, 0x00, 0x00, 0x01}
	MACDst  = [6]byte{0x02, 0x00, 0x5e, 0x00, 0x00, 0x02}
	IPv4Src = [4]byte{198, 18, 0, 2}
	IPv4Dst = [4]byte{198, 18, 0, 1}
	IPv6Src = [16]byte{0x20, 0x01, 0x00, 0x02, 15: 0x02}
	IPv6Dst = [16]byte{0x20, 0x01, 0x00, 0x02, 15: 0x01}
)

// Frames returns the shared parser corpus: about fifty deterministic,
// hand-built frames covering every header kind and every Reason. Each call
// builds fresh frames, so callers may modify them. Frames shorter than
// EthernetLen cannot go through BPF_PROG_RUN (the kernel refuses them).
func Frames() []Frame {
	const (
		sport, dport = 40000, 5201
		tcp, udp     = flows.ProtoTCP, flows.ProtoUDP
	)
	udpPay := []byte("xnic corpus udp payload")
	tcpPay := []byte("xnic corpus tcp payload, a bit longer than the udp one")
	synOpts := []byte{
		2, 4, 0x05, 0xb4, // MSS 1460
		4, 2, // SACK permitted
		8, 10, 0, 0, 0, 1, 0, 0, 0, 0, // timestamps
		1,       // NOP
		3, 3, 7, // window scale 7
	}
	v4udp := func(extra ...func(*V4)) []byte {
		h := V4{Proto: udp}
		for _, f := range extra {
			f(&h)
		}
		return h.Bytes(UDP(sport, dport, udpPay))
	}
	v6 := func(exts []Ext, proto uint8, l4 []byte) []byte {
		return V6{Exts: exts, Proto: proto}.Bytes(l4)
	}
	eth4 := func(ip []byte, tags ...Tag) []byte { return append(Eth(flows.EtherTypeIPv4, tags...), ip...) }
	eth6 := func(ip []byte, tags ...Tag) []byte { return append(Eth(flows.EtherTypeIPv6, tags...), ip...) }
	ok4 := func(name string, frame []byte, proto uint8, sp, dp, vlan uint16) Frame {
		return Frame{Name: name, Frame: frame, Reason: flows.ReasonOK, Family: 4, Proto: proto, SrcPort: sp, DstPort: dp, VLAN: vlan}
	}
	ok6 := func(name string, frame []byte, proto uint8, sp, dp, vlan uint16) Frame {
		return Frame{Name: name, Frame: frame, Reason: flows.ReasonOK, Family: 6, Proto: proto, SrcPort: sp, DstPort: dp, VLAN: vlan}
	}
	bad := func(name string, frame []byte, r flows.Reason, family, proto uint8, vlan uint16) Frame {
		return Frame{Name: name, Frame: frame, Reason: r, Family: family, Proto: proto, VLAN: vlan}
	}
	patch := func(frame []byte, f func([]byte)) []byte { f(frame); return frame }

	hbh := Opts(flows.ProtoHopByHop, 8)
	dst := Opts(flows.ProtoDestOpts, 16)
	rt := Routing(IPv6Dst)
	frag1 := Frag(0, true, 0x1234)
	fragN := Frag(185, true, 0x1234) // 1480 bytes in
	fragLast := Frag(370, false, 0x1234)
	ipv4Frag := func(offset8 uint16, more bool) func(*V4) {
		return func(h *V4) {
			h.FlagsFrag = offset8
			if more {
				h.FlagsFrag |= 0x2000
			}
		}
	}
	nine := make([]Ext, 9)
	eight := make([]Ext, 8)
	for i := range nine {
		nine[i] = Opts(flows.ProtoDestOpts, 8)
	}
	copy(eight, nine)

	// An IPv6/TCP segment whose TCP header (with options) is cut to n bytes,
	// the IPv6 payload length matching.
	v6tcpCut := func(n int) []byte {
		seg := TCP(sport, dport, flows.TCPFlagSYN, synOpts, nil)[:n]
		return eth6(v6(nil, tcp, seg))
	}

	return []Frame{
		// IPv4.
		ok4("ipv4-udp", eth4(v4udp()), udp, sport, dport, 0),
		ok4("ipv4-tcp-syn-opts", eth4(V4{Proto: tcp}.Bytes(TCP(sport, dport, flows.TCPFlagSYN, synOpts, nil))), tcp, sport, dport, 0),
		ok4("ipv4-tcp-ack-payload", eth4(V4{Proto: tcp, FlagsFrag: 0x4000}.Bytes(TCP(sport, dport, flows.TCPFlagACK|flows.TCPFlagPSH, nil, tcpPay))), tcp, sport, dport, 0),
		ok4("ipv4-icmp-echo", eth4(V4{Proto: flows.ProtoICMP}.Bytes(ICMP(8, 0x77, 1, udpPay))), flows.ProtoICMP, 0, 0, 0),
		ok4("ipv4-options-udp", eth4(v4udp(func(h *V4) { h.Opts = []byte{148, 4, 0, 0} })), udp, sport, dport, 0),
		ok4("ipv4-options-max-tcp", eth4(V4{Proto: tcp, Opts: RecordRoute(40)}.Bytes(TCP(sport, dport, flows.TCPFlagACK, nil, tcpPay))), tcp, sport, dport, 0),
		ok4("ipv4-udp-padded", Pad(eth4(V4{Proto: udp}.Bytes(UDP(sport, dport, []byte("hi")))), 60), udp, sport, dport, 0),
		ok4("ipv4-dscp-ecn-udp", eth4(v4udp(func(h *V4) { h.TOS = 46<<2 | 1 })), udp, sport, dport, 0),
		ok4("ipv4-frag-first-udp", eth4(v4udp(ipv4Frag(0, true))), udp, sport, dport, 0),
		bad("ipv4-frag-middle", eth4(V4{Proto: udp, FlagsFrag: 0x2000 | 185}.Bytes(udpPay)), flows.ReasonFragment, 4, udp, 0),
		bad("ipv4-frag-last", eth4(V4{Proto: tcp, FlagsFrag: 370}.Bytes(tcpPay)), flows.ReasonFragment, 4, tcp, 0),
		bad("ipv4-gre", eth4(V4{Proto: 47}.Bytes(make([]byte, 24))), flows.ReasonUnknownL4, 4, 47, 0),
		bad("ipv4-sctp", eth4(V4{Proto: 132}.Bytes(make([]byte, 32))), flows.ReasonUnknownL4, 4, 132, 0),
		bad("ipv4-icmpv6-proto", eth4(V4{Proto: flows.ProtoICMPv6}.Bytes(ICMP(128, 1, 1, nil))), flows.ReasonUnknownL4, 4, flows.ProtoICMPv6, 0),

		// VLANs.
		ok4("vlan-ipv4-udp", eth4(v4udp(), Tag{flows.EtherTypeVLAN, 100}), udp, sport, dport, 100),
		ok4("vlan-pcp-ipv4-udp", eth4(v4udp(), Tag{flows.EtherTypeVLAN, 5<<13 | 1<<12 | 4094}), udp, sport, dport, 4094),
		ok4("qinq-88a8-ipv4-tcp", eth4(V4{Proto: tcp}.Bytes(TCP(sport, dport, flows.TCPFlagACK, nil, tcpPay)), Tag{flows.EtherTypeQinQ, 200}, Tag{flows.EtherTypeVLAN, 300}), tcp, sport, dport, 200),
		ok6("qinq-9100-ipv6-udp", eth6(v6(nil, udp, UDP(sport, dport, udpPay)), Tag{flows.EtherTypeQinQ2, 7}, Tag{flows.EtherTypeVLAN, 8}), udp, sport, dport, 7),
		ok4("qinq-8100-8100-ipv4-udp", eth4(v4udp(), Tag{flows.EtherTypeVLAN, 10}, Tag{flows.EtherTypeVLAN, 20}), udp, sport, dport, 10),
		bad("vlan-3-tags", eth4(v4udp(), Tag{flows.EtherTypeQinQ, 1}, Tag{flows.EtherTypeVLAN, 2}, Tag{flows.EtherTypeVLAN, 3}), flows.ReasonTooManyVLANs, 0, 0, 1),
		bad("vlan-arp", append(Eth(flows.EtherTypeARP, Tag{flows.EtherTypeVLAN, 42}), ARP()...), flows.ReasonNonIP, 0, 0, 42),
		bad("arp", append(Eth(flows.EtherTypeARP), ARP()...), flows.ReasonNonIP, 0, 0, 0),
		bad("lldp", append(Eth(0x88cc), make([]byte, 46)...), flows.ReasonNonIP, 0, 0, 0),
		bad("trunc-vlan", Eth(flows.EtherTypeIPv4, Tag{flows.EtherTypeVLAN, 5})[:16], flows.ReasonTruncVLAN, 0, 0, 0),
		bad("trunc-vlan-inner", Eth(flows.EtherTypeIPv4, Tag{flows.EtherTypeQinQ, 5}, Tag{flows.EtherTypeVLAN, 6})[:20], flows.ReasonTruncVLAN, 0, 0, 5),

		// IPv6.
		ok6("ipv6-udp", eth6(v6(nil, udp, UDP(sport, dport, udpPay))), udp, sport, dport, 0),
		ok6("ipv6-tcp", eth6(v6(nil, tcp, TCP(sport, dport, flows.TCPFlagSYN, synOpts, nil))), tcp, sport, dport, 0),
		ok6("ipv6-icmpv6-echo", eth6(v6(nil, flows.ProtoICMPv6, ICMP(128, 0x77, 1, udpPay))), flows.ProtoICMPv6, 0, 0, 0),
		ok6("ipv6-hbh-udp", eth6(v6([]Ext{hbh}, udp, UDP(sport, dport, udpPay))), udp, sport, dport, 0),
		ok6("ipv6-chain-tcp", eth6(v6([]Ext{hbh, rt, dst, frag1}, tcp, TCP(sport, dport, flows.TCPFlagACK, nil, tcpPay))), tcp, sport, dport, 0),
		ok6("ipv6-frag-first-udp", eth6(v6([]Ext{frag1}, udp, UDP(sport, dport, udpPay))), udp, sport, dport, 0),
		bad("ipv6-frag-middle", eth6(v6([]Ext{fragN}, udp, udpPay)), flows.ReasonFragment, 6, udp, 0),
		bad("ipv6-chain-frag-last", eth6(v6([]Ext{hbh, dst, fragLast}, tcp, tcpPay)), flows.ReasonFragment, 6, tcp, 0),
		ok6("ipv6-destopts-icmpv6", eth6(v6([]Ext{dst}, flows.ProtoICMPv6, ICMP(129, 1, 2, nil))), flows.ProtoICMPv6, 0, 0, 0),
		ok6("ipv6-8-ext-udp", eth6(v6(eight, udp, UDP(sport, dport, udpPay))), udp, sport, dport, 0),
		bad("ipv6-9-ext", eth6(v6(nine, udp, UDP(sport, dport, udpPay))), flows.ReasonTooManyExtHeaders, 6, 0, 0),
		bad("ipv6-no-next", eth6(v6([]Ext{dst}, flows.ProtoNoNext, nil)), flows.ReasonUnknownL4, 6, flows.ProtoNoNext, 0),
		bad("ipv6-icmp-proto", eth6(v6(nil, flows.ProtoICMP, ICMP(8, 1, 1, nil))), flows.ReasonUnknownL4, 6, flows.ProtoICMP, 0),
		ok6("vlan-ipv6-chain-udp", eth6(v6([]Ext{hbh, rt, frag1}, udp, UDP(sport, dport, udpPay)), Tag{flows.EtherTypeVLAN, 3000}), udp, sport, dport, 3000),

		// Truncated and malformed, link and network layers.
		bad("trunc-ethernet", Eth(flows.EtherTypeIPv4)[:10], flows.ReasonTruncEthernet, 0, 0, 0),
		bad("trunc-ipv4", eth4(v4udp())[:14+12], flows.ReasonTruncIPv4, 0, 0, 0),
		bad("trunc-ipv4-options", eth4(V4{Proto: tcp, Opts: RecordRoute(40)}.Bytes(nil))[:14+30], flows.ReasonTruncIPv4, 4, 0, 0),
		bad("bad-ipv4-version", patch(eth4(v4udp()), func(b []byte) { b[14] = 0x65 }), flows.ReasonBadIPv4, 0, 0, 0),
		bad("bad-ipv4-ihl", patch(eth4(v4udp()), func(b []byte) { b[14] = 0x44 }), flows.ReasonBadIPv4, 4, 0, 0),
		bad("bad-ipv4-total-len", patch(eth4(v4udp()), func(b []byte) { binary.BigEndian.PutUint16(b[16:], 12) }), flows.ReasonBadIPv4, 4, 0, 0),
		bad("ipv4-ip-length", patch(eth4(v4udp()), func(b []byte) { binary.BigEndian.PutUint16(b[16:], 1500) }), flows.ReasonIPLength, 4, 0, 0),
		bad("trunc-ipv6", eth6(v6(nil, udp, UDP(sport, dport, udpPay)))[:14+30], flows.ReasonTruncIPv6, 0, 0, 0),
		bad("bad-ipv6-version", patch(eth6(v6(nil, udp, UDP(sport, dport, udpPay))), func(b []byte) { b[14] = 0x40 }), flows.ReasonBadIPv6, 0, 0, 0),
		bad("ipv6-ip-length", patch(eth6(v6(nil, udp, UDP(sport, dport, udpPay))), func(b []byte) { binary.BigEndian.PutUint16(b[18:], 1000) }), flows.ReasonIPLength, 6, 0, 0),
		bad("ipv6-trunc-ext", patch(eth6(v6([]Ext{hbh}, udp, nil)), func(b []byte) { b[14+40+1] = 1 }), flows.ReasonTruncExtHeader, 6, 0, 0),
		bad("ipv6-trunc-frag-ext", eth6(v6(nil, flows.ProtoFragment, []byte{flows.ProtoUDP, 0, 0, 1})), flows.ReasonTruncExtHeader, 6, 0, 0),

		// Truncated and malformed, transport layer.
		bad("ipv4-trunc-tcp", eth4(V4{Proto: tcp}.Bytes(TCP(sport, dport, flows.TCPFlagACK, nil, nil)[:10])), flows.ReasonTruncL4, 4, tcp, 0),
		bad("ipv4-trunc-udp-in-padding", Pad(eth4(V4{Proto: udp}.Bytes(UDP(sport, dport, nil)[:4])), 60), flows.ReasonTruncL4, 4, udp, 0),
		bad("ipv4-trunc-icmp", eth4(V4{Proto: flows.ProtoICMP}.Bytes(ICMP(8, 1, 1, nil)[:6])), flows.ReasonTruncL4, 4, flows.ProtoICMP, 0),
		bad("ipv4-frag-first-trunc-tcp", eth4(V4{Proto: tcp, FlagsFrag: 0x2000}.Bytes(TCP(sport, dport, flows.TCPFlagACK, nil, nil)[:16])), flows.ReasonTruncL4, 4, tcp, 0),
		bad("ipv4-tcp-offset-short", eth4(V4{Proto: tcp}.Bytes(patch(TCP(sport, dport, flows.TCPFlagACK, nil, tcpPay), func(b []byte) { b[12] = 4 << 4 }))), flows.ReasonBadTCPOffset, 4, tcp, 0),
		bad("ipv4-tcp-offset-beyond", eth4(V4{Proto: tcp}.Bytes(patch(TCP(sport, dport, flows.TCPFlagACK, nil, nil), func(b []byte) { b[12] = 15 << 4 }))), flows.ReasonBadTCPOffset, 4, tcp, 0),
		bad("ipv6-trunc-udp", eth6(v6(nil, udp, UDP(sport, dport, nil)[:7])), flows.ReasonTruncL4, 6, udp, 0),
		bad("ipv6-tcp-options-cut", v6tcpCut(24), flows.ReasonBadTCPOffset, 6, tcp, 0),
		bad("ipv6-chain-trunc-tcp", eth6(v6([]Ext{hbh, rt, dst}, tcp, TCP(sport, dport, flows.TCPFlagACK, nil, nil)[:19])), flows.ReasonTruncL4, 6, tcp, 0),
		bad("ipv6-trunc-icmpv6", eth6(v6(nil, flows.ProtoICMPv6, ICMP(128, 1, 1, nil)[:4])), flows.ReasonTruncL4, 6, flows.ProtoICMPv6, 0),
	}
}

// The corpus builders. They favour clarity over speed and allocate freely.

// Tag is one VLAN tag: its TPID and its TCI (PCP, DEI and VID).
type Tag struct{ TPID, TCI uint16 }

// Eth builds an Ethernet header with the given VLAN tags.
func Eth(etype uint16, tags ...Tag) []byte {
	b := make([]byte, 0, 64)
	b = append(b, MACDst[:]...)
	b = append(b, MACSrc[:]...)
	for _, t := range tags {
		b = binary.BigEndian.AppendUint16(b, t.TPID)
		b = binary.BigEndian.AppendUint16(b, t.TCI)
	}
	return binary.BigEndian.AppendUint16(b, etype)
}

// Pad pads a frame with zeros to n bytes, as a NIC pads short frames.
func Pad(frame []byte, n int) []byte {
	for len(frame) < n {
		frame = append(frame, 0)
	}
	return frame
}

// ARP is an ARP request for IPv4Dst.
func ARP() []byte {
	b := []byte{0, 1, 0x08, 0x00, 6, 4, 0, 1}
	b = append(b, MACSrc[:]...)
	b = append(b, IPv4Src[:]...)
	b = append(b, make([]byte, 6)...)
	return append(b, IPv4Dst[:]...)
}

// V4 describes an IPv4 header; Bytes builds it around a payload.
type V4 struct {
	TOS       uint8
	FlagsFrag uint16 // flags<<13 | fragment offset in 8-byte units
	Proto     uint8
	Opts      []byte // padded with EOL to a multiple of 4
}

func (h V4) Bytes(payload []byte) []byte {
	opts := append([]byte(nil), h.Opts...)
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	hl := flows.IPv4MinLen + len(opts)
	b := make([]byte, hl, hl+len(payload))
	b[0] = 4<<4 | uint8(hl/4)
	b[1] = h.TOS
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(payload)))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	binary.BigEndian.PutUint16(b[6:], h.FlagsFrag)
	b[8] = 64
	b[9] = h.Proto
	copy(b[12:], IPv4Src[:])
	copy(b[16:], IPv4Dst[:])
	copy(b[20:], opts)
	binary.BigEndian.PutUint16(b[10:], ^fold(sum(0, b)))
	b = append(b, payload...)
	if h.FlagsFrag&0x3fff == 0 {
		var pseudo uint32
		pseudo = sum(pseudo, IPv4Src[:])
		pseudo = sum(pseudo, IPv4Dst[:])
		pseudo += uint32(h.Proto) + uint32(len(payload))
		l4Checksum(b[hl:], h.Proto, pseudo, 4)
	}
	return b
}

// RecordRoute is an IPv4 record route option of n bytes (n <= 40).
func RecordRoute(n int) []byte {
	o := make([]byte, n)
	o[0], o[1], o[2] = 7, byte(n-1), 4
	return o
}

// Ext is an IPv6 extension header: its type and its bytes, whose first
// byte (the next header) V6 fills in.
type Ext struct {
	typ uint8
	b   []byte
}

// Opts is a hop-by-hop or destination options header of n bytes (a
// multiple of 8), filled with one PadN option.
func Opts(typ uint8, n int) Ext {
	b := make([]byte, n)
	b[1] = byte(n/8 - 1)
	b[2], b[3] = 1, byte(n-4) // PadN
	return Ext{typ, b}
}

// Routing is a segment routing header (type 4) with one segment, left 0.
func Routing(seg [16]byte) Ext {
	b := make([]byte, 8, 24)
	b[1], b[2], b[3], b[4] = 2, 4, 0, 0
	return Ext{flows.ProtoRouting, append(b, seg[:]...)}
}

// Frag is a fragment header; offset8 counts 8-byte units.
func Frag(offset8 uint16, more bool, id uint32) Ext {
	b := make([]byte, 8)
	fo := offset8 << 3
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(b[2:], fo)
	binary.BigEndian.PutUint32(b[4:], id)
	return Ext{flows.ProtoFragment, b}
}

// V6 describes an IPv6 header and its extension headers.
type V6 struct {
	TC       uint8
	HopLimit uint8 // 0: 64
	Exts     []Ext
	Proto    uint8 // the protocol after the extension headers
}

func (h V6) Bytes(l4 []byte) []byte {
	b := make([]byte, flows.IPv6Len, 256)
	binary.BigEndian.PutUint32(b[0:], 6<<28|uint32(h.TC)<<20|0x12345)
	b[7] = 64
	if h.HopLimit != 0 {
		b[7] = h.HopLimit
	}
	copy(b[8:], IPv6Src[:])
	copy(b[24:], IPv6Dst[:])
	next := &b[6]
	fragmented := false
	for _, e := range h.Exts {
		*next = e.typ
		start := len(b)
		b = append(b, e.b...)
		next = &b[start]
		if e.typ == flows.ProtoFragment && binary.BigEndian.Uint16(e.b[2:])&0xfff9 != 0 {
			fragmented = true
		}
	}
	*next = h.Proto
	l4off := len(b)
	b = append(b, l4...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-flows.IPv6Len))
	if !fragmented {
		var pseudo uint32
		pseudo = sum(pseudo, IPv6Src[:])
		pseudo = sum(pseudo, IPv6Dst[:])
		pseudo += uint32(h.Proto) + uint32(len(l4))
		l4Checksum(b[l4off:], h.Proto, pseudo, 6)
	}
	return b
}

// TCP builds a TCP header with options (padded with NOPs to a multiple of
// 4) and a payload. The checksum is filled in by the IP builders.
func TCP(sport, dport uint16, flags uint8, opts, payload []byte) []byte {
	o := append([]byte(nil), opts...)
	for len(o)%4 != 0 {
		o = append([]byte{1}, o...)
	}
	hl := flows.TCPMinLen + len(o)
	b := make([]byte, hl, hl+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 0x01020304)
	if flags&flows.TCPFlagACK != 0 {
		binary.BigEndian.PutUint32(b[8:], 0x0a0b0c0d)
	}
	b[12] = uint8(hl/4) << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	copy(b[20:], o)
	return append(b, payload...)
}

// UDP builds a UDP header and payload.
func UDP(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, flows.UDPLen, flows.UDPLen+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(flows.UDPLen+len(payload)))
	return append(b, payload...)
}

// ICMP builds an ICMP or ICMPv6 echo message.
func ICMP(typ uint8, id, seq uint16, payload []byte) []byte {
	b := make([]byte, flows.ICMPLen, flows.ICMPLen+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	return append(b, payload...)
}

// l4Checksum fills in the checksum of a whole L4 segment, if it is one
// the corpus knows and long enough to hold its checksum field.
func l4Checksum(seg []byte, proto uint8, pseudo uint32, family uint8) {
	at := -1
	switch {
	case proto == flows.ProtoTCP && len(seg) >= flows.TCPMinLen:
		at = 16
	case proto == flows.ProtoUDP && len(seg) >= flows.UDPLen:
		at = 6
	case proto == flows.ProtoICMP && family == 4 && len(seg) >= flows.ICMPLen:
		at, pseudo = 2, 0
	case proto == flows.ProtoICMPv6 && family == 6 && len(seg) >= flows.ICMPLen:
		at = 2
	}
	if at < 0 {
		return
	}
	seg[at], seg[at+1] = 0, 0
	c := ^fold(sum(pseudo, seg))
	if c == 0 && proto == flows.ProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(seg[at:], c)
}

// sum adds b to a one's complement sum as 16-bit big-endian words.
func sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
