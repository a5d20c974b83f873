package flows

import "encoding/binary"

// CorpusFrame is one frame of the shared parser corpus with the verdict the
// Go parser gives it. The same frames go through the XDP program (with
// BPF_PROG_RUN) to check that the Go and C classifiers agree.
//
// The expected fields follow Parse's rules: Family is set once the fixed IP
// header is whole and its version matches the EtherType; Proto once the IP
// layer (IPv6 extension headers included) is whole and valid; ports only
// with ReasonOK; VLAN is the outer VLAN id of a whole tag.
type CorpusFrame struct {
	Name  string
	Frame []byte

	Reason  Reason
	Family  uint8
	Proto   uint8
	SrcPort uint16
	DstPort uint16
	VLAN    uint16
}

// Addresses and ports of the corpus frames (benchmarking ranges only).
var (
	corpusMACSrc  = [6]byte{0x02, 0x00, 0x5e, 0x00, 0x00, 0x01}
	corpusMACDst  = [6]byte{0x02, 0x00, 0x5e, 0x00, 0x00, 0x02}
	corpusIPv4Src = [4]byte{198, 18, 0, 2}
	corpusIPv4Dst = [4]byte{198, 18, 0, 1}
	corpusIPv6Src = [16]byte{0x20, 0x01, 0x00, 0x02, 15: 0x02}
	corpusIPv6Dst = [16]byte{0x20, 0x01, 0x00, 0x02, 15: 0x01}
)

