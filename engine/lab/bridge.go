package lab

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Bridge is the peer's Linux bridge in a lab built with Options.PeerBridge:
// the switch that every port's peer end is cabled into.
type Bridge struct {
	Name    string // NAMEbr, in the lab's netns
	Ifindex int    // in the lab's netns
	// MAC is set when the bridge is made, so it never follows its members
	// (a bridge otherwise takes the lowest MAC of its ports, and would
	// change it under the guests' neighbour caches when a port goes away).
	MAC net.HardwareAddr

	// The peer's addresses, with prefix lengths PrefixLenIPv4 and
	// PrefixLenIPv6: 198.18.0.2 and 2001:2::2 (the zero Addr without IPv6).
	IPv4, IPv6 netip.Addr
}

// userHz is USER_HZ, the unit of the bridge's clock_t netlink attributes.
const userHz = 100

// bridgeConfig is the part of a bridge's IFLA_INFO_DATA that a lab sets.
type bridgeConfig struct {
	STP               bool
	ForwardDelay      time.Duration
	AgeingTime        time.Duration
	MulticastSnooping bool
}

// createBridge makes bridge name in the calling thread's netns, down, with
// STP off, forward delay 0 and multicast snooping off (unknown multicast is
// flooded, so a guest's solicited-node group reaches it on any port without
// MLD reports), and with mac as its fixed address.
func createBridge(name string, mtu int, mac net.HardwareAddr) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu))))
	req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, mac))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	// The kernel applies the forward delay before the STP state; 0 is
	// only valid with STP off, which a new bridge is.
	data.AddRtAttr(nl.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(0))
	data.AddRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(0))
	data.AddRtAttr(nl.IFLA_BR_MCAST_SNOOPING, nl.Uint8Attr(0))
	req.AddData(info)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("add bridge %s: %w", name, err)
	}
	return nil
}

// readBridgeConfig reads the settings of bridge ifindex in the calling
// thread's netns.
func readBridgeConfig(ifindex int) (bridgeConfig, error) {
	var c bridgeConfig
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(ifindex)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return c, fmt.Errorf("get link %d: %w", ifindex, err)
	}
	if len(msgs) != 1 || len(msgs[0]) < unix.SizeofIfInfomsg {
		return c, fmt.Errorf("get link %d: %d replies", ifindex, len(msgs))
	}
	data, err := nestedAttr(msgs[0][unix.SizeofIfInfomsg:], unix.IFLA_LINKINFO, nl.IFLA_INFO_DATA)
	if err != nil {
		return c, fmt.Errorf("get link %d: %w", ifindex, err)
	}
	attrs, err := nl.ParseRouteAttr(data)
	if err != nil {
		return c, fmt.Errorf("get link %d: parse bridge data: %w", ifindex, err)
	}
	ne := nl.NativeEndian()
	for _, a := range attrs {
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case nl.IFLA_BR_STP_STATE:
			c.STP = ne.Uint32(a.Value) != 0
		case nl.IFLA_BR_FORWARD_DELAY:
			c.ForwardDelay = time.Duration(ne.Uint32(a.Value)) * time.Second / userHz
		case nl.IFLA_BR_AGEING_TIME:
			c.AgeingTime = time.Duration(ne.Uint32(a.Value)) * time.Second / userHz
		case nl.IFLA_BR_MCAST_SNOOPING:
			c.MulticastSnooping = a.Value[0] != 0
		}
	}
	return c, nil
}

// nestedAttr walks b down the attribute types in path and returns the value
// of the last one.
func nestedAttr(b []byte, path ...uint16) ([]byte, error) {
	for _, typ := range path {
		attrs, err := nl.ParseRouteAttr(b)
		if err != nil {
			return nil, fmt.Errorf("parse attributes: %w", err)
		}
		i := slices.IndexFunc(attrs, func(a syscall.NetlinkRouteAttr) bool { return a.Attr.Type&nl.NLA_TYPE_MASK == typ })
		if i < 0 {
			return nil, fmt.Errorf("no attribute %d", typ)
		}
		b = attrs[i].Value
	}
	return b, nil
}

