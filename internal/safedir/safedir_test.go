package safedir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestEnsureCreatesPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := Ensure(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != Mode {
		t.Fatalf("created %s with mode %v under umask 0, want a directory with %04o", dir, fi.Mode(), Mode)
	}
	// Again: nothing changes, no error.
	if err := Ensure(dir); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureTightens(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(dir); fi.Mode().Perm() != Mode {
		t.Fatalf("mode %v after Ensure, want %04o", fi.Mode().Perm(), Mode)
	}
}

func TestEnsureRefuses(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "target")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	groupw := filepath.Join(base, "groupw")
	os.Mkdir(groupw, 0o700)
	os.Chmod(groupw, 0o770)
	cases := []struct{ path, why string }{
		{link, "is a symlink (to " + target + ")"},
		{file, "is a regular file"},
		{open, "mode 0777 lets group or others write"},
		{groupw, "mode 0770 lets group or others write"},
	}
	if os.Geteuid() == 0 {
		// A directory of another user: as root, make one for nobody.
		other := filepath.Join(base, "other")
		os.Mkdir(other, 0o700)
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct{ path, why string }{other, "owned by uid 65534, not uid 0"})
		// A symlink owned by nobody, as an unprivileged squatter makes it.
		sq := filepath.Join(base, "squat")
		os.Symlink(target, sq)
		os.Lchown(sq, 65534, 65534)
		cases = append(cases, struct{ path, why string }{sq, "is a symlink"})
	} else {
		t.Log("not root: the directory owned by another user is not checked")
	}
	for _, c := range cases {
		before, _ := os.Lstat(c.path)
		err := Ensure(c.path)
		if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), c.path+": "+c.why) {
			t.Errorf("Ensure(%s) = %v, want ErrUnsafe saying %q", c.path, err, c.why)
		}
		if after, _ := os.Lstat(c.path); after.Mode() != before.Mode() {
			t.Errorf("Ensure(%s) changed its mode from %v to %v though it refused it", c.path, before.Mode(), after.Mode())
		}
	}
	if fi, _ := os.Lstat(target); fi.Mode().Perm() != 0o700 {
		t.Errorf("the symlink's target changed mode: %v", fi.Mode())
	}
}

func TestRemoveEmpty(t *testing.T) {
	base := t.TempDir()
	empty := filepath.Join(base, "empty")
	full := filepath.Join(base, "full")
	os.Mkdir(empty, Mode)
	os.MkdirAll(filepath.Join(full, "port"), Mode)
	if err := RemoveEmpty(empty); err != nil {
		t.Fatalf("an empty directory: %v", err)
	}
	if _, err := os.Lstat(empty); !os.IsNotExist(err) {
		t.Fatalf("an empty directory is still there: %v", err)
	}
	if err := RemoveEmpty(full); err != nil {
		t.Fatalf("a directory that holds something: %v, want no error", err)
	}
	if _, err := os.Lstat(filepath.Join(full, "port")); err != nil {
		t.Fatalf("what a directory held is gone: %v", err)
	}
	if err := RemoveEmpty(filepath.Join(base, "absent")); err != nil {
		t.Fatalf("a missing directory: %v, want no error", err)
	}
}
