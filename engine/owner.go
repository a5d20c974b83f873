package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/internal/portlock"
	"github.com/xnic/xnic/internal/safedir"
)

// One engine owns a port: before it touches a pin, a map, the XDP link or
// an XSKMAP slot of an interface, New takes the port's lock, an open file
// description lock on DefaultLockDir/<iface>.lock (portlock) that the
// kernel drops when the engine dies, however it dies. A second engine on
// the port fails at once with ErrPortInUse and changes nothing. Pins found
// in a port's directory while nobody holds its lock and no XDP program is
// attached were left by an engine that is gone. If it stopped cleanly with
// KeepPins it said so in the lock file (portlock.Lock.MarkKept), and the
// pins are taken as they are meant to be. Otherwise it died (kill -9, a
// crash, or a lock file lost with /run), and New refuses the port with a
// StalePinsError, changing nothing, unless Options.ReusePins: then without
// KeepPins the pins are removed; with KeepPins they are reused. Either way
// the start is logged. Reused maps lose the rules and flows of the gone
// engine's guests, since guest ids are handed out again.
// Every directory on the way (the pin root, each port's pin directory,
// /run/xnic and its ports directory) is checked with safedir: a real
// directory, owned by root, writable by nobody else.

// DefaultRunDir holds the engine's control socket and DefaultLockDir.
const DefaultRunDir = "/run/xnic"

// DefaultLockDir holds one lock file per port.
const DefaultLockDir = DefaultRunDir + "/ports"

var (
	// ErrPortInUse reports a port another running engine owns.
	ErrPortInUse = errors.New("port is in use")
	// ErrStalePins reports a port with the pins of an engine that died,
	// which New takes over only with Options.ReusePins.
	ErrStalePins = errors.New("pins left by an engine that no longer runs")
)

// PortInUseError is the error New returns (wrapped) for a port whose lock
// another engine holds; errors.Is(err, ErrPortInUse) holds.
type PortInUseError struct {
	Port   string
	Holder string // the holder's program name, "" when unknown
	PID    int    // 0 when unknown
}

func (e *PortInUseError) Error() string {
	holder := e.Holder
	if holder == "" {
		holder = "another engine"
	}
	if e.PID == 0 {
		return fmt.Sprintf("port %s is in use by %s", e.Port, holder)
	}
	return fmt.Sprintf("port %s is in use by %s (pid %d)", e.Port, holder, e.PID)
}

// Is makes errors.Is(err, ErrPortInUse) true.
func (e *PortInUseError) Is(target error) bool { return target == ErrPortInUse }

// StalePinsError is the error New returns (wrapped) for a port whose pin
// directory holds maps of an engine that died; errors.Is(err,
// ErrStalePins) holds. The pins are left in place.
type StalePinsError struct {
	Port   string
	PinDir string
	Pins   int    // the map files in PinDir
	Holder string // the dead engine's program name, "" when unknown
	PID    int    // the dead engine's pid, 0 when unknown
}

func (e *StalePinsError) Error() string {
	return fmt.Sprintf("port %s: %d maps pinned in %s by %s, which no longer runs: refusing to take them over; "+
		"remove them with `xnic clean --iface %s`, or start with --reuse-pins to remove them (with pin: true, reuse them)",
		e.Port, e.Pins, e.PinDir, describeGone(portlock.Owner{PID: e.PID, Name: e.Holder}), e.Port)
}

// Is makes errors.Is(err, ErrStalePins) true.
func (e *StalePinsError) Is(target error) bool { return target == ErrStalePins }

// lockDir is the directory of the port locks.
func (o Options) lockDir() string {
	if o.LockDir == "" {
		return DefaultLockDir
	}
	return o.LockDir
}

// lockPorts takes the lock of every port, or none. prev gets, by port, the
// engine that held each lock last.
func (e *Engine) lockPorts() (prev map[string]portlock.Owner, err error) {
	dir := e.opts.lockDir()
	if err := safedir.Ensure(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("engine: run dir: %w", err)
	}
	if err := safedir.Ensure(dir); err != nil {
		return nil, fmt.Errorf("engine: lock dir: %w", err)
	}
	name := filepath.Base(os.Args[0])
	prev = map[string]portlock.Owner{}
	for _, iface := range e.opts.Ifaces {
		l, o, err := portlock.Acquire(dir, iface, name)
		if err != nil {
			e.unlockPorts(unlockFailed)
			if errors.Is(err, portlock.ErrHeld) {
				return nil, fmt.Errorf("engine: %w", &PortInUseError{Port: iface, Holder: o.Name, PID: o.PID})
			}
			return nil, fmt.Errorf("engine: port %s: %w", iface, err)
		}
		e.locks = append(e.locks, l)
		prev[iface] = o
	}
	return prev, nil
}