// Corpus returns the shared parser corpus: about fifty deterministic,
// hand-built frames covering every header kind and every Reason. Each call
// builds fresh frames, so callers may modify them. Frames shorter than
// EthernetLen cannot go through BPF_PROG_RUN (the kernel refuses them).
func Corpus() []CorpusFrame {
	const (
		sport, dport = 40000, 5201
		tcp, udp     = ProtoTCP, ProtoUDP
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
	v4udp := func(extra ...func(*cV4)) []byte {
		h := cV4{proto: udp}
		for _, f := range extra {
			f(&h)
		}
		return h.bytes(cUDP(sport, dport, udpPay))
	}
	v6 := func(exts []cExt, proto uint8, l4 []byte) []byte {
		return cV6{exts: exts, proto: proto}.bytes(l4)
	}
	eth4 := func(ip []byte, tags ...cTag) []byte { return append(cEth(EtherTypeIPv4, tags...), ip...) }
	eth6 := func(ip []byte, tags ...cTag) []byte { return append(cEth(EtherTypeIPv6, tags...), ip...) }
	ok4 := func(name string, frame []byte, proto uint8, sp, dp, vlan uint16) CorpusFrame {
		return CorpusFrame{Name: name, Frame: frame, Reason: ReasonOK, Family: 4, Proto: proto, SrcPort: sp, DstPort: dp, VLAN: vlan}
	}
	ok6 := func(name string, frame []byte, proto uint8, sp, dp, vlan uint16) CorpusFrame {
		return CorpusFrame{Name: name, Frame: frame, Reason: ReasonOK, Family: 6, Proto: proto, SrcPort: sp, DstPort: dp, VLAN: vlan}
	}
	bad := func(name string, frame []byte, r Reason, family, proto uint8, vlan uint16) CorpusFrame {
		return CorpusFrame{Name: name, Frame: frame, Reason: r, Family: family, Proto: proto, VLAN: vlan}
	}
	patch := func(frame []byte, f func([]byte)) []byte { f(frame); return frame }

	hbh := cOpts(ProtoHopByHop, 8)
	dst := cOpts(ProtoDestOpts, 16)
	rt := cRouting(corpusIPv6Dst)
	frag1 := cFrag(0, true, 0x1234)
	fragN := cFrag(185, true, 0x1234) // 1480 bytes in
	fragLast := cFrag(370, false, 0x1234)
	ipv4Frag := func(offset8 uint16, more bool) func(*cV4) {
		return func(h *cV4) {
			h.flagsFrag = offset8
			if more {
				h.flagsFrag |= 0x2000
			}
		}
	}
	nine := make([]cExt, 9)
	eight := make([]cExt, 8)
	for i := range nine {
		nine[i] = cOpts(ProtoDestOpts, 8)
	}
	copy(eight, nine)

	// An IPv6/TCP segment whose TCP header (with options) is cut to n bytes,
	// the IPv6 payload length matching.
	v6tcpCut := func(n int) []byte {
		seg := cTCP(sport, dport, TCPFlagSYN, synOpts, nil)[:n]
		return eth6(v6(nil, tcp, seg))
	}

	return []CorpusFrame{
		// IPv4.
		ok4("ipv4-udp", eth4(v4udp()), udp, sport, dport, 0),
		ok4("ipv4-tcp-syn-opts", eth4(cV4{proto: tcp}.bytes(cTCP(sport, dport, TCPFlagSYN, synOpts, nil))), tcp, sport, dport, 0),
		ok4("ipv4-tcp-ack-payload", eth4(cV4{proto: tcp, flagsFrag: 0x4000}.bytes(cTCP(sport, dport, TCPFlagACK|TCPFlagPSH, nil, tcpPay))), tcp, sport, dport, 0),
		ok4("ipv4-icmp-echo", eth4(cV4{proto: ProtoICMP}.bytes(cICMP(8, 0x77, 1, udpPay))), ProtoICMP, 0, 0, 0),
		ok4("ipv4-options-udp", eth4(v4udp(func(h *cV4) { h.opts = []byte{148, 4, 0, 0} })), udp, sport, dport, 0),
		ok4("ipv4-options-max-tcp", eth4(cV4{proto: tcp, opts: cRecordRoute(40)}.bytes(cTCP(sport, dport, TCPFlagACK, nil, tcpPay))), tcp, sport, dport, 0),
		ok4("ipv4-udp-padded", cPad(eth4(cV4{proto: udp}.bytes(cUDP(sport, dport, []byte("hi")))), 60), udp, sport, dport, 0),
		ok4("ipv4-dscp-ecn-udp", eth4(v4udp(func(h *cV4) { h.tos = 46<<2 | 1 })), udp, sport, dport, 0),
		ok4("ipv4-frag-first-udp", eth4(v4udp(ipv4Frag(0, true))), udp, sport, dport, 0),
		bad("ipv4-frag-middle", eth4(cV4{proto: udp, flagsFrag: 0x2000 | 185}.bytes(udpPay)), ReasonFragment, 4, udp, 0),
		bad("ipv4-frag-last", eth4(cV4{proto: tcp, flagsFrag: 370}.bytes(tcpPay)), ReasonFragment, 4, tcp, 0),
		bad("ipv4-gre", eth4(cV4{proto: 47}.bytes(make([]byte, 24))), ReasonUnknownL4, 4, 47, 0),
		bad("ipv4-sctp", eth4(cV4{proto: 132}.bytes(make([]byte, 32))), ReasonUnknownL4, 4, 132, 0),
		bad("ipv4-icmpv6-proto", eth4(cV4{proto: ProtoICMPv6}.bytes(cICMP(128, 1, 1, nil))), ReasonUnknownL4, 4, ProtoICMPv6, 0),

		// VLANs.
		ok4("vlan-ipv4-udp", eth4(v4udp(), cTag{EtherTypeVLAN, 100}), udp, sport, dport, 100),
		ok4("vlan-pcp-ipv4-udp", eth4(v4udp(), cTag{EtherTypeVLAN, 5<<13 | 1<<12 | 4094}), udp, sport, dport, 4094),
		ok4("qinq-88a8-ipv4-tcp", eth4(cV4{proto: tcp}.bytes(cTCP(sport, dport, TCPFlagACK, nil, tcpPay)), cTag{EtherTypeQinQ, 200}, cTag{EtherTypeVLAN, 300}), tcp, sport, dport, 200),
		ok6("qinq-9100-ipv6-udp", eth6(v6(nil, udp, cUDP(sport, dport, udpPay)), cTag{EtherTypeQinQ2, 7}, cTag{EtherTypeVLAN, 8}), udp, sport, dport, 7),
		ok4("qinq-8100-8100-ipv4-udp", eth4(v4udp(), cTag{EtherTypeVLAN, 10}, cTag{EtherTypeVLAN, 20}), udp, sport, dport, 10),
		bad("vlan-3-tags", eth4(v4udp(), cTag{EtherTypeQinQ, 1}, cTag{EtherTypeVLAN, 2}, cTag{EtherTypeVLAN, 3}), ReasonTooManyVLANs, 0, 0, 1),
		bad("vlan-arp", append(cEth(EtherTypeARP, cTag{EtherTypeVLAN, 42}), cARP()...), ReasonNonIP, 0, 0, 42),
		bad("arp", append(cEth(EtherTypeARP), cARP()...), ReasonNonIP, 0, 0, 0),
		bad("lldp", append(cEth(0x88cc), make([]byte, 46)...), ReasonNonIP, 0, 0, 0),
		bad("trunc-vlan", cEth(EtherTypeIPv4, cTag{EtherTypeVLAN, 5})[:16], ReasonTruncVLAN, 0, 0, 0),
		bad("trunc-vlan-inner", cEth(EtherTypeIPv4, cTag{EtherTypeQinQ, 5}, cTag{EtherTypeVLAN, 6})[:20], ReasonTruncVLAN, 0, 0, 5),

		// IPv6.
		ok6("ipv6-udp", eth6(v6(nil, udp, cUDP(sport, dport, udpPay))), udp, sport, dport, 0),
		ok6("ipv6-tcp", eth6(v6(nil, tcp, cTCP(sport, dport, TCPFlagSYN, synOpts, nil))), tcp, sport, dport, 0),
		ok6("ipv6-icmpv6-echo", eth6(v6(nil, ProtoICMPv6, cICMP(128, 0x77, 1, udpPay))), ProtoICMPv6, 0, 0, 0),
		ok6("ipv6-hbh-udp", eth6(v6([]cExt{hbh}, udp, cUDP(sport, dport, udpPay))), udp, sport, dport, 0),
		ok6("ipv6-chain-tcp", eth6(v6([]cExt{hbh, rt, dst, frag1}, tcp, cTCP(sport, dport, TCPFlagACK, nil, tcpPay))), tcp, sport, dport, 0),
		ok6("ipv6-frag-first-udp", eth6(v6([]cExt{frag1}, udp, cUDP(sport, dport, udpPay))), udp, sport, dport, 0),
		bad("ipv6-frag-middle", eth6(v6([]cExt{fragN}, udp, udpPay)), ReasonFragment, 6, udp, 0),
		bad("ipv6-chain-frag-last", eth6(v6([]cExt{hbh, dst, fragLast}, tcp, tcpPay)), ReasonFragment, 6, tcp, 0),
		ok6("ipv6-destopts-icmpv6", eth6(v6([]cExt{dst}, ProtoICMPv6, cICMP(129, 1, 2, nil))), ProtoICMPv6, 0, 0, 0),
		ok6("ipv6-8-ext-udp", eth6(v6(eight, udp, cUDP(sport, dport, udpPay))), udp, sport, dport, 0),
		bad("ipv6-9-ext", eth6(v6(nine, udp, cUDP(sport, dport, udpPay))), ReasonTooManyExtHeaders, 6, 0, 0),
		bad("ipv6-no-next", eth6(v6([]cExt{dst}, ProtoNoNext, nil)), ReasonUnknownL4, 6, ProtoNoNext, 0),
		bad("ipv6-icmp-proto", eth6(v6(nil, ProtoICMP, cICMP(8, 1, 1, nil))), ReasonUnknownL4, 6, ProtoICMP, 0),
		ok6("vlan-ipv6-chain-udp", eth6(v6([]cExt{hbh, rt, frag1}, udp, cUDP(sport, dport, udpPay)), cTag{EtherTypeVLAN, 3000}), udp, sport, dport, 3000),

		// Truncated and malformed, link and network layers.
		bad("trunc-ethernet", cEth(EtherTypeIPv4)[:10], ReasonTruncEthernet, 0, 0, 0),
		bad("trunc-ipv4", eth4(v4udp())[:14+12], ReasonTruncIPv4, 0, 0, 0),
		bad("trunc-ipv4-options", eth4(cV4{proto: tcp, opts: cRecordRoute(40)}.bytes(nil))[:14+30], ReasonTruncIPv4, 4, 0, 0),
		bad("bad-ipv4-version", patch(eth4(v4udp()), func(b []byte) { b[14] = 0x65 }), ReasonBadIPv4, 0, 0, 0),
		bad("bad-ipv4-ihl", patch(eth4(v4udp()), func(b []byte) { b[14] = 0x44 }), ReasonBadIPv4, 4, 0, 0),
		bad("bad-ipv4-total-len", patch(eth4(v4udp()), func(b []byte) { binary.BigEndian.PutUint16(b[16:], 12) }), ReasonBadIPv4, 4, 0, 0),
		bad("ipv4-ip-length", patch(eth4(v4udp()), func(b []byte) { binary.BigEndian.PutUint16(b[16:], 1500) }), ReasonIPLength, 4, 0, 0),
		bad("trunc-ipv6", eth6(v6(nil, udp, cUDP(sport, dport, udpPay)))[:14+30], ReasonTruncIPv6, 0, 0, 0),
		bad("bad-ipv6-version", patch(eth6(v6(nil, udp, cUDP(sport, dport, udpPay))), func(b []byte) { b[14] = 0x40 }), ReasonBadIPv6, 0, 0, 0),
		bad("ipv6-ip-length", patch(eth6(v6(nil, udp, cUDP(sport, dport, udpPay))), func(b []byte) { binary.BigEndian.PutUint16(b[18:], 1000) }), ReasonIPLength, 6, 0, 0),
		bad("ipv6-trunc-ext", patch(eth6(v6([]cExt{hbh}, udp, nil)), func(b []byte) { b[14+40+1] = 1 }), ReasonTruncExtHeader, 6, 0, 0),
		bad("ipv6-trunc-frag-ext", eth6(v6(nil, ProtoFragment, []byte{ProtoUDP, 0, 0, 1})), ReasonTruncExtHeader, 6, 0, 0),

		// Truncated and malformed, transport layer.
		bad("ipv4-trunc-tcp", eth4(cV4{proto: tcp}.bytes(cTCP(sport, dport, TCPFlagACK, nil, nil)[:10])), ReasonTruncL4, 4, tcp, 0),
		bad("ipv4-trunc-udp-in-padding", cPad(eth4(cV4{proto: udp}.bytes(cUDP(sport, dport, nil)[:4])), 60), ReasonTruncL4, 4, udp, 0),
		bad("ipv4-trunc-icmp", eth4(cV4{proto: ProtoICMP}.bytes(cICMP(8, 1, 1, nil)[:6])), ReasonTruncL4, 4, ProtoICMP, 0),
		bad("ipv4-frag-first-trunc-tcp", eth4(cV4{proto: tcp, flagsFrag: 0x2000}.bytes(cTCP(sport, dport, TCPFlagACK, nil, nil)[:16])), ReasonTruncL4, 4, tcp, 0),
		bad("ipv4-tcp-offset-short", eth4(cV4{proto: tcp}.bytes(patch(cTCP(sport, dport, TCPFlagACK, nil, tcpPay), func(b []byte) { b[12] = 4 << 4 }))), ReasonBadTCPOffset, 4, tcp, 0),
		bad("ipv4-tcp-offset-beyond", eth4(cV4{proto: tcp}.bytes(patch(cTCP(sport, dport, TCPFlagACK, nil, nil), func(b []byte) { b[12] = 15 << 4 }))), ReasonBadTCPOffset, 4, tcp, 0),
		bad("ipv6-trunc-udp", eth6(v6(nil, udp, cUDP(sport, dport, nil)[:7])), ReasonTruncL4, 6, udp, 0),
		bad("ipv6-tcp-options-cut", v6tcpCut(24), ReasonBadTCPOffset, 6, tcp, 0),
		bad("ipv6-chain-trunc-tcp", eth6(v6([]cExt{hbh, rt, dst}, tcp, cTCP(sport, dport, TCPFlagACK, nil, nil)[:19])), ReasonTruncL4, 6, tcp, 0),
		bad("ipv6-trunc-icmpv6", eth6(v6(nil, ProtoICMPv6, cICMP(128, 1, 1, nil)[:4])), ReasonTruncL4, 6, ProtoICMPv6, 0),
	}
}

// The corpus builders. They favour clarity over speed and allocate freely.

// cTag is one VLAN tag: its TPID and its TCI (PCP, DEI and VID).
type cTag struct{ tpid, tci uint16 }

// cEth builds an Ethernet header with the given VLAN tags.
func cEth(etype uint16, tags ...cTag) []byte {
	b := make([]byte, 0, 64)
	b = append(b, corpusMACDst[:]...)
	b = append(b, corpusMACSrc[:]...)
	for _, t := range tags {
		b = binary.BigEndian.AppendUint16(b, t.tpid)
		b = binary.BigEndian.AppendUint16(b, t.tci)
	}
	return binary.BigEndian.AppendUint16(b, etype)
}

// cPad pads a frame with zeros to n bytes, as a NIC pads short frames.
func cPad(frame []byte, n int) []byte {
	for len(frame) < n {
		frame = append(frame, 0)
	}
	return frame
}

// cARP is an ARP request for corpusIPv4Dst.
func cARP() []byte {
	b := []byte{0, 1, 0x08, 0x00, 6, 4, 0, 1}
	b = append(b, corpusMACSrc[:]...)
	b = append(b, corpusIPv4Src[:]...)
	b = append(b, make([]byte, 6)...)
	return append(b, corpusIPv4Dst[:]...)
}

// cV4 describes an IPv4 header; bytes builds it around a payload.
type cV4 struct {
	tos       uint8
	flagsFrag uint16 // flags<<13 | fragment offset in 8-byte units
	proto     uint8
	opts      []byte // padded with EOL to a multiple of 4
}

func (h cV4) bytes(payload []byte) []byte {
	opts := append([]byte(nil), h.opts...)
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	hl := IPv4MinLen + len(opts)
	b := make([]byte, hl, hl+len(payload))
	b[0] = 4<<4 | uint8(hl/4)
	b[1] = h.tos
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(payload)))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	binary.BigEndian.PutUint16(b[6:], h.flagsFrag)
	b[8] = 64
	b[9] = h.proto
	copy(b[12:], corpusIPv4Src[:])
	copy(b[16:], corpusIPv4Dst[:])
	copy(b[20:], opts)
	binary.BigEndian.PutUint16(b[10:], ^cFold(cSum(0, b)))
	b = append(b, payload...)
	if h.flagsFrag&0x3fff == 0 {
		var pseudo uint32
		pseudo = cSum(pseudo, corpusIPv4Src[:])
		pseudo = cSum(pseudo, corpusIPv4Dst[:])
		pseudo += uint32(h.proto) + uint32(len(payload))
		cL4Checksum(b[hl:], h.proto, pseudo, 4)
	}
	return b
}

