package labtest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xnic/xnic/engine/lab"
)

// Prefix starts the name of every lab that New makes up: Prefix plus four hex
// digits, e.g. "xt3fa2".
const Prefix = "xt"

// OwnerDir holds one file per lab made by New, named after the lab and holding
// "PID STARTTIME" of the test process that owns it. Sweep uses it to tell the
// labs of killed test runs from those of test binaries running right now.
const OwnerDir = "/run/xnic/labtest"

// portLockDir is engine.DefaultLockDir.
const portLockDir = "/run/xnic/ports"

// testName matches the names New makes up.
var testName = regexp.MustCompile(`^` + Prefix + `[0-9a-f]{4}$`)

// slotWait bounds how long HoldSlot waits for the lab slot when the test has no
// deadline.
const slotWait = 5 * time.Minute

// New builds a lab for a test and registers its teardown with t.Cleanup. It
// skips (or fails under CI) without root. An empty opts.Name gets a random
// name with Prefix. It holds the lab slot for t (see HoldSlot) and, holding
// it, first sweeps the labs that killed test runs left behind (see Sweep).
func New(t testing.TB, opts lab.Options) *lab.Lab {
	t.Helper()
	HoldSlot(t)
	if err := Sweep(); err != nil {
		t.Logf("labtest: sweep stale labs: %v", err)
	}
	random := opts.Name == ""
	for attempt := 0; ; attempt++ {
		if random {
			opts.Name = lab.RandomName(Prefix)
		}
		l, err := up(opts)
		if errors.Is(err, lab.ErrExists) && random && attempt < 3 {
			continue // the random name is taken: draw another
		}
		if err != nil {
			t.Fatalf("labtest: %v", err)
		}
		t.Cleanup(func() {
			if err := l.Down(); err != nil {
				t.Errorf("labtest: %v", err)
			}
			os.Remove(ownerPath(l.Name))
			// The engines' port lock files (engine.DefaultLockDir) of
			// the lab's ports, gone now: test names are random, so
			// they would only pile up.
			for _, p := range l.Ports {
				os.Remove(filepath.Join(portLockDir, p.Host+".lock"))
			}
		})
		return l
	}
}

// held records the tests of this process that hold the lab slot.
var held sync.Map // testing.TB -> struct{}

// HoldSlot makes t hold the lab slot until its cleanup. Every lab uses the
// same subnets (198.18.<i>.0/24, 2001:2:0:<i>::/64) in the caller's netns, so
// two labs up at once would steal each other's routes (lab.Up refuses with
// lab.ErrAddrInUse). The slot is an exclusive flock on OwnerDir/lock: tests
// of every test binary on the host, t.Parallel ones included, take turns. It
// is re-entrant for one t, so a test may call HoldSlot and then New; a
// subtest of a holder that asks for the slot waits for its parent and times
// out. New calls HoldSlot; call it yourself before using lab.Up directly in a
// test. It skips (or fails under CI) without root.
func HoldSlot(t testing.TB) {
	t.Helper()
	RequireRoot(t, "builds a netns and veth lab")
	if _, ok := held.Load(t); ok {
		return
	}
	slot, err := acquireSlot(t)
	if err != nil {
		t.Fatalf("labtest: %v", err)
	}
	held.Store(t, struct{}{})
	// Registered before any lab's Down, so it runs after them.
	t.Cleanup(func() {
		held.Delete(t)
		if err := slot.Close(); err != nil {
			t.Errorf("labtest: release lab slot: %v", err)
		}
	})
}

// acquireSlot takes the lab slot (lab.SlotPath), waiting at most slotWait or
// until shortly before t's deadline.
func acquireSlot(t testing.TB) (*os.File, error) {
	wait := slotWait
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			wait = min(wait, time.Until(dl)-10*time.Second)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(wait, 0))
	defer cancel()
	f, err := lab.AcquireSlot(ctx, lab.SlotPath, func() {
		t.Logf("labtest: waiting up to %s for the lab slot %s (another test's lab is up)", wait.Round(time.Second), lab.SlotPath)
	})
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("no lab slot after %s: another test still holds it "+
			"(a subtest of the holder waits for its parent): %w", wait.Round(time.Second), err)
	}
	return f, err
}

// up records this process as the owner of the lab, then builds it. An owner
// file that exists already means the name is taken (ErrExists).
func up(opts lab.Options) (*lab.Lab, error) {
	if err := writeOwner(opts.Name); err != nil {
		return nil, err
	}
	l, err := lab.Up(opts)
	if err != nil {
		os.Remove(ownerPath(opts.Name))
	}
	return l, err
}

func ownerPath(name string) string { return filepath.Join(OwnerDir, name) }

func writeOwner(name string) error {
	if err := os.MkdirAll(OwnerDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", OwnerDir, err)
	}
	pid := os.Getpid()
	start, err := startTime(pid)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(ownerPath(name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("labtest: lab %s has an owner: %w", name, lab.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create owner file of lab %s: %w", name, err)
	}
	_, err = fmt.Fprintf(f, "%d %d\n", pid, start)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(ownerPath(name))
		return fmt.Errorf("write owner file of lab %s: %w", name, err)
	}
	return nil
}

// startTime returns field 22 of /proc/PID/stat, the process's start time in
// clock ticks since boot, which tells a live process from a reused PID.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(s[i+1:]) // starts at field 3
	const field = 22 - 3
	if len(fields) <= field {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	return strconv.ParseUint(fields[field], 10, 64)
}

// ownerAlive reports whether the process recorded in the owner file of lab
// name still runs. A missing file means the lab is not New's: treat it as
// alive so it is left alone.
func ownerAlive(name string) bool {
	b, err := os.ReadFile(ownerPath(name))
	if err != nil {
		return true
	}
	var pid int
	var start uint64
	if _, err := fmt.Sscan(string(b), &pid, &start); err != nil {
		return false // garbled: written by a run that died mid-write
	}
	now, err := startTime(pid)
	return err == nil && now == start
}

// Sweep tears down the labs that earlier test runs, since killed, left
// behind. It only considers labs whose name matches Prefix plus four hex
// digits and whose owner file names a process that no longer runs; labs of
// running test binaries and labs not made by New are never touched.
func Sweep() error {
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("list netns: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), "-peer")
		if !ok || !testName.MatchString(name) || ownerAlive(name) {
			continue
		}
		l := &lab.Lab{Name: name, Netns: lab.NetnsName(name)}
		if err := l.Down(); err != nil {
			errs = append(errs, err)
			continue
		}
		os.Remove(ownerPath(name))
	}
	// Owner files whose lab is gone.
	owners, err := os.ReadDir(OwnerDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list %s: %w", OwnerDir, err))
	}
	for _, e := range owners {
		name := e.Name()
		if !testName.MatchString(name) || ownerAlive(name) {
			continue
		}
		if _, err := os.Stat(filepath.Join("/run/netns", lab.NetnsName(name))); errors.Is(err, fs.ErrNotExist) {
			os.Remove(ownerPath(name))
		}
	}
	return errors.Join(errs...)
}
