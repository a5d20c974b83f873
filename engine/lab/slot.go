package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// SlotPath is the lock file of the lab slot. Every lab uses the same subnets
// in the caller's netns, so whoever brings one up for a while (a test, a
// benchmark) holds this exclusive flock first and the others take turns.
const SlotPath = "/run/xnic/labtest/lock"

// AcquireSlot takes the exclusive flock on path. If another process holds
// it, AcquireSlot calls onWait once (when not nil) and waits until the lock
// is free or ctx is done. Closing the returned file releases the lock; the
// lock also dies with the process, so a killed holder never keeps it.
func AcquireSlot(ctx context.Context, path string, onWait func()) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create lab slot directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lab slot %s: %w", path, err)
	}
	fd := int(f.Fd())
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err == nil {
		return f, nil
	}
	if onWait != nil {
		onWait()
	}
	done := make(chan error, 1)
	go func() { done <- unix.Flock(fd, unix.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock lab slot %s: %w", path, err)
		}
		return f, nil
	case <-ctx.Done():
		// Close once the flock returns, so that a late lock is let go.
		go func() { <-done; f.Close() }()
		return nil, fmt.Errorf("wait for lab slot %s: %w", path, ctx.Err())
	}
}
