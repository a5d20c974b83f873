package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/flows"
)

// Guests are isolated both ways, as SR-IOV virtual functions are:
//
//   - On send, a guest's frame leaves only if it claims nothing the guest
//     does not own (spoof checking, on unless GuestSpec.NoSpoofCheck): the
//     Ethernet source is the guest's MAC; the IP source is one of its
//     addresses; ARP and neighbour discovery name only its MAC and its
//     addresses. Anything else is dropped and counted per guest and reason.
//   - On receive, a guest gets only frames addressed to its MAC, or to a
//     broadcast or multicast group, whatever its rules steered to it.
//   - At attach (and in engine/config), a guest whose MAC, addresses or
//     rules overlap another guest's is refused.
//
// A guest without a MAC of its own shares its port's, as an ipvlan device
// shares its parent's: it sends with the port's MAC and receives what is
// addressed to it. It has no link-local IPv6 address of its own (the one
// derived from the port's MAC is the host's).

// SpoofReason says why the send path refused a guest's frame.
type SpoofReason uint8

const (
	SpoofNone      SpoofReason = iota // the frame claims only what the guest owns
	SpoofSrcMAC                       // the Ethernet source is not the guest's MAC
	SpoofSrcIP                        // the IP source is not one of the guest's addresses
	SpoofARP                          // the ARP sender MAC or address is not the guest's, or the ARP is not Ethernet/IPv4
	SpoofNDP                          // a neighbour discovery message names another's address or MAC, or is malformed or fragmented
	SpoofVLAN                         // the frame is VLAN-tagged: a guest is given no VLAN
	SpoofEtherType                    // neither IPv4, IPv6 nor ARP
	numSpoofReasons
)

var spoofNames = [numSpoofReasons]string{"none", "src_mac", "src_ip", "arp", "ndp", "vlan", "ethertype"}

func (r SpoofReason) String() string {
	if r < numSpoofReasons {
		return spoofNames[r]
	}
	return "spoof(?)"
}

// SpoofCounts are a guest's frames the send path refused, by reason.
type SpoofCounts struct {
	SrcMAC    uint64 `json:"src_mac"`
	SrcIP     uint64 `json:"src_ip"`
	ARP       uint64 `json:"arp"`
	NDP       uint64 `json:"ndp"`
	VLAN      uint64 `json:"vlan"`
	EtherType uint64 `json:"ethertype"`
}

// Total is the frames refused for any reason.
func (c SpoofCounts) Total() uint64 {
	return c.SrcMAC + c.SrcIP + c.ARP + c.NDP + c.VLAN + c.EtherType
}

// String lists the reasons with a count, "src_mac 2, arp 1"; "" when none.
func (c SpoofCounts) String() string {
	s := ""
	for _, r := range []struct {
		name string
		n    uint64
	}{{"src_mac", c.SrcMAC}, {"src_ip", c.SrcIP}, {"arp", c.ARP}, {"ndp", c.NDP}, {"vlan", c.VLAN}, {"ethertype", c.EtherType}} {
		if r.n == 0 {
			continue
		}
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%s %d", r.name, r.n)
	}
	return s
}

// Spoofed are the guest's frames the send path refused, by reason.
func (g *Guest) Spoofed() SpoofCounts {
	c := &g.spoofed
	return SpoofCounts{
		SrcMAC: c[SpoofSrcMAC].Load(), SrcIP: c[SpoofSrcIP].Load(), ARP: c[SpoofARP].Load(),
		NDP: c[SpoofNDP].Load(), VLAN: c[SpoofVLAN].Load(), EtherType: c[SpoofEtherType].Load(),
	}
}

// SpoofCheck reports whether the guest's sends are checked.
func (g *Guest) SpoofCheck() bool { return g.guard != nil }

// guard is what a guest may claim on the wire besides its MAC (which is
// the endpoint's, Endpoint.hw): its addresses. Built at attach, then only
// read, by the workers.
type guard struct {
	addrs [][16]byte // the guest's addresses, IPv4-mapped as in flows.Key
	ll    [16]byte   // the link-local address derived from the guest's own MAC
	hasLL bool       // false for a guest without a MAC of its own
}

