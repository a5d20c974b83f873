package engine

import (
	"net"
	"net/netip"

	"github.com/xnic/xnic/bpf"
)

// GuestSpec is what the data path needs to know of a guest: its name, the
// port it is attached to and the ports it may move to, its MAC and
// addresses, and the steering rules that bring its traffic to its sockets.
// Package engine/config builds it from a YAML file; a Go program builds it
// directly.
type GuestSpec struct {
	Name string
	// Port is the guest's first port: active once attached.
	Port string
	// Standby are the ports the guest may migrate to, in order of
	// preference. The guest has sockets on each of them from the start,
	// so a move waits for no bind; rules go only on the active port.
	Standby []string
	// Failover says when the engine moves the guest by itself.
	Failover FailoverPolicy
	// MAC is the guest's unicast Ethernet address. A guest without one
	// shares its port's, as an ipvlan device does (see isolate.go).
	MAC   net.HardwareAddr
	Addrs []netip.Prefix // the guest's own addresses with their subnets
	Rules []RuleSpec
	// NoSpoofCheck lets the guest send frames that claim a MAC or an
	// address it does not own (SR-IOV's "spoofchk off"): a guest that
	// routes or bridges for others. By default every frame it sends must
	// come from its MAC and one of its addresses (or its link-local IPv6
	// address, or :: for DAD and MLD), and its ARP and neighbour discovery
	// must name only those; other frames are dropped and counted
	// (Guest.Spoofed).
	NoSpoofCheck bool
	// Rate (bytes per second) and Burst (bytes) shape everything the
	// guest sends, over all its classes, with a token bucket; Rate 0
	// leaves it unshaped.
	Rate, Burst uint64
}

// FailoverPolicy says when the engine migrates a guest without being told.
type FailoverPolicy struct {
	// LinkDown moves the guest to its first standby port that is up when
	// its active port goes down or is deleted.
	LinkDown bool `json:"link_down"`
	// Failback moves it back to its first port once that port is up again.
	Failback bool `json:"failback"`
}

// Ports are the guest's ports: Port, then Standby.
func (s GuestSpec) Ports() []string { return append([]string{s.Port}, s.Standby...) }

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
