package stack

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Listen listens for TCP connections on the guest's stack, like net.Listen.
// network is "tcp", "tcp4" or "tcp6"; address is "host:port" with an IP
// literal host (no names are resolved) or an empty host for every address
// of the family. "tcp" with an empty host listens on IPv6 and IPv4 alike
// when the stack has an IPv6 address (IPv4 peers then appear as
// IPv4-mapped addresses), else on IPv4.
func (s *Stack) Listen(network, address string) (net.Listener, error) {
	a, proto, err := s.resolve(network, address, "tcp", false)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", network, address, err)
	}
	l, err := gonet.ListenTCP(s.ns, a, proto)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", network, address, err)
	}
	return l, nil
}

// Dial connects to address over TCP ("tcp", "tcp4", "tcp6") or UDP
// ("udp", "udp4", "udp6"), like net.Dialer.DialContext. address is
// "ip:port"; no names are resolved. ctx bounds the TCP handshake
// (including ARP or NDP resolution); a UDP dial does not wait.
func (s *Stack) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	return s.DialWith(ctx, network, address, DialOptions{})
}

// DialOptions are the socket options of a connection DialWith makes.
type DialOptions struct {
	// DSCP (1..63) marks every packet the connection sends (IP_TOS, or
	// the IPv6 traffic class): the engine sends it in the traffic class
	// that DSCP selects (engine.ClassSpec.DSCP). 0 leaves it unmarked.
	DSCP uint8
}

// DialWith is Dial with socket options.
func (s *Stack) DialWith(ctx context.Context, network, address string, o DialOptions) (net.Conn, error) {
	if o.DSCP > 63 {
		return nil, fmt.Errorf("dial %s %s: dscp %d: want 0..63: %w", network, address, o.DSCP, ErrAddress)
	}
	kind := ""
	switch network {
	case "tcp", "tcp4", "tcp6":
		kind = "tcp"
	case "udp", "udp4", "udp6":
		kind = "udp"
	default:
		return nil, fmt.Errorf("dial %s %s: network %q: %w", network, address, network, ErrAddress)
	}
	a, proto, err := s.resolve(network, address, kind, true)
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", network, address, err)
	}
	var c net.Conn
	if kind == "tcp" {
		c, err = s.dialTCP(ctx, a, proto, o)
	} else {
		c, err = s.dialUDP(a, proto, o)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", network, address, err)
	}
	return c, nil
}

// newEndpoint makes an endpoint of transport proto on network with o's
// socket options set.
func (s *Stack) newEndpoint(transport tcpip.TransportProtocolNumber, network tcpip.NetworkProtocolNumber, wq *waiter.Queue, o DialOptions) (tcpip.Endpoint, error) {
	ep, terr := s.ns.NewEndpoint(transport, network, wq)
	if terr != nil {
		return nil, tcpipErr(terr)
	}
	if o.DSCP != 0 {
		opt := tcpip.IPv4TOSOption
		if network == ipv6.ProtocolNumber {
			opt = tcpip.IPv6TrafficClassOption
		}
		if terr := ep.SetSockOptInt(opt, int(o.DSCP)<<2); terr != nil {
			ep.Close()
			return nil, fmt.Errorf("set dscp %d: %w", o.DSCP, tcpipErr(terr))
		}
	}
	return ep, nil
}

// dialTCP connects a TCP endpoint with o's options to a, waiting for the
// handshake until ctx is done.
func (s *Stack) dialTCP(ctx context.Context, a tcpip.FullAddress, proto tcpip.NetworkProtocolNumber, o DialOptions) (net.Conn, error) {
	if o.DSCP == 0 {
		return gonet.DialContextTCP(ctx, s.ns, a, proto)
	}
	var wq waiter.Queue
	ep, err := s.newEndpoint(tcp.ProtocolNumber, proto, &wq, o)
	if err != nil {
		return nil, err
	}
	// The handshake's end makes the endpoint writable (or sets its error).
	entry, writable := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr := ep.Connect(a)
	if _, started := terr.(*tcpip.ErrConnectStarted); started {
		select {
		case <-ctx.Done():
			ep.Close()
			return nil, ctx.Err()
		case <-writable:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, fmt.Errorf("connect: %w", tcpipErr(terr))
	}
	return gonet.NewTCPConn(&wq, ep), nil
}

// dialUDP makes a UDP endpoint with o's options connected to a.
func (s *Stack) dialUDP(a tcpip.FullAddress, proto tcpip.NetworkProtocolNumber, o DialOptions) (net.Conn, error) {
	var wq waiter.Queue
	ep, err := s.newEndpoint(udp.ProtocolNumber, proto, &wq, o)
	if err != nil {
		return nil, err
	}
	if terr := ep.Connect(a); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("connect: %w", tcpipErr(terr))
	}
	return &udpConn{UDPConn: gonet.NewUDPConn(&wq, ep), v4: proto == ipv4.ProtocolNumber}, nil
}

