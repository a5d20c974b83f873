package flows

import "encoding/binary"

// Parser limits.
const (
	// MaxVLANs is the number of VLAN tags Parse follows; a third tag is
	// ReasonTooManyVLANs.
	MaxVLANs = 2
	// MaxExtHeaders is the number of IPv6 extension headers Parse follows;
	// one more is ReasonTooManyExtHeaders.
	MaxExtHeaders = 8
	// MaxFrameLen is the longest frame Parse looks at. Offsets in Packet are
	// 16 bits wide, so a longer frame is parsed as if it ended here.
	MaxFrameLen = 0xffff
)

// Parse decodes frame into p, which the caller owns and may reuse: p is
// reset first. Parse never allocates, never panics and never reads outside
// frame. It stops at the first thing it cannot follow and says why in
// p.Reason; the fields it had filled until then stay, the rest are zero.
//
// What is filled when:
//   - Link layer: the VLAN ids (12-bit VID, outer first) of every whole tag,
//     Key.VLAN (the outer one), and EtherType: the type after the tags, or
//     the tag type where parsing stopped. L3Off is set once the link layer
//     is whole, for non-IP frames too.
//   - Family, Key.Family, the addresses, TOS and TTL are set once the fixed
//     IP header (20 or 40 bytes) is in the frame and its version matches the
//     EtherType. L3Len covers only whole headers (IPv4 options, IPv6
//     extension headers). IPLen is set once the IP length is checked against
//     the frame, so L3Off+IPLen never passes the end of the frame.
//   - The IP length field bounds everything after the IP header: bytes past
//     it (Ethernet padding) are not L4 header nor payload.
//   - Proto and Key.Proto are set once the IP layer is whole and valid,
//     that is for ReasonOK, ReasonUnknownL4, ReasonFragment, ReasonTruncL4
//     and ReasonBadTCPOffset. Ports are set only with ReasonOK.
//   - L4Off is set with Proto (for ReasonFragment it stays 0); L4Len and
//     TCPFlags only with ReasonOK. PayloadOff and PayloadLen are set with
//     ReasonOK, and for ReasonUnknownL4 and ReasonFragment they cover the
//     whole IP payload after the headers Parse followed.
//
// Fragments: IPv4 (MF or offset) and IPv6 (fragment header with M or
// offset) fragments set Fragment; the one at offset 0 also sets FirstFrag
// and is parsed to L4 like any packet. A non-first fragment stops with
// ReasonFragment and no ports. ICMP is decoded only over IPv4 and ICMPv6
// only over IPv6; the other pairings are ReasonUnknownL4.
func Parse(frame []byte, p *Packet) {
	if p == nil {
		return
	}
	*p = Packet{}
	if len(frame) > MaxFrameLen {
		frame = frame[:MaxFrameLen]
	}
	if len(frame) < EthernetLen {
		p.Reason = ReasonTruncEthernet
		return
	}
	off := EthernetLen
	et := binary.BigEndian.Uint16(frame[12:14])
	for et == EtherTypeVLAN || et == EtherTypeQinQ || et == EtherTypeQinQ2 {
		p.EtherType = et
		n := p.NumVLANs
		if n >= MaxVLANs {
			p.Reason = ReasonTooManyVLANs
			return
		}
		if len(frame)-off < VLANLen {
			p.Reason = ReasonTruncVLAN
			return
		}
		tag := frame[off : off+VLANLen]
		p.VLANs[n] = binary.BigEndian.Uint16(tag) & 0x0fff
		p.NumVLANs = n + 1
		et = binary.BigEndian.Uint16(tag[2:])
		off += VLANLen
		if n == 0 {
			p.Key.VLAN = p.VLANs[0]
		}
	}
	p.EtherType = et
	p.L3Off = uint16(off)
	switch et {
	case EtherTypeIPv4:
		parseIPv4(frame[off:], off, p)
	case EtherTypeIPv6:
		parseIPv6(frame[off:], off, p)
	default:
		p.Reason = ReasonNonIP
	}
}

// parseIPv4 parses the IPv4 packet at b, which starts at frame offset base.
func parseIPv4(b []byte, base int, p *Packet) {
	if len(b) < IPv4MinLen {
		p.Reason = ReasonTruncIPv4
		return
	}
	if b[0]>>4 != 4 {
		p.Reason = ReasonBadIPv4
		return
	}
	p.Family, p.Key.Family = 4, 4
	p.TOS, p.TTL = b[1], b[8]
	// IPv4-mapped, as MapIPv4 does; p.Key is zero, so only the marker
	// and the address bytes need writing.
	p.Key.Src[10], p.Key.Src[11] = 0xff, 0xff
	p.Key.Dst[10], p.Key.Dst[11] = 0xff, 0xff
	copy(p.Key.Src[12:], b[12:16])
	copy(p.Key.Dst[12:], b[16:20])
	hl := int(b[0]&0x0f) * 4
	if hl < IPv4MinLen {
		p.Reason = ReasonBadIPv4
		return
	}
	p.IPOptions = hl > IPv4MinLen
	if hl > len(b) {
		p.Reason = ReasonTruncIPv4
		return
	}
	p.L3Len = uint16(hl)
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total < hl {
		p.Reason = ReasonBadIPv4
		return
	}
	if total > len(b) {
		p.Reason = ReasonIPLength
		return
	}
	p.IPLen = uint16(total)
	ff := binary.BigEndian.Uint16(b[6:8])
	fragOff := ff & 0x1fff
	if ff&0x2000 != 0 || fragOff != 0 {
		p.Fragment = true
		p.FirstFrag = fragOff == 0
	}
	proto := b[9]
	p.Proto, p.Key.Proto = proto, proto
	if fragOff != 0 {
		p.Reason = ReasonFragment
		p.PayloadOff = uint16(base + hl)
		p.PayloadLen = uint16(total - hl)
		return
	}
	parseL4(b[:total], hl, base, proto, 4, p)
}

