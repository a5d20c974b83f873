package engine

import (
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/umem"
)

// DefaultBatch is the number of descriptors a worker takes per ring access.
const DefaultBatch = 64

// RxFunc is the pipeline stage a worker hands each received batch to. It may
// read the packets (umem.Bytes); the frames go back to the fill ring when it
// returns. port is the index of the socket in the worker's set.
type RxFunc func(port int, descs []umem.Desc)

// WorkerCounters are a worker's published counters. The worker stores them
// once per pass; anyone may load them.
type WorkerCounters struct {
	RxPackets    atomic.Uint64
	RxBytes      atomic.Uint64
	Passes       atomic.Uint64 // passes over the socket set
	EmptyPasses  atomic.Uint64 // passes that found no packet on any socket
	RxWakeups    atomic.Uint64 // kicks sent because the fill ring needed a wakeup
	RefillFailed atomic.Uint64 // batches whose frames could not go straight back to the fill ring
}

// Worker polls the sockets of one UMEM. All its fields are owned by the
// goroutine running Run, except the counters and the stop flag.
type Worker struct {
	// Set at construction; the sockets all live on u.
	u      *umem.UMEM
	socks  []*umem.Socket
	fn     RxFunc
	descs  []umem.Desc
	pollMs int // when > 0, sleep in poll(2) up to this long after an empty pass
	pfds   []unix.PollFd

	// Owned by the running worker.
	empty int

	// Shared with the control plane.
	stop     atomic.Bool
	Counters WorkerCounters
}

// NewWorker makes a worker over sockets that share u. batch is the ring batch
// size (DefaultBatch when 0). pollMs > 0 makes an idle worker sleep in poll(2)
// instead of spinning.
func NewWorker(u *umem.UMEM, socks []*umem.Socket, batch, pollMs int, fn RxFunc) *Worker {
	if batch <= 0 {
		batch = DefaultBatch
	}
	w := &Worker{u: u, socks: socks, fn: fn, descs: make([]umem.Desc, batch), pollMs: pollMs}
	for _, s := range socks {
		if s.FD() >= 0 {
			w.pfds = append(w.pfds, unix.PollFd{Fd: int32(s.FD()), Events: unix.POLLIN})
		}
	}
	return w
}

// Prime posts frames from the free list to every ring group's fill ring,
// sharing the free frames evenly. Call it once before Run.
func (w *Worker) Prime() {
	hosts := 0
	for _, s := range w.socks {
		if s.OwnsRings() {
			hosts++
		}
	}
	if hosts == 0 {
		return
	}
	share := w.u.Free() / hosts
	for _, s := range w.socks {
		if s.OwnsRings() {
			s.FillFromFree(min(share, int(s.Fill.Size())))
		}
	}
}

// Poll makes one pass over the sockets: receive a batch from each, run the
// stage, and post the frames back. It returns the packets received.
func (w *Worker) Poll() int {
	total := 0
	var bytes uint64
	for i, s := range w.socks {
		n := s.Receive(w.descs)
		if n == 0 {
			s.KickRx()
			continue
		}
		batch := w.descs[:n]
		for j := range batch {
			bytes += uint64(batch[j].Len)
		}
		if w.fn != nil {
			w.fn(i, batch)
		}
		if !s.RefillDescs(batch) {
			// Should not happen: these frames came from this fill ring. Keep
			// them accounted for on the free list and top up below.
			for j := range batch {
				w.u.Release(batch[j].Addr)
			}
			w.Counters.RefillFailed.Add(1)
		}
		total += n
	}
	if w.u.Free() > 0 {
		w.topUp()
	}
	w.publish(total, bytes)
	return total
}

func (w *Worker) topUp() {
	for _, s := range w.socks {
		if s.OwnsRings() {
			s.FillFromFree(w.u.Free())
		}
	}
}

func (w *Worker) publish(n int, bytes uint64) {
	c := &w.Counters
	c.Passes.Add(1)
	if n == 0 {
		c.EmptyPasses.Add(1)
		var wk uint64
		for _, s := range w.socks {
			wk += s.Counters.RxWakeups
		}
		c.RxWakeups.Store(wk)
		return
	}
	c.RxPackets.Add(uint64(n))
	c.RxBytes.Add(bytes)
}

// Run polls until Stop, on a locked OS thread.
func (w *Worker) Run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for !w.stop.Load() {
		if w.Poll() > 0 {
			w.empty = 0
			continue
		}
		w.empty++
		if w.pollMs > 0 && w.empty > 64 && len(w.pfds) > 0 {
			_, _ = unix.Poll(w.pfds, w.pollMs)
		}
	}
}

// Stop asks Run to return after its current pass.
func (w *Worker) Stop() { w.stop.Store(true) }

// Sockets are the sockets the worker polls.
func (w *Worker) Sockets() []*umem.Socket { return w.socks }
