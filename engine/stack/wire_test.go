package stack

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// wire is one direction of a simulated link between two Stacks, built the
// way the engine will carry a guest's traffic: the sender's TxFunc
// segments TSO packets with a real offload.GSO (or completes a partial
// checksum) into MTU-sized frames and queues them, like a tx ring; a
// worker goroutine takes them in batches, parses them with flows.Parse,
// runs them through a real offload.GRO, flushes at the end of every batch
// and delivers the aggregates to the receiving Stack.
type wire struct {
	t        testing.TB
	name     string
	batch    int  // frames per receive batch, at least
	viaFrame bool // deliver pass-through frames with DeliverFrame instead of DeliverAggregate

	gsoMu sync.Mutex // the GSO belongs to one goroutine at a time
	gso   *offload.GSO

	q    chan *burst
	pool sync.Pool // *burst
	stop chan struct{}
	done chan struct{}
	dst  atomic.Pointer[Stack]

	// tap, if set, sees every frame on the worker before GRO; it returns
	// true to take the frame off the wire.
	tap func(frame []byte, p *flows.Packet) bool

	// Worker state.
	gro  *offload.GRO
	held []*burst

	// Counters.
	txCalls   atomic.Uint64
	txDrops   atomic.Uint64 // queue full or closed
	txErrors  atomic.Uint64 // GSO or checksum completion refused a packet
	frames    atomic.Uint64
	arpFrames atomic.Uint64
	ndpFrames atomic.Uint64 // neighbor solicitations and advertisements
	maxFrame  atomic.Uint64
	dataAggs  atomic.Uint64 // aggregates carrying TCP payload
	dataSegs  atomic.Uint64 // frames in them
	closed    atomic.Bool

	statsMu sync.Mutex
	stats   offload.GROStats
}

// burst is what one TxFunc call puts on the wire: one frame, or the
// segments of one TSO packet.
type burst struct {
	bufs   [][]byte
	sizes  []int
	frames [][]byte
}

func (b *burst) ensure(n, size int) {
	for len(b.bufs) < n {
		b.bufs = append(b.bufs, nil)
		b.sizes = append(b.sizes, 0)
	}
	for i := range n {
		if cap(b.bufs[i]) < size {
			b.bufs[i] = make([]byte, size)
		}
		b.bufs[i] = b.bufs[i][:cap(b.bufs[i])]
	}
	b.frames = b.frames[:0]
}

type wireOptions struct {
	batch    int
	maxSegs  int // GRO MaxSegs when set (1 disables aggregation)
	csumOut  offload.CsumOut
	viaFrame bool
}

