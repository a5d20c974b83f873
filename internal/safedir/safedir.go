// Package safedir checks the directories where xnic keeps what other
// processes must not forge: its pinned maps (/sys/fs/bpf/xnic and a
// directory per port), its port locks and its control socket (/run/xnic).
//
// /sys/fs/bpf is world-writable on a default bpffs mount, so an
// unprivileged user can create /sys/fs/bpf/xnic or a port's directory
// first, as a symlink or a directory of their own, and have root's pins
// land where they can delete them. Ensure refuses such a path and says
// why; it never follows a symlink and never loosens a mode.
package safedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ErrUnsafe reports a directory Ensure refuses; the message names the
// path and the reason.
var ErrUnsafe = errors.New("unsafe directory")

// Mode is the mode Ensure creates directories with and tightens them to.
const Mode fs.FileMode = 0o700

// Ensure makes sure path is a directory fit for private state: checked
// with Lstat, it is a real directory (not a symlink, not another kind of
// file), owned by the effective uid (root, for the engine), and writable
// by no group and no other user. A missing path is created (with its
// missing parents) with Mode, whatever the umask. A directory that passes
// but has a looser mode without group or other write (0755, say) is
// tightened to Mode.
func Ensure(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(path, Mode); err != nil {
			return fmt.Errorf("create %s: %w", path, err)
		}
		// MkdirAll applied the umask; the mode is set explicitly.
		if err := os.Chmod(path, Mode); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
		fi, err = os.Lstat(path)
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if err := Check(path, fi); err != nil {
		return err
	}
	if fi.Mode().Perm() != Mode {
		if err := os.Chmod(path, Mode); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
	}
	return nil
}

// Check says why fi, the Lstat of path, is not a safe directory; nil
// when it is one. It accepts modes looser than Mode as long as neither
// group nor others may write.
func Check(path string, fi fs.FileInfo) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(path)
		return fmt.Errorf("%s: is a symlink (to %s), not a directory: %w", path, target, ErrUnsafe)
	case !fi.IsDir():
		return fmt.Errorf("%s: is a %s, not a directory: %w", path, kind(fi.Mode()), ErrUnsafe)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information: %w", path, ErrUnsafe)
	}
	if want := uint32(os.Geteuid()); st.Uid != want {
		return fmt.Errorf("%s: owned by uid %d, not uid %d: %w", path, st.Uid, want, ErrUnsafe)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s: mode %04o lets group or others write (want %04o): %w", path, perm, Mode, ErrUnsafe)
	}
	return nil
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeDevice != 0:
		return "device"
	case m.IsRegular():
		return "regular file"
	}
	return "special file"
}

// RemoveEmpty removes the directory path if it is empty. A directory that
// still holds something, or no directory at all, is left as it is and is
// no error: callers use it for a directory others may share, such as the
// pin root all ports' directories live in.
func RemoveEmpty(path string) error {
	err := os.Remove(path)
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTEMPTY) {
		return nil
	}
	return err
}
