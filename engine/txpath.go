package engine

import (
	"fmt"
	"sync/atomic"

	"github.com/xnic/xnic/engine/qos"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/conn"
	"github.com/xnic/xnic/flows/offload"
	"github.com/xnic/xnic/umem"
)

// TxCounters are a worker's send-path counters, published once per pass.
type TxCounters struct {
	Requests    atomic.Uint64 // work requests taken from the guests' queues
	Segments    atomic.Uint64 // frames written to the tx rings
	GSORequests atomic.Uint64 // requests segmented
	Bytes       atomic.Uint64 // bytes written to the tx rings
	Dropped     atomic.Uint64 // requests that could not be sent: malformed or too big
	Spoofed     atomic.Uint64 // requests refused by the guests' spoof checks (Guest.Spoofed has them by guest and reason)
	LinkDown    atomic.Uint64 // requests dropped because their port had no link (also in Dropped)
	Queued      atomic.Uint64 // frames the class schedulers took (Stats.Classes has them by class)
	QueueDrops  atomic.Uint64 // frames the class schedulers dropped: tail, RED or policer
	Completed   atomic.Uint64 // frames back from the completion rings
}

// TxStats are the send path's counters as plain numbers: a worker's, or
// the sum over workers (Stats.Tx).
type TxStats struct {
	Requests    uint64 `json:"requests"`
	Segments    uint64 `json:"segments"`
	GSORequests uint64 `json:"gso_requests"`
	Bytes       uint64 `json:"bytes"`
	Dropped     uint64 `json:"dropped"`
	Spoofed     uint64 `json:"spoofed"`
	// MSSClamped and NoFrames are counted by Send, per guest: requests
	// whose segment size was cut to the port's MTU, and requests given up
	// after TxWait for want of free frames (also in Dropped).
	MSSClamped uint64 `json:"mss_clamped"`
	NoFrames   uint64 `json:"no_frames"`
	LinkDown   uint64 `json:"link_down"`
	Queued     uint64 `json:"queued"`
	QueueDrops uint64 `json:"queue_drops"`
	// SendQueueFull are sends refused (ErrTxFull) because a guest's send
	// queue stayed full for TxWait: the guest's stack drops them and
	// recovers them by retransmission.
	SendQueueFull uint64 `json:"send_queue_full"`
	Completed     uint64 `json:"completed"`
}

// add adds c's counters to s.
func (s *TxStats) add(c *TxCounters) {
	s.Requests += c.Requests.Load()
	s.Segments += c.Segments.Load()
	s.GSORequests += c.GSORequests.Load()
	s.Bytes += c.Bytes.Load()
	s.Dropped += c.Dropped.Load()
	s.Spoofed += c.Spoofed.Load()
	s.LinkDown += c.LinkDown.Load()
	s.Queued += c.Queued.Load()
	s.QueueDrops += c.QueueDrops.Load()
	s.Completed += c.Completed.Load()
}

// txPath is a worker's send path: guests' work requests → lookahead →
// context → GSO + checksum → tx ring. It belongs to the worker.
type txPath struct {
	u    *umem.UMEM
	proc *conn.Processor // nil without a pipeline: no accounting

	pkts   []flows.Packet // the requests of one round, parsed from their first frames
	frames [][]byte
	slots  []*txSlot
	out    [][]byte // a request's frames, for ECN marking
	sizes  []int
	addrs  []uint64
	descs  []umem.Desc

	q       *txQueue       // the queue being served
	ep      *Endpoint      // the endpoint whose queue is being served
	sched   *qos.Scheduler // ep's guest's class scheduler on this worker; nil: straight to the tx ring
	classes *txClassifier  // nil without classes
	now     int64
	items   []qos.Item
	reqs    uint64
	segs    uint64
	gsoReqs uint64
	bytes   uint64
	dropped uint64
	spoofed uint64
	down    uint64
	queued  uint64
	qdrops  uint64
	done    uint64

	counters *TxCounters
}

// maxSegs is the most frames one request can need: 64 KB at a small MSS is
// bounded by the GSO; at a 536-byte MSS it is 123.
const maxSegs = 256