func newWire(t testing.TB, name string, o wireOptions) *wire {
	t.Helper()
	w := &wire{
		t:        t,
		name:     name,
		batch:    o.batch,
		viaFrame: o.viaFrame,
		q:        make(chan *burst, 4096),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if w.batch <= 0 {
		w.batch = 64
	}
	w.pool.New = func() any { return new(burst) }
	var err error
	w.gso, err = offload.NewGSO(offload.DefaultGSOOptions())
	if err != nil {
		t.Fatal(err)
	}
	gopts := offload.DefaultGROOptions()
	gopts.CsumOut = o.csumOut
	if o.maxSegs > 0 {
		gopts.MaxSegs = o.maxSegs
	}
	w.gro, err = offload.NewGRO(gopts)
	if err != nil {
		t.Fatal(err)
	}
	go w.run()
	return w
}

// tx is the sender's TxFunc.
func (w *wire) tx(p *TxPacket) bool {
	w.txCalls.Add(1)
	if w.closed.Load() {
		w.txDrops.Add(1)
		return false
	}
	b := w.pool.Get().(*burst)
	if p.GSOSize > 0 {
		r := offload.Request{Head: p.Head, L3Off: p.L3Off, Payload: p.Payload, GSOSize: p.GSOSize, FixedID: p.FixedID}
		n := offload.Segments(p.Len-len(p.Head), p.GSOSize)
		b.ensure(n, len(p.Head)+p.GSOSize)
		w.gsoMu.Lock()
		k, err := w.gso.Segment(&r, b.bufs, b.sizes)
		w.gsoMu.Unlock()
		if err != nil {
			w.t.Errorf("%s: gso of a %d-byte packet at %d: %v", w.name, p.Len, p.GSOSize, err)
			w.txErrors.Add(1)
			w.pool.Put(b)
			return false
		}
		for i := range k {
			b.frames = append(b.frames, b.bufs[i][:b.sizes[i]])
		}
	} else {
		b.ensure(1, p.Len)
		f := append(b.bufs[0][:0], p.Head...)
		for _, s := range p.Payload {
			f = append(f, s...)
		}
		if p.CsumPartial {
			var pk flows.Packet
			flows.Parse(f, &pk)
			if !offload.CompletePartial(f, &pk) {
				w.t.Errorf("%s: complete partial checksum of a %d-byte frame: not a tcp/udp packet", w.name, len(f))
				w.txErrors.Add(1)
				w.pool.Put(b)
				return false
			}
		}
		b.frames = append(b.frames, f)
	}
	select {
	case w.q <- b:
		return true
	default:
		w.txDrops.Add(1)
		w.pool.Put(b)
		return false
	}
}

func (w *wire) run() {
	defer close(w.done)
	var p flows.Packet
	var handle uint64
	for {
		var b *burst
		select {
		case b = <-w.q:
		case <-w.stop:
			return
		}
		n := 0
		for {
			for _, f := range b.frames {
				n++
				w.frames.Add(1)
				if uint64(len(f)) > w.maxFrame.Load() {
					w.maxFrame.Store(uint64(len(f)))
				}
				flows.Parse(f, &p)
				w.classify(f, &p)
				if w.tap != nil && w.tap(f, &p) {
					continue
				}
				handle++
				w.gro.Receive(f, handle, &p)
				w.deliverReady()
			}
			w.held = append(w.held, b)
			if n >= w.batch {
				break
			}
			select {
			case b = <-w.q:
				continue
			default:
			}
			break
		}
		w.gro.Flush()
		w.deliverReady()
		for _, h := range w.held {
			clear(h.frames)
			w.pool.Put(h)
		}
		clear(w.held)
		w.held = w.held[:0]
		w.statsMu.Lock()
		w.stats = w.gro.Stats
		w.statsMu.Unlock()
	}
}

func (w *wire) classify(f []byte, p *flows.Packet) {
	switch {
	case p.EtherType == flows.EtherTypeARP:
		w.arpFrames.Add(1)
	case p.Proto == flows.ProtoICMPv6 && p.Reason == flows.ReasonOK && (f[p.L4Off] == 135 || f[p.L4Off] == 136):
		w.ndpFrames.Add(1)
	}
}

// deliverReady delivers every aggregate GRO has ready.
func (w *wire) deliverReady() {
	for a := w.gro.Next(); a != nil; a = w.gro.Next() {
		w.deliver(a)
	}
}

func (w *wire) deliver(a *offload.Aggregate) {
	d := w.dst.Load()
	if d == nil {
		return
	}
	if a.Flags&offload.AggPassThrough == 0 && a.Len > 0 {
		w.dataAggs.Add(1)
		w.dataSegs.Add(uint64(a.Count()))
	}
	if w.viaFrame && a.Flags&offload.AggPassThrough != 0 {
		d.DeliverFrame(a.Head, false)
		return
	}
	d.DeliverAggregate(a)
}

// dataRatio is TCP data frames per aggregate carrying data.
func (w *wire) dataRatio() float64 {
	return float64(w.dataSegs.Load()) / float64(max(w.dataAggs.Load(), 1))
}

// groStats returns the GRO counters as of the last batch.
func (w *wire) groStats() offload.GROStats {
	w.statsMu.Lock()
	defer w.statsMu.Unlock()
	return w.stats
}

func (w *wire) close() {
	if w.closed.Swap(true) {
		return
	}
	close(w.stop)
	<-w.done
}

// pair is two Stacks, A and B, back to back: ab carries A's packets to B,
// ba B's to A.
type pair struct {
	a, b   *Stack
	ab, ba *wire
}

var (
	macA   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
	ipA4   = netip.MustParseAddr("198.18.0.1")
	ipB4   = netip.MustParseAddr("198.18.0.2")
	ipA6   = netip.MustParseAddr("2001:2::a")
	ipB6   = netip.MustParseAddr("2001:2::b")
	addrsA = []netip.Prefix{netip.PrefixFrom(ipA4, 24), netip.PrefixFrom(ipA6, 64)}
	addrsB = []netip.Prefix{netip.PrefixFrom(ipB4, 24), netip.PrefixFrom(ipB6, 64)}
)

func optsFor(name string, mac net.HardwareAddr, addrs []netip.Prefix) Options {
	o := DefaultOptions()
	o.Name = name
	o.MAC = mac
	o.Addrs = addrs
	return o
}

// newPair connects two Stacks; mod, if set, adjusts their options.
func newPair(t testing.TB, mod func(a, b *Options), ab, ba wireOptions) *pair {
	t.Helper()
	oa := optsFor("a", macA, addrsA)
	ob := optsFor("b", macB, addrsB)
	if mod != nil {
		mod(&oa, &ob)
	}
	p := &pair{ab: newWire(t, "a->b", ab), ba: newWire(t, "b->a", ba)}
	var err error
	if p.a, err = New(oa, p.ab.tx); err != nil {
		t.Fatal(err)
	}
	if p.b, err = New(ob, p.ba.tx); err != nil {
		p.a.Close()
		t.Fatal(err)
	}
	p.ab.dst.Store(p.b)
	p.ba.dst.Store(p.a)
	t.Cleanup(p.close)
	return p
}

func (p *pair) close() {
	p.a.Close()
	p.b.Close()
	p.ab.close()
	p.ba.close()
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return cond()
}
