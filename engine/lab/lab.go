package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Lab is a built lab: a peer netns and one veth pair per port, and in a
// bridged lab the peer's bridge over the peer ends.
type Lab struct {
	Name   string  // the lab's name, prefix of every object below
	Netns  string  // the peer netns, NAME-peer
	Bridge *Bridge // the peer's bridge; nil unless built with Options.PeerBridge
	Ports  []Port  // by index
}

// Port is one veth pair of a lab.
type Port struct {
	Index int

	// The host end NAME<i> is in the caller's netns, the peer end NAMEp<i>
	// in the lab's netns. Ifindexes are relative to those namespaces.
	Host, Peer               string
	HostIfindex, PeerIfindex int
	HostMAC, PeerMAC         net.HardwareAddr

	// Addresses, with prefix lengths PrefixLenIPv4 and PrefixLenIPv6. The
	// IPv6 ones are the zero Addr in a lab without IPv6. In a bridged lab
	// PeerIPv4 and PeerIPv6 are the bridge's, the same on every port, and
	// only port 0's host end has addresses: HostIPv4 and HostIPv6 of the
	// other ports are the zero Addr.
	HostIPv4, PeerIPv4 netip.Addr
	HostIPv6, PeerIPv6 netip.Addr
}

// AddrIPv4 returns the address .host in port p's IPv4 subnet: 198.18.<i>.host,
// or 198.18.0.host on every port of a bridged lab. Tests put guests there.
func (p Port) AddrIPv4(host byte) netip.Addr {
	a := p.PeerIPv4.As4()
	a[3] = host
	return netip.AddrFrom4(a)
}

// AddrIPv6 returns the address ::host in port p's IPv6 subnet (2001:2:0:<i>::host,
// or 2001:2::host in a bridged lab), or the zero Addr in a lab without IPv6.
func (p Port) AddrIPv6(host byte) netip.Addr {
	if !p.PeerIPv6.IsValid() {
		return netip.Addr{}
	}
	a := p.PeerIPv6.As16()
	a[15] = host
	return netip.AddrFrom16(a)
}

// existsError is the refusal of Up to build over an existing lab.
type existsError struct {
	name, what string
}

func (e *existsError) Error() string {
	return fmt.Sprintf("lab: %s already exists (%s); run `xnic lab down --name %s`",
		e.name, e.what, e.name)
}

func (e *existsError) Unwrap() error { return ErrExists }

// Up builds the lab that opts describes. It refuses with ErrExists if the
// netns or any of the links exists, and with ErrAddrInUse if an address of the
// caller's netns lies in one of the lab's subnets (another lab is up). On any
// later error it tears down what it built before returning.
func Up(opts Options) (*Lab, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	l := &Lab{Name: opts.Name, Netns: NetnsName(opts.Name)}
	if err := l.checkFree(opts); err != nil {
		return nil, err
	}
	if err := createNetns(l.Netns); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, &existsError{name: l.Name, what: "netns " + l.Netns}
		}
		return nil, fmt.Errorf("lab %s: up: %w", l.Name, err)
	}
	if err := l.build(opts); err != nil {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("unwind: %w", derr))
		}
		return nil, fmt.Errorf("lab %s: up: %w", l.Name, err)
	}
	return l, nil
}

// checkFree fails with ErrExists if the netns or a link of the lab exists
// already.
func (l *Lab) checkFree(opts Options) error {
	ok, err := netnsExists(l.Netns)
	if err != nil {
		return fmt.Errorf("lab %s: up: check netns: %w", l.Name, err)
	}
	if ok {
		return &existsError{name: l.Name, what: "netns " + l.Netns}
	}
	if err := l.checkSubnets(opts); err != nil {
		return err
	}
	for i := range opts.Ports {
		name := HostLinkName(l.Name, i)
		_, err := netlink.LinkByName(name)
		if err == nil {
			return &existsError{name: l.Name, what: "link " + name}
		}
		if !isLinkNotFound(err) {
			return fmt.Errorf("lab %s: up: check link %s: %w", l.Name, name, err)
		}
	}
	return nil
}

