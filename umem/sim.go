package umem

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// SimKernel plays the kernel's side of an in-memory socket: it consumes the
// fill ring and produces the rx ring as the copy-mode receive path does, and
// consumes the tx ring into the completion ring. It lets the data path be
// tested and benchmarked without root, and allocation-counted.
type SimKernel struct {
	s       *Socket
	stats   Statistics
	wakeups uint64
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
	s.Fill = newMemFill(opts.FillSize)
	s.Completion = newMemComp(opts.CompletionSize)
	if opts.RxSize > 0 {
		s.Rx = newMemRx(opts.RxSize)
	}
	if opts.TxSize > 0 {
		s.Tx = newMemTx(opts.TxSize)
	}
	k := &SimKernel{s: s}
	s.sim = k
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
	fcons := atomic.LoadUint32(fill.consumer)
	fprod := atomic.LoadUint32(fill.producer)
	rprod := atomic.LoadUint32(rx.producer)
	rcons := atomic.LoadUint32(rx.consumer)
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
	atomic.StoreUint32(fill.consumer, fcons)
	atomic.StoreUint32(rx.producer, rprod)
	return n
}

// DeliverSame posts the same packet n times; for benchmarks.
func (k *SimKernel) DeliverSame(pkt []byte, n int) int {
	s, u := k.s, k.s.u
	fill, rx := s.Fill, s.Rx
	fcons := atomic.LoadUint32(fill.consumer)
	fprod := atomic.LoadUint32(fill.producer)
	rprod := atomic.LoadUint32(rx.producer)
	rcons := atomic.LoadUint32(rx.consumer)
	done := 0
	for ; done < n && rprod-rcons < rx.size && fcons != fprod; done++ {
		base := fill.descs[fcons&fill.mask]
		fcons++
		off := base + unix.XDP_PACKET_HEADROOM + uint64(u.opts.Headroom)
		copy(u.mem[off:off+uint64(len(pkt))], pkt)
		rx.descs[rprod&rx.mask] = Desc{Addr: off, Len: uint32(len(pkt))}
		rprod++
	}
	atomic.StoreUint32(fill.consumer, fcons)
	atomic.StoreUint32(rx.producer, rprod)
	return done
}

// Send drains the tx ring: each packet is handed to fn (which may be nil),
// then its frame goes to the completion ring. It returns how many it sent.
func (k *SimKernel) Send(fn func([]byte)) int {
	s, u := k.s, k.s.u
	tx, comp := s.Tx, s.Completion
	tcons := atomic.LoadUint32(tx.consumer)
	tprod := atomic.LoadUint32(tx.producer)
	cprod := atomic.LoadUint32(comp.producer)
	ccons := atomic.LoadUint32(comp.consumer)
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
	atomic.StoreUint32(tx.consumer, tcons)
	atomic.StoreUint32(comp.producer, cprod)
	return n
}

// SetNeedWakeup sets or clears the need_wakeup flag on the fill and tx rings,
// as the kernel does when it goes idle.
func (k *SimKernel) SetNeedWakeup(on bool) {
	var v uint32
	if on {
		v = xdpRingNeedWakeup
	}
	atomic.StoreUint32(k.s.Fill.flags, v)
	if k.s.Tx != nil {
		atomic.StoreUint32(k.s.Tx.flags, v)
	}
}

// Wakeups counts the kicks the socket sent to this kernel.
func (k *SimKernel) Wakeups() uint64 { return k.wakeups }
