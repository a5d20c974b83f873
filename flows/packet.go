package flows

// Reason says why a frame was not parsed to its end. Parse never fails:
// it records the reason and what it did parse.
type Reason uint8

const (
	ReasonOK                Reason = iota // parsed through L4
	ReasonNonIP                           // EtherType is not IPv4/IPv6 (ARP, LLDP, ...): not an error
	ReasonTruncEthernet                   // shorter than an Ethernet header
	ReasonTruncVLAN                       // a VLAN tag is cut off
	ReasonTooManyVLANs                    // more than two VLAN tags
	ReasonTruncIPv4                       // IPv4 header (or its options) cut off
	ReasonBadIPv4                         // version is not 4, IHL < 5, or total length < IHL
	ReasonTruncIPv6                       // fixed IPv6 header cut off
	ReasonBadIPv6                         // version is not 6
	ReasonTruncExtHeader                  // an IPv6 extension header cut off
	ReasonTooManyExtHeaders               // more extension headers than the parser follows
	ReasonIPLength                        // IP length field says more bytes than the frame has
	ReasonTruncL4                         // TCP/UDP/ICMP header cut off
	ReasonBadTCPOffset                    // TCP data offset < 5 or beyond the segment
	ReasonUnknownL4                       // an L4 protocol the parser does not decode: not an error
	ReasonFragment                        // a non-first fragment: no L4 header to read; not an error
	numReasons
)

var reasonNames = [numReasons]string{
	"ok", "non_ip", "trunc_ethernet", "trunc_vlan", "too_many_vlans", "trunc_ipv4", "bad_ipv4",
	"trunc_ipv6", "bad_ipv6", "trunc_ext_header", "too_many_ext_headers", "ip_length",
	"trunc_l4", "bad_tcp_offset", "unknown_l4", "fragment",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "reason(?)"
}

// Malformed reports whether the reason means a broken frame, to be counted
// and dropped, as opposed to one that is merely not TCP/UDP.
func (r Reason) Malformed() bool {
	switch r {
	case ReasonOK, ReasonNonIP, ReasonUnknownL4, ReasonFragment:
		return false
	}
	return true
}

// NumReasons is the number of Reason values, for counter arrays.
const NumReasons = int(numReasons)

// Packet is what Parse learns of a frame. The caller owns it and reuses it;
// offsets index the frame. Fields past the point where parsing stopped are
// zero.
type Packet struct {
	Reason Reason

	// Link layer.
	EtherType uint16    // after any VLAN tags
	VLANs     [2]uint16 // VLAN ids, outer first
	NumVLANs  uint8

	// Network layer.
	Family     uint8  // 4, 6, or 0 for non-IP
	L3Off      uint16 // start of the IP header
	L3Len      uint16 // IP header length, IPv6 extension headers included
	IPLen      uint16 // IP total length (IPv4) or 40 + payload length (IPv6)
	TOS        uint8  // IPv4 TOS or IPv6 traffic class; DSCP is TOS >> 2
	TTL        uint8  // TTL or hop limit
	Fragment   bool   // part of a fragmented datagram
	FirstFrag  bool   // the first fragment (offset 0, more fragments)
	IPOptions  bool   // IPv4 header longer than 20 bytes
	ExtHeaders uint8  // IPv6 extension headers followed

	// Transport layer.
	Proto      uint8  // L4 protocol after extension headers
	L4Off      uint16 // start of the TCP/UDP/ICMP header
	L4Len      uint16 // TCP header length with options, 8 for UDP and ICMP
	PayloadOff uint16 // start of the L4 payload
	PayloadLen uint16 // L4 payload length, from the IP length (padding excluded)
	TCPFlags   uint8

	Key Key // addresses, ports, protocol, family, outer VLAN
}

// DSCP is the packet's differentiated services code point.
func (p *Packet) DSCP() uint8 { return p.TOS >> 2 }

// Views into a frame whose Packet says they are whole.

// IPv4 returns the IPv4 header view; valid when Family == 4.
func (p *Packet) IPv4(frame []byte) IPv4 { return IPv4(frame[p.L3Off : p.L3Off+p.L3Len]) }

// IPv6 returns the fixed IPv6 header view; valid when Family == 6.
func (p *Packet) IPv6(frame []byte) IPv6 { return IPv6(frame[p.L3Off : p.L3Off+IPv6Len]) }

// TCP returns the TCP header view with options; valid when Proto == ProtoTCP and Reason == ReasonOK.
func (p *Packet) TCP(frame []byte) TCP { return TCP(frame[p.L4Off : p.L4Off+p.L4Len]) }

// UDP returns the UDP header view; valid when Proto == ProtoUDP and Reason == ReasonOK.
func (p *Packet) UDP(frame []byte) UDP { return UDP(frame[p.L4Off : p.L4Off+UDPLen]) }

// Payload returns the L4 payload, without link-layer padding.
func (p *Packet) Payload(frame []byte) []byte {
	return frame[p.PayloadOff : int(p.PayloadOff)+int(p.PayloadLen)]
}
