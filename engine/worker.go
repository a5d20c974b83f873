package engine

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/umem"
)

// DefaultBatch is the number of descriptors a worker takes per ring access.
const DefaultBatch = 64

// RxFunc receives the batches of the raw (guestless) sockets, before the
// pipeline; a guest's batches go to its GuestHandler instead. It may read
// the packets (umem.Bytes); the frames go back to the fill ring when it
// returns. ep says which socket and port the batch came from.
type RxFunc func(ep *Endpoint, descs []umem.Desc)

// Endpoint is one socket a worker polls: its port and, for a guest's socket,
// the guest and class it serves.
type Endpoint struct {
	Sock  *umem.Socket
	Port  int // index into the engine's ports
	Guest int // guest id; 0 for the raw (guestless) socket
	Class int
	Owner *Guest // nil for the raw socket

	tx   *txQueue // the guest's send queue on this worker, on its active port; else nil
	mtu  int      // the port's MTU, for the send path; 0: no limit but the frame
	dead bool     // the port was deleted: the socket is unbound (set on the worker)
	// link is the port's link state as the link watcher last saw it (nil:
	// always up). A port without carrier takes no frame from a tx ring, so
	// the worker neither kicks it nor counts its frames as work.
	link *atomic.Bool
	// occ and slot, when occ is not nil, are where the worker publishes
	// the socket's rx ring occupancy for the steering program's early drop
	// (ClassSpec.RxThreshold).
	occ  *bpf.OccupancyBoard
	slot int
	// hw is the guest's MAC on this port (its own, or the port's for a
	// guest without one): the source its sends must have and the
	// destination its unicast frames must have.
	hw [6]byte
}

// Worker polls the sockets of one UMEM. All its fields are owned by the
// goroutine running Run, except the counters and the stop flag.
type Worker struct {
	// Set at construction; the sockets all live on u.
	u   *umem.UMEM
	eps []*Endpoint
	// retired are the raw endpoints of deleted ports, kept for Close.
	retired []*Endpoint
	raw     RxFunc // the raw sockets' batches; nil drops them
	descs   []umem.Desc
	pollMs  int // when > 0, sleep in poll(2) up to this long after an empty pass
	pfds    []unix.PollFd
	pipe    *rxPipeline // nil when the engine runs no pipeline
	txp     *txPath     // guests' sends
	// txReserve frames stay on the free list for the send path instead of
	// going to the fill rings.
	txReserve int
	now       int64 // monotonic time of the current pass (clock), 0 until read

	// Owned by the running worker.
	empty      int
	passes     uint64
	maintained int64       // clock of the last slice of connection ageing
	stats      WorkerStats // its counters, published by publish

	// idle wakes the worker from poll(2) when a guest queues a send or
	// the control plane has a function for it (only when pollMs > 0).
	idle *waker
	// ctlWant counts Do calls waiting for the worker, so that it does not
	// go to sleep with one pending.
	ctlWant atomic.Int32

	// Shared with the control plane: the stop flag, the published
	// counters, and ctl, through which the control plane runs a function
	// on the worker between passes (adding or draining a socket) instead of
	// changing its state from another thread.
	stop    atomic.Bool
	tid     atomic.Int32 // the OS thread running Run, 0 when stopped
	runMu   sync.Mutex   // guards running; Do holds it while the worker runs its function
	running bool
	ctl     chan func()
	board   statsBoard // stats as of the last pass
	Tx      TxCounters
}

// NewWorker makes a worker over endpoints whose sockets share u. batch is the
// ring batch size (DefaultBatch when 0). pollMs > 0 makes an idle worker sleep
// in poll(2) instead of spinning. raw receives the raw sockets' batches.
func NewWorker(u *umem.UMEM, eps []*Endpoint, batch, pollMs int, raw RxFunc) *Worker {
	if batch <= 0 {
		batch = DefaultBatch
	}
	w := &Worker{u: u, raw: raw, descs: make([]umem.Desc, batch), pollMs: pollMs, ctl: make(chan func())}
	if pollMs > 0 {
		w.idle = newWaker()
	}
	for _, ep := range eps {
		w.add(ep)
	}
	return w
}

func (w *Worker) add(ep *Endpoint) {
	w.eps = append(w.eps, ep)
	w.rebuildPoll()
}