// cRecordRoute is an IPv4 record route option of n bytes (n <= 40).
func cRecordRoute(n int) []byte {
	o := make([]byte, n)
	o[0], o[1], o[2] = 7, byte(n-1), 4
	return o
}

// cExt is an IPv6 extension header: its type and its bytes, whose first
// byte (the next header) cV6 fills in.
type cExt struct {
	typ uint8
	b   []byte
}

// cOpts is a hop-by-hop or destination options header of n bytes (a
// multiple of 8), filled with one PadN option.
func cOpts(typ uint8, n int) cExt {
	b := make([]byte, n)
	b[1] = byte(n/8 - 1)
	b[2], b[3] = 1, byte(n-4) // PadN
	return cExt{typ, b}
}

// cRouting is a segment routing header (type 4) with one segment, left 0.
func cRouting(seg [16]byte) cExt {
	b := make([]byte, 8, 24)
	b[1], b[2], b[3], b[4] = 2, 4, 0, 0
	return cExt{ProtoRouting, append(b, seg[:]...)}
}

// cFrag is a fragment header; offset8 counts 8-byte units.
func cFrag(offset8 uint16, more bool, id uint32) cExt {
	b := make([]byte, 8)
	fo := offset8 << 3
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(b[2:], fo)
	binary.BigEndian.PutUint32(b[4:], id)
	return cExt{ProtoFragment, b}
}

