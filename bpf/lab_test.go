package bpf

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// vethLab is a veth pair: host side in the root netns, peer side in a
// private netns, torn down by t.Cleanup. (engine/lab builds the same for the
// other packages; bpf sits below it.)
type vethLab struct {
	ns                   string
	host, peer           string
	hostIndex, peerIndex int
}

func newVethLab(t testing.TB) *vethLab { return newVethLabQueues(t, 1) }

// newVethLabQueues makes the pair with queues rx and tx queues per side, so
// that several AF_XDP sockets can be bound without sharing a UMEM.
func newVethLabQueues(t testing.TB, queues int) *vethLab {
	t.Helper()
	id := rand.Uint32() & 0xffffff
	l := &vethLab{
		ns:   fmt.Sprintf("xbt%06x-peer", id),
		host: fmt.Sprintf("xbt%06x0", id),
		peer: fmt.Sprintf("xbt%06xp0", id),
	}

	// netns.NewNamed switches the calling thread: do it on a locked thread
	// and switch back.
	func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := netns.Get()
		if err != nil {
			t.Fatalf("get netns: %v", err)
		}
		defer orig.Close()
		ns, err := netns.NewNamed(l.ns)
		if err != nil {
			t.Fatalf("create netns %s: %v", l.ns, err)
		}
		ns.Close()
		if err := netns.Set(orig); err != nil {
			t.Fatalf("restore netns: %v", err)
		}
	}()
	t.Cleanup(func() {
		if err := netns.DeleteNamed(l.ns); err != nil {
			t.Errorf("delete netns %s: %v", l.ns, err)
		}
	})

	ns, err := netns.GetFromName(l.ns)
	if err != nil {
		t.Fatalf("open netns %s: %v", l.ns, err)
	}
	defer ns.Close()
	veth := &netlink.Veth{
		LinkAttrs:       netlink.LinkAttrs{Name: l.host, NumTxQueues: queues, NumRxQueues: queues},
		PeerName:        l.peer,
		PeerNamespace:   netlink.NsFd(ns),
		PeerNumTxQueues: uint32(queues),
		PeerNumRxQueues: uint32(queues),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s: %v", l.host, err)
	}
	t.Cleanup(func() {
		if link, err := netlink.LinkByName(l.host); err == nil {
			if err := netlink.LinkDel(link); err != nil {
				t.Errorf("delete veth %s: %v", l.host, err)
			}
		}
	})
	host, err := netlink.LinkByName(l.host)
	if err != nil {
		t.Fatalf("find %s: %v", l.host, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		t.Fatalf("up %s: %v", l.host, err)
	}
	l.hostIndex = host.Attrs().Index

	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", l.ns, err)
	}
	defer nh.Close()
	peer, err := nh.LinkByName(l.peer)
	if err != nil {
		t.Fatalf("find %s in %s: %v", l.peer, l.ns, err)
	}
	// No IPv6 on the peer: its NDP and MLD frames would land in the
	// counters of the program on the host side.
	l.inPeer(t, func() {
		path := "/proc/sys/net/ipv6/conf/" + l.peer + "/disable_ipv6"
		if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
			t.Errorf("disable ipv6 on %s: %v", l.peer, err)
		}
	})
	if err := nh.LinkSetUp(peer); err != nil {
		t.Fatalf("up %s: %v", l.peer, err)
	}
	l.peerIndex = peer.Attrs().Index
	return l
}

// inPeer runs fn on a thread locked into the peer netns. fn may call
// t.Fatal: the thread is dropped rather than reused.
func (l *vethLab) inPeer(t testing.TB, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with us
		ns, err := netns.GetFromName(l.ns)
		if err != nil {
			t.Errorf("open netns %s: %v", l.ns, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			t.Errorf("enter netns %s: %v", l.ns, err)
			return
		}
		fn()
	}()
	<-done
}

// xdpAttached reports whether the host veth has an XDP program.
func (l *vethLab) xdpAttached(t testing.TB) bool {
	t.Helper()
	link, err := netlink.LinkByIndex(l.hostIndex)
	if err != nil {
		t.Fatalf("find ifindex %d: %v", l.hostIndex, err)
	}
	x := link.Attrs().Xdp
	return x != nil && x.Attached
}

// newTestXSK returns a minimal bound AF_XDP socket (copy mode) on ifindex
// and queue: enough for an XSKMAP entry, with no rings mapped, so frames
// redirected to it are dropped by the socket.
func newTestXSK(t testing.TB, ifindex, queue int) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("xsk socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	const frames, frameSize = 64, 4096
	area, err := unix.Mmap(-1, 0, frames*frameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("umem mmap: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(area) })
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&area[0]))), Len: uint64(len(area)), Size: frameSize}
	if _, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_UMEM_REG,
		uintptr(unsafe.Pointer(&reg)), unsafe.Sizeof(reg), 0); errno != 0 {
		t.Fatalf("XDP_UMEM_REG: %v", errno)
	}
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, opt, 64); err != nil {
			t.Fatalf("xsk ring option %d: %v", opt, err)
		}
	}
	sa := &unix.SockaddrXDP{Flags: unix.XDP_COPY, Ifindex: uint32(ifindex), QueueID: uint32(queue)}
	if err := unix.Bind(fd, sa); err != nil {
		t.Fatalf("bind xsk to ifindex %d queue %d: %v", ifindex, queue, err)
	}
	return fd
}

func loadGenT(t *testing.T, opts GenOptions) *Gen {
	t.Helper()
	g, err := LoadGen(opts)
	if err != nil {
		t.Fatalf("LoadGen(%+v): %+v", opts, err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("close gen: %v", err)
		}
	})
	return g
}

// sendFrames makes n copies of frame arrive at the host veth, as if from a
// wire: with live frames of g where the kernel runs them, else through an
// AF_PACKET socket on the peer end (ProbeLiveFrames says which).
func (l *vethLab) sendFrames(t testing.TB, g *Gen, frame []byte, n uint32) {
	t.Helper()
	if err := ProbeLiveFrames(); err == nil {
		l.inPeer(t, func() {
			r, err := g.NewLiveRunner(frame, l.peerIndex, 0)
			if err != nil {
				t.Errorf("NewLiveRunner: %v", err)
				return
			}
			if err := r.Run(n); err != nil {
				t.Errorf("live run: %v", err)
			}
		})
		return
	}
	l.inPeer(t, func() {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Errorf("packet socket: %v", err)
			return
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: l.peerIndex, Halen: 6}
		for i := uint32(0); i < n; i++ {
			if err := unix.Sendto(fd, frame, 0, to); err != nil {
				t.Errorf("send frame %d of %d: %v", i, n, err)
				return
			}
		}
	})
}