func (w *Worker) rebuildPoll() {
	w.pfds = w.pfds[:0]
	for _, ep := range w.eps {
		if fd := ep.Sock.FD(); fd >= 0 {
			w.pfds = append(w.pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
		}
	}
	if w.idle != nil && w.idle.fd >= 0 {
		w.pfds = append(w.pfds, unix.PollFd{Fd: int32(w.idle.fd), Events: unix.POLLIN})
	}
}

// Do runs fn on the worker between two passes and waits for it; if the
// worker is not running, it runs fn at once. Use it for anything that
// touches the worker's UMEM or endpoint set.
func (w *Worker) Do(fn func()) {
	w.runMu.Lock()
	defer w.runMu.Unlock()
	if !w.running {
		fn()
		return
	}
	done := make(chan struct{})
	w.ctlWant.Add(1)
	w.idle.wake()
	w.ctl <- func() { fn(); w.ctlWant.Add(-1); close(done) }
	<-done
}

// AddEndpoint makes the worker poll ep from its next pass. A socket with its
// own fill ring is primed with frames from the free list.
func (w *Worker) AddEndpoint(ep *Endpoint) {
	w.Do(func() {
		if ep.Sock.OwnsRings() {
			ep.Sock.FillFromFree(min(max(w.u.Free()-w.txReserve, 0)/2, int(ep.Sock.Fill.Size())))
		}
		w.add(ep)
	})
}

// RemoveEndpoint stops polling ep after taking what its rx ring still holds
// through the pipeline, so no frame is stranded in a ring about to be closed. Take
// the socket out of the steering maps first, so nothing more arrives.
func (w *Worker) RemoveEndpoint(ep *Endpoint) {
	w.Do(func() {
		for i, e := range w.eps {
			if e != ep {
				continue
			}
			w.drain(ep)
			w.eps = append(w.eps[:i], w.eps[i+1:]...)
			w.rebuildPoll()
			return
		}
	})
}

// drain takes what ep's rx ring holds through the pipeline. Run it on the
// worker (Do).
func (w *Worker) drain(ep *Endpoint) {
	for {
		n := ep.Sock.Receive(w.descs)
		if n == 0 {
			return
		}
		w.deliver(ep, w.descs[:n], batchBytes(w.descs[:n]))
	}
}

// retirePort stops polling the sockets of port pi, deleted: it drains
// their rx rings and takes them out of the poll set. The raw sockets stay
// in retired until the engine closes them; a guest's go when it detaches.
func (w *Worker) retirePort(pi int) {
	w.Do(func() {
		keep := w.eps[:0]
		for _, ep := range w.eps {
			if ep.Port != pi {
				keep = append(keep, ep)
				continue
			}
			ep.dead = true
			w.drain(ep)
			if ep.Owner == nil {
				w.retired = append(w.retired, ep)
			}
		}
		clear(w.eps[len(keep):])
		w.eps = keep
		w.rebuildPoll()
	})
}

// Prime posts frames from the free list to every ring group's fill ring,
// sharing the free frames evenly. Call it once before Run.
func (w *Worker) Prime() {
	hosts := 0
	for _, ep := range w.eps {
		if ep.Sock.OwnsRings() {
			hosts++
		}
	}
	if hosts == 0 {
		return
	}
	share := max(w.u.Free()-w.txReserve, 0) / hosts
	for _, ep := range w.eps {
		if ep.Sock.OwnsRings() {
			ep.Sock.FillFromFree(min(share, int(ep.Sock.Fill.Size())))
		}
	}
}

// Poll makes one pass over the sockets: receive a batch from each, take it
// through the pipeline, and post the frames back; then send what the
// guests queued. It returns the packets received plus the work requests
// sent.
func (w *Worker) Poll() int {
	total := 0
	var bytes uint64
	w.now = 0 // read lazily: an idle pass reads no clock
	for _, ep := range w.eps {
		s := ep.Sock
		n := s.Receive(w.descs)
		if ep.occ != nil {
			// What the ring still holds once this batch is taken: the
			// steering program adds what it lets in from now on.
			ep.occ.Publish(ep.slot, s.RxQueued())
		}
		if n == 0 {
			s.KickRx()
			continue
		}
		batch := w.descs[:n]
		b := batchBytes(batch)
		w.deliver(ep, batch, b)
		bytes += b
		total += n
	}
	sent := w.serveTx()
	if w.u.Free() > w.txReserve {
		w.topUp()
	}
	st := &w.stats
	w.passes++
	publish := total > 0
	if total == 0 {
		// A spinning worker makes millions of idle passes, and nobody
		// needs each one published.
		st.EmptyPasses++
		publish = st.EmptyPasses%idlePublishEvery == 0
	} else {
		st.RxPackets += uint64(total)
		st.RxBytes += bytes
	}
	if w.pipe != nil {
		changed := total > 0
		// Ageing out idle connections is background work: a slice of it
		// at most every maintainEvery, with the clock looked at only every
		// 64th pass, keeps it off the per-packet path and off a spinning
		// worker's CPU.
		if w.passes&63 == 0 {
			if now := w.clock(); now-w.maintained >= maintainEvery {
				w.maintained = now
				w.pipe.maintain(now)
				changed = true
			}
		}
		if changed {
			w.pipe.fill(&st.Pipeline)
			publish = true
		}
	}
	if publish {
		w.publish()
	}
	return total + sent
}

// idlePublishEvery is how many idle passes in a row go by between two
// publishes of the counters.
const idlePublishEvery = 64

// maintainEvery is the least time between two slices of connection
// ageing. A spinning worker makes a pass every few hundred nanoseconds, so
// a slice per pass count (rather than per unit of time) would make ageing
// a steady cost of an idle engine.
const maintainEvery = int64(time.Millisecond)

// clock is the pass's monotonic time, read on first use.
func (w *Worker) clock() int64 {
	if w.now == 0 {
		w.now = monotime()
	}
	return w.now
}

// epoch is the origin of monotime.
var epoch = time.Now()

// monotime is monotonic nanoseconds since the process started.
func monotime() int64 { return int64(time.Since(epoch)) }

// batchBytes is the bytes received in a batch.
func batchBytes(batch []umem.Desc) uint64 {
	var n uint64
	for i := range batch {
		n += uint64(batch[i].Len)
	}
	return n
}

// deliver hands a batch of bytes bytes to its guest's handler (counted
// for the guest) or to the raw handler, takes it through the pipeline and
// posts its frames back to the fill ring.
func (w *Worker) deliver(ep *Endpoint, batch []umem.Desc, bytes uint64) {
	all := batch
	if g := ep.Owner; g != nil {
		batch, bytes = w.addressed(ep, batch, bytes)
		if len(batch) > 0 {
			g.RxPackets.Add(uint64(len(batch)))
			g.RxBytes.Add(bytes)
			g.noteRx(ep, w.clock())
			if g.handler != nil {
				g.handler(g, ep, batch)
			}
		}
	} else if w.raw != nil {
		w.raw(ep, batch)
	}
	if w.pipe != nil && len(batch) > 0 {
		w.pipe.run(ep, batch, w.clock())
	}
	if !ep.Sock.RefillDescs(all) {
		// Should not happen: these frames came from this fill ring. Keep
		// them accounted for on the free list and top up later.
		for j := range all {
			w.u.Release(all[j].Addr)
		}
		w.stats.RefillFailed++
	}
}

// addressed keeps, at the front of a guest's batch and in order, the
// frames addressed to the guest (its MAC, broadcast or multicast), and
// returns them with their bytes; the others move behind them, still in the
// batch for the fill ring, and are counted. Steering is by IP address, so
// this is what keeps a frame to another guest's MAC from reaching this one.
func (w *Worker) addressed(ep *Endpoint, batch []umem.Desc, bytes uint64) ([]umem.Desc, uint64) {
	k := 0
	for i := range batch {
		if !addressedTo(w.u.Bytes(batch[i]), &ep.hw) {
			bytes -= uint64(batch[i].Len)
			continue
		}
		if k != i {
			batch[k], batch[i] = batch[i], batch[k]
		}
		k++
	}
	if n := uint64(len(batch) - k); n > 0 {
		w.stats.RxWrongMAC += n
		ep.Owner.RxWrongMAC.Add(n)
	}
	return batch[:k], bytes
}

func (w *Worker) topUp() {
	for _, ep := range w.eps {
		if n := w.u.Free() - w.txReserve; n > 0 && ep.Sock.OwnsRings() {
			ep.Sock.FillFromFree(n)
		}
	}
}

// serveTx runs the send path over the guests' queues and takes sent frames
// back from the completion rings. It returns the requests it sent.
func (w *Worker) serveTx() int {
	if w.txp == nil {
		return 0
	}
	n := 0
	for _, ep := range w.eps {
		if q := ep.tx; q != nil {
			if q.pending() && q.admits() {
				n += w.txp.serve(ep, w.clock())
			}
			if q.sched != nil && q.sched.Backlog() > 0 && ep.linkUp() {
				n += w.txp.drain(ep, q.sched, w.clock())
			}
		}
		// Copy mode sends only inside a kick, a few dozen frames at a
		// time: keep kicking while frames wait in the tx ring, also on
		// the port a guest has just left.
		if ep.txStuck() {
			ep.Sock.KickTx()
		}
		if ep.Sock.OwnsRings() {
			w.txp.complete(ep.Sock)
		}
		if q := ep.tx; q != nil {
			q.refill(w.u)
		}
	}
	if n > 0 {
		w.txp.publish()
	} else if w.txp.done != w.Tx.Completed.Load() {
		w.Tx.Completed.Store(w.txp.done)
	}
	return n
}

// reclaimTx has the kernel send what waits in the guests' tx rings and
// takes the sent frames back to the free list: for a send on the worker's
// own thread that found the free list short. On the worker only.
func (w *Worker) reclaimTx() {
	if w.txp == nil {
		return
	}
	for _, ep := range w.eps {
		if ep.tx != nil && ep.linkUp() {
			ep.Sock.KickTx()
		}
		if ep.Sock.OwnsRings() {
			w.txp.complete(ep.Sock)
		}
	}
}

// publish makes the worker's counters what Stats reads. The wakeups are
// the sockets' own counters, summed.
func (w *Worker) publish() {
	var wk uint64
	for _, ep := range w.eps {
		wk += ep.Sock.Counters.RxWakeups
	}
	w.stats.RxWakeups = wk
	w.board.publish(&w.stats)
}

// Stats returns the worker's counters as of its last publish: after every
// pass with traffic, every idlePublishEvery idle passes, when it goes to
// sleep and when Run returns. Any thread may call it.
func (w *Worker) Stats() WorkerStats { return w.board.load() }

// Run polls until Stop, on a locked OS thread.
func (w *Worker) Run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w.tid.Store(int32(unix.Gettid()))
	defer w.tid.Store(0)
	w.runMu.Lock()
	w.running = true
	w.runMu.Unlock()
	defer func() {
		// A Do may hold runMu while it waits for this worker: serve it
		// until the lock is ours.
		for !w.runMu.TryLock() {
			select {
			case fn := <-w.ctl:
				fn()
			default:
				runtime.Gosched()
			}
		}
		w.running = false
		w.runMu.Unlock()
	}()
	for !w.stop.Load() {
		select {
		case fn := <-w.ctl:
			fn()
		default:
		}
		if w.Poll() > 0 {
			w.empty = 0
			continue
		}
		w.empty++
		if w.pollMs > 0 && w.empty > idleSpins && len(w.pfds) > 0 {
			w.sleep()
			continue
		}
		w.yield()
	}
	w.publish()
}

