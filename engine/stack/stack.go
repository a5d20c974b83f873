package stack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// nicID is the ID of the Stack's one NIC inside netstack.
const nicID tcpip.NICID = 1

// Stack is a guest's TCP/IP stack: a gVisor netstack with one Ethernet NIC
// whose wire is the engine. The engine posts received traffic with
// DeliverAggregate and DeliverFrame; netstack's packets leave through the
// TxFunc. Applications use Listen, Dial and ListenPacket.
//
// Every method is safe for concurrent use.
type Stack struct {
	opts Options
	ns   *gstack.Stack
	ep   *endpoint
	c    counters

	closeOnce sync.Once
	closed    atomic.Bool // set when Close starts: no new sockets
}

// New builds a Stack: netstack with IPv4, IPv6, ARP, TCP, UDP, ICMPv4 and
// ICMPv6, one NIC with the addresses and routes of opts, and the TCP
// settings of opts. tx receives every packet netstack sends (see TxFunc).
func New(opts Options, tx TxFunc) (_ *Stack, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if tx == nil {
		return nil, errors.New("new stack: tx func is nil")
	}
	opts.MAC = slices.Clone(opts.MAC)
	opts.Addrs = slices.Clone(opts.Addrs)

	s := &Stack{opts: opts}
	s.ns = gstack.New(gstack.Options{
		NetworkProtocols: []gstack.NetworkProtocolFactory{
			ipv4.NewProtocol,
			// A link-local address from the MAC, without DAD or router
			// solicitations: the wire is the engine's.
			ipv6.NewProtocolWithOptions(ipv6.Options{AutoGenLinkLocal: true}),
			arp.NewProtocol,
		},
		TransportProtocols: []gstack.TransportProtocolFactory{
			tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6,
		},
		HandleLocal: true,
	})
	defer func() {
		if err != nil {
			s.ns.Destroy()
		}
	}()
	if err := s.setTCPOptions(); err != nil {
		return nil, fmt.Errorf("new stack %s: %w", opts.Name, err)
	}

	s.ep = newEndpoint(&s.opts, tx, &s.c)
	if e := s.ns.CreateNICWithOptions(nicID, s.ep, gstack.NICOptions{Name: opts.Name}); e != nil {
		return nil, fmt.Errorf("new stack %s: create nic: %w", opts.Name, tcpipErr(e))
	}
	has4, has6 := false, false
	var routes []tcpip.Route
	for _, p := range opts.Addrs {
		a := addrFromNetip(p.Addr())
		proto := ipv4.ProtocolNumber
		if p.Addr().Is4() {
			has4 = true
		} else {
			proto = ipv6.ProtocolNumber
			has6 = true
		}
		pa := tcpip.ProtocolAddress{
			Protocol:          proto,
			AddressWithPrefix: tcpip.AddressWithPrefix{Address: a, PrefixLen: p.Bits()},
		}
		if e := s.ns.AddProtocolAddress(nicID, pa, gstack.AddressProperties{}); e != nil {
			return nil, fmt.Errorf("new stack %s: add address %v: %w", opts.Name, p, tcpipErr(e))
		}
		routes = append(routes, tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: nicID})
	}
	if has6 {
		ll := tcpip.AddressWithPrefix{Address: tcpip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80}), PrefixLen: 64}
		routes = append(routes, tcpip.Route{Destination: ll.Subnet(), NIC: nicID})
	}
	if has4 {
		r := tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: nicID}
		if opts.Gateway4.IsValid() {
			r.Gateway = addrFromNetip(opts.Gateway4)
		}
		routes = append(routes, r)
	}
	if has6 {
		r := tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID}
		if opts.Gateway6.IsValid() {
			r.Gateway = addrFromNetip(opts.Gateway6)
		}
		routes = append(routes, r)
	}
	s.ns.SetRouteTable(routes)
	return s, nil
}