func newGuard(spec GuestSpec) *guard {
	gd := &guard{}
	for _, p := range spec.Addrs {
		gd.addrs = append(gd.addrs, addr16(p.Addr()))
	}
	if len(spec.MAC) == 6 {
		gd.ll, gd.hasLL = linkLocal([6]byte(spec.MAC)), true
	}
	return gd
}

// addr16 is a in the flows.Key layout: IPv4 mapped.
func addr16(a netip.Addr) [16]byte {
	a = a.Unmap()
	if a.Is4() {
		return flows.MapIPv4(a.As4())
	}
	return a.As16()
}

// linkLocal is the fe80::/64 address with the modified EUI-64 of mac
// (RFC 4291 §2.5.1), the one netstack (and Linux) give themselves.
func linkLocal(mac [6]byte) [16]byte {
	return [16]byte{0: 0xfe, 1: 0x80, 8: mac[0] ^ 2, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5]}
}

// owns reports whether a (flows.Key layout) is one of the guest's
// addresses or its link-local one.
func (gd *guard) owns(a *[16]byte) bool {
	for i := range gd.addrs {
		if gd.addrs[i] == *a {
			return true
		}
	}
	return gd.hasLL && gd.ll == *a
}

// Offsets in the frames the guard reads.
const (
	ethSrc = 6 // Ethernet source MAC

	// ARP over Ethernet and IPv4 (RFC 826), from the ARP header.
	arpHType  = 0  // hardware type: 1, Ethernet
	arpPType  = 2  // protocol type: 0x0800, IPv4
	arpHLen   = 4  // 6
	arpPLen   = 5  // 4
	arpSHA    = 8  // sender hardware address
	arpSPA    = 14 // sender protocol address
	arpMinLen = 28

	// Neighbour discovery (RFC 4861), from the ICMPv6 header.
	icmp6RS       = 133 // router solicitation: options at 8
	icmp6RA       = 134 // router advertisement: options at 16
	icmp6NS       = 135 // neighbour solicitation: target at 8, options at 24
	icmp6NA       = 136 // neighbour advertisement: target at 8, options at 24
	icmp6Redirect = 137 // redirect: target at 8, destination at 24, options at 40
	ndTarget      = 8
	ndOptSrcLL    = 1 // source link-layer address option
	ndOptTgtLL    = 2 // target link-layer address option
)

// check says whether frame (parsed into p, not malformed), sent by the
// guest through an endpoint whose MAC is hw, claims only what the guest
// owns. It reads the frame in place and allocates nothing.
func (gd *guard) check(frame []byte, p *flows.Packet, hw *[6]byte) SpoofReason {
	// The source MAC: the guest's, or for a guest without one its port's.
	if [6]byte(frame[ethSrc:ethSrc+6]) != *hw {
		return SpoofSrcMAC
	}
	if p.NumVLANs > 0 {
		return SpoofVLAN
	}
	switch p.EtherType {
	case flows.EtherTypeIPv4:
		if !gd.owns(&p.Key.Src) {
			return SpoofSrcIP
		}
	case flows.EtherTypeIPv6:
		// The unspecified source is how a node sends before it has an
		// address: duplicate address detection (NS) and MLD reports.
		if !gd.owns(&p.Key.Src) && (p.Key.Src != [16]byte{} || p.Proto != flows.ProtoICMPv6) {
			return SpoofSrcIP
		}
		if p.Proto == flows.ProtoICMPv6 && p.L4Len != 0 {
			return gd.checkND(frame[p.L4Off:int(p.L3Off)+int(p.IPLen)], p, hw)
		}
	case flows.EtherTypeARP:
		return gd.checkARP(frame[p.L3Off:], hw)
	default:
		return SpoofEtherType
	}
	return SpoofNone
}