// cV6 describes an IPv6 header and its extension headers.
type cV6 struct {
	tc    uint8
	exts  []cExt
	proto uint8 // the protocol after the extension headers
}

func (h cV6) bytes(l4 []byte) []byte {
	b := make([]byte, IPv6Len, 256)
	binary.BigEndian.PutUint32(b[0:], 6<<28|uint32(h.tc)<<20|0x12345)
	b[7] = 64
	copy(b[8:], corpusIPv6Src[:])
	copy(b[24:], corpusIPv6Dst[:])
	next := &b[6]
	fragmented := false
	for _, e := range h.exts {
		*next = e.typ
		start := len(b)
		b = append(b, e.b...)
		next = &b[start]
		if e.typ == ProtoFragment && binary.BigEndian.Uint16(e.b[2:])&0xfff9 != 0 {
			fragmented = true
		}
	}
	*next = h.proto
	l4off := len(b)
	b = append(b, l4...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-IPv6Len))
	if !fragmented {
		var pseudo uint32
		pseudo = cSum(pseudo, corpusIPv6Src[:])
		pseudo = cSum(pseudo, corpusIPv6Dst[:])
		pseudo += uint32(h.proto) + uint32(len(l4))
		cL4Checksum(b[l4off:], h.proto, pseudo, 6)
	}
	return b
}

