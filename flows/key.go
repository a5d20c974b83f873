package flows

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
)

// Key identifies a flow: a comparable, fixed-size value usable as a map key
// and hashed without allocation. IPv4 addresses are stored IPv4-mapped
// (::ffff:a.b.c.d), so one layout serves both families.
type Key struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16 // 0 for protocols without ports and non-first fragments
	Proto            uint8
	Family           uint8  // 4 or 6; 0 for non-IP
	VLAN             uint16 // outer VLAN id, 0 when untagged
}

// v4Mapped is the prefix of an IPv4-mapped IPv6 address.
var v4Mapped = [12]byte{10: 0xff, 11: 0xff}

// MapIPv4 stores an IPv4 address in the Key layout.
func MapIPv4(a [4]byte) (m [16]byte) {
	copy(m[:], v4Mapped[:])
	copy(m[12:], a[:])
	return m
}

// SrcAddr and DstAddr return the addresses as netip.Addr (IPv4 unmapped).
func (k Key) SrcAddr() netip.Addr { return k.addr(k.Src) }
func (k Key) DstAddr() netip.Addr { return k.addr(k.Dst) }

func (k Key) addr(a [16]byte) netip.Addr {
	if k.Family == 4 {
		return netip.AddrFrom4([4]byte(a[12:]))
	}
	return netip.AddrFrom16(a)
}

// Reverse is the key of the other direction of the flow.
func (k Key) Reverse() Key {
	k.Src, k.Dst = k.Dst, k.Src
	k.SrcPort, k.DstPort = k.DstPort, k.SrcPort
	return k
}

func (k Key) String() string {
	proto := fmt.Sprintf("proto %d", k.Proto)
	switch k.Proto {
	case ProtoTCP:
		proto = "tcp"
	case ProtoUDP:
		proto = "udp"
	case ProtoICMP:
		proto = "icmp"
	case ProtoICMPv6:
		proto = "icmpv6"
	}
	s := fmt.Sprintf("%s %s -> %s", proto,
		netip.AddrPortFrom(k.SrcAddr(), k.SrcPort), netip.AddrPortFrom(k.DstAddr(), k.DstPort))
	if k.VLAN != 0 {
		s += fmt.Sprintf(" vlan %d", k.VLAN)
	}
	return s
}

// Hash seeds. Any odd constants do; these are from wyhash.
const (
	hashSeed = 0xa0761d6478bd642f
	hashMul  = 0xe7037ed1a0b428db
)

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a^hashSeed, b^hashMul)
	return hi ^ lo
}

// Hash is a fast, well-mixed 64-bit hash of the key (the direction matters).
func (k *Key) Hash() uint64 {
	return hashParts(k.Src, k.Dst, k.SrcPort, k.DstPort, k)
}

// SymmetricHash hashes both directions of a flow alike: it orders the two
// endpoints before hashing, so k.SymmetricHash() == k.Reverse().SymmetricHash().
func (k *Key) SymmetricHash() uint64 {
	a, b := k.Src, k.Dst
	pa, pb := k.SrcPort, k.DstPort
	if less(b, pb, a, pa) {
		a, b, pa, pb = b, a, pb, pa
	}
	return hashParts(a, b, pa, pb, k)
}

func less(a [16]byte, pa uint16, b [16]byte, pb uint16) bool {
	x, y := binary.BigEndian.Uint64(a[0:]), binary.BigEndian.Uint64(b[0:])
	if x != y {
		return x < y
	}
	x, y = binary.BigEndian.Uint64(a[8:]), binary.BigEndian.Uint64(b[8:])
	if x != y {
		return x < y
	}
	return pa < pb
}

// hashParts folds the ports, protocol, family and VLAN in twice: first into
// the opening mix, then at the end. One multiply-fold alone would leave keys
// that differ only in a port (a load test's flows) spread almost linearly
// in the low bits, so they would crowd into some buckets.
func hashParts(a, b [16]byte, pa, pb uint16, k *Key) uint64 {
	rest := uint64(pa) | uint64(pb)<<16 | uint64(k.Proto)<<32 | uint64(k.Family)<<40 | uint64(k.VLAN)<<48
	h := mix(binary.LittleEndian.Uint64(a[0:]), binary.LittleEndian.Uint64(a[8:])^rest)
	h = mix(h^binary.LittleEndian.Uint64(b[0:]), binary.LittleEndian.Uint64(b[8:]))
	return mix(h, rest)
}