// setTCPOptions applies the TCP settings of s.opts.
func (s *Stack) setTCPOptions() error {
	o := &s.opts
	sack := tcpip.TCPSACKEnabled(o.SACK)
	mod := tcpip.TCPModerateReceiveBufferOption(o.ModerateReceiveBuffer)
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: MinTCPBufferSize, Default: o.TCPSendBufferSize, Max: o.TCPMaxBufferSize}
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: MinTCPBufferSize, Default: o.TCPReceiveBufferSize, Max: o.TCPMaxBufferSize}
	cc := tcpip.CongestionControlOption(o.CongestionControl)
	for _, opt := range []struct {
		name string
		v    tcpip.SettableTransportProtocolOption
	}{
		{"sack", &sack}, {"moderate receive buffer", &mod}, {"send buffer size", &snd},
		{"receive buffer size", &rcv}, {"congestion control", &cc},
	} {
		if e := s.ns.SetTransportProtocolOption(tcp.ProtocolNumber, opt.v); e != nil {
			return fmt.Errorf("set tcp %s: %w", opt.name, tcpipErr(e))
		}
	}
	// The stack-wide socket buffer limits bound SetReadBuffer and
	// SetWriteBuffer and receive buffer moderation.
	if e := s.ns.SetOption(tcpip.SendBufferSizeOption{Min: MinTCPBufferSize, Default: o.TCPSendBufferSize, Max: o.TCPMaxBufferSize}); e != nil {
		return fmt.Errorf("set send buffer limits: %w", tcpipErr(e))
	}
	if e := s.ns.SetOption(tcpip.ReceiveBufferSizeOption{Min: MinTCPBufferSize, Default: o.TCPReceiveBufferSize, Max: o.TCPMaxBufferSize}); e != nil {
		return fmt.Errorf("set receive buffer limits: %w", tcpipErr(e))
	}
	return nil
}

// Close aborts every connection (sending RSTs through the TxFunc), shuts
// netstack down and waits for its goroutines. Once Close has started,
// Listen, Dial and ListenPacket fail with ErrClosed; after it returns the
// TxFunc is not called again, and frames delivered are counted as
// RxDropClosed. Close is idempotent and always returns nil.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.ns.Close()
		s.ns.Wait()
		s.ep.closed.Store(true)
	})
	return nil
}

// SetTx replaces the TxFunc, for instance when the guest moves to another
// port. Packets being sent may still go to the old one until SetTx returns.
func (s *Stack) SetTx(tx TxFunc) error {
	if tx == nil {
		return errors.New("set tx: tx func is nil")
	}
	s.ep.setTx(tx)
	return nil
}

// AddNeighbor adds a static ARP or NDP entry: addr is at mac, without
// resolution on the wire.
func (s *Stack) AddNeighbor(addr netip.Addr, mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("add neighbor %v: mac %v: %w", addr, mac, ErrAddress)
	}
	addr = addr.Unmap()
	proto := ipv6.ProtocolNumber
	if addr.Is4() {
		proto = ipv4.ProtocolNumber
	}
	if !addr.IsValid() {
		return fmt.Errorf("add neighbor %v: %w", addr, ErrAddress)
	}
	if e := s.ns.AddStaticNeighbor(nicID, proto, addrFromNetip(addr), tcpip.LinkAddress(mac)); e != nil {
		return fmt.Errorf("add neighbor %v: %w", addr, tcpipErr(e))
	}
	return nil
}

// Options returns the options the Stack was made with.
func (s *Stack) Options() Options {
	o := s.opts
	o.MAC = slices.Clone(o.MAC)
	o.Addrs = slices.Clone(o.Addrs)
	return o
}

// Netstack returns the gVisor stack underneath, for what this package does
// not wrap (raw endpoints, socket options, netstack's own statistics). Do
// not remove or replace its NIC.
func (s *Stack) Netstack() *gstack.Stack { return s.ns }

// Stats returns a snapshot of the counters.
func (s *Stack) Stats() Stats {
	var st Stats
	s.c.snapshot(&st)
	ns := s.ns.Stats()
	st.TCPRetransmits = ns.TCP.Retransmits.Value()
	st.TCPChecksumErrors = ns.TCP.ChecksumErrors.Value()
	st.IPMalformed = ns.IP.MalformedPacketsReceived.Value()
	st.TCPCurrentEstab = ns.TCP.CurrentEstablished.Value()
	st.NetstackTxDropsNIC = ns.NICs.TxPacketsDroppedNoBufferSpace.Value()
	return st
}

// tcpipError adapts a netstack error to the error interface.
type tcpipError struct{ e tcpip.Error }

func (t tcpipError) Error() string { return t.e.String() }

func tcpipErr(e tcpip.Error) error { return tcpipError{e} }

func addrFromNetip(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}
