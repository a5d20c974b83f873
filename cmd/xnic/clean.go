package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/internal/cli"
	"github.com/xnic/xnic/internal/portlock"
	"github.com/xnic/xnic/internal/safedir"
)

// cleanedPort is one port in `xnic clean --json`.
type cleanedPort struct {
	Iface       string `json:"iface"`
	DetachedXDP uint32 `json:"detached_xdp,omitempty"` // the id of the xnic_steer program detached
	PinsRemoved int    `json:"pins_removed"`
	Skipped     string `json:"skipped,omitempty"` // why the port was left alone
}

// cleanReport is `xnic clean --json`.
type cleanReport struct {
	Ports          []cleanedPort `json:"ports"`
	ControlRemoved bool          `json:"control_removed"`
}

func runClean(_ context.Context, args []string) error { return cleanCmd(args, os.Stdout) }

// cleanCmd is `xnic clean`: it removes what engines that are gone left,
// port by port while holding the port's lock, so that no engine starts on
// the port meanwhile: the steering maps pinned in the port's directory,
// xnic_steer if it is still attached (never another program), and the
// control socket if nobody answers there. A port whose engine runs is
// refused with --iface and skipped without.
func cleanCmd(args []string, out io.Writer) error {
	fs := cli.NewFlags("clean", "[--iface IF] [--pin-dir DIR] [--ctl SOCKET] [--json]")
	iface := fs.String("iface", "", "clean this interface only (default: every one a gone engine left something on)")
	paths := addStatusFlags(fs)
	asJSON := fs.Bool("json", false, "JSON output")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	p := paths()
	st, err := readStatus(p, *iface)
	if err != nil {
		return err
	}
	rep := cleanReport{Ports: []cleanedPort{}}
	for _, ps := range st.Ports {
		if *iface == "" && !ps.leftovers() {
			continue
		}
		c, err := cleanPort(p, ps)
		if err != nil {
			if *iface != "" {
				return err
			}
			c.Skipped = err.Error()
		}
		rep.Ports = append(rep.Ports, c)
	}
	if st.Control.State == engine.ControlStale {
		if rep.ControlRemoved, err = engine.RemoveStaleControl(p.ctl); err != nil {
			return err
		}
	}
	if *asJSON {
		return json.NewEncoder(out).Encode(rep)
	}
	for _, c := range rep.Ports {
		switch {
		case c.Skipped != "":
			fmt.Fprintf(out, "%s: skipped: %s\n", c.Iface, c.Skipped)
		case c.DetachedXDP != 0:
			fmt.Fprintf(out, "%s: detached %s (id %d), removed %d pins from %s\n", c.Iface, steerProgName, c.DetachedXDP, c.PinsRemoved, filepath.Join(p.pinRoot, c.Iface))
		default:
			fmt.Fprintf(out, "%s: removed %d pins from %s\n", c.Iface, c.PinsRemoved, filepath.Join(p.pinRoot, c.Iface))
		}
	}
	if rep.ControlRemoved {
		fmt.Fprintf(out, "removed the stale control socket %s\n", p.ctl)
	}
	if len(rep.Ports) == 0 && !rep.ControlRemoved {
		fmt.Fprintln(out, "nothing to clean")
	}
	return nil
}

// cleanPort cleans one port under its lock; a running engine's port is an
// error that names the engine.
func cleanPort(p statusPaths, ps portStatus) (cleanedPort, error) {
	c := cleanedPort{Iface: ps.Iface}
	if err := safedir.Ensure(filepath.Dir(p.lockDir)); err != nil {
		return c, fmt.Errorf("run dir: %w", err)
	}
	if err := safedir.Ensure(p.lockDir); err != nil {
		return c, fmt.Errorf("lock dir: %w", err)
	}
	lock, o, err := portlock.Acquire(p.lockDir, ps.Iface, "xnic-clean")
	if errors.Is(err, portlock.ErrHeld) {
		return c, &engine.PortInUseError{Port: ps.Iface, Holder: o.Name, PID: o.PID}
	}
	if err != nil {
		return c, fmt.Errorf("port %s: %w", ps.Iface, err)
	}
	defer lock.Close()
	// Read the interface again under the lock: an engine may have come
	// and gone since readStatus.
	if l, err := netlink.LinkByName(ps.Iface); err == nil {
		if x := xdpOf(l); x != nil && x.XnicSteer {
			if err := netlink.LinkSetXdpFdWithFlags(l, -1, xdpDetachFlags(x.Mode)); err != nil {
				return c, fmt.Errorf("port %s: detach %s (id %d): %w", ps.Iface, steerProgName, x.ProgID, err)
			}
			c.DetachedXDP = x.ProgID
		}
	}
	if dir := filepath.Join(p.pinRoot, ps.Iface); bpf.HasPins(dir) {
		if c.PinsRemoved, err = bpf.RemovePinned(dir); err != nil {
			return c, fmt.Errorf("port %s: %w", ps.Iface, err)
		}
		// The shared root goes with the last port's directory, as when
		// an engine closes; another port's pins keep it.
		if err := safedir.RemoveEmpty(p.pinRoot); err != nil {
			return c, fmt.Errorf("port %s: remove %s: %w", ps.Iface, p.pinRoot, err)
		}
	}
	return c, nil
}
