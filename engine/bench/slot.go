package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// holdSlot takes the exclusive flock on path, waiting until ctx is done if
// another process holds it (logging that once to log). Closing the returned
// file releases the lock; the lock also dies with the process.
func holdSlot(ctx context.Context, path string, log io.Writer) (*os.File, error) {
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
	fmt.Fprintf(log, "waiting for the lab slot %s: a test's lab is up\n", path)
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
		// Close once the flock returns, so a late lock is let go.
		go func() { <-done; f.Close() }()
		return nil, fmt.Errorf("wait for lab slot %s: %w", path, ctx.Err())
	}
}
