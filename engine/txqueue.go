package engine

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/engine/qos"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
	"github.com/xnic/xnic/umem"
)

// TxWait is how long Send waits for room in a full send queue, or for free
// frames, before it drops the request.
const TxWait = 20 * time.Millisecond

// txSlots is the depth of each guest's send queue on each worker, in
// requests.
const txSlots = 64

// txFrames is the depth of a send queue's frame ring: the UMEM frames of
// its published requests, in order. A power of two, at least poolCap.
const txFrames = 256

// poolCap bounds the free frames a send queue keeps for its producers, and
// so the frames one request may need; a queue starts with poolMin and
// doubles its target each time a producer had to wait for frames.
const (
	poolCap = 128
	poolMin = 64
)

// lockSpins bounds how long the worker's own send spins for a send
// queue's lock before it parks: a 64 KB request takes a producer tens of
// microseconds to segment.
const lockSpins = 1 << 12

// hdrMax is the longest request headers the send path segments: Ethernet
// with two VLAN tags, IPv4 with options or IPv6, TCP with options.
const hdrMax = 256

// txQueue carries a guest's work requests to one worker: many producers (the
// guest's goroutines), one consumer (the worker).
//
// The guest's bytes are copied once, by the producer, from its buffers
// into UMEM frames: the worker hands each queue a pool of free frames
// (pool, refilled every pass), and the producer, under mu, takes what the
// request needs, segments it there (GSO, checksums) and publishes the
// frames in the frame ring and the request in a slot by advancing tail.
// The worker reads slots up to tail, checks and accounts each request on
// its first frame, and passes the frames' descriptors on to the class
// scheduler or the tx ring; it frees slots by advancing head. The headers
// are segmented from the queue's own copy, so a guest that changes its
// buffers during Send cannot make segments differ from the first one the
// worker checks.
type txQueue struct {
	mu   sync.Mutex    // serialises producers
	tail atomic.Uint64 // written by producers under mu: slots published
	head atomic.Uint64 // written by the worker only: slots consumed
	slot [txSlots]txSlot
	shut atomic.Bool

	// The frame ring: producers write frames from fTail (under mu) and
	// publish them with the slot; the worker consumes them up to fHead.
	fAddr [txFrames]uint64
	fLen  [txFrames]uint32
	fTail uint64
	fHead atomic.Uint64

	// The pool: free frames the worker puts in at pTail and producers
	// take at pHead (under mu). want is the level the worker refills to;
	// spare holds frames a producer took but could not use.
	pool  [poolCap]uint64
	pHead atomic.Uint64
	pTail atomic.Uint64
	want  atomic.Int32
	spare []uint64

	// u is the worker's UMEM: producers only write into the frames they
	// took, and take frames from u itself only on the worker's thread.
	u   *umem.UMEM
	off uint64 // the UMEM's data offset
	fs  int    // bytes a frame holds after the offset
	// reclaim, on the worker's thread, kicks the worker's tx rings and
	// takes their completions back to u's free list; nil: nothing to do.
	reclaim func()
	// limit is the largest frame the active port takes (its MTU plus the
	// link header), 0 for the frame size: the MSS segments are cut to.
	limit atomic.Int32

	// Producer scratch, under mu.
	gso   *offload.GSO
	hdr   [hdrMax]byte
	req   offload.Request
	addrs [poolCap]uint64
	out   [poolCap][]byte
	sizes [poolCap]int

	// worker is the thread id of the worker that drains the queue, while it
	// runs: a send from that thread (a stack answering inside a delivery)
	// must not wait for room only the worker itself can make.
	worker *atomic.Int32
	// wake wakes the worker if it sleeps; nil when it never does.
	wake *waker
	// A producer that finds the queue full, the frame ring full or the
	// pool short counts itself in waiters and blocks, up to maxWait, on
	// room; the worker signals room when it frees slots or refills the
	// pool and someone waits.
	waiters atomic.Int32
	room    chan struct{}
	maxWait time.Duration // TxWait; tests lengthen it

	// Counters, written by producers under mu.
	full     atomic.Uint64 // requests dropped after TxWait for a slot
	noFrames atomic.Uint64 // requests dropped after TxWait for free frames
	bad      atomic.Uint64 // requests refused as malformed (ErrTxMalformed)
	clamped  atomic.Uint64 // requests whose segment size was cut to the port's MTU

	// sched is the guest's class scheduler on this worker (nil without
	// classes or a guest rate): the frames the worker made of the queue's
	// requests wait there, as descriptors, for their turn. Only the
	// worker touches it.
	sched *qos.Scheduler
}

