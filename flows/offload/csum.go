package offload

import (
	"encoding/binary"
	"math/bits"

	"github.com/xnic/xnic/flows"
)

// Checksums. Every sum in this file is the Internet checksum's
// ones-complement sum of 16-bit big-endian words (RFC 1071), folded to 16
// bits and NOT complemented; the value stored in a header is its complement.
// Sums are endian-independent, so the bulk loop adds little-endian 64-bit
// words with end-around carries and swaps the bytes once at the end.

// Offsets of the checksum fields.
const (
	ipv4CsumOff = 10
	tcpCsumOff  = 16
	udpCsumOff  = 6
)

// Sum adds the bytes of b, as big-endian 16-bit words (an odd last byte
// padded with a zero), to the folded sum initial and returns the folded
// sum. b is taken to start on a 16-bit word boundary.
func Sum(b []byte, initial uint16) uint16 {
	return Add(foldLE(sumLE(b)), initial)
}

// Add is the ones-complement addition of two folded sums.
func Add(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s + s>>16)
}

// Fold folds a wide sum of big-endian 16-bit words (such as the plain
// integer sum of a few fields) to 16 bits.
func Fold(s uint64) uint16 {
	s = s&0xffffffff + s>>32
	s = s&0xffffffff + s>>32
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return uint16(s)
}

// SumChain sums the concatenation of pieces, which may have odd lengths,
// onto initial.
func SumChain(pieces [][]byte, initial uint16) uint16 {
	var acc uint64 // little-endian domain, in the parity of a piece at an even offset
	var carry uint64
	odd := false
	for _, p := range pieces {
		s := sumLE(p)
		if odd {
			s = swapLE(s)
		}
		acc, carry = bits.Add64(acc, s, carry)
		if len(p)&1 != 0 {
			odd = !odd
		}
	}
	acc += carry
	if acc < carry {
		acc++
	}
	return Add(foldLE(acc), initial)
}

// vectorMin is the shortest buffer worth the vector loop's setup.
const vectorMin = 256

// maxVectorChunk bounds one call of the vector loops, whose 32-bit lanes
// grow by up to 65536 per 128 bytes (per 64 in the copy loop): at most
// 2^27 each, so that the four accumulators add up in 32 bits.
const maxVectorChunk = 1 << 18

// sumLE returns the ones-complement sum of b read as little-endian words,
// unfolded: any 64-bit value whose fold is the sum.
func sumLE(b []byte) uint64 {
	var s, c uint64
	// Long buffers (MTU payloads) go through the vector loop where there is
	// one: it adds in independent lanes instead of one carry chain.
	for haveAVX2 && len(b) >= vectorMin {
		n := min(len(b), maxVectorChunk) &^ 63
		s, c = bits.Add64(s, sumAVX2(b[:n]), c)
		b = b[n:]
	}
	// The carry goes from the flags to a register once per iteration:
	// long iterations amortize that.
	for len(b) >= 128 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[0:8]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:16]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[16:24]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[24:32]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[32:40]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[40:48]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[48:56]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[56:64]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[64:72]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[72:80]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[80:88]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[88:96]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[96:104]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[104:112]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[112:120]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[120:128]), c)
		b = b[128:]
	}
	if len(b) >= 64 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[0:8]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:16]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[16:24]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[24:32]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[32:40]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[40:48]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[48:56]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[56:64]), c)
		b = b[64:]
	}
	// Fewer than 64 bytes left: straight-line adds, no loop (a TCP header,
	// a payload's tail).
	if len(b) >= 32 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[0:8]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:16]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[16:24]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[24:32]), c)
		b = b[32:]
	}
	if len(b) >= 16 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[0:8]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:16]), c)
		b = b[16:]
	}
	if len(b) >= 8 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[0:8]), c)
		b = b[8:]
	}
	var t uint64
	if len(b) >= 4 {
		t = uint64(binary.LittleEndian.Uint32(b))
		b = b[4:]
		if len(b) >= 2 {
			t += uint64(binary.LittleEndian.Uint16(b)) << 32
			b = b[2:]
		}
	} else if len(b) >= 2 {
		t = uint64(binary.LittleEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		// An odd last byte is the high byte of a big-endian word, that is
		// the low byte of a little-endian one: at an even offset.
		t += uint64(b[0])
	}
	s, c = bits.Add64(s, t, c)
	s, c = bits.Add64(s, 0, c)
	return s + c
}

