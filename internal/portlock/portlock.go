// Package portlock gives each port one owner: an engine holds an open
// file description lock (fcntl F_OFD_SETLK) on <dir>/<iface>.lock for as
// long as it runs, with its pid and name written in the file. The kernel
// drops the lock when the process dies, however it dies, so a lock file
// nobody holds tells of an engine that is gone, and its pid says which. A
// holder that stops cleanly and leaves its pins for the next engine says
// so (MarkKept) before it lets go: "pid name kept".
package portlock

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrHeld reports a port whose lock another open file description holds.
var ErrHeld = errors.New("port lock held")

// Lock is a held port lock. Close releases it.
type Lock struct {
	f    *os.File
	path string
	line string // "pid name", what the holder wrote
	prev string // what the file said before Acquire, for Abandon
}

// Owner is what a lock file says of the engine that holds, or last held,
// it.
type Owner struct {
	PID  int    // 0 when the file says nothing (a holder still writing)
	Name string // the holder's program name
	Held bool   // someone holds the lock now
	// Kept: the holder stopped cleanly and left its pins on purpose
	// (MarkKept); false for a holder that died, or still runs.
	Kept bool
}

// Path is the lock file of iface under dir.
func Path(dir, iface string) string { return filepath.Join(dir, iface+".lock") }

func flock(typ int16) *unix.Flock_t {
	return &unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: 0, Len: 0}
}

// Acquire takes the lock of iface under dir (which must exist) and writes
// the caller's pid and name into it. The Owner is what the file said
// before: on success the last holder, gone now (the zero Owner if none
// ever was); when another holds the lock, that holder, and the error wraps
// ErrHeld.
func Acquire(dir, iface, name string) (*Lock, Owner, error) {
	path := Path(dir, iface)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, Owner{}, fmt.Errorf("open port lock %s: %w", path, err)
	}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, flock(unix.F_WRLCK)); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			o := readOwner(f)
			o.Held = true
			return nil, o, fmt.Errorf("lock %s: %w", path, ErrHeld)
		}
		return nil, Owner{}, fmt.Errorf("lock %s: %w", path, err)
	}
	raw := readRaw(f)
	prev := parseOwner(raw)
	l := &Lock{f: f, path: path, line: strconv.Itoa(os.Getpid()) + " " + name, prev: raw}
	if err := l.write(l.line + "\n"); err != nil {
		f.Close()
		return nil, Owner{}, err
	}
	return l, prev, nil
}

func (l *Lock) write(line string) error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("write port lock %s: %w", l.path, err)
	}
	if _, err := l.f.WriteAt([]byte(line), 0); err != nil {
		return fmt.Errorf("write port lock %s: %w", l.path, err)
	}
	return nil
}

// MarkKept records, for the next holder, that this one stops cleanly and
// leaves its pins on purpose. Call it last, just before Close: a holder
// that dies after it still reads as a clean stop.
func (l *Lock) MarkKept() error {
	if l == nil || l.f == nil {
		return nil
	}
	return l.write(l.line + " kept\n")
}

// Abandon puts back what the file said before Acquire and releases the
// lock: for a holder that gives up having changed nothing, so that the
// file still names the engine that held the port last (a dead one, whose
// pins are still there).
func (l *Lock) Abandon() error {
	if l == nil || l.f == nil {
		return nil
	}
	return errors.Join(l.write(l.prev), l.Close())
}

// Close releases the lock. The file stays, with the pid of its last
// holder: removing it could let two engines lock two different files.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("release port lock %s: %w", l.path, err)
	}
	return nil
}

// Query reads the lock of iface under dir without taking it. A missing
// file is the zero Owner and no error: no engine ever ran there.
func Query(dir, iface string) (Owner, error) {
	path := Path(dir, iface)
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return Owner{}, nil
	}
	if err != nil {
		return Owner{}, fmt.Errorf("open port lock %s: %w", path, err)
	}
	defer f.Close()
	lk := flock(unix.F_WRLCK)
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, lk); err != nil {
		return Owner{}, fmt.Errorf("query port lock %s: %w", path, err)
	}
	o := readOwner(f)
	o.Held = lk.Type != unix.F_UNLCK
	return o, nil
}

// readOwner parses "pid name [kept]" from f.
func readOwner(f *os.File) Owner { return parseOwner(readRaw(f)) }

func readRaw(f *os.File) string {
	b := make([]byte, 256)
	n, _ := f.ReadAt(b, 0)
	return string(b[:n])
}

func parseOwner(raw string) Owner {
	fields := strings.Fields(raw)
	var o Owner
	if len(fields) > 0 {
		o.PID, _ = strconv.Atoi(fields[0])
	}
	if len(fields) > 1 {
		o.Name = fields[1]
	}
	o.Kept = len(fields) > 2 && fields[2] == "kept"
	return o
}
