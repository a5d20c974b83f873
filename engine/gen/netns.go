package gen

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// openNetns opens a namespace by name (under /var/run/netns) or by path.
func openNetns(name string) (netns.NsHandle, error) {
	if strings.Contains(name, "/") {
		return netns.GetFromPath(name)
	}
	return netns.GetFromName(name)
}

// inNetns locks the calling goroutine to its thread, moves the thread into
// namespace name ("" stays), runs fn, moves back and unlocks. If moving back
// fails the thread stays locked, so the runtime discards it when the
// goroutine exits: call it only from a goroutine Run started.
func inNetns(name string, fn func() error) error {
	runtime.LockOSThread()
	if name == "" {
		defer runtime.UnlockOSThread()
		return fn()
	}
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	target, err := openNetns(name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", name, err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(fnErr, fmt.Errorf("restore netns after %s: %w", name, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// goInNetns runs inNetns on a fresh goroutine and waits for it.
func goInNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- inNetns(name, fn) }()
	return <-errc
}

// ifaceInfo is what Run needs to know about the sending interface.
type ifaceInfo struct {
	index   int
	mac     net.HardwareAddr
	peerMAC net.HardwareAddr // nil when not found
}

// resolveIface looks iface up inside namespace ns and, for a veth, finds its
// other end in the caller's namespace to learn the destination MAC.
func resolveIface(ns, iface string) (ifaceInfo, error) {
	var info ifaceInfo
	var peerIndex int
	err := goInNetns(ns, func() error {
		link, err := netlink.LinkByName(iface)
		if err != nil {
			return fmt.Errorf("find %s: %w", iface, err)
		}
		a := link.Attrs()
		if a.Flags&net.FlagUp == 0 {
			return fmt.Errorf("interface %s is down", iface)
		}
		info.index, info.mac = a.Index, a.HardwareAddr
		if _, ok := link.(*netlink.Veth); ok {
			peerIndex = a.ParentIndex
		}
		return nil
	})
	if err != nil || peerIndex == 0 {
		return info, err
	}
	// The peer index is relative to the peer's namespace; accept the link
	// found here only if it is a veth pointing back at our index.
	if peer, err := netlink.LinkByIndex(peerIndex); err == nil {
		if _, ok := peer.(*netlink.Veth); ok && peer.Attrs().ParentIndex == info.index {
			info.peerMAC = peer.Attrs().HardwareAddr
		}
	}
	return info, nil
}
