package engine

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/conn"
	"github.com/xnic/xnic/flows/offload"
	"github.com/xnic/xnic/umem"
)

// WorkRequest is a guest's send: one packet, Ethernet framed, which the
// engine segments (TSO/GSO) and checksums before the tx ring.
type WorkRequest struct {
	// Head is the headers (Ethernet through TCP/UDP) and Payload the rest,
	// in any number of pieces; both are read only during Send.
	Head    []byte
	Payload [][]byte
	// GSOSize > 0 asks for segmentation into payloads of this size (the
	// MSS); 0 sends the packet as it is, and then it must fit a frame.
	GSOSize int
	// CsumPartial: the TCP/UDP checksum field holds only the pseudo-header
	// sum, for the engine to complete (a guest stack with checksum offload).
	CsumPartial bool
	// FixedID keeps every segment's IPv4 ID at the request's instead of
	// counting up (a stack that sends ID 0 with DF, as netstack does).
	FixedID bool
}

// Sentinel errors of the send path.
var (
	// ErrTxFull: the guest's send queue stayed full for TxWait.
	ErrTxFull = errors.New("send queue full")
	// ErrTxTooBig: a request larger than MaxWorkRequest, or one without
	// GSOSize larger than a frame.
	ErrTxTooBig = errors.New("work request too big")
	// ErrTxDetached: the guest is no longer attached.
	ErrTxDetached = errors.New("guest detached")
)

// MaxWorkRequest is the largest packet a work request may carry: a 64 KB
// IP packet plus its link header.
const MaxWorkRequest = 65535 + 64

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
// queue (tail t). It sleeps rather than spins: a spinning producer took the
// CPU the worker needed to drain the queue. Called with mu held.
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

// TxCounters are a worker's send-path counters, published once per pass.
type TxCounters struct {
	Requests    atomic.Uint64 // work requests taken from the guests' queues
	Segments    atomic.Uint64 // frames written to the tx rings
	GSORequests atomic.Uint64 // requests segmented
	Bytes       atomic.Uint64 // bytes written to the tx rings
	Dropped     atomic.Uint64 // requests that could not be sent: malformed or too big
	MSSClamped  atomic.Uint64 // requests whose segment size was cut to fit the port's MTU
	NoFrames    atomic.Uint64 // passes that found no free frame for a request
	Completed   atomic.Uint64 // frames back from the completion rings
}

// txPath is a worker's send path: guests' work requests → lookahead →
// context → GSO + checksum → tx ring. It belongs to the worker.
type txPath struct {
	u    *umem.UMEM
	gso  *offload.GSO
	proc *conn.Processor // nil without a pipeline: no accounting

	pkts   []flows.Packet // the requests of one round, parsed
	frames [][]byte
	slots  []*txSlot
	out    [][]byte // GSO output: frame slices
	sizes  []int
	addrs  []uint64
	descs  []umem.Desc
	stage  conn.Stage

	ep      *Endpoint // the endpoint whose queue is being served
	reqs    uint64
	segs    uint64
	gsoReqs uint64
	bytes   uint64
	dropped uint64
	clamped uint64
	noFrame uint64
	done    uint64

	counters *TxCounters
}

// maxSegs is the most frames one request can need: 64 KB at a small MSS is
// bounded by the GSO; at a 536-byte MSS it is 123.
const maxSegs = 256

func newTxPath(u *umem.UMEM, batch int, cache *conn.Cache, c *TxCounters) (*txPath, error) {
	g, err := offload.NewGSO(offload.DefaultGSOOptions())
	if err != nil {
		return nil, fmt.Errorf("engine: send path: %w", err)
	}
	t := &txPath{
		u: u, gso: g, counters: c,
		pkts: make([]flows.Packet, batch), frames: make([][]byte, batch), slots: make([]*txSlot, batch),
		out: make([][]byte, maxSegs), sizes: make([]int, maxSegs), addrs: make([]uint64, maxSegs),
		descs: make([]umem.Desc, maxSegs),
	}
	t.stage = t.send
	if cache != nil {
		po := conn.DefaultProcessorOptions()
		po.Dir = conn.DirTX
		po.Window = batch
		if t.proc, err = conn.NewProcessor(cache, po); err != nil {
			return nil, fmt.Errorf("engine: send path: %w", err)
		}
	}
	return t, nil
}

// serve takes up to a batch of work requests off ep's queue, accounts them
// to their connections with lookahead, and transmits them. It returns how
// many requests it finished.
func (t *txPath) serve(ep *Endpoint, now int64) int {
	q := ep.tx
	h := q.head.Load()
	n := int(min(q.tail.Load()-h, uint64(len(t.pkts))))
	if n == 0 {
		return 0
	}
	for i := range n {
		s := &q.slot[(h+uint64(i))%txSlots]
		t.slots[i] = s
		t.frames[i] = s.buf[:s.n]
		flows.Parse(t.frames[i], &t.pkts[i])
	}
	t.ep = ep
	if t.proc != nil {
		t.proc.Process(t.pkts[:n], t.frames[:n], now, t.stage)
	} else {
		for i := range n {
			t.sendOne(int32(i))
		}
	}
	q.head.Store(h + uint64(n))
	q.freed()
	t.ep = nil
	return n
}

// send is the stage after the TX processor: each request of a connection in
// order.
func (t *txPath) send(_ *conn.Context, idx []int32) {
	for _, i := range idx {
		t.sendOne(i)
	}
}