// checkARP: an ARP request or reply names the guest as its sender: its MAC
// and one of its IPv4 addresses, or 0.0.0.0 (an RFC 5227 probe). The target
// fields are the guest's to choose.
func (gd *guard) checkARP(a []byte, hw *[6]byte) SpoofReason {
	if len(a) < arpMinLen || binary.BigEndian.Uint16(a[arpHType:]) != 1 ||
		binary.BigEndian.Uint16(a[arpPType:]) != flows.EtherTypeIPv4 || a[arpHLen] != 6 || a[arpPLen] != 4 {
		return SpoofARP
	}
	if [6]byte(a[arpSHA:arpSHA+6]) != *hw {
		return SpoofARP
	}
	spa := [4]byte(a[arpSPA : arpSPA+4])
	if spa == [4]byte{} {
		return SpoofNone
	}
	if m := flows.MapIPv4(spa); !gd.owns(&m) {
		return SpoofARP
	}
	return SpoofNone
}

// checkND: a neighbour discovery message (icmp is the ICMPv6 message, to
// the end of the IP packet) may carry only the guest's MAC in its
// link-layer address options, and a neighbour advertisement only one of
// the guest's addresses as its target. A solicitation's target is the
// address asked for, not claimed. Fragmented ND is refused, as receivers
// do (RFC 6980).
func (gd *guard) checkND(icmp []byte, p *flows.Packet, hw *[6]byte) SpoofReason {
	var opts int
	switch icmp[0] {
	case icmp6RS:
		opts = 8
	case icmp6RA:
		opts = 16
	case icmp6NS, icmp6NA:
		opts = 24
	case icmp6Redirect:
		opts = 40
	default:
		return SpoofNone // not neighbour discovery: echo, MLD, errors
	}
	if p.Fragment || len(icmp) < opts {
		return SpoofNDP
	}
	if icmp[0] == icmp6NA {
		if t := [16]byte(icmp[ndTarget : ndTarget+16]); !gd.owns(&t) {
			return SpoofNDP
		}
	}
	// Options are type, length in 8-byte units (never 0), value; a
	// link-layer address option holds a MAC from its third byte.
	for o := icmp[opts:]; len(o) > 0; {
		if len(o) < 8 || o[1] == 0 || int(o[1])*8 > len(o) {
			return SpoofNDP
		}
		if (o[0] == ndOptSrcLL || o[0] == ndOptTgtLL) && [6]byte(o[2:8]) != *hw {
			return SpoofNDP
		}
		o = o[int(o[1])*8:]
	}
	return SpoofNone
}

// addressedTo reports whether a received frame is for a guest whose MAC is
// hw: sent to hw, or to a broadcast or multicast group (the group bit of
// the first byte).
func addressedTo(frame []byte, hw *[6]byte) bool {
	return len(frame) >= 6 && (frame[0]&1 != 0 || [6]byte(frame[:6]) == *hw)
}

