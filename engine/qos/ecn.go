package qos

// The ECN field (RFC 3168 §5) is the low two bits of the IPv4 TOS byte and
// of the IPv6 traffic class.
const (
	ecnMask   = 0x03
	ecnNotECT = 0x00 // not ECN-capable
	ecnCE     = 0x03 // congestion experienced; 01 and 10 are ECT(1), ECT(0)
)

// Offsets inside the IP headers.
const (
	ipv4MinLen    = 20
	ipv4TOS       = 1  // byte: DSCP and ECN
	ipv4Checksum  = 10 // 16-bit header checksum
	ipv6HeaderLen = 40
	// The IPv6 traffic class straddles bytes 0 and 1: its low four bits,
	// ECN among them, are the high nibble of byte 1.
	ipv6TCLow    = 1
	ipv6ECNShift = 4
)

// ecnOffset finds the ECN field of the IP packet at frame[l3off:]: the byte
// that holds it and the shift of the field inside that byte. ok is false for
// anything that is not a whole IPv4 or IPv6 header.
func ecnOffset(frame []byte, l3off int) (at int, shift uint, v4 bool, ok bool) {
	if l3off < 0 || l3off >= len(frame) {
		return 0, 0, false, false
	}
	h := frame[l3off:]
	switch h[0] >> 4 {
	case 4:
		ihl := int(h[0]&0x0f) * 4
		if ihl < ipv4MinLen || len(h) < ihl {
			return 0, 0, false, false
		}
		return l3off + ipv4TOS, 0, true, true
	case 6:
		if len(h) < ipv6HeaderLen {
			return 0, 0, false, false
		}
		return l3off + ipv6TCLow, ipv6ECNShift, false, true
	}
	return 0, 0, false, false
}

// ECNCapable reports whether the IP packet at frame[l3off:] is ECN-capable
// (ECT(0), ECT(1), or already CE), the ecnCapable argument of Enqueue.
func ECNCapable(frame []byte, l3off int) bool {
	at, shift, _, ok := ecnOffset(frame, l3off)
	return ok && (frame[at]>>shift)&ecnMask != ecnNotECT
}

// MarkCE sets Congestion Experienced on the IPv4 or IPv6 packet at
// frame[l3off:] and reports whether the packet now carries CE. ECT(0) and
// ECT(1) become CE; CE stays CE; a Not-ECT packet, or anything that is not
// a whole IP header, is left unchanged and MarkCE returns false. For IPv4
// it updates the header checksum incrementally (RFC 1624, eqn. 3), so a
// valid checksum stays valid.
func MarkCE(frame []byte, l3off int) bool {
	at, shift, v4, ok := ecnOffset(frame, l3off)
	if !ok {
		return false
	}
	old := frame[at]
	switch (old >> shift) & ecnMask {
	case ecnNotECT:
		return false
	case ecnCE:
		return true
	}
	nu := old | ecnCE<<shift
	frame[at] = nu
	if v4 {
		// The TOS byte is the low byte of the header's first 16-bit word:
		// HC' = ~(~HC + ~m + m'), in one's complement arithmetic.
		hi := uint32(frame[l3off]) << 8
		m, m2 := hi|uint32(old), hi|uint32(nu)
		c := l3off + ipv4Checksum
		hc := uint32(frame[c])<<8 | uint32(frame[c+1])
		sum := (^hc & 0xffff) + (^m & 0xffff) + m2
		sum = (sum & 0xffff) + sum>>16
		sum = (sum & 0xffff) + sum>>16
		hc = ^sum & 0xffff
		frame[c], frame[c+1] = byte(hc>>8), byte(hc)
	}
	return true
}
