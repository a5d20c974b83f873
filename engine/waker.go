package engine

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// waker is an eventfd in an idle worker's poll set and a flag saying the
// worker sleeps (or is about to): producers write the eventfd only then,
// so a busy worker costs them one atomic load.
type waker struct {
	fd       int
	sleeping atomic.Bool
}

func newWaker() *waker {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		// Without an eventfd the worker still wakes on its poll timeout.
		fd = -1
	}
	return &waker{fd: fd}
}

// wake wakes the worker if it sleeps. Safe on a nil waker. The first
// producer to see the worker asleep takes the flag down and writes the
// eventfd; the others, finding it down, write nothing: one system call per
// sleep, however many guests send meanwhile.
func (k *waker) wake() {
	if k == nil || k.fd < 0 || !k.sleeping.Load() || !k.sleeping.CompareAndSwap(true, false) {
		return
	}
	one := [8]byte{1}
	_, _ = unix.Write(k.fd, one[:])
}

// drain clears the eventfd after a sleep.
func (k *waker) drain() {
	if k.fd < 0 {
		return
	}
	var b [8]byte
	_, _ = unix.Read(k.fd, b[:])
}

func (k *waker) close() {
	if k.fd >= 0 {
		_ = unix.Close(k.fd)
		k.fd = -1
	}
}
