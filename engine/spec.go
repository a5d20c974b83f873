package engine

import (
	"net"
	"net/netip"

	"github.com/xnic/xnic/bpf"
)

// GuestSpec is what the data path needs to know of a guest: its name, the
// port it is attached to, its MAC and addresses, and the steering rules
// that bring its traffic to its sockets. Package engine/config builds it
// from a YAML file; a Go program builds it directly.
type GuestSpec struct {
	Name  string
	Port  string
	MAC   net.HardwareAddr
	Addrs []netip.Prefix // the guest's own addresses with their subnets
	Rules []RuleSpec
}

// RuleSpec is one steering rule: traffic to Dst (with Proto and a
// destination port range) goes to the guest, in Class or in the class its
// DSCP selects.
type RuleSpec struct {
	Dst            netip.Prefix
	Proto          uint8 // 0: any
	PortLo, PortHi uint16
	Class          uint8
	ClassFromDSCP  bool
}

// ProtoARP in RuleSpec.Proto matches ARP whose target address is in Dst.
const ProtoARP = uint8(bpf.ProtoARP)
