package umem

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// SimKernel plays the kernel's side of an in-memory socket: it consumes the
// fill ring and produces the rx ring as the copy-mode receive path does, and
// consumes the tx ring into the completion ring. It lets the data path be
// tested and benchmarked without root, and allocation-counted.
//
// The socket's rings are the same types as a real socket's, pointed at
// memRing words in Go memory instead of the kernel's mapping. SimKernel
// writes the words the kernel would (the fill and tx consumer indices, the
// rx and completion producer indices, the flags) through its own pointers
// to that memory, so the socket runs the same code either way and learns
// that it is simulated only when it kicks its kernel.
type SimKernel struct {
	s                  *Socket
	fill, comp, rx, tx *memRing // the shared words, the kernel's view
	stats              Statistics
	wakeups            uint64
}

// memRing is the backing of an in-memory ring's shared words, laid out like
// the kernel's mapping but in Go memory.
type memRing struct {
	producer atomic.Uint32
	_        [60]byte // keep the two indices on separate cache lines
	consumer atomic.Uint32
	_        [60]byte
	flags    atomic.Uint32
}

func (m *memRing) words() sharedWords {
	return sharedWords{producer: &m.producer, consumer: &m.consumer, flags: &m.flags}
}

func newMemFill(m *memRing, size uint32) *FillRing {
	r := &FillRing{descs: make([]uint64, size)}
	r.init(m.words(), size)
	return r
}

func newMemComp(m *memRing, size uint32) *CompletionRing {
	r := &CompletionRing{descs: make([]uint64, size)}
	r.init(m.words(), size)
	return r
}

func newMemRx(m *memRing, size uint32) *RxRing {
	r := &RxRing{descs: make([]Desc, size)}
	r.init(m.words(), size)
	return r
}

func newMemTx(m *memRing, size uint32) *TxRing {
	r := &TxRing{descs: make([]Desc, size)}
	r.init(m.words(), size)
	return r
}

// NewSimSocket makes a socket whose rings live in Go memory, served by the
// returned SimKernel. Its accounting is the same as a real socket's.
func NewSimSocket(u *UMEM, opts SocketOptions) (*Socket, *SimKernel, error) {
	if err := opts.validate(); err != nil {
		return nil, nil, err
	}
	g, err := u.newGroup()
	if err != nil {
		return nil, nil, err
	}
	s := &Socket{u: u, fd: -1, ifindex: -1, group: g, wakeup: opts.NeedWakeup}
	s.ringHost = s
	k := &SimKernel{s: s, fill: new(memRing), comp: new(memRing)}
	s.kern = k
	s.Fill = newMemFill(k.fill, opts.FillSize)
	s.Completion = newMemComp(k.comp, opts.CompletionSize)
	if opts.RxSize > 0 {
		k.rx = new(memRing)
		s.Rx = newMemRx(k.rx, opts.RxSize)
	}
	if opts.TxSize > 0 {
		k.tx = new(memRing)
		s.Tx = newMemTx(k.tx, opts.TxSize)
	}
	u.groups[g] = s
	u.sockets = append(u.sockets, s)
	return s, k, nil
}

// Deliver receives up to len(pkts) packets: for each, it takes a frame from
// the fill ring, copies the packet in after the headroom, and posts it on the
// rx ring. It returns how many it delivered; the rest are counted as the
// kernel counts them (fill ring empty, rx ring full).
func (k *SimKernel) Deliver(pkts [][]byte) int {
	s, u := k.s, k.s.u
	fill, rx := s.Fill, s.Rx
	fcons := k.fill.consumer.Load()
	fprod := k.fill.producer.Load()
	rprod := k.rx.producer.Load()
	rcons := k.rx.consumer.Load()
	n := 0
	for _, p := range pkts {
		if rprod-rcons == rx.size {
			k.stats.RxRingFull++
			k.stats.RxDropped++
			continue
		}
		if fcons == fprod {
			k.stats.RxFillRingEmptyDescs++
			k.stats.RxDropped++
			continue
		}
		base := fill.descs[fcons&fill.mask]
		fcons++
		off := base + unix.XDP_PACKET_HEADROOM + uint64(u.opts.Headroom)
		copy(u.mem[off:off+uint64(len(p))], p)
		rx.descs[rprod&rx.mask] = Desc{Addr: off, Len: uint32(len(p))}
		rprod++
		n++
	}
	k.fill.consumer.Store(fcons)
	k.rx.producer.Store(rprod)
	return n
}

// DeliverSame posts the same packet n times; for benchmarks.
func (k *SimKernel) DeliverSame(pkt []byte, n int) int {
	s, u := k.s, k.s.u
	fill, rx := s.Fill, s.Rx
	fcons := k.fill.consumer.Load()
	fprod := k.fill.producer.Load()
	rprod := k.rx.producer.Load()
	rcons := k.rx.consumer.Load()
	done := 0
	for ; done < n && rprod-rcons < rx.size && fcons != fprod; done++ {
		base := fill.descs[fcons&fill.mask]
		fcons++
		off := base + unix.XDP_PACKET_HEADROOM + uint64(u.opts.Headroom)
		copy(u.mem[off:off+uint64(len(pkt))], pkt)
		rx.descs[rprod&rx.mask] = Desc{Addr: off, Len: uint32(len(pkt))}
		rprod++
	}
	k.fill.consumer.Store(fcons)
	k.rx.producer.Store(rprod)
	return done
}

// Send drains the tx ring: each packet is handed to fn (which may be nil),
// then its frame goes to the completion ring. It returns how many it sent.
func (k *SimKernel) Send(fn func([]byte)) int {
	s, u := k.s, k.s.u
	tx, comp := s.Tx, s.Completion
	tcons := k.tx.consumer.Load()
	tprod := k.tx.producer.Load()
	cprod := k.comp.producer.Load()
	ccons := k.comp.consumer.Load()
	n := 0
	for tcons != tprod && cprod-ccons < comp.size {
		d := tx.descs[tcons&tx.mask]
		tcons++
		if fn != nil {
			fn(u.Bytes(d))
		}
		comp.descs[cprod&comp.mask] = d.Addr
		cprod++
		n++
	}
	k.tx.consumer.Store(tcons)
	k.comp.producer.Store(cprod)
	return n
}

// SetNeedWakeup sets or clears the need_wakeup flag on the fill and tx rings,
// as the kernel does when it goes idle.
func (k *SimKernel) SetNeedWakeup(on bool) {
	var v uint32
	if on {
		v = xdpRingNeedWakeup
	}
	k.fill.flags.Store(v)
	if k.tx != nil {
		k.tx.flags.Store(v)
	}
}

// Wakeups counts the kicks the socket sent to this kernel.
func (k *SimKernel) Wakeups() uint64 { return k.wakeups }

// The socket's side of the simulation: kicks are counted, nothing waits.

func (k *SimKernel) wakeRx() { k.wakeups++ }

func (k *SimKernel) wakeTx() { k.wakeups++ }

func (k *SimKernel) poll(int) bool { return k.s.Rx.Occupancy() > 0 }

func (k *SimKernel) statistics() (Statistics, error) { return k.stats, nil }