// randomMAC returns a random unicast, locally administered MAC.
func randomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	_, _ = rand.Read(mac) // crypto/rand.Read never fails (Go 1.24+)
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// findBridge returns the bridge of lab name in the lab's netns, or nil if
// there is no link of that name or it is not a bridge.
func findBridge(peer *netlink.Handle, name string) (netlink.Link, error) {
	br, err := peer.LinkByName(BridgeName(name))
	if isLinkNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", BridgeName(name), err)
	}
	if br.Type() != "bridge" {
		return nil, nil
	}
	return br, nil
}

// buildBridge makes the peer bridge, gives it the peer's addresses and brings
// it up; the ports join it later.
func (l *Lab) buildBridge(opts Options, ns netns.NsHandle, peer *netlink.Handle, peerEth *ethtoolSocket) error {
	name := BridgeName(l.Name)
	err := runInNetns(ns, func() error {
		if err := createBridge(name, opts.MTU, randomMAC()); err != nil {
			return err
		}
		// While it is down, so that it never sends an IPv6 packet or
		// waits on duplicate address detection.
		if !opts.IPv6 {
			return disableIPv6(name)
		}
		return setSysctl("net/ipv6/conf/"+name+"/accept_dad", "0")
	})
	if err != nil {
		return fmt.Errorf("in netns %s: %w", l.Netns, err)
	}
	br, err := peer.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s in netns %s: %w", name, l.Netns, err)
	}
	// Pin the MTU: set by the user, the bridge keeps it when members change.
	if err := peer.LinkSetMTU(br, opts.MTU); err != nil {
		return fmt.Errorf("set mtu of %s: %w", name, err)
	}
	b := &Bridge{Name: name, Ifindex: br.Attrs().Index, MAC: br.Attrs().HardwareAddr, IPv4: PeerIPv4(0)}
	if opts.IPv6 {
		b.IPv6 = PeerIPv6(0)
	}
	l.Bridge = b
	if err := configureEnd(peer, br, b.IPv4, b.IPv6, peerEth); err != nil {
		return fmt.Errorf("in netns %s: %w", l.Netns, err)
	}
	return nil
}

// deleteBridge deletes the lab's bridge, if it is there.
func (l *Lab) deleteBridge(peer *netlink.Handle) error {
	br, err := findBridge(peer, l.Name)
	if err != nil || br == nil {
		return err
	}
	if err := peer.LinkDel(br); err != nil && !isLinkNotFound(err) {
		return fmt.Errorf("delete %s: %w", br.Attrs().Name, err)
	}
	return nil
}

// bridgeMembers returns the names of the links enslaved to bridge ifindex,
// sorted.
func bridgeMembers(peer *netlink.Handle, ifindex int) ([]string, error) {
	links, err := peer.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var names []string
	for _, link := range links {
		if link.Attrs().MasterIndex == ifindex {
			names = append(names, link.Attrs().Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// LearnedPort tells on which port the peer bridge has learned mac: the port
// whose host side last sent a frame from mac. ok is false when the bridge has
// no such entry (never seen, aged out, or flushed when that port's link went
// down). It fails with ErrNotBridged on a lab without a bridge.
func (l *Lab) LearnedPort(mac net.HardwareAddr) (port int, ok bool, err error) {
	if l.Bridge == nil {
		return 0, false, fmt.Errorf("lab %s: learned port of %s: %w", l.Name, mac, ErrNotBridged)
	}
	ns, err := openNetns(l.Netns)
	if err != nil {
		return 0, false, fmt.Errorf("lab %s: %w", l.Name, err)
	}
	defer ns.Close()
	peer, err := netlink.NewHandleAt(ns)
	if err != nil {
		return 0, false, fmt.Errorf("lab %s: open netlink in netns %s: %w", l.Name, l.Netns, err)
	}
	defer peer.Close()
	fdb, err := peer.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return 0, false, fmt.Errorf("lab %s: list fdb of %s: %w", l.Name, l.Bridge.Name, err)
	}
	for _, e := range fdb {
		// Learned entries are the bridge's (NDA_MASTER) and not permanent;
		// permanent ones are the members' own addresses.
		if e.MasterIndex != l.Bridge.Ifindex || e.State&unix.NUD_PERMANENT != 0 ||
			!slices.Equal(e.HardwareAddr, mac) {
			continue
		}
		for _, p := range l.Ports {
			if p.PeerIfindex == e.LinkIndex {
				return p.Index, true, nil
			}
		}
	}
	return 0, false, nil
}
