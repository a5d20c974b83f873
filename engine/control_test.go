package engine

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
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