// endpointMAC is the MAC a guest has on a port: its own, or, without one,
// the port's.
func endpointMAC(spec GuestSpec, p *Port) ([6]byte, error) {
	if len(spec.MAC) == 6 {
		return [6]byte(spec.MAC), nil
	}
	ifi, err := net.InterfaceByIndex(p.Ifindex)
	if err != nil {
		return [6]byte{}, fmt.Errorf("port %s: read its MAC: %w", p.Name, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return [6]byte{}, fmt.Errorf("port %s: no Ethernet address for a guest without a MAC to share", p.Name)
	}
	return [6]byte(ifi.HardwareAddr), nil
}

// ErrGuestOverlap: a guest claims a MAC, an address or traffic another
// guest holds (AttachGuest; FindOverlap says what).
var ErrGuestOverlap = errors.New("guests overlap")

// OverlapKind says what two guests both claim.
type OverlapKind uint8

const (
	OverlapMAC           OverlapKind = iota + 1 // the same MAC
	OverlapAddr                                 // the same address: A and B index the specs' Addrs
	OverlapRuleOnAddr                           // rule A of the first matches address B of the second
	OverlapAddrUnderRule                        // address A of the first is matched by rule B of the second
	OverlapRules                                // rules A and B match some of the same traffic
)

// Overlap is something two guests both claim.
type Overlap struct {
	Kind OverlapKind
	// A and B index Addrs or Rules of the first and second spec, as Kind
	// says; both are -1 for OverlapMAC.
	A, B int
}

// FindOverlap returns the first thing guests a and b both claim: a MAC, an
// address, a rule of one matching an address of the other, or two rules
// matching the same traffic (overlapping prefixes, protocols and port
// ranges). Each would let one guest take the other's traffic: steering is
// by destination, and the receive filter by MAC.
func FindOverlap(a, b GuestSpec) (Overlap, bool) {
	if len(a.MAC) == 6 && len(b.MAC) == 6 && [6]byte(a.MAC) == [6]byte(b.MAC) {
		return Overlap{Kind: OverlapMAC, A: -1, B: -1}, true
	}
	for i, x := range a.Addrs {
		for j, y := range b.Addrs {
			if x.Addr().Unmap() == y.Addr().Unmap() {
				return Overlap{Kind: OverlapAddr, A: i, B: j}, true
			}
		}
	}
	for i, r := range a.Rules {
		for j, y := range b.Addrs {
			if r.Dst.Contains(y.Addr().Unmap()) {
				return Overlap{Kind: OverlapRuleOnAddr, A: i, B: j}, true
			}
		}
	}
	for i, x := range a.Addrs {
		for j, r := range b.Rules {
			if r.Dst.Contains(x.Addr().Unmap()) {
				return Overlap{Kind: OverlapAddrUnderRule, A: i, B: j}, true
			}
		}
	}
	for i, r := range a.Rules {
		for j, q := range b.Rules {
			if r.overlaps(q) {
				return Overlap{Kind: OverlapRules, A: i, B: j}, true
			}
		}
	}
	return Overlap{}, false
}

// Describe says what o is, from a's side, naming b: "rule 198.18.0.0/24
// any matches guest b's address 198.18.0.10".
func (o Overlap) Describe(a, b GuestSpec) string {
	switch o.Kind {
	case OverlapMAC:
		return fmt.Sprintf("mac %s is guest %s's too", a.MAC, b.Name)
	case OverlapAddr:
		return fmt.Sprintf("address %s is guest %s's too", a.Addrs[o.A].Addr(), b.Name)
	case OverlapRuleOnAddr:
		return fmt.Sprintf("rule %s matches guest %s's address %s", a.Rules[o.A], b.Name, b.Addrs[o.B].Addr())
	case OverlapAddrUnderRule:
		return fmt.Sprintf("address %s is matched by guest %s's rule %s", a.Addrs[o.A].Addr(), b.Name, b.Rules[o.B])
	case OverlapRules:
		return fmt.Sprintf("rule %s overlaps guest %s's rule %s", a.Rules[o.A], b.Name, b.Rules[o.B])
	}
	return "no overlap"
}

// overlaps reports whether some frame matches both rules: their prefixes
// overlap, and so do their protocols (any matches every IP protocol, not
// ARP) and destination port ranges.
func (r RuleSpec) overlaps(q RuleSpec) bool {
	if !r.Dst.Masked().Overlaps(q.Dst.Masked()) {
		return false
	}
	if (r.Proto == ProtoARP) != (q.Proto == ProtoARP) {
		return false
	}
	if r.Proto != 0 && q.Proto != 0 && r.Proto != q.Proto {
		return false
	}
	rlo, rhi := r.ports()
	qlo, qhi := q.ports()
	return rlo <= qhi && qlo <= rhi
}

// ports is the rule's destination port range; 0-0 is every port, as the
// steering program takes it.
func (r RuleSpec) ports() (lo, hi uint16) {
	if r.PortLo == 0 && r.PortHi == 0 {
		return 0, 0xffff
	}
	return r.PortLo, r.PortHi
}

// String is the rule as the config writes it: "198.18.0.0/24 udp
// 5000-5999", "198.18.0.10/32 any".
func (r RuleSpec) String() string {
	s := fmt.Sprintf("%s %s", r.Dst, bpf.Proto(r.Proto))
	if lo, hi := r.ports(); lo != 0 || hi != 0xffff {
		if lo == hi {
			return fmt.Sprintf("%s %d", s, lo)
		}
		return fmt.Sprintf("%s %d-%d", s, lo, hi)
	}
	return s
}
