package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/internal/cli"
	"github.com/xnic/xnic/internal/portlock"
)

// steerProgName is the name the kernel gives xnic's steering program.
const steerProgName = "xnic_steer"

// xdpStatus is the XDP program attached to an interface.
type xdpStatus struct {
	ProgID    uint32 `json:"prog_id"`
	Mode      string `json:"mode"` // native, generic, offload or multi
	Name      string `json:"name"` // "" when the program cannot be read
	XnicSteer bool   `json:"xnic_steer"`
}

// ownerStatus is the engine that owns a port, by its lock file.
type ownerStatus struct {
	State string `json:"state"` // running, gone or none (no engine ever locked the port)
	PID   int    `json:"pid,omitempty"`
	Name  string `json:"name,omitempty"`
}

func (o ownerStatus) String() string {
	switch {
	case o.State == "running":
		return fmt.Sprintf("running, pid %d", o.PID)
	case o.State == "gone" && o.PID != 0:
		return fmt.Sprintf("gone, was pid %d", o.PID)
	}
	return o.State
}

// portStatus is one interface in `xnic status`.
type portStatus struct {
	Iface   string      `json:"iface"`
	Ifindex int         `json:"ifindex"` // 0: no such interface now
	XDP     *xdpStatus  `json:"xdp"`     // null: no XDP program attached
	Engine  ownerStatus `json:"engine"`
	PinDir  string      `json:"pin_dir"`
	Pins    int         `json:"pins"`
}

// leftovers says whether the port holds what a gone engine left: pins, or
// xnic_steer attached, with no engine running.
func (p portStatus) leftovers() bool {
	return p.Engine.State != "running" && (p.Pins > 0 || p.XDP != nil && p.XDP.XnicSteer)
}

// controlStatus is the control socket in `xnic status`.
type controlStatus struct {
	Path  string              `json:"path"`
	State engine.ControlState `json:"state"`
}

// statusReport is `xnic status --json`.
type statusReport struct {
	Ports   []portStatus  `json:"ports"`
	Control controlStatus `json:"control"`
}

// statusPaths are where status and clean look.
type statusPaths struct {
	pinRoot, lockDir, ctl string
}

func addStatusFlags(fs interface {
	String(name, value, usage string) *string
}) func() statusPaths {
	pinRoot := fs.String("pin-dir", engine.DefaultPinDir, "where engines pin their maps, one directory per port")
	ctl := fs.String("ctl", engine.DefaultControlPath, "the engines' control socket")
	return func() statusPaths { return statusPaths{pinRoot: *pinRoot, lockDir: engine.DefaultLockDir, ctl: *ctl} }
}

func runStatus(_ context.Context, args []string) error { return statusCmd(args, os.Stdout) }

// statusCmd is `xnic status`, as `xdp-loader status`: every interface with
// an XDP program, a running engine or pins, and the control socket.
func statusCmd(args []string, out io.Writer) error {
	fs := cli.NewFlags("status", "[--pin-dir DIR] [--ctl SOCKET] [--json]")
	paths := addStatusFlags(fs)
	asJSON := fs.Bool("json", false, "JSON output")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	rep, err := readStatus(paths(), "")
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(out).Encode(rep)
	}
	if len(rep.Ports) == 0 {
		fmt.Fprintln(out, "no XDP programs, xnic engines or pins")
	} else {
		w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "INTERFACE\tXDP PROGRAM\tENGINE\tPINS")
		for _, p := range rep.Ports {
			prog := "none"
			if x := p.XDP; x != nil {
				name := x.Name
				if name == "" {
					name = "?"
				}
				prog = fmt.Sprintf("%s (id %d, %s)", name, x.ProgID, x.Mode)
			}
			iface := p.Iface
			if p.Ifindex == 0 {
				iface += " (gone)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d in %s\n", iface, prog, p.Engine, p.Pins, p.PinDir)
		}
		w.Flush()
	}
	fmt.Fprintf(out, "control socket %s: %s\n", rep.Control.Path, rep.Control.State)
	for _, p := range rep.Ports {
		if p.leftovers() {
			fmt.Fprintf(out, "%s: left by an engine that no longer runs; remove with: xnic clean --iface %s (or start the next engine with --reuse-pins)\n", p.Iface, p.Iface)
		}
	}
	return nil
}