// copySumLE copies src into dst, which must be at least as long, and
// returns src's little-endian-domain sum (as sumLE): one pass for both.
func copySumLE(dst, src []byte) uint64 {
	dst = dst[:len(src)]
	if haveAVX2 && len(src) >= vectorMin {
		// The vector loop copies and sums in one pass; the scalar loop
		// below takes the tail (and what is past maxVectorChunk).
		n := min(len(src), maxVectorChunk) &^ 63
		v := copySumAVX2(dst[:n], src[:n])
		t := copySumLE(dst[n:], src[n:])
		s, c := bits.Add64(v, t, 0)
		return s + c
	}
	var s, c uint64
	le := binary.LittleEndian
	for len(src) >= 64 && len(dst) >= 64 {
		x0, x1 := le.Uint64(src[0:8]), le.Uint64(src[8:16])
		x2, x3 := le.Uint64(src[16:24]), le.Uint64(src[24:32])
		x4, x5 := le.Uint64(src[32:40]), le.Uint64(src[40:48])
		x6, x7 := le.Uint64(src[48:56]), le.Uint64(src[56:64])
		le.PutUint64(dst[0:8], x0)
		le.PutUint64(dst[8:16], x1)
		le.PutUint64(dst[16:24], x2)
		le.PutUint64(dst[24:32], x3)
		le.PutUint64(dst[32:40], x4)
		le.PutUint64(dst[40:48], x5)
		le.PutUint64(dst[48:56], x6)
		le.PutUint64(dst[56:64], x7)
		s, c = bits.Add64(s, x0, c)
		s, c = bits.Add64(s, x1, c)
		s, c = bits.Add64(s, x2, c)
		s, c = bits.Add64(s, x3, c)
		s, c = bits.Add64(s, x4, c)
		s, c = bits.Add64(s, x5, c)
		s, c = bits.Add64(s, x6, c)
		s, c = bits.Add64(s, x7, c)
		src, dst = src[64:], dst[64:]
	}
	copy(dst, src)
	s, c = bits.Add64(s, sumLE(src), c)
	return s + c
}

// foldLE folds a little-endian-domain sum and returns it big-endian.
func foldLE(s uint64) uint16 {
	return bits.ReverseBytes16(Fold(s))
}

// swapLE byte-swaps every 16-bit lane of a little-endian-domain sum: the
// sum of the same bytes started at an odd offset.
func swapLE(s uint64) uint64 {
	hi := (s >> 8) & 0x00ff00ff00ff00ff
	lo := (s & 0x00ff00ff00ff00ff) << 8
	return hi | lo
}

// Incremental updates (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')). check is
// the stored (complemented) checksum; the result is the new stored value.
// For UDP, a result of 0 must be stored as 0xffff by the caller.

// Update16 updates check for a 16-bit field that changed from old to new.
func Update16(check, old, new uint16) uint16 {
	return ^Add(Add(^check, ^old), new)
}

// Update32 updates check for a 32-bit field (such as an IPv4 address or a
// TCP sequence number) that changed from old to new.
func Update32(check uint16, old, new uint32) uint16 {
	s := uint64(^check) + uint64(^uint16(old>>16)) + uint64(^uint16(old)) +
		uint64(uint16(new>>16)) + uint64(uint16(new))
	return ^Fold(s)
}

// UpdateBytes updates check for an even-length field, such as an IPv6
// address, that changed from old to new (same length).
func UpdateBytes(check uint16, old, new []byte) uint16 {
	return ^Add(Add(^check, ^Sum(old, 0)), Sum(new, 0))
}

// UpdateLen updates a TCP or UDP checksum for a change of the segment
// length, which the pseudo-header covers. It is Update16 under a name that
// says what it is for.
func UpdateLen(check, oldLen, newLen uint16) uint16 { return Update16(check, oldLen, newLen) }

