package stack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Errors. Constructors and the library API wrap them with what they were
// given.
var (
	// ErrOptions: an Options field is out of range. The message names the
	// field.
	ErrOptions = errors.New("invalid options")
	// ErrAddress: a network or address given to Listen, Dial or
	// ListenPacket is not one this stack serves.
	ErrAddress = errors.New("unsupported network or address")
	// ErrClosed: the Stack is closed.
	ErrClosed = errors.New("stack closed")
)

// Limits of Options fields.
const (
	// MinMTU is the smallest MTU (IPv4's minimum datagram, RFC 791); with
	// an IPv6 address the MTU must be at least MinMTU6.
	MinMTU  = 68
	MinMTU6 = 1280
	// MaxMTU keeps a frame (MTU plus the Ethernet header) within 16 bits.
	MaxMTU = 0xffff - EthernetHeaderLen
	// MaxGSOSize is the largest GSOMaxSize: the IP length field is 16
	// bits, and netstack keeps a TSO segment below this.
	MaxGSOSize = 1 << 16
	// MinTCPBufferSize and MaxTCPBufferSize bound the TCP buffer sizes.
	MinTCPBufferSize = 4 << 10
	MaxTCPBufferSize = 1 << 30
	// EthernetHeaderLen is the length of the Ethernet header the link
	// endpoint adds and removes (no VLAN tags).
	EthernetHeaderLen = 14
)

// Options configure a Stack.
type Options struct {
	// Name is the NIC's name inside netstack, used in errors.
	Name string
	// MAC is the guest's unicast Ethernet address. Required.
	MAC net.HardwareAddr
	// Addrs are the guest's addresses, IPv4 and/or IPv6, each with the
	// prefix length of its subnet. A route to every subnet goes through
	// the NIC. At least one is required.
	Addrs []netip.Prefix
	// Gateway4 and Gateway6, when valid, are the next hops of the default
	// routes. When one is not set and the stack has an address of its
	// family, the default route of that family is on-link: every
	// destination is resolved with ARP or NDP on the wire.
	Gateway4 netip.Addr
	Gateway6 netip.Addr

	// MTU is the IP MTU of the link (the frame is 14 bytes longer).
	MTU int
	// GSOMaxSize is the largest TCP segment netstack hands to the TxFunc
	// (TSO: the engine segments it to the MTU and fills in the checksums).
	// Zero disables TSO: netstack then segments to the MSS and computes
	// every checksum itself.
	GSOMaxSize int
	// RxChecksumOffload tells netstack that received checksums were
	// validated (CapabilityRXChecksumOffload), so it does not verify them
	// again. Aggregates without AggCsumValidated and frames given to
	// DeliverFrame as not validated are then verified here before
	// netstack sees them. Off, netstack verifies every checksum, and a GRO
	// must write full checksums into aggregates (CsumFull; CsumPartial
	// aggregates are completed here).
	RxChecksumOffload bool

	// SACK enables TCP selective acknowledgements (RFC 2018).
	SACK bool
	// ModerateReceiveBuffer lets netstack grow a connection's receive
	// buffer with its throughput, up to TCPMaxBufferSize (like Linux's
	// tcp_moderate_rcvbuf).
	ModerateReceiveBuffer bool
	// TCPSendBufferSize and TCPReceiveBufferSize are the default buffer
	// sizes of a connection; TCPMaxBufferSize bounds both, and what
	// moderation or SetReadBuffer/SetWriteBuffer may set.
	TCPSendBufferSize    int
	TCPReceiveBufferSize int
	TCPMaxBufferSize     int
	// CongestionControl is "cubic" or "reno".
	CongestionControl string
}

// DefaultOptions returns options tuned for bulk TCP over a 10 Gbit/s link:
// MTU 1500, TSO up to 64 KB, RX checksum offload, SACK, receive buffer
// moderation, 1 MiB default buffers growing to 8 MiB, and CUBIC. MAC and
// Addrs have no default.
func DefaultOptions() Options {
	return Options{
		Name:                  "xnic0",
		MTU:                   1500,
		GSOMaxSize:            MaxGSOSize,
		RxChecksumOffload:     true,
		SACK:                  true,
		ModerateReceiveBuffer: true,
		TCPSendBufferSize:     1 << 20,
		TCPReceiveBufferSize:  1 << 20,
		TCPMaxBufferSize:      8 << 20,
		CongestionControl:     "cubic",
	}
}

