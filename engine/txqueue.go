package engine

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/engine/qos"
)

// TxWait is how long Send waits for room in a full send queue before it
// drops the request.
const TxWait = 20 * time.Millisecond

// txSlots is the depth of each guest's send queue on each worker.
const txSlots = 64

// txQueue carries a guest's work requests to one worker: many producers (the
// guest's goroutines), one consumer (the worker). Producers copy the packet
// into a slot under mu and publish it by advancing tail; the worker reads
// slots up to tail and frees them by advancing head. Slots are allocated once.
type txQueue struct {
	mu   sync.Mutex    // serialises producers
	tail atomic.Uint64 // written by producers under mu: slots published
	head atomic.Uint64 // written by the worker only: slots consumed
	slot [txSlots]txSlot
	shut atomic.Bool
	// worker is the thread id of the worker that drains the queue, while it
	// runs: a send from that thread (a stack answering inside a delivery)
	// must not wait for room only the worker itself can make.
	worker *atomic.Int32
	// wake wakes the worker if it sleeps; nil when it never does.
	wake *waker
	// A producer that finds the queue full sets waiting and blocks on room
	// (with timer for TxWait); the worker signals room when it frees slots
	// and someone waits. Producers hold mu, so one timer serves them.
	waiting atomic.Bool
	room    chan struct{}
	timer   *time.Timer
	maxWait time.Duration // TxWait; tests lengthen it

	// Counters, written by producers under mu.
	full atomic.Uint64 // requests dropped after TxWait

	// sched is the guest's class scheduler on this worker (nil without
	// classes or a guest rate): the frames the worker made of the queue's
	// requests wait there, as descriptors, for their turn. Only the
	// worker touches it.
	sched *qos.Scheduler
}

type txSlot struct {
	buf     []byte
	n       int
	gsoSize int
	partial bool
	fixedID bool
}

func newTxQueue(worker *atomic.Int32, wake *waker) *txQueue {
	q := &txQueue{worker: worker, wake: wake, room: make(chan struct{}, 1), maxWait: TxWait}
	for i := range q.slot {
		q.slot[i].buf = make([]byte, MaxWorkRequest)
	}
	return q
}

// pending reports whether the queue holds requests (for the worker).
func (q *txQueue) pending() bool { return q.tail.Load() != q.head.Load() }

// schedBudget bounds the frames a guest's scheduler holds on a worker:
// past it the worker leaves the guest's requests in its send queue, which
// fills and makes Send wait (back-pressure to the guest's stack) instead of
// the scheduler taking every free frame of the UMEM.
const schedBudget = 512

// admits reports whether the worker may take more of the queue's
// requests: its scheduler, if any, holds less than schedBudget frames.
func (q *txQueue) admits() bool { return q.sched == nil || q.sched.Backlog() < schedBudget }

// put copies wr into the next slot, waiting up to TxWait for room.
func (q *txQueue) put(wr *WorkRequest) error {
	n := len(wr.Head)
	for _, p := range wr.Payload {
		n += len(p)
	}
	if n > MaxWorkRequest {
		return fmt.Errorf("send %d bytes: %w", n, ErrTxTooBig)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.tail.Load()
	if t-q.head.Load() == txSlots {
		if q.worker != nil && q.worker.Load() == int32(unix.Gettid()) {
			q.full.Add(1)
			return ErrTxFull
		}
		if err := q.waitRoom(t); err != nil {
			return err
		}
	}
	if q.shut.Load() {
		return ErrTxDetached
	}
	s := &q.slot[t%txSlots]
	o := copy(s.buf, wr.Head)
	for _, p := range wr.Payload {
		o += copy(s.buf[o:], p)
	}
	s.n, s.gsoSize, s.partial, s.fixedID = o, wr.GSOSize, wr.CsumPartial, wr.FixedID
	q.tail.Store(t + 1)
	q.wake.wake()
	return nil
}

// waitRoom blocks, up to TxWait, until the worker frees a slot of a full
// queue (tail t). It sleeps rather than spins: a spinning producer would
// take the CPU the worker needs to drain the queue. Called with mu held.
func (q *txQueue) waitRoom(t uint64) error {
	if q.timer == nil {
		q.timer = time.NewTimer(q.maxWait)
	} else {
		q.timer.Reset(q.maxWait)
	}
	defer q.timer.Stop()
	for {
		// Announce, then look again: the worker frees slots and then reads
		// waiting, so either it sees the announcement or we see the room.
		q.waiting.Store(true)
		if t-q.head.Load() != txSlots {
			break
		}
		if q.shut.Load() {
			q.waiting.Store(false)
			return ErrTxDetached
		}
		q.wake.wake()
		select {
		case <-q.room:
		case <-q.timer.C:
			q.waiting.Store(false)
			if t-q.head.Load() != txSlots {
				return nil
			}
			q.full.Add(1)
			return ErrTxFull
		}
	}
	q.waiting.Store(false)
	return nil
}

// freed is the worker's half of waitRoom: after advancing head, wake a
// producer waiting for room.
func (q *txQueue) freed() {
	if q.waiting.Load() {
		select {
		case q.room <- struct{}{}:
		default:
		}
	}
}
