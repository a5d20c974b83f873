package lab

import (
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
)

// End names one end of a port's veth pair.
type End int

const (
	HostEnd End = iota // NAME<i>, in the caller's netns
	PeerEnd            // NAMEp<i>, in the lab's netns
)

func (e End) String() string {
	switch e {
	case HostEnd:
		return "host"
	case PeerEnd:
		return "peer"
	}
	return fmt.Sprintf("end%d", int(e))
}

// SetLinkDown sets one end of port i administratively down, like
// `ip link set NAME<i> down` (or NAMEp<i> inside the netns). The other end
// loses its carrier, and a bridge flushes what it learned on a peer end whose
// host end went down. Failover tests pull a cable this way. It returns once
// the kernel's link watch has carried the change to the other end (its oper
// state is no longer up), at most settleTimeout later.
func (l *Lab) SetLinkDown(i int, end End) error { return l.setLink(i, end, false) }

// SetLinkUp undoes SetLinkDown. Until the kernel's link watch has run, a link
// that was set up still drops what is sent on it (its qdisc is not yet
// active), so SetLinkUp returns only once the end it raised is oper up, or
// at once if the other end is administratively down and it never will be.
func (l *Lab) SetLinkUp(i int, end End) error { return l.setLink(i, end, true) }

// settleTimeout bounds how long SetLinkUp and SetLinkDown wait for the link
// watch.
const settleTimeout = 5 * time.Second

func (l *Lab) setLink(i int, end End, up bool) error {
	verb := "down"
	if up {
		verb = "up"
	}
	if i < 0 || i >= len(l.Ports) {
		return fmt.Errorf("lab %s: set port %d %s: no such port (%d ports)", l.Name, i, verb, len(l.Ports))
	}
	p := l.Ports[i]
	ns, err := openNetns(l.Netns)
	if err != nil {
		return fmt.Errorf("lab %s: set port %d %s: %w", l.Name, i, verb, err)
	}
	defer ns.Close()
	host, peer, err := handles(ns, l.Netns)
	if err != nil {
		return fmt.Errorf("lab %s: set port %d %s: %w", l.Name, i, verb, err)
	}
	defer host.Close()
	defer peer.Close()
	this, other := endRef{host, p.Host}, endRef{peer, p.Peer}
	if end == PeerEnd {
		this, other = other, this
	}
	if err := this.set(up); err != nil {
		return fmt.Errorf("lab %s: port %d %s end: %w", l.Name, i, end, err)
	}
	if err := settle(this, other, up); err != nil {
		return fmt.Errorf("lab %s: port %d %s end: %w", l.Name, i, end, err)
	}
	return nil
}

// endRef is one veth end and netlink in its netns.
type endRef struct {
	h    *netlink.Handle
	name string
}

func (e endRef) link() (netlink.Link, error) {
	link, err := e.h.LinkByName(e.name)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", e.name, err)
	}
	return link, nil
}

func (e endRef) set(up bool) error {
	link, err := e.link()
	if err != nil {
		return err
	}
	verb := "down"
	if up {
		verb = "up"
		err = e.h.LinkSetUp(link)
	} else {
		err = e.h.LinkSetDown(link)
	}
	if err != nil {
		return fmt.Errorf("set %s %s: %w", e.name, verb, err)
	}
	return nil
}

// settle waits for the link watch after this was set up or down: until this
// is oper up (if other is administratively up), or until other is no longer
// oper up.
func settle(this, other endRef, up bool) error {
	ol, err := other.link()
	if err != nil {
		return err
	}
	watch := other
	if up {
		if ol.Attrs().Flags&net.FlagUp == 0 {
			return nil
		}
		watch = this
	}
	for deadline := time.Now().Add(settleTimeout); ; time.Sleep(2 * time.Millisecond) {
		link, err := watch.link()
		if err != nil {
			return err
		}
		if (link.Attrs().OperState == netlink.OperUp) == up {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("link watch: %s still oper %s after %s", watch.name, link.Attrs().OperState, settleTimeout)
		}
	}
}

// DeletePort deletes port i's veth pair, as a NIC that goes away: the host end
// disappears from the caller's netns and the peer end from the netns (and
// from the bridge). l.Ports keeps the port's entry, so indexes stay put;
// Status then fails for it, and Open of a lab with a hole below its last port
// fails too, while Down still clears everything. A port that is gone already
// is no error.
func (l *Lab) DeletePort(i int) error {
	if i < 0 || i >= len(l.Ports) {
		return fmt.Errorf("lab %s: delete port %d: no such port (%d ports)", l.Name, i, len(l.Ports))
	}
	ns, err := openNetns(l.Netns)
	if err != nil {
		return fmt.Errorf("lab %s: delete port %d: %w", l.Name, i, err)
	}
	defer ns.Close()
	host, peer, err := handles(ns, l.Netns)
	if err != nil {
		return fmt.Errorf("lab %s: delete port %d: %w", l.Name, i, err)
	}
	defer host.Close()
	defer peer.Close()
	hl, _, err := findPair(host, peer, l.Name, i)
	if err != nil {
		return fmt.Errorf("lab %s: delete port %d: %w", l.Name, i, err)
	}
	if hl == nil {
		return nil
	}
	if err := host.LinkDel(hl); err != nil && !isLinkNotFound(err) {
		return fmt.Errorf("lab %s: delete port %d: delete %s: %w", l.Name, i, hl.Attrs().Name, err)
	}
	return nil
}