// readStatus reads the state of every interface that has an XDP program,
// pins under the pin root or a running engine; with only, of that one.
func readStatus(paths statusPaths, only string) (statusReport, error) {
	rep := statusReport{Ports: []portStatus{}, Control: controlStatus{Path: paths.ctl}}
	var err error
	if rep.Control.State, err = engine.ProbeControl(paths.ctl); err != nil {
		return rep, err
	}
	links, err := netlink.LinkList()
	if err != nil {
		return rep, fmt.Errorf("list links: %w", err)
	}
	byName := map[string]netlink.Link{}
	var names []string
	add := func(n string) {
		if (only == "" || n == only) && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, l := range links {
		byName[l.Attrs().Name] = l
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			add(l.Attrs().Name)
		}
	}
	if ents, err := os.ReadDir(paths.pinRoot); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				add(e.Name())
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return rep, fmt.Errorf("read pin dir: %w", err)
	}
	if ents, err := os.ReadDir(paths.lockDir); err == nil {
		for _, e := range ents {
			iface, ok := strings.CutSuffix(e.Name(), ".lock")
			if !ok {
				continue
			}
			// A lock file stays after its engine exits: only a running
			// engine's makes a port worth showing on its own.
			if o, err := portlock.Query(paths.lockDir, iface); err == nil && o.Held {
				add(iface)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return rep, fmt.Errorf("read lock dir: %w", err)
	}
	if only != "" {
		add(only)
	}
	slices.Sort(names)
	for _, n := range names {
		p := portStatus{Iface: n, PinDir: filepath.Join(paths.pinRoot, n), Engine: ownerStatus{State: "none"}}
		if l, ok := byName[n]; ok {
			p.Ifindex = l.Attrs().Index
			p.XDP = xdpOf(l)
		}
		o, err := portlock.Query(paths.lockDir, n)
		if err != nil {
			return rep, err
		}
		switch {
		case o.Held:
			p.Engine = ownerStatus{State: "running", PID: o.PID, Name: o.Name}
		case o.PID != 0:
			p.Engine = ownerStatus{State: "gone", PID: o.PID, Name: o.Name}
		}
		if ents, err := os.ReadDir(p.PinDir); err == nil {
			p.Pins = len(ents)
		}
		rep.Ports = append(rep.Ports, p)
	}
	return rep, nil
}

// xdpOf is the XDP program attached to l, nil if none.
func xdpOf(l netlink.Link) *xdpStatus {
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return nil
	}
	s := &xdpStatus{ProgID: x.ProgId, Mode: xdpModeName(x.AttachMode)}
	if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(x.ProgId)); err == nil {
		if info, err := p.Info(); err == nil {
			s.Name = info.Name
		}
		p.Close()
	}
	s.XnicSteer = s.Name == steerProgName
	return s
}

func xdpModeName(m uint32) string {
	switch m {
	case nl.XDP_ATTACHED_DRV:
		return "native"
	case nl.XDP_ATTACHED_SKB:
		return "generic"
	case nl.XDP_ATTACHED_HW:
		return "offload"
	case 4: // XDP_ATTACHED_MULTI: more than one mode
		return "multi"
	}
	return fmt.Sprintf("mode %d", m)
}

// xdpDetachFlags are the netlink flags that detach a program attached in
// mode m.
func xdpDetachFlags(m string) int {
	switch m {
	case "generic":
		return nl.XDP_FLAGS_SKB_MODE
	case "native":
		return nl.XDP_FLAGS_DRV_MODE
	case "offload":
		return 1 << 3 // XDP_FLAGS_HW_MODE
	}
	return 0
}
