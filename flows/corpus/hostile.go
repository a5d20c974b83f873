package corpus

import (
	"encoding/binary"

	"github.com/xnic/xnic/flows"
)

// Hostile returns frames an attacker on the wire would send, beyond the
// parser corpus of Frames: lying and truncated headers, bad checksums,
// TCP with impossible flags and options, IPv6 extension chains, fragments
// (overlapping, tiny, of extension headers), stacked tags, ARP and NDP
// garbage, runts, MTU-sized and wrongly addressed frames. They use the
// corpus addresses (Retarget moves them onto a lab). Each Frame carries
// the verdict flows.Parse gives it, so a test that sends them knows where
// each one must be counted; Frames and Hostile together are the hostile
// corpus (HostileCorpus).
func Hostile() []Frame {
	const (
		sport, dport = 40001, 80
		tcp, udp     = flows.ProtoTCP, flows.ProtoUDP
		icmp6        = flows.ProtoICMPv6
	)
	pay := []byte("xnic hostile payload")
	eth4 := func(ip []byte, tags ...Tag) []byte { return append(Eth(flows.EtherTypeIPv4, tags...), ip...) }
	eth6 := func(ip []byte, tags ...Tag) []byte { return append(Eth(flows.EtherTypeIPv6, tags...), ip...) }
	v4 := func(proto uint8, l4 []byte) []byte { return eth4(V4{Proto: proto}.Bytes(l4)) }
	v6 := func(exts []Ext, proto uint8, l4 []byte) []byte { return eth6(V6{Exts: exts, Proto: proto}.Bytes(l4)) }
	patch := func(b []byte, f func([]byte)) []byte { f(b); return b }
	seg := func(flags uint8, opts []byte, f func([]byte)) []byte {
		s := TCP(sport, dport, flags, opts, pay)
		if f != nil {
			f(s)
		}
		return s
	}
	const l3, l4v4, l4v6 = 14, 14 + 20, 14 + 40

	// Fragments of one IPv4 datagram that overlap: the second starts 8
	// bytes into the first.
	frag4 := func(off8 uint16, more, df bool, n int) []byte {
		ff := off8
		if more {
			ff |= 0x2000
		}
		if df {
			ff |= 0x4000
		}
		return eth4(V4{Proto: udp, FlagsFrag: ff}.Bytes(make([]byte, n)))
	}
	many := func(n int, e func() Ext) []Ext {
		x := make([]Ext, n)
		for i := range x {
			x[i] = e()
		}
		return x
	}
	hbhJumbo := func() Ext { // a jumbo payload option in a hop-by-hop header
		b := make([]byte, 8)
		b[2], b[3] = 0xc2, 4
		binary.BigEndian.PutUint32(b[4:], 70000)
		return Ext{flows.ProtoHopByHop, b}
	}
	rh0 := func() Ext { // a deprecated type 0 routing header with 4 hops
		b := make([]byte, 8, 8+64)
		b[1], b[2], b[3] = 8, 0, 4
		for range 4 {
			b = append(b, IPv6Dst[:]...)
		}
		return Ext{flows.ProtoRouting, b}
	}
	ns := func(hop uint8, target [16]byte, opt bool) []byte { // a neighbour solicitation
		b := make([]byte, 24, 32)
		b[0] = 135
		copy(b[8:], target[:])
		if opt {
			b = append(b, 1, 1)
			b = append(b, MACSrc[:]...)
		}
		return eth6(V6{Proto: icmp6, HopLimit: hop}.Bytes(b))
	}
	arp := func(f func([]byte)) []byte {
		a := ARP()
		if f != nil {
			f(a)
		}
		return append(Eth(flows.EtherTypeARP), a...)
	}
	mac := func(dst [6]byte, frame []byte) []byte { copy(frame, dst[:]); return frame }

	var out []Frame
	add := func(name string, frame []byte) {
		var p flows.Packet
		flows.Parse(frame, &p)
		f := Frame{Name: name, Frame: frame, Reason: p.Reason, Family: p.Family, Proto: p.Proto, VLAN: p.Key.VLAN}
		if p.Reason == flows.ReasonOK {
			f.SrcPort, f.DstPort = p.Key.SrcPort, p.Key.DstPort
		}
		out = append(out, f)
	}

	// Checksums: headers right, sums wrong.
	add("bad-ipv4-header-csum-udp", patch(v4(udp, UDP(sport, 9, pay)), func(b []byte) { b[l3+10] ^= 0x5a }))
	add("bad-ipv4-header-csum-tcp", patch(v4(tcp, seg(flows.TCPFlagACK, nil, nil)), func(b []byte) { b[l3+10] ^= 0x5a }))
	add("bad-tcp-csum-ipv4", patch(v4(tcp, seg(flows.TCPFlagACK|flows.TCPFlagPSH, nil, nil)), func(b []byte) { b[l4v4+16] ^= 0xff }))
	add("bad-udp-csum-ipv4", patch(v4(udp, UDP(sport, 9, pay)), func(b []byte) { b[l4v4+6] ^= 0xff }))
	add("bad-tcp-csum-ipv6", patch(v6(nil, tcp, seg(flows.TCPFlagACK, nil, nil)), func(b []byte) { b[l4v6+16] ^= 0xff }))
	add("bad-udp-csum-ipv6", patch(v6(nil, udp, UDP(sport, 9, pay)), func(b []byte) { b[l4v6+6] ^= 0xff }))
	add("ipv6-udp-zero-csum", patch(v6(nil, udp, UDP(sport, 9, pay)), func(b []byte) { b[l4v6+6], b[l4v6+7] = 0, 0 }))
	add("bad-icmpv6-csum", patch(v6(nil, icmp6, ICMP(128, 9, 1, pay)), func(b []byte) { b[l4v6+2] ^= 0xff }))

	// TCP flags, options and lengths no stack sends.
	add("tcp-syn-fin", v4(tcp, seg(flows.TCPFlagSYN|flows.TCPFlagFIN, nil, nil)))
	add("tcp-syn-rst", v4(tcp, seg(flows.TCPFlagSYN|flows.TCPFlagRST, nil, nil)))
	add("tcp-xmas", v4(tcp, seg(0xff, nil, nil)))
	add("tcp-null-flags", v4(tcp, seg(0, nil, nil)))
	add("tcp-fin-no-ack", v6(nil, tcp, seg(flows.TCPFlagFIN, nil, nil)))
	add("tcp-zero-window-probe", v4(tcp, TCP(sport, dport, flows.TCPFlagACK, nil, []byte{0})[:21]))
	add("tcp-window-0-ack", v4(tcp, seg(flows.TCPFlagACK, nil, func(s []byte) { s[14], s[15] = 0, 0 })))
	add("tcp-syn-mss-0", v4(tcp, seg(flows.TCPFlagSYN, []byte{2, 4, 0, 0}, nil)))
	add("tcp-syn-wscale-255", v6(nil, tcp, seg(flows.TCPFlagSYN, []byte{3, 3, 255}, nil)))
	add("tcp-opt-len-0", v4(tcp, seg(flows.TCPFlagACK, []byte{8, 0, 1, 1}, nil)))
	add("tcp-opt-len-beyond", v4(tcp, seg(flows.TCPFlagACK, []byte{8, 40, 0, 0, 0, 0, 0, 0}, nil)))
	add("tcp-opt-sack-garbage", v4(tcp, seg(flows.TCPFlagACK, []byte{5, 34, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}, nil)))
	add("tcp-urg-beyond", v4(tcp, seg(flows.TCPFlagACK|flows.TCPFlagURG, nil, func(s []byte) { s[18], s[19] = 0xff, 0xff })))
	add("tcp-ack-far-ahead", v4(tcp, seg(flows.TCPFlagACK, nil, func(s []byte) { binary.BigEndian.PutUint32(s[8:], 0xfffffff0) })))
	add("tcp-reserved-bits", v4(tcp, seg(flows.TCPFlagACK, nil, func(s []byte) { s[12] |= 0x0e })))
	add("tcp-syn-with-data", v6(nil, tcp, seg(flows.TCPFlagSYN, nil, nil)))
	add("tcp-rst-ack", v4(tcp, seg(flows.TCPFlagRST|flows.TCPFlagACK, nil, nil)))
	add("tcp-offset-15-short-frame", v6(nil, tcp, seg(flows.TCPFlagACK, nil, func(s []byte) { s[12] = 15 << 4 })))
	add("tcp-to-port-0", v4(tcp, TCP(sport, 0, flows.TCPFlagSYN, nil, nil)))

	// IPv4 headers that lie.
	add("ipv4-ihl-15-no-options", patch(v4(udp, UDP(sport, 9, pay)), func(b []byte) { b[l3] = 0x4f }))
	add("ipv4-total-len-0", patch(v4(udp, UDP(sport, 9, pay)), func(b []byte) { b[l3+2], b[l3+3] = 0, 0 }))
	add("ipv4-total-len-short-of-l4", patch(v4(tcp, seg(flows.TCPFlagACK, nil, nil)), func(b []byte) { binary.BigEndian.PutUint16(b[l3+2:], 30) }))
	add("ipv4-total-len-65535", patch(v4(udp, UDP(sport, 9, pay)), func(b []byte) { b[l3+2], b[l3+3] = 0xff, 0xff }))
	add("ipv4-ttl-0", patch(v4(udp, UDP(sport, 9, pay)), func(b []byte) { b[l3+8] = 0 }))
	add("ipv4-opt-len-0", eth4(V4{Proto: udp, Opts: []byte{7, 0, 4, 0}}.Bytes(UDP(sport, 9, pay))))
	add("ipv4-opt-len-beyond", eth4(V4{Proto: udp, Opts: []byte{68, 40, 5, 0}}.Bytes(UDP(sport, 9, pay))))
	add("ipv4-opt-lsrr", eth4(V4{Proto: udp, Opts: append([]byte{131, 7, 4}, IPv4Dst[:]...)}.Bytes(UDP(sport, 9, pay))))
	add("ipv4-udp-len-beyond", v4(udp, patch(UDP(sport, 9, pay), func(s []byte) { binary.BigEndian.PutUint16(s[4:], 1400) })))
	add("ipv4-udp-len-under-8", v4(udp, patch(UDP(sport, 9, pay), func(s []byte) { binary.BigEndian.PutUint16(s[4:], 3) })))
	add("ipv4-proto-255", v4(255, pay))
	add("ipv4-igmp", v4(2, []byte{0x11, 0x64, 0xee, 0x9b, 0, 0, 0, 0}))
	add("ipv4-icmp-frag-needed-mtu-68", v4(flows.ProtoICMP, append([]byte{3, 4, 0, 0, 0, 0, 0, 68}, V4{Proto: tcp}.Bytes(TCP(dport, sport, flows.TCPFlagACK, nil, nil))[:28]...)))
	add("ipv4-icmp-redirect", v4(flows.ProtoICMP, append([]byte{5, 1, 0, 0, 198, 18, 0, 99}, V4{Proto: udp}.Bytes(UDP(sport, 9, nil))...)))

	// IPv4 fragments: overlapping, tiny, beyond 64 KiB, DF with MF.
	add("ipv4-frag-overlap-a", frag4(0, true, false, 24))
	add("ipv4-frag-overlap-b", frag4(1, false, false, 24))
	add("ipv4-frag-tiny-first-tcp", eth4(V4{Proto: tcp, FlagsFrag: 0x2000}.Bytes(TCP(sport, dport, flows.TCPFlagSYN, nil, nil)[:8])))
	add("ipv4-frag-offset-max", frag4(8191, false, false, 16))
	add("ipv4-frag-df-mf", frag4(0, true, true, 16))
	add("ipv4-frag-zero-length", frag4(2, true, false, 0))

	// IPv6 extension chains and fragments.
	add("ipv6-7-destopts-tcp", v6(many(7, func() Ext { return Opts(flows.ProtoDestOpts, 8) }), tcp, seg(flows.TCPFlagACK, nil, nil)))
	add("ipv6-8-routing-udp", v6(many(8, func() Ext { return Routing(IPv6Dst) }), udp, UDP(sport, 9, pay)))
	add("ipv6-12-hbh", v6(many(12, func() Ext { return Opts(flows.ProtoHopByHop, 8) }), udp, UDP(sport, 9, pay)))
	add("ipv6-hbh-after-destopts", v6([]Ext{Opts(flows.ProtoDestOpts, 8), Opts(flows.ProtoHopByHop, 8)}, udp, UDP(sport, 9, pay)))
	add("ipv6-hbh-len-255", patch(v6([]Ext{Opts(flows.ProtoHopByHop, 8)}, udp, UDP(sport, 9, pay)), func(b []byte) { b[l4v6+1] = 255 }))
	add("ipv6-hbh-jumbo-no-jumbo", v6([]Ext{hbhJumbo()}, udp, UDP(sport, 9, pay)))
	add("ipv6-rh0", v6([]Ext{rh0()}, udp, UDP(sport, 9, pay)))
	add("ipv6-payload-len-0", patch(v6(nil, udp, UDP(sport, 9, pay)), func(b []byte) { b[l3+4], b[l3+5] = 0, 0 }))
	add("ipv6-nonext-trailing", v6(nil, flows.ProtoNoNext, pay))
	add("ipv6-frag-atomic", v6([]Ext{Frag(0, false, 7)}, udp, UDP(sport, 9, pay)))
	add("ipv6-frag-overlap-a", v6([]Ext{Frag(0, true, 8)}, udp, make([]byte, 24)))
	add("ipv6-frag-overlap-b", v6([]Ext{Frag(1, false, 8)}, udp, make([]byte, 24)))
	add("ipv6-frag-tiny-tcp", v6([]Ext{Frag(0, true, 9)}, tcp, TCP(sport, dport, flows.TCPFlagSYN, nil, nil)[:8]))
	add("ipv6-frag-of-ext-chain", v6([]Ext{Frag(0, true, 10)}, flows.ProtoDestOpts, []byte{flows.ProtoUDP, 3, 1, 2}))
	add("ipv6-frag-frag", v6([]Ext{Frag(0, true, 11), Frag(0, true, 11)}, udp, UDP(sport, 9, pay)))
	add("ipv6-src-multicast-stale-csum", patch(v6(nil, udp, UDP(sport, 9, pay)), func(b []byte) { b[l3+8] = 0xff }))

	// NDP garbage and ICMPv6 that would move state.
	add("ndp-ns-hop-64", ns(64, IPv6Dst, true))
	add("ndp-ns-bad-option-len-0", patch(ns(255, IPv6Dst, true), func(b []byte) { b[l4v6+24+1] = 0 }))
	add("ndp-ns-trunc", ns(255, IPv6Dst, false)[:l4v6+12])
	add("ndp-ra-from-peer", eth6(V6{Proto: icmp6, HopLimit: 255}.Bytes([]byte{134, 0, 0, 0, 64, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0})))
	add("ndp-redirect", eth6(V6{Proto: icmp6, HopLimit: 255}.Bytes(append(append([]byte{137, 0, 0, 0, 0, 0, 0, 0}, IPv6Src[:]...), IPv6Dst[:]...))))
	add("icmpv6-packet-too-big-1", v6(nil, icmp6, append([]byte{2, 0, 0, 0, 0, 0, 0, 1}, V6{Proto: tcp}.Bytes(TCP(dport, sport, flows.TCPFlagACK, nil, nil))[:48]...)))

	// ARP garbage.
	add("arp-hlen-0", arp(func(a []byte) { a[4], a[5] = 0, 0 }))
	add("arp-op-99", arp(func(a []byte) { a[7] = 99 }))
	add("arp-reply-claims-target", arp(func(a []byte) { a[7] = 2; copy(a[14:18], IPv4Dst[:]) }))
	add("arp-trunc", arp(nil)[:14+12])
	add("arp-ipv6-ptype", arp(func(a []byte) { a[2], a[3] = 0x86, 0xdd }))

	// Link layer: stacked tags, odd EtherTypes, runts, MTU-sized.
	add("vlan-4-tags", eth4(V4{Proto: udp}.Bytes(UDP(sport, 9, pay)), Tag{flows.EtherTypeQinQ, 1}, Tag{flows.EtherTypeVLAN, 2}, Tag{flows.EtherTypeVLAN, 3}, Tag{flows.EtherTypeVLAN, 4}))
	add("vlan-prio-tag-0", eth4(V4{Proto: udp}.Bytes(UDP(sport, 9, pay)), Tag{flows.EtherTypeVLAN, 6 << 13}))
	add("vlan-4095", eth6(V6{Proto: udp}.Bytes(UDP(sport, 9, pay)), Tag{flows.EtherTypeVLAN, 4095}))
	add("qinq-tcp-to-guest", eth4(V4{Proto: tcp}.Bytes(seg(flows.TCPFlagSYN, nil, nil)), Tag{flows.EtherTypeQinQ, 10}, Tag{flows.EtherTypeVLAN, 20}))
	add("vlan-no-payload", Eth(flows.EtherTypeIPv4, Tag{flows.EtherTypeVLAN, 9}))
	add("ethertype-802.3-length", append(Eth(0x0050), make([]byte, 80)...))
	add("ethertype-0", append(Eth(0), pay...))
	add("runt-14-eth-only", Eth(flows.EtherTypeIPv4))
	add("runt-20", append(Eth(flows.EtherTypeIPv6), 0x60, 0, 0, 0, 0, 0))
	add("mtu-1514-udp", v4(udp, UDP(sport, 9, make([]byte, 1500-28))))
	add("mtu-1518-vlan-udp", eth4(V4{Proto: udp}.Bytes(UDP(sport, 9, make([]byte, 1500-28))), Tag{flows.EtherTypeVLAN, 77}))
	add("mtu-1514-ip-len-1600", patch(v4(udp, UDP(sport, 9, make([]byte, 1500-28))), func(b []byte) { binary.BigEndian.PutUint16(b[l3+2:], 1600) }))
	add("dst-mac-other-unicast", mac([6]byte{0x02, 0xde, 0xad, 0xbe, 0xef, 0x01}, v4(udp, UDP(sport, 9, pay))))
	add("dst-mac-broadcast-udp", mac([6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, v4(udp, UDP(sport, 9, pay))))
	add("dst-mac-multicast-tcp", mac([6]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, v4(tcp, seg(flows.TCPFlagSYN, nil, nil))))
	add("src-mac-broadcast", patch(v4(udp, UDP(sport, 9, pay)), func(b []byte) { copy(b[6:12], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) }))
	add("src-mac-is-dst", patch(v6(nil, udp, UDP(sport, 9, pay)), func(b []byte) { copy(b[6:12], MACDst[:]) }))
	return out
}

// HostileCorpus is every frame of Frames and Hostile, the parser corpus
// first: what a hostile peer sends in tests/hostile_test.go.
func HostileCorpus() []Frame { return append(Frames(), Hostile()...) }

// Addrs are the MAC and IP addresses of a sender and a receiver.
type Addrs struct {
	SrcMAC, DstMAC [6]byte
	SrcV4, DstV4   [4]byte
	SrcV6, DstV6   [16]byte
}

// CorpusAddrs are the addresses the corpus frames are built with.
func CorpusAddrs() Addrs {
	return Addrs{SrcMAC: MACSrc, DstMAC: MACDst, SrcV4: IPv4Src, DstV4: IPv4Dst, SrcV6: IPv6Src, DstV6: IPv6Dst}
}

// Retarget returns a copy of a corpus frame moved from the corpus addresses
// to a's: the Ethernet addresses, the IPv4 or IPv6 source and destination
// and the ARP sender and target, wherever they hold a corpus address (a
// broadcast or foreign address stays). Every checksum over them (the IPv4
// header's, and TCP's, UDP's or ICMPv6's through the pseudo-header) is
// updated incrementally (RFC 1624), so a sum that was right stays right and
// one that was wrong stays exactly as wrong.
func Retarget(frame []byte, a Addrs) []byte {
	f := append([]byte(nil), frame...)
	c := CorpusAddrs()
	swap := func(b []byte, from, to []byte) (delta uint32, ok bool) {
		if len(b) < len(from) || string(b[:len(from)]) != string(from) {
			return 0, false
		}
		// Old words out, new words in: adding the complement of the old
		// sum and the new sum is what the checksum must move by.
		delta = uint32(^fold(sum(0, from))) + uint32(fold(sum(0, to)))
		copy(b, to)
		return delta, true
	}
	if len(f) >= 12 {
		swap(f[0:6], c.DstMAC[:], a.DstMAC[:])
		swap(f[6:12], c.SrcMAC[:], a.SrcMAC[:])
	}
	var p flows.Packet
	flows.Parse(frame, &p) // the original: its offsets are the copy's
	l3 := int(p.L3Off)
	if p.Family == 0 && p.EtherType == flows.EtherTypeARP && p.Reason == flows.ReasonNonIP {
		l3 = 14 + 4*int(p.NumVLANs)
		if arp := f[min(l3, len(f)):]; len(arp) >= 28 {
			swap(arp[8:14], c.SrcMAC[:], a.SrcMAC[:])
			swap(arp[14:18], c.SrcV4[:], a.SrcV4[:])
			swap(arp[18:24], c.DstMAC[:], a.DstMAC[:])
			swap(arp[24:28], c.DstV4[:], a.DstV4[:])
		}
		return f
	}
	var delta uint32
	moved := false
	move := func(b []byte, from, to []byte) {
		if d, ok := swap(b, from, to); ok {
			delta += d
			moved = true
		}
	}
	switch {
	case p.Family == 4 && len(f) >= l3+20:
		move(f[l3+12:l3+16], c.SrcV4[:], a.SrcV4[:])
		move(f[l3+16:l3+20], c.DstV4[:], a.DstV4[:])
		if moved {
			adjust(f[l3+10:], delta)
		}
	case p.Family == 6 && len(f) >= l3+40:
		move(f[l3+8:l3+24], c.SrcV6[:], a.SrcV6[:])
		move(f[l3+24:l3+40], c.DstV6[:], a.DstV6[:])
	default:
		return f
	}
	// The transport checksum, where the corpus computed one: whole
	// segments that are not fragments (see V4.Bytes and V6.Bytes).
	if !moved || p.Reason != flows.ReasonOK || p.Fragment {
		return f
	}
	at := -1
	switch {
	case p.Proto == flows.ProtoTCP:
		at = int(p.L4Off) + 16
	case p.Proto == flows.ProtoUDP:
		at = int(p.L4Off) + 6
		if p.Family == 4 && at+2 <= len(f) && f[at] == 0 && f[at+1] == 0 {
			at = -1 // no checksum
		}
	case p.Proto == flows.ProtoICMPv6 && p.Family == 6:
		at = int(p.L4Off) + 2
	}
	if at >= 0 && at+2 <= len(f) {
		adjust(f[at:], delta)
	}
	return f
}

// adjust moves the checksum at b[0:2] for data whose one's complement sum
// grew by delta (RFC 1624: HC' = ~(~HC + m')).
func adjust(b []byte, delta uint32) {
	hc := binary.BigEndian.Uint16(b)
	binary.BigEndian.PutUint16(b, ^fold(uint32(^hc)+delta))
}