// txSlot is one published request: n frames from first in the frame ring.
type txSlot struct {
	first   uint64
	n       int
	seg     bool // segmented by the producer: the frames are its segments
	partial bool // one frame whose TCP/UDP checksum the worker completes
}

func newTxQueue(u *umem.UMEM, worker *atomic.Int32, wake *waker) *txQueue {
	g, err := offload.NewGSO(offload.DefaultGSOOptions())
	if err != nil {
		panic(err) // the default options are valid
	}
	q := &txQueue{u: u, worker: worker, wake: wake, room: make(chan struct{}, 1), maxWait: TxWait, gso: g,
		off: u.DataOffset(), fs: int(u.FrameSize() - uint32(u.DataOffset())), spare: make([]uint64, 0, poolCap)}
	q.want.Store(poolMin)
	return q
}

// setPort makes ep's port the one the queue's requests are cut for: its
// MTU bounds the segments.
func (q *txQueue) setPort(ep *Endpoint) {
	if ep.mtu > 0 {
		q.limit.Store(int32(ethHeaderLen + ep.mtu))
	} else {
		q.limit.Store(0)
	}
}

// ethHeaderLen is the link header of a guest's frames: untagged Ethernet.
const ethHeaderLen = 14

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

// put writes wr into UMEM frames and publishes it, waiting up to TxWait
// for a slot, room in the frame ring and free frames. It waits without
// holding mu: the worker's own thread may need mu to send (a stack
// answering inside a delivery) before it can make the room awaited.
func (q *txQueue) put(wr *WorkRequest) error {
	n := len(wr.Head)
	for _, p := range wr.Payload {
		n += len(p)
	}
	if n > MaxWorkRequest {
		return fmt.Errorf("send %d bytes: %w", n, ErrTxTooBig)
	}
	// Whether this is the worker's own thread costs a system call: ask
	// only when it matters (a contended lock, a full queue, a short pool).
	onWorker, known := false, false
	if !q.mu.TryLock() {
		onWorker, known = q.onWorkerThread(), true
		if onWorker {
			// The holder is a producer segmenting a request (waits
			// release mu): spin for it rather than park the worker's
			// thread, whose wake-up would cost more than the wait.
			for i := 0; !q.mu.TryLock(); i++ {
				if i == lockSpins {
					q.mu.Lock()
					break
				}
			}
		} else {
			q.mu.Lock()
		}
	}
	defer q.mu.Unlock()
	// Plan the frames: one, or a segment per gso bytes of payload.
	limit := q.fs
	if l := int(q.limit.Load()); l > 0 {
		limit = min(limit, l)
	}
	hl, gso, need := len(wr.Head), 0, 1
	if wr.GSOSize > 0 && n > limit {
		if hl > hdrMax {
			q.bad.Add(1)
			return fmt.Errorf("segment: %d bytes of headers, at most %d: %w", hl, hdrMax, ErrTxMalformed)
		}
		gso = wr.GSOSize
		if room := limit - hl; gso > room {
			// A stack may size segments by the peer's MSS without its
			// own TCP options: never make a frame the port would drop.
			if gso = room; gso <= 0 {
				q.bad.Add(1)
				return fmt.Errorf("segment: %d bytes of headers leave no room in a %d-byte frame: %w", hl, limit, ErrTxMalformed)
			}
			q.clamped.Add(1)
		}
		if need = offload.Segments(n-hl, gso); need > poolCap {
			return fmt.Errorf("segment: %d segments of %d bytes, at most %d: %w", need, gso, poolCap, ErrTxTooBig)
		}
	} else if n > q.fs {
		return fmt.Errorf("send %d bytes without GSOSize, frames hold %d: %w", n, q.fs, ErrTxTooBig)
	}
	var deadline time.Time
	direct := false // the worker's own send takes what the pool lacks from the UMEM
	for {
		if q.shut.Load() {
			return ErrTxDetached
		}
		what, arg := -1, uint64(0)
		switch t := q.tail.Load(); {
		case t-q.head.Load() == txSlots:
			what, arg = waitSlot, t
		case q.fTail+uint64(need)-q.fHead.Load() > txFrames:
			what, arg = waitRing, uint64(need)
		case int(q.pTail.Load()-q.pHead.Load())+len(q.spare) < need:
			// Short: ask the worker for a deeper pool next time.
			if w := q.want.Load(); int(w) < poolCap {
				q.want.Store(int32(min(poolCap, max(2*int(w), need))))
			}
			if !known {
				onWorker, known = q.onWorkerThread(), true
			}
			if onWorker {
				direct = true
				break
			}
			what, arg = waitFrames, uint64(need-len(q.spare))
		}
		if what < 0 {
			break
		}
		if !known {
			onWorker, known = q.onWorkerThread(), true
		}
		if onWorker {
			q.full.Add(1) // only the worker could make room
			return ErrTxFull
		}
		if err := q.wait(what, arg, &deadline); err != nil {
			if what == waitFrames {
				q.noFrames.Add(1)
				return fmt.Errorf("no free frame for %d segments: %w", need, err)
			}
			q.full.Add(1)
			return err
		}
	}
	// Everything is there: take the frames, copy, publish; no more waits.
	if !q.take(need, direct) {
		q.noFrames.Add(1)
		return fmt.Errorf("no free frame for %d segments: %w", need, ErrTxFull)
	}
	t := q.tail.Load()
	s := &q.slot[t%txSlots]
	if gso > 0 {
		copy(q.hdr[:hl], wr.Head)
		for j := range need {
			q.out[j] = q.u.Frame(q.addrs[j])[q.off:]
		}
		q.req = offload.Request{Head: q.hdr[:hl], L3Off: linkLen(q.hdr[:hl]), Payload: wr.Payload, GSOSize: gso, FixedID: wr.FixedID}
		k, err := q.gso.Segment(&q.req, q.out[:need], q.sizes[:need])
		q.req.Payload = nil // the guest's buffers are not ours to keep
		if err != nil || k != need {
			q.spare = append(q.spare, q.addrs[:need]...)
			q.bad.Add(1)
			return fmt.Errorf("segment: %w: %w", ErrTxMalformed, err)
		}
		*s = txSlot{n: need, seg: true}
	} else {
		o := q.u.Frame(q.addrs[0])[q.off:]
		c := copy(o, wr.Head)
		for _, p := range wr.Payload {
			c += copy(o[c:], p)
		}
		q.sizes[0] = c
		*s = txSlot{n: 1, partial: wr.CsumPartial}
	}
	s.first = q.fTail
	for j := range s.n {
		i := (q.fTail + uint64(j)) % txFrames
		q.fAddr[i], q.fLen[i] = q.addrs[j], uint32(q.sizes[j])
	}
	q.fTail += uint64(s.n)
	q.tail.Store(t + 1)
	q.wake.wake()
	return nil
}

