package portlock

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestAcquireExclusive(t *testing.T) {
	dir := t.TempDir()
	if o, err := Query(dir, "p0"); err != nil || o != (Owner{}) {
		t.Fatalf("Query before any lock = %+v, %v; want the zero Owner", o, err)
	}
	l, o, err := Acquire(dir, "p0", "first")
	if err != nil || o != (Owner{}) {
		t.Fatalf("first Acquire = %+v, %v; want no previous owner", o, err)
	}
	// A second open file description conflicts, even in this process.
	if _, o, err := Acquire(dir, "p0", "second"); !errors.Is(err, ErrHeld) || o.PID != os.Getpid() || o.Name != "first" || !o.Held {
		t.Fatalf("second Acquire = %+v, %v; want ErrHeld by pid %d named first", o, err, os.Getpid())
	}
	// The refused attempt did not overwrite the holder's record.
	if b, _ := os.ReadFile(Path(dir, "p0")); string(b) != strconv.Itoa(os.Getpid())+" first\n" {
		t.Fatalf("lock file after a refused Acquire: %q", b)
	}
	// Another port is another lock.
	l2, _, err := Acquire(dir, "p1", "other")
	if err != nil {
		t.Fatalf("lock of another port: %v", err)
	}
	l2.Close()
	if o, err := Query(dir, "p0"); err != nil || !o.Held || o.Name != "first" {
		t.Fatalf("Query while held = %+v, %v", o, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if o, err := Query(dir, "p0"); err != nil || o.Held || o.PID != os.Getpid() {
		t.Fatalf("Query after Close = %+v, %v; want not held, last pid %d", o, err, os.Getpid())
	}
	l, o, err = Acquire(dir, "p0", "again")
	if err != nil || o.PID != os.Getpid() || o.Name != "first" || o.Held || o.Kept {
		t.Fatalf("Acquire after Close = %+v, %v; want the previous owner first, pid %d, not holding, not kept", o, err, os.Getpid())
	}
	// A holder that marks its pins kept says so to the next one, and only
	// to the next one.
	if err := l.MarkKept(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if o, err := Query(dir, "p0"); err != nil || o.Held || !o.Kept || o.Name != "again" {
		t.Fatalf("Query after MarkKept and Close = %+v, %v; want kept by again", o, err)
	}
	l, o, err = Acquire(dir, "p0", "third")
	if err != nil || !o.Kept || o.Name != "again" {
		t.Fatalf("Acquire after a kept stop = %+v, %v; want the previous owner again, kept", o, err)
	}
	// A holder that gives up puts the record back: the file still names
	// the holder before it, kept or not.
	if err := l.Abandon(); err != nil {
		t.Fatal(err)
	}
	if o, _ := Query(dir, "p0"); o.Held || !o.Kept || o.Name != "again" {
		t.Fatalf("Query after Abandon = %+v; want again, kept, as before third took it", o)
	}
	l, _, _ = Acquire(dir, "p0", "third")
	l.Close()
	if o, _ := Query(dir, "p0"); o.Kept || o.Name != "third" {
		t.Fatalf("Query after a stop without MarkKept = %+v; want third, not kept", o)
	}
}

// TestLockDiesWithProcess: a lock taken by a process that is killed is
// free afterwards, and the file still names the dead pid.
func TestLockDiesWithProcess(t *testing.T) {
	dir := t.TempDir()
	if os.Getenv("PORTLOCK_CHILD") != "" {
		if _, _, err := Acquire(os.Getenv("PORTLOCK_DIR"), "p0", "child"); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("locked\n")
		select {}
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestLockDiesWithProcess$")
	cmd.Env = append(os.Environ(), "PORTLOCK_CHILD=1", "PORTLOCK_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "locked") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not lock: %q", buf[:n])
	}
	if _, o, err := Acquire(dir, "p0", "parent"); !errors.Is(err, ErrHeld) || o.PID != cmd.Process.Pid || o.Name != "child" {
		t.Fatalf("Acquire while the child holds it = %+v, %v; want ErrHeld by pid %d", o, err, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	o, err := Query(dir, "p0")
	if err != nil || o.Held || o.PID != cmd.Process.Pid {
		t.Fatalf("Query after kill = %+v, %v; want free, last held by %d", o, err, cmd.Process.Pid)
	}
	l, prev, err := Acquire(dir, "p0", "parent")
	if err != nil || prev.PID != cmd.Process.Pid || prev.Name != "child" || prev.Kept {
		t.Fatalf("Acquire after the holder died = %+v, %v; want the dead child as previous owner", prev, err)
	}
	l.Close()
}

func TestAcquireRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := dir + "/elsewhere"
	os.WriteFile(target, []byte("x"), 0o600)
	os.Symlink(target, Path(dir, "p0"))
	if _, _, err := Acquire(dir, "p0", "x"); err == nil {
		t.Fatal("Acquire followed a symlinked lock file")
	}
	if b, _ := os.ReadFile(target); string(b) != "x" {
		t.Fatalf("the symlink's target was written: %q", b)
	}
}
