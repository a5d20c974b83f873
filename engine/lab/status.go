package lab

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
)

// Status is a snapshot of a lab, read from the system. Its String method
// prints it for `xnic lab status`.
type Status struct {
	Name   string        `json:"name"`
	Netns  string        `json:"netns"`
	Bridge *BridgeStatus `json:"bridge,omitempty"` // nil in a lab without a peer bridge
	Ports  []PortStatus  `json:"ports"`
}

// BridgeStatus is the state of the peer bridge: the link itself, as for a veth
// end, its members and its switching settings.
type BridgeStatus struct {
	EndStatus
	Members           []string      `json:"members"` // the links enslaved to it, sorted
	STP               bool          `json:"stp"`
	ForwardDelay      time.Duration `json:"forward_delay_ns"`
	AgeingTime        time.Duration `json:"ageing_time_ns"`
	MulticastSnooping bool          `json:"multicast_snooping"`
}

// PortStatus is the state of both ends of one port.
type PortStatus struct {
	Index int       `json:"index"`
	Host  EndStatus `json:"host"`
	Peer  EndStatus `json:"peer"`
}

// EndStatus is the state of one veth end.
type EndStatus struct {
	Name      string         `json:"name"`
	Ifindex   int            `json:"ifindex"`
	MAC       MAC            `json:"mac"`
	MTU       int            `json:"mtu"`
	OperState string         `json:"oper_state"` // "up", "down", "lowerlayerdown", ...
	Addrs     []netip.Prefix `json:"addrs"`
	Queues    Queues         `json:"queues"`
	Offloads  Offloads       `json:"offloads"`
	// Master is the bridge the link is a port of, if any.
	Master string `json:"master,omitempty"`

	// Counters from the link's statistics (IFLA_STATS64).
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxDropped uint64 `json:"rx_dropped"`
	TxDropped uint64 `json:"tx_dropped"`

	XDP XDPStatus `json:"xdp"`
}

// MAC is a link's hardware address; in JSON, a string as ip link shows it
// ("f6:d7:27:3b:36:19"), not base64.
type MAC net.HardwareAddr

func (m MAC) String() string { return net.HardwareAddr(m).String() }

// MarshalText writes m as String does.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads what MarshalText wrote ("" for none).
func (m *MAC) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = nil
		return nil
	}
	hw, err := net.ParseMAC(string(b))
	if err != nil {
		return fmt.Errorf("decode mac: %w", err)
	}
	*m = MAC(hw)
	return nil
}

// Queues are the numbers of rx and tx queues of a link.
type Queues struct {
	Rx int `json:"rx"`
	Tx int `json:"tx"`
}

// XDPStatus says whether an XDP program is attached to a link.
type XDPStatus struct {
	Attached bool   `json:"attached"`
	ProgID   uint32 `json:"prog_id"`
	Mode     string `json:"mode"` // "drv", "skb", "hw", "multi" or "" when none
}