// checkSubnets fails with ErrAddrInUse if an address of the caller's netns
// lies in one of the lab's subnets: those of each port, or only port 0's in
// a bridged lab.
func (l *Lab) checkSubnets(opts Options) error {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 3; try++ {
		addrs, err = netlink.AddrList(nil, netlink.FAMILY_ALL) // changed mid-dump
	}
	if err != nil {
		return fmt.Errorf("lab %s: up: list addresses: %w", l.Name, err)
	}
	subnets := opts.Ports
	if opts.PeerBridge {
		subnets = 1
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		for i := range subnets {
			if SubnetIPv4(i).Contains(ip) || SubnetIPv6(i).Contains(ip) {
				where := fmt.Sprintf("ifindex %d", a.LinkIndex)
				if link, err := netlink.LinkByIndex(a.LinkIndex); err == nil {
					where = link.Attrs().Name
				}
				return fmt.Errorf("lab %s: up: port %d: address %s already on %s (is another lab up?): %w",
					l.Name, i, ip, where, ErrAddrInUse)
			}
		}
	}
	return nil
}

// isLinkNotFound tells a missing link from other netlink errors.
func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// build creates the ports of a lab whose netns exists.
func (l *Lab) build(opts Options) error {
	ns, err := openNetns(l.Netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	host, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer host.Close()
	peer, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("open netlink in netns %s: %w", l.Netns, err)
	}
	defer peer.Close()

	lo, err := peer.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in netns %s: %w", l.Netns, err)
	}
	if err := peer.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up in netns %s: %w", l.Netns, err)
	}

	var hostEth, peerEth *ethtoolSocket
	if opts.HostOffloadsOff {
		if hostEth, err = newEthtoolSocket(); err != nil {
			return err
		}
		defer hostEth.Close()
	}
	if opts.PeerOffloadsOff {
		err := runInNetns(ns, func() error {
			var err error
			peerEth, err = newEthtoolSocket()
			return err
		})
		if err != nil {
			return fmt.Errorf("in netns %s: %w", l.Netns, err)
		}
		defer peerEth.Close()
	}
	if opts.PeerBridge {
		if err := l.buildBridge(opts, ns, peer, peerEth); err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
	}
	for i := range opts.Ports {
		p, err := l.buildPort(opts, i, ns, host, peer, hostEth, peerEth)
		if err != nil {
			return fmt.Errorf("port %d: %w", i, err)
		}
		l.Ports = append(l.Ports, p)
		if opts.hookPortDone != nil {
			if err := opts.hookPortDone(i); err != nil {
				return fmt.Errorf("port %d: %w", i, err)
			}
		}
	}
	return nil
}

// buildPort creates port i: the veth pair, with its peer end born in the netns,
// then addresses, offloads and link state on both ends. In a bridged lab the
// peer end joins the bridge instead of taking addresses.
func (l *Lab) buildPort(opts Options, i int, ns netns.NsHandle, host, peer *netlink.Handle,
	hostEth, peerEth *ethtoolSocket) (Port, error) {
	p := Port{
		Index:    i,
		Host:     HostLinkName(l.Name, i),
		Peer:     PeerLinkName(l.Name, i),
		HostIPv4: HostIPv4(i),
		PeerIPv4: PeerIPv4(i),
	}
	if opts.IPv6 {
		p.HostIPv6, p.PeerIPv6 = HostIPv6(i), PeerIPv6(i)
	}
	if l.Bridge != nil {
		p.HostIPv4, p.HostIPv6 = bridgedHostAddrs(i, opts.IPv6)
		p.PeerIPv4, p.PeerIPv6 = l.Bridge.IPv4, l.Bridge.IPv6
	}

	attrs := netlink.NewLinkAttrs()
	attrs.Name = p.Host
	attrs.MTU = opts.MTU
	attrs.NumTxQueues = opts.Queues
	attrs.NumRxQueues = opts.Queues
	veth := &netlink.Veth{
		LinkAttrs:       attrs,
		PeerName:        p.Peer,
		PeerNamespace:   netlink.NsFd(ns),
		PeerTxQLen:      -1,
		PeerNumTxQueues: uint32(opts.Queues),
		PeerNumRxQueues: uint32(opts.Queues),
		PeerMTU:         uint32(opts.MTU),
	}
	if err := host.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return p, &existsError{name: l.Name, what: "link " + p.Host}
		}
		return p, fmt.Errorf("add veth %s/%s: %w", p.Host, p.Peer, err)
	}

	hl, err := host.LinkByName(p.Host)
	if err != nil {
		return p, fmt.Errorf("find %s: %w", p.Host, err)
	}
	pl, err := peer.LinkByName(p.Peer)
	if err != nil {
		return p, fmt.Errorf("find %s in netns %s: %w", p.Peer, l.Netns, err)
	}
	p.HostIfindex, p.HostMAC = hl.Attrs().Index, hl.Attrs().HardwareAddr
	p.PeerIfindex, p.PeerMAC = pl.Attrs().Index, pl.Attrs().HardwareAddr

	// While both ends are down, so that they never send an IPv6 packet. A
	// bridge port has no addresses of its own: IPv6 is off on it always.
	if !opts.IPv6 {
		if err := disableIPv6(p.Host); err != nil {
			return p, err
		}
	}
	if !opts.IPv6 || l.Bridge != nil {
		if err := runInNetns(ns, func() error { return disableIPv6(p.Peer) }); err != nil {
			return p, fmt.Errorf("in netns %s: %w", l.Netns, err)
		}
	}
	if l.Bridge != nil {
		if err := strictARP(p.Host); err != nil {
			return p, err
		}
		if err := peer.LinkSetMasterByIndex(pl, l.Bridge.Ifindex); err != nil {
			return p, fmt.Errorf("in netns %s: add %s to bridge %s: %w", l.Netns, p.Peer, l.Bridge.Name, err)
		}
	}
	if err := configureEnd(host, hl, p.HostIPv4, p.HostIPv6, hostEth); err != nil {
		return p, err
	}
	peerV4, peerV6 := p.PeerIPv4, p.PeerIPv6
	if l.Bridge != nil {
		peerV4, peerV6 = netip.Addr{}, netip.Addr{} // they live on the bridge
	}
	if err := configureEnd(peer, pl, peerV4, peerV6, peerEth); err != nil {
		return p, fmt.Errorf("in netns %s: %w", l.Netns, err)
	}
	return p, nil
}

