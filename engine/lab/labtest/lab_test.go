package labtest

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/xnic/xnic/engine/lab"
)

func netnsExists(t *testing.T, name string) bool {
	t.Helper()
	_, err := os.Lstat("/run/netns/" + lab.NetnsName(name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestNewTearsDownAtCleanup(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		opts := lab.DefaultOptions()
		opts.Name = ""
		l := New(t, opts)
		name = l.Name
		if !testName.MatchString(name) || !netnsExists(t, name) {
			t.Fatalf("New made %q, netns present %v", name, netnsExists(t, name))
		}
		if !ownerAlive(name) {
			t.Errorf("owner file of %s does not name this process", name)
		}
	})
	if name == "" {
		t.Fatal("inner test made no lab")
	}
	if netnsExists(t, name) {
		t.Errorf("lab %s survived its test", name)
	}
	if _, err := os.Stat(ownerPath(name)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("owner file of %s survived its test (%v)", name, err)
	}
}

// deadPID returns the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run true: %v", err)
	}
	return cmd.Process.Pid
}

func TestSweepRemovesOnlyDeadOwnersLabs(t *testing.T) {
	HoldSlot(t)
	// Labs share subnets, so only one can have addresses at a time: these
	// stale-lab stand-ins are the netns and a veth pair of the convention,
	// without addresses, made with iproute2.
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	mk := func(owner string) string {
		name := lab.RandomName(Prefix)
		ns := lab.NetnsName(name)
		ip("netns", "add", ns)
		l := &lab.Lab{Name: name, Netns: ns}
		t.Cleanup(func() { l.Down(); os.Remove(ownerPath(name)) })
		ip("link", "add", lab.HostLinkName(name, 0), "type", "veth",
			"peer", "name", lab.PeerLinkName(name, 0), "netns", ns)
		if owner != "" {
			if err := os.MkdirAll(OwnerDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(ownerPath(name), []byte(owner), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return name
	}
	start, err := startTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	dead := mk(fmt.Sprintf("%d %d\n", deadPID(t), start))
	reused := mk(fmt.Sprintf("%d %d\n", os.Getpid(), start+1)) // our PID, another start time
	live := mk(fmt.Sprintf("%d %d\n", os.Getpid(), start))
	unowned := mk("")

	if err := Sweep(); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	for _, tc := range []struct {
		name string
		want bool
	}{{dead, false}, {reused, false}, {live, true}, {unowned, true}} {
		if got := netnsExists(t, tc.name); got != tc.want {
			t.Errorf("after Sweep, lab %s present = %v, want %v", tc.name, got, tc.want)
		}
		_, err := net.InterfaceByName(lab.HostLinkName(tc.name, 0))
		if got := err == nil; got != tc.want {
			t.Errorf("after Sweep, link %s present = %v, want %v", lab.HostLinkName(tc.name, 0), got, tc.want)
		}
	}
	if _, err := os.Stat(ownerPath(dead)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("owner file of swept lab %s remains (%v)", dead, err)
	}
}
