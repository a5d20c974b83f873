package gen

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// Header sizes of the frames BuildUDP makes (no VLAN tag, no IP options).
const (
	EthHeaderLen  = 14
	IPv4HeaderLen = 20
	IPv6HeaderLen = 40
	UDPHeaderLen  = 8
)

// Frame size limits, in bytes without the FCS.
const (
	// MinFrameSize is the Ethernet minimum without FCS (64 on the wire).
	MinFrameSize = 60
	// MinFrameSizeIPv6 holds the Ethernet, IPv6 and UDP headers.
	MinFrameSizeIPv6 = EthHeaderLen + IPv6HeaderLen + UDPHeaderLen
	// MaxFrameSize is a 9000-byte MTU jumbo frame.
	MaxFrameSize = 9000 + EthHeaderLen
)

// SeqLen is the size of the sequence number the generator writes at the
// start of the UDP payload, when the payload is at least that long.
const SeqLen = 8

// UDPOffset is the offset of the UDP header in a BuildUDP frame.
func UDPOffset(ipv6 bool) int {
	if ipv6 {
		return EthHeaderLen + IPv6HeaderLen
	}
	return EthHeaderLen + IPv4HeaderLen
}

// PayloadOffset is the offset of the UDP payload in a BuildUDP frame; the
// generator's sequence number sits there.
func PayloadOffset(ipv6 bool) int { return UDPOffset(ipv6) + UDPHeaderLen }

// MinSize is the smallest frame BuildUDP makes for the address family.
func MinSize(ipv6 bool) int {
	if ipv6 {
		return MinFrameSizeIPv6
	}
	return MinFrameSize
}

// FrameOptions describe one UDP frame.
type FrameOptions struct {
	// Size is the frame length without FCS: MinSize..MaxFrameSize. The UDP
	// payload fills what the headers leave.
	Size int
	// SrcMAC and DstMAC are 6-byte Ethernet addresses.
	SrcMAC, DstMAC net.HardwareAddr
	// SrcIP and DstIP are both IPv4 or both IPv6; the family picks the frame.
	SrcIP, DstIP netip.Addr
	// SrcPort and DstPort are the UDP ports.
	SrcPort, DstPort uint16
	// HopLimit is the IPv4 TTL or IPv6 hop limit; 0 means 64.
	HopLimit uint8
	// Payload is copied to the start of the UDP payload (the rest is zero).
	// It must fit.
	Payload []byte
}

// BuildUDP returns an Ethernet + IPv4/IPv6 + UDP frame with a correct IPv4
// header checksum and a correct UDP checksum. IPv4 frames carry DF and ID 0.
func BuildUDP(opts FrameOptions) ([]byte, error) {
	if len(opts.SrcMAC) != 6 {
		return nil, fmt.Errorf("build udp frame: src mac: must be 6 bytes, got %d", len(opts.SrcMAC))
	}
	if len(opts.DstMAC) != 6 {
		return nil, fmt.Errorf("build udp frame: dst mac: must be 6 bytes, got %d", len(opts.DstMAC))
	}
	src, dst := opts.SrcIP.Unmap(), opts.DstIP.Unmap()
	if !src.IsValid() || !dst.IsValid() {
		return nil, fmt.Errorf("build udp frame: src ip %s and dst ip %s must both be set", opts.SrcIP, opts.DstIP)
	}
	if src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("build udp frame: src ip %s and dst ip %s are of different families", src, dst)
	}
	ipv6 := src.Is6()
	if opts.Size < MinSize(ipv6) || opts.Size > MaxFrameSize {
		return nil, fmt.Errorf("build udp frame: size: must be %d..%d, got %d", MinSize(ipv6), MaxFrameSize, opts.Size)
	}
	payloadLen := opts.Size - PayloadOffset(ipv6)
	if len(opts.Payload) > payloadLen {
		return nil, fmt.Errorf("build udp frame: payload of %d bytes does not fit in %d", len(opts.Payload), payloadLen)
	}
	hop := opts.HopLimit
	if hop == 0 {
		hop = 64
	}

	f := make([]byte, opts.Size)
	copy(f[0:6], opts.DstMAC)
	copy(f[6:12], opts.SrcMAC)
	udpLen := UDPHeaderLen + payloadLen
	l4 := UDPOffset(ipv6)
	if ipv6 {
		binary.BigEndian.PutUint16(f[12:], 0x86dd)
		ip := f[EthHeaderLen:l4]
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(udpLen))
		ip[6] = 17 // UDP
		ip[7] = hop
		s, d := src.As16(), dst.As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
	} else {
		binary.BigEndian.PutUint16(f[12:], 0x0800)
		ip := f[EthHeaderLen:l4]
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(IPv4HeaderLen+udpLen))
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = hop
		ip[9] = 17 // UDP
		s, d := src.As4(), dst.As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		binary.BigEndian.PutUint16(ip[10:], ^foldSum(addBytes(0, ip)))
	}
	udp := f[l4:]
	binary.BigEndian.PutUint16(udp[0:], opts.SrcPort)
	binary.BigEndian.PutUint16(udp[2:], opts.DstPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen))
	copy(udp[UDPHeaderLen:], opts.Payload)
	binary.BigEndian.PutUint16(udp[6:], UDPChecksum(src, dst, udp))
	return f, nil
}

// UDPChecksum computes the checksum of a UDP datagram (header and payload,
// checksum field taken as zero) with its pseudo header. A result of zero is
// sent as 0xffff (RFC 768).
func UDPChecksum(src, dst netip.Addr, udp []byte) uint16 {
	sum := pseudoSum(src, dst, 17, len(udp))
	sum = addBytes(sum, udp[:6])
	sum = addBytes(sum, udp[8:])
	c := ^foldSum(sum)
	if c == 0 {
		c = 0xffff
	}
	return c
}

// UDPChecksumValid reports whether a received UDP datagram verifies: the
// ones' complement sum over pseudo header and datagram is 0xffff. A zero
// checksum (none) is valid for IPv4 only.
func UDPChecksumValid(src, dst netip.Addr, udp []byte) bool {
	if len(udp) < UDPHeaderLen {
		return false
	}
	if binary.BigEndian.Uint16(udp[6:]) == 0 {
		return src.Unmap().Is4()
	}
	return foldSum(addBytes(pseudoSum(src, dst, 17, len(udp)), udp)) == 0xffff
}

func pseudoSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	var sum uint32
	if src = src.Unmap(); src.Is4() {
		s, d := src.As4(), dst.Unmap().As4()
		sum = addBytes(addBytes(0, s[:]), d[:])
	} else {
		s, d := src.As16(), dst.As16()
		sum = addBytes(addBytes(0, s[:]), d[:])
	}
	return sum + uint32(proto) + uint32(length>>16) + uint32(length&0xffff)
}

// addBytes adds b as big-endian 16-bit words (odd tail padded with zero).
func addBytes(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
		if sum >= 1<<31 {
			sum = sum&0xffff + sum>>16
		}
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func foldSum(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
