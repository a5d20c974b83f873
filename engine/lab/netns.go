package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted, as by iproute2.
const netnsDir = "/run/netns"

// netnsPath returns the bind-mount path of the named netns.
func netnsPath(name string) string { return filepath.Join(netnsDir, name) }

// netnsExists reports whether a named netns (or a stale file of that name)
// exists.
func netnsExists(name string) (bool, error) {
	_, err := os.Lstat(netnsPath(name))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// createNetns creates a named netns the way `ip netns add` does: a fresh netns
// bind-mounted on /run/netns/NAME. The unshare happens on a thread that is
// thrown away afterwards, so no thread of the process is left in the new
// netns and no restore can fail.
func createNetns(name string) error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsDir, err)
	}
	path := netnsPath(name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create netns file %s: %w", path, err)
	}
	f.Close()

	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread exits with this goroutine, taking the
		// new netns with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			done <- fmt.Errorf("bind-mount netns on %s: %w", path, err)
			return
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// deleteNetns removes a named netns like `ip netns delete`. A missing netns is
// not an error; a stale, unmounted file is removed too.
func deleteNetns(name string) error {
	path := netnsPath(name)
	err := unix.Unmount(path, unix.MNT_DETACH)
	switch {
	case err == nil, errors.Is(err, unix.EINVAL): // EINVAL: not a mount point
	case errors.Is(err, unix.ENOENT):
		return nil
	default:
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// openNetns opens the named netns. The error wraps fs.ErrNotExist when it does
// not exist.
func openNetns(name string) (netns.NsHandle, error) {
	h, err := netns.GetFromPath(netnsPath(name))
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %s: %w", name, err)
	}
	return h, nil
}

// runInNetns runs fn on a locked OS thread that has joined target, then puts
// the thread back into its original netns. It runs on a new goroutine: if the
// restore fails, that goroutine exits with its thread still locked, and the Go
// runtime destroys the thread instead of reusing it in the wrong netns.
func runInNetns(target netns.NsHandle, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter netns: %w", err)
			return
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			// Keep the thread locked: it dies with this goroutine.
			done <- errors.Join(fnErr, fmt.Errorf("restore netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		done <- fnErr
	}()
	return <-done
}

// InPeer runs fn inside the lab's peer netns, on a locked OS thread of its own
// goroutine, and restores the thread's netns afterwards. Sockets that fn opens
// stay in the peer netns after InPeer returns. Goroutines that fn starts do
// not run in the peer netns.
func (l *Lab) InPeer(fn func() error) error {
	ns, err := openNetns(l.Netns)
	if err != nil {
		return fmt.Errorf("lab %s: %w", l.Name, err)
	}
	defer ns.Close()
	if err := runInNetns(ns, fn); err != nil {
		return fmt.Errorf("lab %s: in netns %s: %w", l.Name, l.Netns, err)
	}
	return nil
}

// PeerCommand returns `ip netns exec NAME-peer name args...`, to be run by the
// caller.
func (l *Lab) PeerCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", l.Netns, name}, args...)
	return exec.CommandContext(ctx, "ip", full...)
}

// PeerDial dials address from inside the peer netns (see net.Dialer). The
// connection's socket lives in the peer netns.
func (l *Lab) PeerDial(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := l.InPeer(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// PeerListenPacket opens a packet socket in the peer netns (see
// net.ListenPacket).
func (l *Lab) PeerListenPacket(network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := l.InPeer(func() error {
		var err error
		c, err = net.ListenPacket(network, address)
		return err
	})
	return c, err
}

// PeerListen opens a listening socket in the peer netns (see net.Listen).
func (l *Lab) PeerListen(network, address string) (net.Listener, error) {
	var ln net.Listener
	err := l.InPeer(func() error {
		var err error
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}