func optErr(field, format string, args ...any) error {
	return fmt.Errorf("stack options: %s: %s: %w", field, fmt.Sprintf(format, args...), ErrOptions)
}

// Validate reports the first field out of range, by name.
func (o *Options) Validate() error {
	if o.Name == "" {
		return optErr("Name", "empty")
	}
	if len(o.MAC) != 6 {
		return optErr("MAC", "%d bytes, want 6", len(o.MAC))
	}
	if o.MAC[0]&1 != 0 {
		return optErr("MAC", "%s is a multicast address", o.MAC)
	}
	if [6]byte(o.MAC) == ([6]byte{}) {
		return optErr("MAC", "all zeros")
	}
	if len(o.Addrs) == 0 {
		return optErr("Addrs", "no address")
	}
	has4, has6 := false, false
	for i, p := range o.Addrs {
		a := p.Addr()
		switch {
		case !p.IsValid():
			return optErr("Addrs", "[%d] %v is not a valid prefix", i, p)
		case a.Zone() != "":
			return optErr("Addrs", "[%d] %v has a zone", i, p)
		case a.Is4In6():
			return optErr("Addrs", "[%d] %v is IPv4-mapped; give the IPv4 address", i, p)
		case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
			return optErr("Addrs", "[%d] %v is not a unicast address", i, p)
		}
		for _, q := range o.Addrs[:i] {
			if q.Addr() == a {
				return optErr("Addrs", "[%d] %v given twice", i, a)
			}
		}
		if a.Is4() {
			has4 = true
		} else {
			has6 = true
		}
	}
	if o.Gateway4.IsValid() && (!o.Gateway4.Is4() || !has4) {
		return optErr("Gateway4", "%v is not IPv4 or there is no IPv4 address", o.Gateway4)
	}
	if o.Gateway6.IsValid() && (!o.Gateway6.Is6() || o.Gateway6.Is4In6() || !has6) {
		return optErr("Gateway6", "%v is not IPv6 or there is no IPv6 address", o.Gateway6)
	}
	minMTU := MinMTU
	if has6 {
		minMTU = MinMTU6
	}
	if o.MTU < minMTU || o.MTU > MaxMTU {
		return optErr("MTU", "%d out of range [%d, %d]", o.MTU, minMTU, MaxMTU)
	}
	if o.GSOMaxSize != 0 && (o.GSOMaxSize <= o.MTU || o.GSOMaxSize > MaxGSOSize) {
		return optErr("GSOMaxSize", "%d is neither 0 nor in (MTU %d, %d]", o.GSOMaxSize, o.MTU, MaxGSOSize)
	}
	if o.TCPMaxBufferSize < MinTCPBufferSize || o.TCPMaxBufferSize > MaxTCPBufferSize {
		return optErr("TCPMaxBufferSize", "%d out of range [%d, %d]", o.TCPMaxBufferSize, MinTCPBufferSize, MaxTCPBufferSize)
	}
	if o.TCPSendBufferSize < MinTCPBufferSize || o.TCPSendBufferSize > o.TCPMaxBufferSize {
		return optErr("TCPSendBufferSize", "%d out of range [%d, TCPMaxBufferSize %d]", o.TCPSendBufferSize, MinTCPBufferSize, o.TCPMaxBufferSize)
	}
	if o.TCPReceiveBufferSize < MinTCPBufferSize || o.TCPReceiveBufferSize > o.TCPMaxBufferSize {
		return optErr("TCPReceiveBufferSize", "%d out of range [%d, TCPMaxBufferSize %d]", o.TCPReceiveBufferSize, MinTCPBufferSize, o.TCPMaxBufferSize)
	}
	switch o.CongestionControl {
	case "cubic", "reno":
	default:
		return optErr("CongestionControl", "%q is neither \"cubic\" nor \"reno\"", o.CongestionControl)
	}
	return nil
}