// cTCP builds a TCP header with options (padded with NOPs to a multiple of
// 4) and a payload. The checksum is filled in by the IP builders.
func cTCP(sport, dport uint16, flags uint8, opts, payload []byte) []byte {
	o := append([]byte(nil), opts...)
	for len(o)%4 != 0 {
		o = append([]byte{1}, o...)
	}
	hl := TCPMinLen + len(o)
	b := make([]byte, hl, hl+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 0x01020304)
	if flags&TCPFlagACK != 0 {
		binary.BigEndian.PutUint32(b[8:], 0x0a0b0c0d)
	}
	b[12] = uint8(hl/4) << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	copy(b[20:], o)
	return append(b, payload...)
}

// cUDP builds a UDP header and payload.
func cUDP(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, UDPLen, UDPLen+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(UDPLen+len(payload)))
	return append(b, payload...)
}

// cICMP builds an ICMP or ICMPv6 echo message.
func cICMP(typ uint8, id, seq uint16, payload []byte) []byte {
	b := make([]byte, ICMPLen, ICMPLen+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	return append(b, payload...)
}

// cL4Checksum fills in the checksum of a whole L4 segment, if it is one
// the corpus knows and long enough to hold its checksum field.
func cL4Checksum(seg []byte, proto uint8, pseudo uint32, family uint8) {
	at := -1
	switch {
	case proto == ProtoTCP && len(seg) >= TCPMinLen:
		at = 16
	case proto == ProtoUDP && len(seg) >= UDPLen:
		at = 6
	case proto == ProtoICMP && family == 4 && len(seg) >= ICMPLen:
		at, pseudo = 2, 0
	case proto == ProtoICMPv6 && family == 6 && len(seg) >= ICMPLen:
		at = 2
	}
	if at < 0 {
		return
	}
	seg[at], seg[at+1] = 0, 0
	c := ^cFold(cSum(pseudo, seg))
	if c == 0 && proto == ProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(seg[at:], c)
}

// cSum adds b to a one's complement sum as 16-bit big-endian words.
func cSum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func cFold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