// ListenPacket opens a UDP socket bound to address, like net.ListenPacket.
// network is "udp", "udp4" or "udp6"; address is as for Listen (port 0
// picks a free port).
func (s *Stack) ListenPacket(network, address string) (net.PacketConn, error) {
	a, proto, err := s.resolve(network, address, "udp", false)
	if err != nil {
		return nil, fmt.Errorf("listen packet %s %s: %w", network, address, err)
	}
	c, err := gonet.DialUDP(s.ns, &a, nil, proto)
	if err != nil {
		return nil, fmt.Errorf("listen packet %s %s: %w", network, address, err)
	}
	return &udpConn{UDPConn: c, v4: proto == ipv4.ProtocolNumber}, nil
}

// resolve turns a Go network and address into netstack's. kind is "tcp"
// or "udp"; dial requires a host.
func (s *Stack) resolve(network, address, kind string, dial bool) (tcpip.FullAddress, tcpip.NetworkProtocolNumber, error) {
	var fa tcpip.FullAddress
	if s.closed.Load() {
		return fa, 0, ErrClosed
	}
	fam := 0
	switch network {
	case kind:
	case kind + "4":
		fam = 4
	case kind + "6":
		fam = 6
	default:
		return fa, 0, fmt.Errorf("network %q: %w", network, ErrAddress)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return fa, 0, fmt.Errorf("address: %w", err)
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return fa, 0, fmt.Errorf("port %q: %w", port, ErrAddress)
		}
		fa.Port = uint16(n)
	}
	if host == "" {
		if dial {
			return fa, 0, fmt.Errorf("no host: %w", ErrAddress)
		}
		if fam == 0 {
			fam = 4
			if s.hasFamily(6) {
				fam = 6
			}
		}
		if !s.hasFamily(fam) {
			return fa, 0, fmt.Errorf("no IPv%d address on the stack: %w", fam, ErrAddress)
		}
		return fa, protoOf(fam), nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return fa, 0, fmt.Errorf("host %q is not an IP address: %w", host, ErrAddress)
	}
	if ip.Is4In6() && fam != 6 {
		ip = ip.Unmap()
	}
	af := 6
	if ip.Is4() {
		af = 4
	}
	if fam != 0 && af != fam {
		return fa, 0, fmt.Errorf("%v is not an IPv%d address: %w", ip, fam, ErrAddress)
	}
	fa.Addr = addrFromNetip(ip)
	return fa, protoOf(af), nil
}

func (s *Stack) hasFamily(f int) bool {
	for _, p := range s.opts.Addrs {
		if p.Addr().Is4() == (f == 4) {
			return true
		}
	}
	return false
}

func protoOf(fam int) tcpip.NetworkProtocolNumber {
	if fam == 4 {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// udpConn is gonet's UDPConn with a WriteTo that takes any net.Addr
// without panicking and gives IPv4 destinations in the form netstack's
// endpoint of that family expects.
type udpConn struct {
	*gonet.UDPConn
	v4 bool
}

// WriteTo implements net.PacketConn.
func (c *udpConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	var ua *net.UDPAddr
	switch a := addr.(type) {
	case *net.UDPAddr:
		ua = a
	case nil:
		return c.UDPConn.WriteTo(b, nil)
	default:
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return 0, &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Addr: addr, Err: fmt.Errorf("address %v: %w", addr, ErrAddress)}
		}
		ua = net.UDPAddrFromAddrPort(ap)
	}
	ip := ua.IP
	if v4 := ip.To4(); v4 != nil && c.v4 {
		ip = v4
	} else if v4 == nil && c.v4 {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Addr: addr, Err: fmt.Errorf("%v is not IPv4: %w", ua.IP, ErrAddress)}
	} else if !c.v4 && len(ip) == net.IPv4len {
		ip = ip.To16()
	}
	return c.UDPConn.WriteTo(b, &net.UDPAddr{IP: ip, Port: ua.Port})
}
