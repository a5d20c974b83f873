package engine

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xnic/xnic/flows/offload"
)

// TestControlConns serves a pipeline worker's connections on a control
// socket and reads them back as another process would.
func TestControlConns(t *testing.T) {
	po := DefaultPipelineOptions()
	w, u, k := newPipeWorker(t, po, func(*Endpoint, *offload.Aggregate) {})
	defer u.Close()
	var batch [][]byte
	for i := range 10 {
		for range i + 1 { // flow i sends i+1 frames
			batch = append(batch, udpFrame(uint16(3000+i), 200))
		}
	}
	k.Deliver(batch)
	for w.Poll() > 0 {
	}
	e := &Engine{workers: []*Worker{w}, opts: Options{Pipeline: &po}}
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := e.ServeControl(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := e.ServeControl(path); err == nil || !strings.Contains(err.Error(), "another engine") {
		t.Fatalf("a second server on a live socket: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := QueryControl(ctx, path, ControlRequest{Op: "conns", N: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Conns) != 3 {
		t.Fatalf("top 3: got %d", len(rep.Conns))
	}
	for i, c := range rep.Conns {
		want := uint64(10 - i)
		if c.PacketsIn != want || c.BytesIn != want*200 || !strings.Contains(c.Flow, "udp") {
			t.Fatalf("rank %d: %+v, want %d packets of 200 bytes", i, c, want)
		}
	}
	if _, err := QueryControl(ctx, path, ControlRequest{Op: "conns", N: 0}); err == nil || !strings.Contains(err.Error(), "n:") {
		t.Fatalf("n=0: %v", err)
	}
	if _, err := QueryControl(ctx, path, ControlRequest{Op: "bogus"}); err == nil || !strings.Contains(err.Error(), "op:") {
		t.Fatalf("unknown op: %v", err)
	}
	s.Close()
	if _, err := QueryControl(ctx, path, ControlRequest{Op: "conns", N: 1}); !errors.Is(err, ErrNoEngine) {
		t.Fatalf("after close: %v, want ErrNoEngine", err)
	}
}

// TestControlLimits: the socket and its directory are private whatever the
// umask, a stale socket file is replaced, idle connections are closed after
// ControlReadTimeout, and connections past MaxControlConns are refused with
// a reason while the others are served.
func TestControlLimits(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "ctl.sock")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A socket left behind by an engine that died: bound, nobody listening.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	os.Chmod(dir, 0o755)
	e := &Engine{}
	s, err := e.ServeControl(path)
	if err != nil {
		t.Fatalf("serve over a stale socket: %v", err)
	}
	defer s.Close()
	for p, want := range map[string]os.FileMode{dir: os.ModeDir | 0o700, path: os.ModeSocket | 0o600} {
		if fi, err := os.Lstat(p); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, %v; want %v under umask 0", p, fi.Mode(), err, want)
		}
	}
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range MaxControlConns {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	time.Sleep(100 * time.Millisecond) // the server accepts them all
	extra, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	extra.SetDeadline(time.Now().Add(2 * time.Second))
	var rep ControlReply
	if err := json.NewDecoder(extra).Decode(&rep); err != nil || !strings.Contains(rep.Error, "too many control connections") {
		t.Fatalf("connection %d: %+v, %v; want a too-many error", MaxControlConns+1, rep, err)
	}
	extra.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := QueryControl(ctx, path, ControlRequest{Op: "guests"}); err == nil || !strings.Contains(err.Error(), "too many") {
		t.Fatalf("query while %d idle connections are open: %v, want refused", MaxControlConns, err)
	}
	// The idle ones are closed by the server after ControlReadTimeout.
	start := time.Now()
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(ControlReadTimeout + 2*time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("an idle connection still open after %s: %v", time.Since(start), err)
		}
		if !strings.Contains(string(b), "read request") || !strings.Contains(string(b), "timeout") {
			t.Fatalf("an idle connection was told %q before closing, want the read timeout", b)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := QueryControl(ctx, path, ControlRequest{Op: "guests"}); err != nil {
		t.Fatalf("query once the idle connections are gone: %v", err)
	}
}