// Pseudo-headers.

// PseudoIPv4 is the sum of the IPv4 pseudo-header.
func PseudoIPv4(src, dst [4]byte, proto uint8, length uint16) uint16 {
	return pseudo4(src[:], dst[:], proto, uint32(length))
}

// PseudoIPv6 is the sum of the IPv6 pseudo-header.
func PseudoIPv6(src, dst [16]byte, proto uint8, length uint32) uint16 {
	return pseudo6(src[:], dst[:], proto, length)
}

func pseudo4(src, dst []byte, proto uint8, length uint32) uint16 {
	s := uint64(binary.BigEndian.Uint32(src)) + uint64(binary.BigEndian.Uint32(dst)) +
		uint64(proto) + uint64(length)
	return Fold(s)
}

func pseudo6(src, dst []byte, proto uint8, length uint32) uint16 {
	var s uint64
	for i := 0; i < 16; i += 4 {
		s += uint64(binary.BigEndian.Uint32(src[i:])) + uint64(binary.BigEndian.Uint32(dst[i:]))
	}
	s += uint64(proto) + uint64(length)
	return Fold(s)
}

// pseudoOf is the pseudo-header sum for an L4 segment of length n under the
// IP header ip (4 or 6).
func pseudoOf(ip []byte, family uint8, proto uint8, n int) uint16 {
	if family == 4 {
		return pseudo4(ip[12:16], ip[16:20], proto, uint32(n))
	}
	return pseudo6(ip[8:24], ip[24:40], proto, uint32(n))
}

// IPv4 header.

// IPv4HeaderChecksum returns the checksum to store in the IPv4 header h
// (options included), computed as if the checksum field were zero.
func IPv4HeaderChecksum(h []byte) uint16 {
	s := Sum(h, 0)
	return ^Add(s, ^binary.BigEndian.Uint16(h[ipv4CsumOff:]))
}

// SetIPv4HeaderChecksum computes and stores the checksum of the IPv4
// header h.
func SetIPv4HeaderChecksum(h []byte) {
	binary.BigEndian.PutUint16(h[ipv4CsumOff:], 0)
	binary.BigEndian.PutUint16(h[ipv4CsumOff:], ^Sum(h, 0))
}

// VerifyIPv4Header reports whether the IPv4 header h has a good checksum.
func VerifyIPv4Header(h []byte) bool {
	if len(h) == 20 {
		// The common header without options, on every received segment:
		// ten words summed straight, no loop.
		be := binary.BigEndian
		s := uint32(be.Uint16(h[0:])) + uint32(be.Uint16(h[2:])) + uint32(be.Uint16(h[4:])) +
			uint32(be.Uint16(h[6:])) + uint32(be.Uint16(h[8:])) + uint32(be.Uint16(h[10:])) +
			uint32(be.Uint16(h[12:])) + uint32(be.Uint16(h[14:])) + uint32(be.Uint16(h[16:])) +
			uint32(be.Uint16(h[18:]))
		s = s&0xffff + s>>16
		s = s&0xffff + s>>16
		return s == 0xffff
	}
	return Sum(h, 0) == 0xffff
}

// Transport checksums over a parsed frame. They expect p from flows.Parse
// with ReasonOK and Proto TCP or UDP; for anything else they do nothing
// and report false. The L4 length is the IP length minus the IP headers,
// so Ethernet padding is never summed.

// l4 returns the TCP or UDP segment (header and payload) of frame, its
// checksum field offset and the pseudo-header sum; ok is false if p is not
// a whole TCP/UDP packet.
func l4(frame []byte, p *flows.Packet) (seg []byte, off int, pseudo uint16, ok bool) {
	if p.Reason != flows.ReasonOK || (p.Family != 4 && p.Family != 6) {
		return nil, 0, 0, false
	}
	switch p.Proto {
	case flows.ProtoTCP:
		off = tcpCsumOff
	case flows.ProtoUDP:
		off = udpCsumOff
	default:
		return nil, 0, 0, false
	}
	end := int(p.L3Off) + int(p.IPLen)
	if int(p.L4Off) > end || end > len(frame) {
		return nil, 0, 0, false
	}
	seg = frame[p.L4Off:end]
	if len(seg) < off+2 {
		return nil, 0, 0, false
	}
	ip := frame[p.L3Off:]
	return seg, off, pseudoOf(ip, p.Family, p.Proto, len(seg)), true
}