// How unlockPorts leaves the lock files for the next engine.
type unlockMode int

const (
	unlockStopped unlockMode = iota // a clean stop, its pins removed
	unlockKept                      // a clean stop, its pins left on purpose
	unlockFailed                    // New failed: the files name the last holder again
)

// unlockPorts releases the port locks: the last thing an engine does.
func (e *Engine) unlockPorts(m unlockMode) error {
	var errs []error
	for _, l := range e.locks {
		switch m {
		case unlockKept:
			errs = append(errs, l.MarkKept(), l.Close())
		case unlockFailed:
			errs = append(errs, l.Abandon())
		default:
			errs = append(errs, l.Close())
		}
	}
	e.locks = nil
	return errors.Join(errs...)
}

// claimPins readies the pin directory of a locked port: it refuses a port
// with an XDP program on it (an engine that takes no lock, or another
// program), checks the directory, refuses the pins of an engine that died
// unless ReusePins, and removes a gone engine's pins unless they are to be
// reused. gone is the engine that held the lock last.
func (e *Engine) claimPins(iface string, ifindex int, dir string, gone portlock.Owner) error {
	if l, err := netlink.LinkByIndex(ifindex); err == nil {
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			return fmt.Errorf("engine: port %s: an XDP program (id %d) is attached though no engine holds the port's lock; detach it first", iface, x.ProgId)
		}
	}
	if err := safedir.Ensure(dir); err != nil {
		return fmt.Errorf("engine: port %s: pin dir: %w", iface, err)
	}
	if !bpf.HasPins(dir) {
		return nil
	}
	if !gone.Kept && !e.opts.ReusePins {
		ents, _ := os.ReadDir(dir)
		return fmt.Errorf("engine: %w", &StalePinsError{Port: iface, PinDir: dir, Pins: len(ents), Holder: gone.Name, PID: gone.PID})
	}
	if e.opts.KeepPins {
		return nil
	}
	n, err := bpf.RemovePinned(dir)
	if err != nil {
		return fmt.Errorf("engine: port %s: remove stale pins: %w", iface, err)
	}
	e.logf("port %s: removed %d maps pinned in %s by %s, which no longer runs", iface, n, dir, describeGone(gone))
	// RemovePinned took the directory when it emptied it.
	if err := safedir.Ensure(dir); err != nil {
		return fmt.Errorf("engine: port %s: pin dir: %w", iface, err)
	}
	return nil
}

// dropGoneGuests removes from maps reused from a gone engine the rules and
// flows of its guests (every guest id but the raw socket's 0: this engine
// has attached none yet).
func (e *Engine) dropGoneGuests(p *Port, gone portlock.Owner) error {
	reused := p.steer.Reused()
	if len(reused) == 0 {
		return nil
	}
	rules, flows, err := p.steer.DropGuests(func(guest int) bool { return guest == 0 })
	if err != nil {
		return fmt.Errorf("engine: port %s: %w", p.Name, err)
	}
	e.logf("port %s: reused %d maps pinned by %s, which no longer runs; removed %d rules and %d flows of its guests",
		p.Name, len(reused), describeGone(gone), rules, flows)
	return nil
}

func describeGone(o portlock.Owner) string {
	switch {
	case o.PID != 0 && o.Name != "":
		return fmt.Sprintf("%s (pid %d)", o.Name, o.PID)
	case o.PID != 0:
		return fmt.Sprintf("pid %d", o.PID)
	}
	return "an engine (pid unknown)"
}

// EngineState says whether the engine that owns port iface runs, as `xnic
// stats` and `xnic maps` report it: "running" while a process holds the
// port's lock under lockDir ("" for DefaultLockDir), else "gone". pid is
// the holder's, or the last holder's (0 when unknown).
func EngineState(lockDir, iface string) (state string, pid int, err error) {
	if lockDir == "" {
		lockDir = DefaultLockDir
	}
	o, err := portlock.Query(lockDir, iface)
	if err != nil {
		return "", 0, err
	}
	if o.Held {
		return "running", o.PID, nil
	}
	return "gone", o.PID, nil
}
