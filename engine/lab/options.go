package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// Limits of Options.
const (
	MaxPorts  = 16 // ports per lab; port i uses 198.18.<i>.0/24
	MaxQueues = 64 // rx and tx queues per veth
	MinMTU    = 68
	MaxMTU    = 65535
	// MinMTUIPv6 is the smallest MTU with which IPv6 works (RFC 8200).
	MinMTUIPv6 = 1280

	// ifNameMax is IFNAMSIZ minus the terminating NUL.
	ifNameMax = 15
)

// Sentinel errors. Test them with errors.Is.
var (
	// ErrInvalidOptions wraps every error from Options.Validate.
	ErrInvalidOptions = errors.New("invalid lab options")
	// ErrExists means a netns or link that Up would create already exists.
	ErrExists = errors.New("lab already exists")
	// ErrNotFound means Open found no lab of that name.
	ErrNotFound = errors.New("lab not found")
	// ErrNotBridged means a call that needs the peer bridge was made on a
	// lab built without Options.PeerBridge.
	ErrNotBridged = errors.New("lab has no peer bridge")
	// ErrAddrInUse means an address of the caller's netns lies in a subnet
	// of the lab, 198.18.<i>.0/24 or 2001:2:0:<i>::/64: most likely another
	// lab is up. Two labs in one netns would share those subnets and their
	// routes, so Up refuses.
	ErrAddrInUse = errors.New("lab subnet in use")
)

// Options describe a lab. Start from DefaultOptions.
type Options struct {
	// Name prefixes every netns and link of the lab: [a-z][a-z0-9]*, short
	// enough that the peer link NAME+"p"+index fits in IFNAMSIZ.
	Name string
	// Ports is the number of veth pairs, 1..MaxPorts.
	Ports int
	// Queues is the number of rx and tx queues of each veth end, 1..MaxQueues.
	Queues int
	// MTU of both veth ends, MinMTU..MaxMTU (at least MinMTUIPv6 with IPv6).
	MTU int
	// PeerOffloadsOff turns tx checksum, TSO, GSO, GRO and LRO off on the peer
	// ends, so that the host end receives finished, MTU-sized frames as from a
	// wire.
	PeerOffloadsOff bool
	// HostOffloadsOff does the same on the host ends.
	HostOffloadsOff bool
	// IPv6 adds the 2001:2:0:<i>::/64 addresses. Without it IPv6 is disabled
	// on the lab's links (no addresses, no router or neighbour solicitations).
	IPv6 bool
	// PeerBridge joins the peer ends under one Linux bridge, NAME+"br" in the
	// peer netns, which holds the peer's addresses 198.18.0.2/24 and
	// 2001:2::2/64: a server's NIC ports cabled into one switch. Every port
	// then shares the subnets of port 0, and only port 0's host end has
	// addresses (see the package doc). It is allowed with one port too: the
	// same switch with one cable in it.
	PeerBridge bool

	// hookPortDone, when set, runs after port i is complete. Tests use it to
	// fail Up halfway and check the unwinding.
	hookPortDone func(i int) error
}

// DefaultOptions returns a one-port, one-queue lab named "xnic" with MTU 1500,
// the peer offloads off and IPv6 on.
func DefaultOptions() Options {
	return Options{
		Name:            "xnic",
		Ports:           1,
		Queues:          1,
		MTU:             1500,
		PeerOffloadsOff: true,
		IPv6:            true,
	}
}

// OptionError is the error type of Options.Validate. It names the field.
type OptionError struct {
	Field string // lower-case field name, e.g. "ports"
	Msg   string
}

func (e *OptionError) Error() string { return "lab: " + e.Field + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrInvalidOptions) hold.
func (e *OptionError) Unwrap() error { return ErrInvalidOptions }

func optErr(field, format string, args ...any) error {
	return &OptionError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks every field and returns an *OptionError naming the first bad
// one, e.g. "lab: ports: must be 1..16, got 0".
func (o Options) Validate() error {
	if o.Ports < 1 || o.Ports > MaxPorts {
		return optErr("ports", "must be 1..%d, got %d", MaxPorts, o.Ports)
	}
	if err := validateName(o.Name, o.Ports); err != nil {
		return err
	}
	if o.Queues < 1 || o.Queues > MaxQueues {
		return optErr("queues", "must be 1..%d, got %d", MaxQueues, o.Queues)
	}
	if o.MTU < MinMTU || o.MTU > MaxMTU {
		return optErr("mtu", "must be %d..%d, got %d", MinMTU, MaxMTU, o.MTU)
	}
	if o.IPv6 && o.MTU < MinMTUIPv6 {
		return optErr("mtu", "must be at least %d with ipv6, got %d", MinMTUIPv6, o.MTU)
	}
	return nil
}

// validateName checks name for a lab of ports ports.
func validateName(name string, ports int) error {
	if name == "" {
		return optErr("name", "must not be empty")
	}
	for i, c := range []byte(name) {
		letter := c >= 'a' && c <= 'z'
		digit := c >= '0' && c <= '9'
		if !letter && !(digit && i > 0) {
			return optErr("name", "must match [a-z][a-z0-9]*, got %q", name)
		}
	}
	if longest := PeerLinkName(name, ports-1); len(longest) > ifNameMax {
		return optErr("name", "%q is too long: peer link %q exceeds %d characters",
			name, longest, ifNameMax)
	}
	return nil
}

// RandomName returns prefix followed by four random hex digits, e.g.
// RandomName("xt") == "xt3fa2". Use a prefix of at most 6 characters so that
// MaxPorts ports fit.
func RandomName(prefix string) string {
	var b [2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return prefix + hex.EncodeToString(b[:])
}

// NetnsName returns the name of lab name's peer netns: NAME-peer.
func NetnsName(name string) string { return name + "-peer" }

// HostLinkName returns the name of port i's veth in the caller's netns: NAME<i>.
func HostLinkName(name string, i int) string { return name + strconv.Itoa(i) }

// BridgeName returns the name of the peer bridge of lab name, in its netns:
// NAMEbr. It is never longer than PeerLinkName(name, 0).
func BridgeName(name string) string { return name + "br" }

// PeerLinkName returns the name of port i's veth in the peer netns: NAMEp<i>.
func PeerLinkName(name string, i int) string { return name + "p" + strconv.Itoa(i) }