// onWorkerThread reports whether the caller runs on the thread of the
// worker that drains the queue: a stack answering inside a delivery.
func (q *txQueue) onWorkerThread() bool {
	return q.worker != nil && q.worker.Load() == int32(unix.Gettid())
}

// linkLen is where the IP header starts in a frame's headers: after the
// Ethernet header and any VLAN tags.
func linkLen(h []byte) int {
	o := 12
	for o+4 <= len(h) {
		switch uint16(h[o])<<8 | uint16(h[o+1]) {
		case flows.EtherTypeVLAN, flows.EtherTypeQinQ, flows.EtherTypeQinQ2:
			o += 4
		default:
			return o + 2
		}
	}
	return o + 2
}

// take puts n free frames in q.addrs: from spare, then from the pool.
// With direct (the worker's own thread, whose UMEM it is) it takes what
// the pool lacks from the UMEM, and if that is short too it has the kernel
// send what waits in the tx rings and takes the sent frames back first
// (copy mode sends only inside a kick): a frame that is only waiting to be
// sent must not cost a request. Called with mu held; false if short.
func (q *txQueue) take(n int, direct bool) bool {
	got := min(n, len(q.spare))
	copy(q.addrs[:got], q.spare[len(q.spare)-got:])
	q.spare = q.spare[:len(q.spare)-got]
	h := q.pHead.Load()
	k := min(int(q.pTail.Load()-h), n-got)
	for j := range k {
		q.addrs[got+j] = q.pool[(h+uint64(j))%poolCap]
	}
	q.pHead.Store(h + uint64(k))
	got += k
	for try := 0; direct && got < n; try++ {
		if got += q.u.AllocN(q.addrs[got:n]); got == n || try == 4 || q.reclaim == nil {
			break
		}
		q.reclaim()
	}
	if got < n {
		q.spare = append(q.spare, q.addrs[:got]...)
		return false
	}
	return true
}