// yield, after an empty pass, lets the goroutines the worker's deliveries
// woke (a guest's application reading what its stack received) run at
// once on this thread's P; otherwise they wait for another thread to be
// woken to take them (70-80 us a request, measured by xnic bench latency
// --trace). The worker unlocks its thread for it: a locked goroutine's
// Gosched hands its P to another thread and back, two thread wake-ups per
// yield (TCP ping-pong p50 155-165 us with that, 72-84 us without, same
// runs of xnic bench latency). It may come back on another thread, so its thread id is cleared
// first (no goroutine that runs on the old thread meanwhile may pass for
// the worker) and set again after.
func (w *Worker) yield() {
	if w.shaping() {
		// Shaped frames wait for their time: the worker keeps its thread
		// (and gets its P back at once); let go of it, it would queue
		// behind the guests' runnable goroutines (a strict-priority
		// class's p99 went from 1.1x to 14x its unloaded p99 in xnic
		// bench qos).
		runtime.Gosched()
		return
	}
	w.tid.Store(0)
	runtime.UnlockOSThread()
	runtime.Gosched()
	runtime.LockOSThread()
	w.tid.Store(int32(unix.Gettid()))
	if w.empty%sysYieldEvery == 0 {
		// A worker that never sleeps (poll_ms 0) would otherwise hold
		// its CPU against the kernel's own threads (ksoftirqd runs the
		// veth's receive when softirqs pile up): a time slice of theirs
		// lost to the spin is milliseconds of latency (p99.9 4 ms).
		_, _, _ = unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	}
}