// parseIPv6 parses the IPv6 packet at b, which starts at frame offset base.
func parseIPv6(b []byte, base int, p *Packet) {
	if len(b) < IPv6Len {
		p.Reason = ReasonTruncIPv6
		return
	}
	if b[0]>>4 != 6 {
		p.Reason = ReasonBadIPv6
		return
	}
	p.Family, p.Key.Family = 6, 6
	p.TOS = b[0]<<4 | b[1]>>4
	p.TTL = b[7]
	p.Key.Src = [16]byte(b[8:24])
	p.Key.Dst = [16]byte(b[24:40])
	p.L3Len = IPv6Len
	total := IPv6Len + int(binary.BigEndian.Uint16(b[4:6]))
	if total > len(b) {
		p.Reason = ReasonIPLength
		return
	}
	p.IPLen = uint16(total)
	ip := b[:total]
	nh := b[6]
	pos := IPv6Len
	for n := 0; ; n++ {
		if nh != ProtoHopByHop && nh != ProtoRouting && nh != ProtoFragment && nh != ProtoDestOpts {
			break
		}
		if n >= MaxExtHeaders {
			p.Reason = ReasonTooManyExtHeaders
			return
		}
		// Every extension header is a multiple of 8 bytes, at least 8.
		if len(ip)-pos < 8 {
			p.Reason = ReasonTruncExtHeader
			return
		}
		h := ip[pos : pos+8]
		next := h[0]
		if nh == ProtoFragment {
			fo := binary.BigEndian.Uint16(h[2:4])
			fragOff := fo >> 3
			pos += 8
			p.ExtHeaders++
			p.L3Len = uint16(pos)
			if fo&1 != 0 || fragOff != 0 {
				p.Fragment = true
				p.FirstFrag = fragOff == 0
			}
			if fragOff != 0 {
				p.Proto, p.Key.Proto = next, next
				p.Reason = ReasonFragment
				p.PayloadOff = uint16(base + pos)
				p.PayloadLen = uint16(total - pos)
				return
			}
		} else {
			hl := (int(h[1]) + 1) * 8
			if len(ip)-pos < hl {
				p.Reason = ReasonTruncExtHeader
				return
			}
			pos += hl
			p.ExtHeaders++
			p.L3Len = uint16(pos)
		}
		nh = next
	}
	p.Proto, p.Key.Proto = nh, nh
	parseL4(ip, pos, base, nh, 6, p)
}

// parseL4 parses the L4 header at ip[l4:]; ip is the IP packet, bounded by
// its length field, at frame offset base.
func parseL4(ip []byte, l4, base int, proto, family uint8, p *Packet) {
	p.L4Off = uint16(base + l4)
	rest := ip[l4:]
	hl := 0
	switch {
	case proto == ProtoTCP:
		if len(rest) < TCPMinLen {
			p.Reason = ReasonTruncL4
			return
		}
		hl = int(rest[12]>>4) * 4
		if hl < TCPMinLen || hl > len(rest) {
			p.Reason = ReasonBadTCPOffset
			return
		}
		p.TCPFlags = rest[13]
		p.Key.SrcPort = binary.BigEndian.Uint16(rest[0:2])
		p.Key.DstPort = binary.BigEndian.Uint16(rest[2:4])
	case proto == ProtoUDP:
		if len(rest) < UDPLen {
			p.Reason = ReasonTruncL4
			return
		}
		hl = UDPLen
		p.Key.SrcPort = binary.BigEndian.Uint16(rest[0:2])
		p.Key.DstPort = binary.BigEndian.Uint16(rest[2:4])
	case proto == ProtoICMP && family == 4, proto == ProtoICMPv6 && family == 6:
		if len(rest) < ICMPLen {
			p.Reason = ReasonTruncL4
			return
		}
		hl = ICMPLen
	default:
		p.Reason = ReasonUnknownL4
		p.PayloadOff = p.L4Off
		p.PayloadLen = uint16(len(rest))
		return
	}
	p.L4Len = uint16(hl)
	p.PayloadOff = uint16(base + l4 + hl)
	p.PayloadLen = uint16(len(rest) - hl)
}