// What a producer waits for.
const (
	waitSlot   = iota // a free slot; arg is the tail it saw
	waitFrames        // arg frames in the pool
	waitRing          // room for arg frames in the frame ring
)

// ready reports whether what a producer waits for is there.
func (q *txQueue) ready(what int, arg uint64) bool {
	switch what {
	case waitSlot:
		return arg-q.head.Load() != txSlots
	case waitRing:
		return q.fTail+arg-q.fHead.Load() <= txFrames
	}
	return q.pTail.Load()-q.pHead.Load() >= arg
}

// wait blocks until the worker frees a slot, frees room in the frame ring
// or refills the pool, or until the deadline (TxWait after the first
// wait of the send). It releases mu while it sleeps and takes it back: the
// caller looks at the queue again. It sleeps rather than spins: a spinning
// producer would take the CPU the worker needs.
func (q *txQueue) wait(what int, arg uint64, deadline *time.Time) error {
	if deadline.IsZero() {
		*deadline = time.Now().Add(q.maxWait)
	}
	d := time.Until(*deadline)
	if d <= 0 {
		return ErrTxFull
	}
	// Announce, then look: the worker makes room and then reads the
	// count of waiters, so either it sees the announcement or we see the
	// room (sequentially consistent atomics on both sides).
	q.waiters.Add(1)
	defer q.waiters.Add(-1)
	if q.ready(what, arg) || q.shut.Load() {
		return nil
	}
	q.mu.Unlock()
	defer q.mu.Lock()
	q.wake.wake()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-q.room:
		// One token per signal: pass it on if there is room for others.
		if q.waiters.Load() > 1 && q.ready(what, arg) {
			q.signal()
		}
		return nil
	case <-timer.C:
		if q.ready(what, arg) {
			return nil
		}
		return ErrTxFull
	}
}

// freed is the worker's half of wait: after advancing head or refilling
// the pool, wake a producer waiting for it.
func (q *txQueue) freed() {
	if q.waiters.Load() > 0 {
		q.signal()
	}
}

func (q *txQueue) signal() {
	select {
	case q.room <- struct{}{}:
	default:
	}
}

// txPoolKeep is what refills leave on the worker's free list, for the
// receive side and the worker's own sends.
const txPoolKeep = 64

// refill tops the pool up to its target from u, the worker's UMEM: on
// the worker, every pass. A pool less than half empty is left alone
// unless a producer waits, so refills come in batches.
func (q *txQueue) refill(u *umem.UMEM) {
	t := q.pTail.Load()
	have := int(t - q.pHead.Load())
	want := int(q.want.Load())
	if have >= want || (have > want/2 && q.waiters.Load() == 0) {
		return
	}
	n := min(want-have, u.Free()-txPoolKeep)
	if n <= 0 {
		return
	}
	// The ring may wrap: fill it in up to two runs.
	for n > 0 {
		i := int(t % poolCap)
		k := u.AllocN(q.pool[i:min(poolCap, i+n)])
		t += uint64(k)
		n -= k
		if k == 0 {
			break
		}
	}
	q.pTail.Store(t)
	q.freed()
}

// pooled is how many free frames the queue holds: its pool and spare.
func (q *txQueue) pooled() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return int(q.pTail.Load()-q.pHead.Load()) + len(q.spare)
}

// release gives every frame the queue holds back to u: the pool, spare,
// and the frames of requests the worker never took. For a detached queue
// (shut, its endpoint no longer served), on the worker.
func (q *txQueue) release(u *umem.UMEM) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for h, t := q.pHead.Load(), q.pTail.Load(); h != t; h++ {
		u.Release(q.pool[h%poolCap])
	}
	q.pHead.Store(q.pTail.Load())
	u.ReleaseN(q.spare)
	q.spare = q.spare[:0]
	for h := q.fHead.Load(); h != q.fTail; h++ {
		u.Release(q.fAddr[h%txFrames])
	}
	q.fHead.Store(q.fTail)
	q.head.Store(q.tail.Load())
}