func newTxPath(u *umem.UMEM, batch int, cache *conn.Cache, c *TxCounters) (*txPath, error) {
	t := &txPath{
		u: u, counters: c,
		pkts: make([]flows.Packet, batch), frames: make([][]byte, batch), slots: make([]*txSlot, batch),
		out: make([][]byte, maxSegs), sizes: make([]int, maxSegs), addrs: make([]uint64, maxSegs),
		descs: make([]umem.Desc, maxSegs), items: make([]qos.Item, maxSegs),
	}
	if cache != nil {
		po := conn.DefaultProcessorOptions()
		po.Dir = conn.DirTX
		po.Window = batch
		var err error
		if t.proc, err = conn.NewProcessor(cache, po); err != nil {
			return nil, fmt.Errorf("engine: send path: %w", err)
		}
	}
	return t, nil
}

// serve takes up to a batch of work requests off ep's queue, accounts them
// to their connections with lookahead, and transmits them. It returns how
// many requests it finished. Each request is already in UMEM frames (the
// producer's one copy); the worker reads its first frame, which carries
// the headers every segment has.
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
		f := s.first % txFrames
		t.frames[i] = t.u.Frame(q.fAddr[f])[t.u.DataOffset():][:q.fLen[f]]
		p := &t.pkts[i]
		flows.Parse(t.frames[i], p)
		if s.seg && p.Reason == flows.ReasonOK {
			t.describeRequest(q, s, p)
		}
	}
	t.q, t.ep, t.sched, t.now = q, ep, q.sched, now
	if t.proc != nil {
		// Account the requests to their connections, connection by
		// connection, and send each connection's in order.
		t.proc.Begin(conn.Batch{Pkts: t.pkts[:n], Frames: t.frames[:n], Now: now})
		for {
			ctx, idx, ok := t.proc.Next()
			if !ok {
				break
			}
			for _, i := range idx {
				t.sendOne(i, t.classOf(ctx, &t.pkts[i]))
			}
		}
	} else {
		for i := range n {
			t.sendOne(int32(i), t.classOf(nil, &t.pkts[i]))
		}
	}
	last := t.slots[n-1]
	q.fHead.Store(last.first + uint64(last.n))
	q.head.Store(h + uint64(n))
	q.freed()
	t.q, t.ep, t.sched = nil, nil, nil
	return n
}

// describeRequest makes p, parsed from the first segment of a segmented
// request, describe the whole request for the connection's accounting:
// its IP length and payload, and the TCP flags the last segment carries
// (FIN, PSH).
func (t *txPath) describeRequest(q *txQueue, s *txSlot, p *flows.Packet) {
	po := int(p.PayloadOff)
	total := po
	for j := range s.n {
		total += int(q.fLen[(s.first+uint64(j))%txFrames]) - po
	}
	p.IPLen = uint16(min(total-int(p.L3Off), 0xffff))
	p.PayloadLen = uint16(min(total-po, 0xffff))
	if p.Proto == flows.ProtoTCP {
		f := (s.first + uint64(s.n) - 1) % txFrames
		if lf := t.u.Frame(q.fAddr[f])[t.u.DataOffset():]; int(p.L4Off)+13 < len(lf) {
			p.TCPFlags |= lf[p.L4Off+13]
		}
	}
}

// classOf is the class a send goes in: its connection's (the class its
// frames arrive in), else the class its DSCP or its ports select, which
// the connection keeps from then on.
func (t *txPath) classOf(ctx *conn.Context, p *flows.Packet) uint8 {
	if t.sched == nil || t.classes == nil {
		return 0
	}
	if ctx != nil && ctx.Class != 0 {
		return ctx.Class
	}
	c := t.classes.dscp[p.DSCP()]
	if c == 0 && (p.Proto == flows.ProtoTCP || p.Proto == flows.ProtoUDP) {
		for _, r := range t.classes.ports {
			if d, s := p.Key.DstPort, p.Key.SrcPort; d >= r.lo && d <= r.hi || s >= r.lo && s <= r.hi {
				c = r.class
				break
			}
		}
	}
	if ctx != nil {
		ctx.Class = c
	}
	return c
}