// PseudoSum returns the pseudo-header sum of p's TCP or UDP segment.
func PseudoSum(frame []byte, p *flows.Packet) (uint16, bool) {
	_, _, ps, ok := l4(frame, p)
	return ps, ok
}

// VerifyL4 reports whether the TCP or UDP checksum of the parsed frame is
// good. A zero UDP checksum over IPv4 means "none" and is good; over IPv6
// it is bad (RFC 8200).
func VerifyL4(frame []byte, p *flows.Packet) bool {
	seg, off, ps, ok := l4(frame, p)
	if !ok {
		return false
	}
	if p.Proto == flows.ProtoUDP && binary.BigEndian.Uint16(seg[off:]) == 0 {
		return p.Family == 4
	}
	return Sum(seg, ps) == 0xffff
}

// SetL4Checksum computes and stores the full TCP or UDP checksum of the
// parsed frame (TX checksum offload). It reports false if p is not a whole
// TCP/UDP packet.
func SetL4Checksum(frame []byte, p *flows.Packet) bool {
	seg, off, ps, ok := l4(frame, p)
	if !ok {
		return false
	}
	binary.BigEndian.PutUint16(seg[off:], 0)
	c := ^Sum(seg, ps)
	if c == 0 && p.Proto == flows.ProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(seg[off:], c)
	return true
}

// SetL4Partial stores only the pseudo-header sum in the TCP or UDP checksum
// field: the CHECKSUM_PARTIAL form a kernel hands to a device that offloads
// TX checksums, and that veth passes on unless tx offload is off.
func SetL4Partial(frame []byte, p *flows.Packet) bool {
	seg, off, ps, ok := l4(frame, p)
	if !ok {
		return false
	}
	binary.BigEndian.PutUint16(seg[off:], ps)
	return true
}

// CompletePartial completes the checksum of a CHECKSUM_PARTIAL packet,
// whose field holds the pseudo-header sum only: it sums the segment from
// the L4 header on, field included, and stores the complement, as a device
// does on transmit. It reports false if p is not a whole TCP/UDP packet.
func CompletePartial(frame []byte, p *flows.Packet) bool {
	seg, off, _, ok := l4(frame, p)
	if !ok {
		return false
	}
	c := ^Sum(seg, 0)
	if c == 0 && p.Proto == flows.ProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(seg[off:], c)
	return true
}

// CsumStats counts bad checksums found on receive.
type CsumStats struct {
	BadIPv4 uint64 // IPv4 header checksum
	BadTCP  uint64
	BadUDP  uint64
}

// Verify checks the IPv4 header checksum (for IPv4) and the TCP or UDP
// checksum (for ReasonOK TCP/UDP packets that are not fragments) of a
// parsed frame, counts the bad ones and reports whether all checked sums
// are good. Other packets have nothing to check and are good.
func (c *CsumStats) Verify(frame []byte, p *flows.Packet) bool {
	if p.Family == 4 && p.L3Len >= flows.IPv4MinLen && int(p.L3Off)+int(p.L3Len) <= len(frame) {
		if !VerifyIPv4Header(frame[p.L3Off : p.L3Off+p.L3Len]) {
			c.BadIPv4++
			return false
		}
	}
	if p.Reason != flows.ReasonOK || p.Fragment || (p.Proto != flows.ProtoTCP && p.Proto != flows.ProtoUDP) {
		return true
	}
	if VerifyL4(frame, p) {
		return true
	}
	if p.Proto == flows.ProtoTCP {
		c.BadTCP++
	} else {
		c.BadUDP++
	}
	return false
}

// Merge adds o's counts to c.
func (c *CsumStats) Merge(o *CsumStats) {
	c.BadIPv4 += o.BadIPv4
	c.BadTCP += o.BadTCP
	c.BadUDP += o.BadUDP
}
