package umem

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func newTestUMEM(t *testing.T, frames uint32) *UMEM {
	t.Helper()
	u, err := NewInMemory(Options{NumFrames: frames, FrameSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		o    Options
		want error
	}{
		{Options{NumFrames: 16, FrameSize: 1024}, ErrFrameSize},
		{Options{NumFrames: 0, FrameSize: 2048}, ErrNumFrames},
		{Options{NumFrames: 16, FrameSize: 2048, Headroom: 512}, ErrHeadroom},
		{Options{NumFrames: 16, FrameSize: 4096, Headroom: 512}, nil},
	}
	for _, c := range cases {
		err := c.o.Validate()
		if !errors.Is(err, c.want) && !(err == nil && c.want == nil) {
			t.Errorf("%+v: err %v, want %v", c.o, err, c.want)
		}
	}
}

func TestAllocatorExhaustionAndRefill(t *testing.T) {
	u := newTestUMEM(t, 64)
	seen := map[uint64]bool{}
	for i := 0; i < 64; i++ {
		a, ok := u.Alloc()
		if !ok {
			t.Fatalf("alloc %d of 64 failed", i)
		}
		if a%2048 != 0 || a >= 64*2048 || seen[a] {
			t.Fatalf("alloc %d returned bad or repeated address %#x", i, a)
		}
		seen[a] = true
	}
	if _, ok := u.Alloc(); ok {
		t.Fatal("alloc from an exhausted umem succeeded")
	}
	var batch [8]uint64
	if n := u.AllocN(batch[:]); n != 0 {
		t.Fatalf("AllocN on an exhausted umem gave %d", n)
	}
	// Give 5 back, by addresses inside their frames: exactly 5 come out again.
	back := []uint64{0x10, 2048 + 100, 3*2048 + 7, 10 * 2048, 63*2048 + 2047}
	u.ReleaseN(back)
	if u.Free() != 5 {
		t.Fatalf("free %d after 5 releases", u.Free())
	}
	n := u.AllocN(batch[:])
	if n != 5 {
		t.Fatalf("AllocN after refill gave %d, want 5", n)
	}
	for _, a := range batch[:n] {
		if a%2048 != 0 {
			t.Fatalf("realloc gave unaligned %#x", a)
		}
	}
	if _, err := u.Audit(); err != nil {
		t.Fatalf("audit with every frame held: %v", err)
	}
	// A double release is counted and refused, not obeyed.
	u.Release(batch[0])
	u.Release(batch[0])
	if u.Free() != 1 {
		t.Fatalf("free %d after a double release, want 1", u.Free())
	}
	if _, err := u.Audit(); !errors.Is(err, ErrLeak) || !strings.Contains(err.Error(), "not held") {
		t.Fatalf("audit after a double release: %v", err)
	}
}

func TestAuditFindsLeakedFrame(t *testing.T) {
	u := newTestUMEM(t, 32)
	s, k, err := NewSimSocket(u, SocketOptions{RxSize: 16, TxSize: 16, FillSize: 16, CompletionSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	if n := s.FillFromFree(16); n != 16 {
		t.Fatalf("filled %d", n)
	}
	pkt := bytes.Repeat([]byte{0xab}, 60)
	if n := k.DeliverSame(pkt, 4); n != 4 {
		t.Fatalf("delivered %d", n)
	}
	var descs [8]Desc
	if n := s.Receive(descs[:]); n != 4 {
		t.Fatalf("received %d", n)
	}
	r, err := u.Audit()
	if err != nil {
		t.Fatalf("audit while holding 4: %v", err)
	}
	if r.Engine != 4 || r.FillQ != 12 || r.Free != 16 || r.Total() != 32 {
		t.Fatalf("audit: %s", r)
	}
	// Release three, and leak the fourth.
	leaked := descs[3].Addr &^ 2047
	for _, d := range descs[:3] {
		u.Release(d.Addr)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err = u.AuditIdle()
	if !errors.Is(err, ErrLeak) {
		t.Fatalf("AuditIdle missed the leak: %v (%s)", err, r)
	}
	if r.Engine != 1 || r.Free != 31 {
		t.Fatalf("audit after close: %s", r)
	}
	if !strings.Contains(err.Error(), "1 frames leaked") || !strings.Contains(err.Error(), fmt.Sprintf("%#x", leaked)) {
		t.Fatalf("the leak report does not name the frame %#x: %v", leaked, err)
	}
	u.Release(leaked)
	if _, err := u.AuditIdle(); err != nil {
		t.Fatalf("audit after releasing the leaked frame: %v", err)
	}
}

func TestAuditFindsFrameInTwoPlaces(t *testing.T) {
	u := newTestUMEM(t, 8)
	s, _, err := NewSimSocket(u, SocketOptions{RxSize: 8, FillSize: 8, CompletionSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	s.FillFromFree(4)
	// Corrupt the accounting as a buggy caller writing the ring directly would:
	// post a frame that is also still on the free list.
	idx, _ := s.Fill.Reserve(1)
	s.Fill.Set(idx, u.free[0])
	s.Fill.Submit(1)
	if _, err := u.Audit(); !errors.Is(err, ErrLeak) {
		t.Fatalf("audit missed a frame both free and in the fill ring: %v", err)
	}
}