// bridgedHostAddrs returns the host end's addresses of port i in a bridged
// lab: port 0's, 198.18.0.1 and 2001:2::1, on port 0 and none on the others.
func bridgedHostAddrs(i int, withIPv6 bool) (v4, v6 netip.Addr) {
	if i != 0 {
		return netip.Addr{}, netip.Addr{}
	}
	if withIPv6 {
		v6 = HostIPv6(0)
	}
	return HostIPv4(0), v6
}

// strictARP makes the host end ifname answer ARP only for addresses on
// ifname itself (arp_ignore 1) and take the source of its own ARP requests
// from ifname (arp_announce 2). The host ends of a bridged lab share a
// subnet, and by default Linux answers for any of its addresses on every
// link: 198.18.0.1 would then be claimed from port 1's MAC too. IPv6 needs
// no such setting: the kernel answers a neighbour solicitation only for an
// address of the link it came in on.
func strictARP(ifname string) error {
	for _, s := range []struct{ key, value string }{{"arp_ignore", "1"}, {"arp_announce", "2"}} {
		if err := setSysctl("net/ipv4/conf/"+ifname+"/"+s.key, s.value); err != nil {
			return err
		}
	}
	return nil
}

// configureEnd adds the addresses of one link (v4 and v6 when valid), turns
// its offloads off when eth is set, and brings it up.
func configureEnd(h *netlink.Handle, link netlink.Link, v4, v6 netip.Addr, eth *ethtoolSocket) error {
	name := link.Attrs().Name
	var addrs []*netlink.Addr
	if v4.IsValid() {
		addrs = append(addrs, &netlink.Addr{IPNet: prefixNet(v4, PrefixLenIPv4)})
	}
	if v6.IsValid() {
		// NODAD: usable at once instead of tentative for a second or more.
		addrs = append(addrs, &netlink.Addr{IPNet: prefixNet(v6, PrefixLenIPv6), Flags: unix.IFA_F_NODAD})
	}
	for _, a := range addrs {
		if err := h.AddrAdd(link, a); err != nil {
			return fmt.Errorf("add address %s to %s: %w", a.IPNet, name, err)
		}
	}
	if eth != nil {
		if err := eth.offloadsOff(name); err != nil {
			return err
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

func prefixNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}
}

// setSysctl writes value to /proc/sys/KEY in the calling thread's netns.
func setSysctl(key, value string) error {
	if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0); err != nil {
		return fmt.Errorf("set sysctl %s: %w", strings.ReplaceAll(key, "/", "."), err)
	}
	return nil
}

// disableIPv6 sets net.ipv6.conf.IFNAME.disable_ipv6 in the calling thread's
// netns. A kernel without IPv6 has nothing to disable.
func disableIPv6(ifname string) error {
	path := filepath.Join("/proc/sys/net/ipv6/conf", ifname, "disable_ipv6")
	err := os.WriteFile(path, []byte("1"), 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disable ipv6 on %s: %w", ifname, err)
	}
	return nil
}
