package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Open finds the lab called name on the system: its netns, the veth pairs
// that follow the naming convention and, in a bridged lab, the bridge NAMEbr
// in the netns, whose presence is what makes the lab bridged. It lets a
// process other than the one that ran Up show or tear down the lab. It fails
// with ErrNotFound if the netns or every port is missing.
func Open(name string) (*Lab, error) {
	if err := validateName(name, 1); err != nil {
		return nil, err
	}
	l := &Lab{Name: name, Netns: NetnsName(name)}
	ns, err := openNetns(l.Netns)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open lab %s: netns %s: %w", name, l.Netns, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open lab %s: %w", name, err)
	}
	defer ns.Close()
	host, peer, err := handles(ns, l.Netns)
	if err != nil {
		return nil, fmt.Errorf("open lab %s: %w", name, err)
	}
	defer host.Close()
	defer peer.Close()

	br, err := findBridge(peer, name)
	if err != nil {
		return nil, fmt.Errorf("open lab %s: %w", name, err)
	}
	if br != nil {
		b := &Bridge{Name: br.Attrs().Name, Ifindex: br.Attrs().Index, MAC: br.Attrs().HardwareAddr, IPv4: PeerIPv4(0)}
		hasV6, err := hasAddr(peer, br, PeerIPv6(0))
		if err != nil {
			return nil, fmt.Errorf("open lab %s: %w", name, err)
		}
		if hasV6 {
			b.IPv6 = PeerIPv6(0)
		}
		l.Bridge = b
	}
	for i := range MaxPorts {
		hl, pl, err := findPair(host, peer, name, i)
		if err != nil {
			return nil, fmt.Errorf("open lab %s: port %d: %w", name, i, err)
		}
		if hl == nil {
			continue
		}
		if i != len(l.Ports) {
			return nil, fmt.Errorf("open lab %s: port %d found but port %d missing", name, i, len(l.Ports))
		}
		p := Port{
			Index:       i,
			Host:        hl.Attrs().Name,
			Peer:        pl.Attrs().Name,
			HostIfindex: hl.Attrs().Index,
			PeerIfindex: pl.Attrs().Index,
			HostMAC:     hl.Attrs().HardwareAddr,
			PeerMAC:     pl.Attrs().HardwareAddr,
			HostIPv4:    HostIPv4(i),
			PeerIPv4:    PeerIPv4(i),
		}
		if b := l.Bridge; b != nil {
			p.HostIPv4, p.HostIPv6 = bridgedHostAddrs(i, b.IPv6.IsValid())
			p.PeerIPv4, p.PeerIPv6 = b.IPv4, b.IPv6
		} else {
			hasV6, err := hasAddr(host, hl, HostIPv6(i))
			if err != nil {
				return nil, fmt.Errorf("open lab %s: port %d: %w", name, i, err)
			}
			if hasV6 {
				p.HostIPv6, p.PeerIPv6 = HostIPv6(i), PeerIPv6(i)
			}
		}
		l.Ports = append(l.Ports, p)
	}
	if len(l.Ports) == 0 {
		return nil, fmt.Errorf("open lab %s: no ports in netns %s: %w", name, l.Netns, ErrNotFound)
	}
	return l, nil
}

// Down tears the lab down: it deletes each host link NAME<i> whose veth peer
// is NAMEp<i> in the lab's netns, which deletes the peer too, then the bridge
// NAMEbr in the netns if there is one, then removes the netns. Links that do
// not match this lab are never touched. It needs only l.Name and l.Netns, so
// it also clears a lab that Open cannot read. Down of a lab that is gone is a
// no-op, so it can run more than once.
func (l *Lab) Down() error {
	ns, err := openNetns(l.Netns)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lab %s: down: %w", l.Name, err)
	}
	defer ns.Close()

	var errs []error
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(ns), &st); err != nil {
		return fmt.Errorf("lab %s: down: statfs netns %s: %w", l.Name, l.Netns, err)
	}
	// A plain file is left over from a create that died before its mount:
	// it holds no links.
	if st.Type == unix.NSFS_MAGIC {
		errs = append(errs, l.deleteLinks(ns))
	}
	if err := deleteNetns(l.Netns); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab %s: down: %w", l.Name, err)
	}
	return nil
}

// deleteLinks deletes the lab's veth pairs from the host side, then its
// bridge. The bridge goes explicitly: a socket left open in the netns keeps
// the netns, and whatever is in it, alive after its mount is gone.
func (l *Lab) deleteLinks(ns netns.NsHandle) error {
	host, peer, err := handles(ns, l.Netns)
	if err != nil {
		return err
	}
	defer host.Close()
	defer peer.Close()
	var errs []error
	for i := range MaxPorts {
		hl, _, err := findPair(host, peer, l.Name, i)
		if err != nil {
			errs = append(errs, fmt.Errorf("port %d: %w", i, err))
			continue
		}
		if hl == nil {
			continue
		}
		if err := host.LinkDel(hl); err != nil && !isLinkNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", hl.Attrs().Name, err))
		}
	}
	if err := l.deleteBridge(peer); err != nil {
		errs = append(errs, fmt.Errorf("in netns %s: %w", l.Netns, err))
	}
	return errors.Join(errs...)
}

// handles opens netlink in the caller's netns and in ns.
func handles(ns netns.NsHandle, nsName string) (host, peer *netlink.Handle, err error) {
	host, err = netlink.NewHandle()
	if err != nil {
		return nil, nil, fmt.Errorf("open netlink: %w", err)
	}
	peer, err = netlink.NewHandleAt(ns)
	if err != nil {
		host.Close()
		return nil, nil, fmt.Errorf("open netlink in netns %s: %w", nsName, err)
	}
	return host, peer, nil
}

// findPair returns port i of lab name: the host link NAME<i> and the peer link
// NAMEp<i>, but only if they exist and are the two ends of one veth. Otherwise
// it returns nil links and no error.
func findPair(host, peer *netlink.Handle, name string, i int) (hl, pl netlink.Link, err error) {
	hostName, peerName := HostLinkName(name, i), PeerLinkName(name, i)
	if len(peerName) > ifNameMax {
		return nil, nil, nil
	}
	pl, err = peer.LinkByName(peerName)
	if isLinkNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("find %s: %w", peerName, err)
	}
	hl, err = host.LinkByName(hostName)
	if isLinkNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("find %s: %w", hostName, err)
	}
	// Each end's IFLA_LINK is the other end's ifindex.
	if hl.Type() != "veth" || pl.Type() != "veth" ||
		hl.Attrs().ParentIndex != pl.Attrs().Index ||
		pl.Attrs().ParentIndex != hl.Attrs().Index {
		return nil, nil, nil
	}
	return hl, pl, nil
}

// hasAddr reports whether link carries a.
func hasAddr(h *netlink.Handle, link netlink.Link, a netip.Addr) (bool, error) {
	family := netlink.FAMILY_V4
	if a.Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := h.AddrList(link, family)
	if err != nil {
		return false, fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a {
			return true, nil
		}
	}
	return false, nil
}
