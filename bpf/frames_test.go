package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Hand-built test frames. Layers are appended in order; the length and
// checksum fields are filled in by finish.

var (
	testSrcMAC = []byte{0x02, 0, 0, 0, 0, 1}
	testDstMAC = []byte{0x02, 0, 0, 0, 0, 2}
	testSrc4   = netip.MustParseAddr("198.18.0.2")
	testDst4   = netip.MustParseAddr("198.18.0.1")
	testSrc6   = netip.MustParseAddr("2001:2::2")
	testDst6   = netip.MustParseAddr("2001:2::1")
)

const (
	ethIPv4 = 0x0800
	ethIPv6 = 0x86dd
	ethARP  = 0x0806
	ethVLAN = 0x8100
	ethQinQ = 0x88a8
)

func ethHdr(ethType uint16, vlans ...uint16) []byte {
	b := append(append([]byte{}, testDstMAC...), testSrcMAC...)
	for _, tpid := range vlans {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, 100) // the tag that follows is the TCI
	}
	return binary.BigEndian.AppendUint16(b, ethType)
}

// ipv4Packet returns an IPv4 header (with checksum) followed by l4.
func ipv4Packet(proto uint8, fragOff uint16, l4 []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(h[6:], fragOff)
	h[8] = 64
	h[9] = proto
	src, dst := testSrc4.As4(), testDst4.As4()
	copy(h[12:], src[:])
	copy(h[16:], dst[:])
	binary.BigEndian.PutUint16(h[10:], ^onesSum(0, h))
	return append(h, l4...)
}

// ipv6Packet returns an IPv6 header followed by ext (extension headers) and l4.
func ipv6Packet(next uint8, ext, l4 []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(ext)+len(l4)))
	h[6] = next
	h[7] = 64
	src, dst := testSrc6.As16(), testDst6.As16()
	copy(h[8:], src[:])
	copy(h[24:], dst[:])
	return append(append(h, ext...), l4...)
}

// udpHdr returns a UDP header and payload; the checksum is set by udpFrame.
func udpHdr(sport, dport uint16, payload []byte) []byte {
	h := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+len(payload)))
	return append(h, payload...)
}

// udpFrame builds Ethernet + IPv4/IPv6 + UDP with valid checksums.
func udpFrame(ipv6 bool, sport, dport uint16, payload []byte) []byte {
	u := udpHdr(sport, dport, payload)
	var src, dst netip.Addr
	if ipv6 {
		src, dst = testSrc6, testDst6
	} else {
		src, dst = testSrc4, testDst4
	}
	c := ^onesSum(pseudoSum(src, dst, 17, len(u)), u)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	if ipv6 {
		return append(ethHdr(ethIPv6), ipv6Packet(17, nil, u)...)
	}
	return append(ethHdr(ethIPv4), ipv4Packet(17, 0x4000, u)...)
}

// onesSum adds b as big-endian 16-bit words to a ones' complement sum.
func onesSum(sum uint32, b []byte) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

func pseudoSum(src, dst netip.Addr, proto uint8, l4len int) uint32 {
	var b []byte
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	b = append(b, 0, proto)
	b = binary.BigEndian.AppendUint16(b, uint16(l4len))
	return uint32(onesSum(0, b))
}

// udpChecksumOK verifies the UDP checksum of an untagged Ethernet frame, as a
// receiver does: the sum over pseudo header and datagram must be 0xffff.
// IPv4 datagrams without checksum (0) are accepted.
func udpChecksumOK(frame []byte) bool {
	var src, dst netip.Addr
	var l4 []byte
	switch binary.BigEndian.Uint16(frame[12:]) {
	case ethIPv4:
		src = netip.AddrFrom4([4]byte(frame[26:30]))
		dst = netip.AddrFrom4([4]byte(frame[30:34]))
		l4 = frame[34:]
		if binary.BigEndian.Uint16(l4[6:]) == 0 {
			return true
		}
	case ethIPv6:
		src = netip.AddrFrom16([16]byte(frame[22:38]))
		dst = netip.AddrFrom16([16]byte(frame[38:54]))
		l4 = frame[54:]
		if binary.BigEndian.Uint16(l4[6:]) == 0 {
			return false
		}
	default:
		return false
	}
	l4 = l4[:binary.BigEndian.Uint16(l4[4:])]
	return onesSum(pseudoSum(src, dst, 17, len(l4)), l4) == 0xffff
}