// sysYieldEvery is how many empty passes in a row the worker makes before
// it gives its CPU to the kernel's scheduler for a moment.
const sysYieldEvery = 16

// idleSpins is how many passes in a row find nothing before the worker
// sleeps (with pollMs > 0): a few tens of microseconds of spinning, so
// that a busy flow's next packets find it awake.
const idleSpins = 64

// sleep waits in poll(2), up to pollMs, for a receive ring to fill, a
// guest's send or a Do. It announces itself first and then looks once
// more for work, so a producer either sees the announcement and wakes it
// or published its work before the look (both sides use sequentially
// consistent atomics): no send waits out the timeout.
func (w *Worker) sleep() {
	w.idle.sleeping.Store(true)
	if !w.hasWork() {
		w.stats.Sleeps++
		w.publish() // the counters stay as they are while it sleeps
		timeout := int64(w.pollMs) * int64(time.Millisecond)
		if d := w.shapedWait(); d >= 0 && d < timeout {
			// Shaped frames wait for tokens: wake when they have them.
			timeout = d
		}
		ts := unix.NsecToTimespec(timeout)
		_, _ = unix.Ppoll(w.pfds, &ts, nil)
	}
	// A producer that woke the worker took the flag down and wrote the
	// eventfd: only then is there something to read.
	if !w.idle.sleeping.Swap(false) {
		w.idle.drain()
	}
}