func (t *txPath) sendOne(i int32) {
	t.reqs++
	s, p, frame := t.slots[i], &t.pkts[i], t.frames[i]
	if p.Reason.Malformed() {
		t.dropped++
		return
	}
	fs := int(t.u.FrameSize() - uint32(t.u.DataOffset()))
	// The largest frame the port takes: its MTU plus the link header.
	limit := fs
	if mtu := t.ep.mtu; mtu > 0 {
		limit = min(fs, int(p.L3Off)+mtu)
	}
	if s.gsoSize > 0 && len(frame) > limit && p.Reason == flows.ReasonOK &&
		(p.Proto == flows.ProtoTCP || p.Proto == flows.ProtoUDP) {
		gso := s.gsoSize
		// A stack may size segments by the peer's MSS without its own
		// TCP options: never make a frame the port would drop.
		if room := limit - int(p.PayloadOff); gso > room {
			gso = room
			t.clamped++
		}
		if gso <= 0 {
			t.dropped++
			return
		}
		nseg := offload.Segments(int(p.PayloadLen), gso)
		if nseg > maxSegs || !t.alloc(nseg) {
			return
		}
		n, err := t.gso.SegmentFrame(frame, p, gso, s.fixedID, t.out[:nseg], t.sizes[:nseg])
		if err != nil {
			t.u.ReleaseN(t.addrs[:nseg])
			t.dropped++
			return
		}
		t.gsoReqs++
		t.transmit(n)
		return
	}
	if len(frame) > limit {
		t.dropped++
		return
	}
	if !t.alloc(1) {
		return
	}
	o := t.out[0][:len(frame)]
	copy(o, frame)
	if s.partial {
		var op flows.Packet
		flows.Parse(o, &op)
		offload.CompletePartial(o, &op)
	}
	t.sizes[0] = len(o)
	t.transmit(1)
}

// alloc takes n free frames into t.addrs and t.out; false if there are not
// enough (counted; the request is dropped, as a full NIC queue would).
func (t *txPath) alloc(n int) bool {
	if got := t.u.AllocN(t.addrs[:n]); got < n {
		t.u.ReleaseN(t.addrs[:got])
		t.noFrame++
		t.dropped++
		return false
	}
	off := t.u.DataOffset()
	for j := range n {
		t.out[j] = t.u.Frame(t.addrs[j])[off:]
	}
	return true
}

// transmit posts the n frames in t.addrs/t.sizes to the endpoint's tx ring,
// waiting for the kernel to make room when the ring is full.
func (t *txPath) transmit(n int) {
	off := t.u.DataOffset()
	for j := range n {
		t.descs[j] = umem.Desc{Addr: t.addrs[j] + off, Len: uint32(t.sizes[j])}
		t.bytes += uint64(t.sizes[j])
	}
	s := t.ep.Sock
	sent := 0
	for spins := 0; sent < n; spins++ {
		sent += s.Transmit(t.descs[sent:n])
		if sent < n {
			t.complete(s)
			if spins > 100000 {
				// The kernel stopped taking frames: give them back.
				for j := sent; j < n; j++ {
					t.u.Release(t.addrs[j])
				}
				t.dropped++
				return
			}
		}
	}
	t.segs += uint64(n)
}

// complete moves sent frames from s's completion ring back to the free list.
func (t *txPath) complete(s *umem.Socket) {
	if host := s.RingHost(); host != nil {
		t.done += uint64(host.CompleteToFree())
	}
}

func (t *txPath) publish() {
	c := t.counters
	c.Requests.Store(t.reqs)
	c.Segments.Store(t.segs)
	c.GSORequests.Store(t.gsoReqs)
	c.Bytes.Store(t.bytes)
	c.Dropped.Store(t.dropped)
	c.MSSClamped.Store(t.clamped)
	c.NoFrames.Store(t.noFrame)
	c.Completed.Store(t.done)
}

// Send queues a work request of the guest for transmission on its port.
// It copies the packet before it returns, so the caller may reuse wr's
// buffers. It is safe to call from any goroutine. A connection's requests
// always go through the same queue, so they leave in order.
func (g *Guest) Send(wr *WorkRequest) error {
	ep0 := g.sendEps.Load()
	if ep0 == nil || len(*ep0) == 0 {
		return fmt.Errorf("guest %s: %w", g.Spec.Name, ErrTxDetached)
	}
	eps := *ep0
	ep := eps[0]
	if ep.tx == nil {
		return fmt.Errorf("guest %s: send: the engine runs no pipeline (Options.Pipeline)", g.Spec.Name)
	}
	if len(eps) > 1 {
		ep = eps[flowHash(wr.Head)%uint64(len(eps))]
	}
	if err := ep.tx.put(wr); err != nil {
		return fmt.Errorf("guest %s: %w", g.Spec.Name, err)
	}
	return nil
}

// flowHash hashes the addresses and ports of an Ethernet frame's headers,
// the same for every packet of a connection, cheaply and without parsing
// options or extension headers (a connection's headers do not change).
func flowHash(h []byte) uint64 {
	if len(h) < 14 {
		return 0
	}
	var x uint64 = 14695981039346656037
	mix := func(b []byte) {
		for _, c := range b {
			x = (x ^ uint64(c)) * 1099511628211
		}
	}
	ip := h[14:]
	switch {
	case len(ip) >= 24 && ip[0]>>4 == 4:
		ihl := int(ip[0]&0xf) * 4
		mix(ip[12:20])
		if len(ip) >= ihl+4 {
			mix(ip[ihl : ihl+4])
		}
	case len(ip) >= 44 && ip[0]>>4 == 6:
		mix(ip[8:44])
	}
	return x
}