// Status reads the state of every port of the lab, both ends; the peer side
// is read inside the netns.
func (l *Lab) Status() (*Status, error) {
	ns, err := openNetns(l.Netns)
	if err != nil {
		return nil, fmt.Errorf("lab %s: status: %w", l.Name, err)
	}
	defer ns.Close()
	host, peer, err := handles(ns, l.Netns)
	if err != nil {
		return nil, fmt.Errorf("lab %s: status: %w", l.Name, err)
	}
	defer host.Close()
	defer peer.Close()
	hostEth, err := newEthtoolSocket()
	if err != nil {
		return nil, fmt.Errorf("lab %s: status: %w", l.Name, err)
	}
	defer hostEth.Close()
	var peerEth *ethtoolSocket
	err = runInNetns(ns, func() error {
		var err error
		peerEth, err = newEthtoolSocket()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab %s: status: in netns %s: %w", l.Name, l.Netns, err)
	}
	defer peerEth.Close()

	s := &Status{Name: l.Name, Netns: l.Netns}
	if l.Bridge != nil {
		if s.Bridge, err = bridgeStatus(ns, peer, peerEth, l.Bridge.Name); err != nil {
			return nil, fmt.Errorf("lab %s: status: in netns %s: %w", l.Name, l.Netns, err)
		}
	}
	for _, p := range l.Ports {
		ps := PortStatus{Index: p.Index}
		if ps.Host, err = endStatus(host, hostEth, p.Host); err != nil {
			return nil, fmt.Errorf("lab %s: status: port %d: %w", l.Name, p.Index, err)
		}
		if ps.Peer, err = endStatus(peer, peerEth, p.Peer); err != nil {
			return nil, fmt.Errorf("lab %s: status: port %d: in netns %s: %w", l.Name, p.Index, l.Netns, err)
		}
		s.Ports = append(s.Ports, ps)
	}
	return s, nil
}

// bridgeStatus reads the bridge name in netns ns.
func bridgeStatus(ns netns.NsHandle, h *netlink.Handle, eth *ethtoolSocket, name string) (*BridgeStatus, error) {
	e, err := endStatus(h, eth, name)
	if err != nil {
		return nil, err
	}
	b := &BridgeStatus{EndStatus: e}
	if b.Members, err = bridgeMembers(h, e.Ifindex); err != nil {
		return nil, err
	}
	var c bridgeConfig
	err = runInNetns(ns, func() error {
		var err error
		c, err = readBridgeConfig(e.Ifindex)
		return err
	})
	if err != nil {
		return nil, err
	}
	b.STP, b.ForwardDelay, b.AgeingTime, b.MulticastSnooping = c.STP, c.ForwardDelay, c.AgeingTime, c.MulticastSnooping
	return b, nil
}

func endStatus(h *netlink.Handle, eth *ethtoolSocket, name string) (EndStatus, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		return EndStatus{}, fmt.Errorf("find %s: %w", name, err)
	}
	a := link.Attrs()
	e := EndStatus{
		Name:      a.Name,
		Ifindex:   a.Index,
		MAC:       MAC(a.HardwareAddr),
		MTU:       a.MTU,
		OperState: a.OperState.String(),
		Queues:    Queues{Rx: a.NumRxQueues, Tx: a.NumTxQueues},
	}
	e.Addrs = []netip.Prefix{} // [] in JSON when the end has none
	if st := a.Statistics; st != nil {
		e.RxPackets, e.TxPackets = st.RxPackets, st.TxPackets
		e.RxBytes, e.TxBytes = st.RxBytes, st.TxBytes
		e.RxDropped, e.TxDropped = st.RxDropped, st.TxDropped
	}
	if a.MasterIndex != 0 {
		m, err := h.LinkByIndex(a.MasterIndex)
		if err != nil {
			return e, fmt.Errorf("find master %d of %s: %w", a.MasterIndex, name, err)
		}
		e.Master = m.Attrs().Name
	}
	if x := a.Xdp; x != nil && x.Attached {
		e.XDP = XDPStatus{Attached: true, ProgID: x.ProgId, Mode: xdpMode(x.AttachMode)}
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return e, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	for _, ad := range addrs {
		ip, ok := netip.AddrFromSlice(ad.IP)
		if !ok || ad.IPNet == nil {
			continue
		}
		ones, _ := ad.Mask.Size()
		e.Addrs = append(e.Addrs, netip.PrefixFrom(ip.Unmap(), ones))
	}
	if e.Offloads, err = eth.offloads(name); err != nil {
		return e, err
	}
	return e, nil
}

// xdpAttachedMulti is XDP_ATTACHED_MULTI from <linux/if_link.h>: programs
// attached in more than one mode.
const xdpAttachedMulti = 4

func xdpMode(m uint32) string {
	switch m {
	case nl.XDP_ATTACHED_DRV:
		return "drv"
	case nl.XDP_ATTACHED_SKB:
		return "skb"
	case nl.XDP_ATTACHED_HW:
		return "hw"
	case xdpAttachedMulti:
		return "multi"
	}
	return fmt.Sprintf("mode%d", m)
}

// String prints the status: the bridge if there is one, then one block per
// port and one line per end.
func (s *Status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lab %s (netns %s), %d port(s)\n", s.Name, s.Netns, len(s.Ports))
	if br := s.Bridge; br != nil {
		fmt.Fprintf(&b, "bridge %s (peer), members %s, stp %s, forward delay %s, ageing %s, multicast snooping %s\n",
			br.Name, strings.Join(br.Members, " "), onOff(br.STP), br.ForwardDelay, br.AgeingTime, onOff(br.MulticastSnooping))
		br.write(&b, "peer")
	}
	for _, p := range s.Ports {
		fmt.Fprintf(&b, "port %d\n", p.Index)
		p.Host.write(&b, "host")
		p.Peer.write(&b, "peer")
	}
	return b.String()
}

func (e *EndStatus) write(b *strings.Builder, side string) {
	xdp := "none"
	if e.XDP.Attached {
		xdp = fmt.Sprintf("id %d (%s)", e.XDP.ProgID, e.XDP.Mode)
	}
	addrs := make([]string, len(e.Addrs))
	for i, a := range e.Addrs {
		addrs[i] = a.String()
	}
	master := ""
	if e.Master != "" {
		master = " master " + e.Master
	}
	fmt.Fprintf(b, "  %s %-8s ifindex %d mac %s mtu %d %s queues rx %d tx %d%s\n",
		side, e.Name, e.Ifindex, e.MAC, e.MTU, e.OperState, e.Queues.Rx, e.Queues.Tx, master)
	fmt.Fprintf(b, "       addrs %s\n", strings.Join(addrs, " "))
	fmt.Fprintf(b, "       rx %d pkts %d bytes %d dropped | tx %d pkts %d bytes %d dropped\n",
		e.RxPackets, e.RxBytes, e.RxDropped, e.TxPackets, e.TxBytes, e.TxDropped)
	fmt.Fprintf(b, "       xdp %s | %s\n", xdp, e.Offloads)
}

var _ fmt.Stringer = (*Status)(nil)