// hasWork reports work that poll(2) on the sockets would not see: queued
// sends, frames still in a tx ring (copy mode sends only inside a kick),
// and pending Do calls.
func (w *Worker) hasWork() bool {
	if w.ctlWant.Load() > 0 || w.stop.Load() {
		return true
	}
	for _, ep := range w.eps {
		if ep.tx != nil && ep.tx.pending() || ep.txStuck() {
			return true
		}
		if q := ep.tx; q != nil && q.sched != nil && q.sched.Backlog() > 0 && ep.linkUp() {
			if now := monotime(); q.sched.NextEligible(now) <= now {
				return true
			}
		}
	}
	return false
}

// shaping reports shaped frames waiting in a guest's scheduler on this
// worker.
func (w *Worker) shaping() bool {
	for _, ep := range w.eps {
		if q := ep.tx; q != nil && q.sched != nil && q.sched.Backlog() > 0 {
			return true
		}
	}
	return false
}

// shapedWait is how long, in nanoseconds, until a guest's scheduler on
// this worker has a shaped frame to let go; -1 when none waits.
func (w *Worker) shapedWait() int64 {
	wait := int64(-1)
	now := monotime()
	for _, ep := range w.eps {
		if q := ep.tx; q != nil && q.sched != nil && q.sched.Backlog() > 0 && ep.linkUp() {
			if d := max(q.sched.NextEligible(now)-now, 0); wait < 0 || d < wait {
				wait = d
			}
		}
	}
	return wait
}

// linkUp reports whether the endpoint's port has its link, as last seen.
func (ep *Endpoint) linkUp() bool { return ep.link == nil || ep.link.Load() }

// txStuck reports frames in a guest socket's tx ring that a kick would
// send: copy mode sends only inside a kick, also on the port a guest has
// just left. A port that is gone or down takes nothing, and its frames
// wait there until it is up again.
func (ep *Endpoint) txStuck() bool {
	return ep.Owner != nil && !ep.dead && ep.linkUp() && ep.Sock.TxPending()
}

// Close releases what NewWorker made. Call it once Run has returned.
func (w *Worker) Close() {
	if w.idle != nil {
		w.idle.close()
	}
}

// Stop asks Run to return after its current pass.
func (w *Worker) Stop() {
	w.stop.Store(true)
	w.idle.wake()
}

// Endpoints are the endpoints the worker polls. Read them only while the
// worker is stopped, or from a function passed to Do; PolledEndpoints is
// for any other thread.
func (w *Worker) Endpoints() []*Endpoint { return w.eps }

// PolledEndpoints is a copy of the endpoints the worker polls, taken
// between two of its passes (Do): for the control plane, from any thread.
func (w *Worker) PolledEndpoints() []*Endpoint {
	var eps []*Endpoint
	w.Do(func() { eps = append(eps, w.eps...) })
	return eps
}

// UMEM is the worker's UMEM.
func (w *Worker) UMEM() *umem.UMEM { return w.u }
