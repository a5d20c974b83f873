package engine

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWakerOneWritePerSleep: however many producers wake a sleeping
// worker, the eventfd is written once; an awake worker costs them none.
func TestWakerOneWritePerSleep(t *testing.T) {
	k := newWaker()
	defer k.close()
	if k.fd < 0 {
		t.Fatal("no eventfd")
	}
	k.wake() // awake: nothing written
	k.sleeping.Store(true)
	for range 5 {
		k.wake()
	}
	var b [8]byte
	n, err := unix.Read(k.fd, b[:])
	if err != nil || n != 8 {
		t.Fatalf("read eventfd: %d bytes, %v", n, err)
	}
	if c := binary.NativeEndian.Uint64(b[:]); c != 1 {
		t.Fatalf("eventfd counted %d writes, want 1", c)
	}
	if k.sleeping.Load() {
		t.Fatal("the waking producer left the sleeping flag up")
	}
}