func (t *txPath) sendOne(i int32, class uint8) {
	t.reqs++
	s, p, frame := t.slots[i], &t.pkts[i], t.frames[i]
	q := t.q
	for j := range s.n {
		f := (s.first + uint64(j)) % txFrames
		t.addrs[j], t.sizes[j] = q.fAddr[f], int(q.fLen[f])
	}
	if p.Reason.Malformed() {
		t.drop(s.n)
		return
	}
	// A port without link takes nothing from its tx ring: drop, as a NIC
	// with its link down does, rather than fill the ring with frames that
	// would leave, stale, whenever the link comes back.
	if !t.ep.linkUp() {
		t.down++
		t.drop(s.n)
		return
	}
	// Spoof checking: once per request, on the headers every segment
	// carries, in the engine's frame (the guest holds no reference to it).
	if g := t.ep.Owner; g != nil && g.guard != nil {
		if r := g.guard.check(frame, p, &t.ep.hw); r != SpoofNone {
			t.spoofed++
			g.spoofed[r].Add(1)
			t.u.ReleaseN(t.addrs[:s.n])
			return
		}
	}
	// The largest frame the port takes: its MTU plus the link header. The
	// first frame is the largest of a segmented request.
	if mtu := t.ep.mtu; mtu > 0 && len(frame) > int(p.L3Off)+mtu {
		t.drop(s.n)
		return
	}
	if s.seg {
		t.gsoReqs++
	} else if s.partial {
		offload.CompletePartial(frame, p)
	}
	if t.sched != nil {
		off := t.u.DataOffset()
		for j := range s.n {
			t.out[j] = t.u.Frame(t.addrs[j])[off:]
		}
	}
	t.emit(s.n, class, p)
}

// drop gives a refused request's n frames (in t.addrs) back, counted.
func (t *txPath) drop(n int) {
	t.u.ReleaseN(t.addrs[:n])
	t.dropped++
}

// emit sends the n frames in t.addrs/t.sizes: to the tx ring, or through
// the guest's class scheduler, whose verdict may mark them CE (ECN) or
// drop them (their frames go back to the free list, counted).
func (t *txPath) emit(n int, class uint8, p *flows.Packet) {
	if t.sched == nil {
		t.transmit(n)
		return
	}
	ect := p.TOS&3 != 0
	flow := uint32(p.Key.Hash())
	for j := range n {
		it := qos.Item{Addr: t.addrs[j], Len: uint32(t.sizes[j]), Flow: flow}
		switch v := t.sched.Enqueue(t.now, class, it, ect); {
		case v.Dropped():
			t.u.Release(t.addrs[j])
			t.qdrops++
		case v == qos.Marked:
			qos.MarkCE(t.out[j][:t.sizes[j]], int(p.L3Off))
			fallthrough
		default:
			t.queued++
		}
	}
}

// drain moves what q's scheduler lets go now to ep's tx ring, as far as
// the ring has room; the rest waits for the next pass (or for its tokens:
// Worker.sleep wakes by NextEligible). It returns the frames posted.
func (t *txPath) drain(ep *Endpoint, sched *qos.Scheduler, now int64) int {
	s := ep.Sock
	off := t.u.DataOffset()
	posted := 0
	for {
		room := min(s.TxFree(), len(t.items))
		if room == 0 {
			break
		}
		n := sched.DequeueBatch(now, t.items[:room], nil)
		if n == 0 {
			break
		}
		for j, it := range t.items[:n] {
			t.descs[j] = umem.Desc{Addr: it.Addr + off, Len: it.Len}
			t.bytes += uint64(it.Len)
		}
		s.Post(t.descs[:n]) // room was checked: all of them go
		t.segs += uint64(n)
		posted += n
		if s.TxQueued() >= kickBudget {
			s.KickTx()
		}
	}
	return posted
}

// transmit posts the n frames in t.addrs/t.sizes to the endpoint's tx ring,
// waiting for the kernel to make room when the ring is full. It kicks only
// once a kick's worth of frames waits: the worker kicks at the end of the
// round (serveTx), so a round of small requests costs one system call, not
// one per request.
func (t *txPath) transmit(n int) {
	off := t.u.DataOffset()
	for j := range n {
		t.descs[j] = umem.Desc{Addr: t.addrs[j] + off, Len: uint32(t.sizes[j])}
		t.bytes += uint64(t.sizes[j])
	}
	s := t.ep.Sock
	sent := 0
	for spins := 0; sent < n; spins++ {
		sent += s.Post(t.descs[sent:n])
		if sent < n {
			s.KickTx()
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
	if s.TxQueued() >= kickBudget {
		s.KickTx()
	}
	t.segs += uint64(n)
}

// kickBudget is how many frames the kernel sends per kick in copy mode
// (net/xdp/xsk.c, MAX_PER_SOCKET_BUDGET): with that many waiting, a kick
// now keeps a bulk sender's ring moving; with fewer, the round's last kick
// takes them.
const kickBudget = 32

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
	c.Spoofed.Store(t.spoofed)
	c.LinkDown.Store(t.down)
	c.Queued.Store(t.queued)
	c.QueueDrops.Store(t.qdrops)
	c.Completed.Store(t.done)
}
