package umem

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Desc is an rx or tx descriptor, laid out as the kernel's struct xdp_desc.
type Desc struct {
	Addr    uint64 // offset of the packet data in the UMEM
	Len     uint32 // packet length in bytes
	Options uint32 // XDP_PKT_CONTD and friends
}

// ring holds the state both ring kinds share. The producer and consumer
// words live in memory shared with the kernel (or, for in-memory rings, with
// a simulated kernel); each is written by one side only.
type ring struct {
	// Shared with the other side; accessed only atomically.
	producer *uint32 // written by the producer side only
	consumer *uint32 // written by the consumer side only
	flags    *uint32 // written by the kernel only (XDP_RING_NEED_WAKEUP)

	// Private to this side.
	cachedProd uint32
	cachedCons uint32
	mask       uint32
	size       uint32

	mapping []byte // the mmap'd region, unmapped on close; nil for in-memory rings
}

func (r *ring) init(producer, consumer, flags *uint32, size uint32) {
	r.producer, r.consumer, r.flags = producer, consumer, flags
	r.size = size
	r.mask = size - 1
}

// Size is the number of slots in the ring.
func (r *ring) Size() uint32 { return r.size }

// NeedsWakeup reports whether the kernel asked to be kicked (a syscall)
// before it will process this ring again.
func (r *ring) NeedsWakeup() bool {
	return atomic.LoadUint32(r.flags)&xdpRingNeedWakeup != 0
}

// Occupancy is the number of entries published but not yet released, as seen
// by reading both shared indices now: two acquire loads, which is why the
// batch calls use the cached indices instead. Audits and statistics use it,
// and so does Socket.TxPending, once per pass.
func (r *ring) Occupancy() uint32 {
	return atomic.LoadUint32(r.producer) - atomic.LoadUint32(r.consumer)
}

// producerRing is the application-produces side (fill and tx).
type producerRing struct{ ring }

// free returns how many slots can be reserved, refreshing the cached consumer
// index only when the cache cannot satisfy want.
func (r *producerRing) free(want uint32) uint32 {
	n := r.cachedCons - r.cachedProd
	if n >= want {
		return n
	}
	// Acquire: the consumer's index tells which slots it has finished reading.
	r.cachedCons = atomic.LoadUint32(r.consumer) + r.size
	return r.cachedCons - r.cachedProd
}

// Reserve claims n consecutive slots, all or nothing. It returns the index of
// the first and true, or false when fewer than n are free.
func (r *producerRing) Reserve(n uint32) (idx uint32, ok bool) {
	if r.free(n) < n {
		return 0, false
	}
	idx = r.cachedProd
	r.cachedProd += n
	return idx, true
}

// Free reports how many slots Reserve could claim now.
func (r *producerRing) Free() uint32 { return r.free(r.size) }

// Submit publishes the n oldest reserved slots to the consumer.
func (r *producerRing) Submit(n uint32) {
	// Release: descriptors written before this store are visible to the
	// consumer once it sees the new producer index.
	atomic.StoreUint32(r.producer, atomic.LoadUint32(r.producer)+n)
}

// consumerRing is the application-consumes side (rx and completion).
type consumerRing struct{ ring }

// Peek takes up to max entries. It returns how many and the index of the
// first; they stay owned by the ring until Release.
func (r *consumerRing) Peek(max uint32) (n, idx uint32) {
	n = r.cachedProd - r.cachedCons
	if n == 0 {
		// Acquire: pairs with the producer's release store.
		r.cachedProd = atomic.LoadUint32(r.producer)
		n = r.cachedProd - r.cachedCons
	}
	if n > max {
		n = max
	}
	idx = r.cachedCons
	r.cachedCons += n
	return n, idx
}

// Cancel returns the last n peeked entries to the ring, unread.
func (r *consumerRing) Cancel(n uint32) { r.cachedCons -= n }

// Release hands n peeked entries back to the producer.
func (r *consumerRing) Release(n uint32) {
	atomic.StoreUint32(r.consumer, atomic.LoadUint32(r.consumer)+n)
}

// FillRing lends frames to the kernel for receiving. The application produces.
type FillRing struct {
	producerRing
	descs []uint64
}

// Set writes the frame address into slot idx.
func (r *FillRing) Set(idx uint32, addr uint64) { r.descs[idx&r.mask] = addr }

// CompletionRing returns frames the kernel has sent. The application consumes.
type CompletionRing struct {
	consumerRing
	descs []uint64
}

// Get reads the frame address in slot idx.
func (r *CompletionRing) Get(idx uint32) uint64 { return r.descs[idx&r.mask] }

// RxRing carries received packets to the application, which consumes.
type RxRing struct {
	consumerRing
	descs []Desc
}

// Get reads the descriptor in slot idx.
func (r *RxRing) Get(idx uint32) Desc { return r.descs[idx&r.mask] }

// TxRing carries packets to send to the kernel. The application produces.
type TxRing struct {
	producerRing
	descs []Desc
}

// Set writes the descriptor into slot idx.
func (r *TxRing) Set(idx uint32, d Desc) { r.descs[idx&r.mask] = d }

// Ring-size validation shared by sockets and in-memory rings.
func checkRingSize(name string, n uint32) error {
	if n == 0 || n&(n-1) != 0 {
		return fmt.Errorf("%s ring size %d: %w", name, n, ErrRingSize)
	}
	return nil
}

// memRing is the backing of an in-memory ring: the shared words and the
// descriptors, laid out like the kernel's mapping but in Go memory.
type memRing struct {
	producer uint32
	_        [60]byte // keep the two indices on separate cache lines
	consumer uint32
	_        [60]byte
	flags    uint32
}

func newMemFill(size uint32) *FillRing {
	m := new(memRing)
	r := &FillRing{descs: make([]uint64, size)}
	r.init(&m.producer, &m.consumer, &m.flags, size)
	r.cachedCons = size
	return r
}

func newMemComp(size uint32) *CompletionRing {
	m := new(memRing)
	r := &CompletionRing{descs: make([]uint64, size)}
	r.init(&m.producer, &m.consumer, &m.flags, size)
	return r
}

func newMemRx(size uint32) *RxRing {
	m := new(memRing)
	r := &RxRing{descs: make([]Desc, size)}
	r.init(&m.producer, &m.consumer, &m.flags, size)
	return r
}

func newMemTx(size uint32) *TxRing {
	m := new(memRing)
	r := &TxRing{descs: make([]Desc, size)}
	r.init(&m.producer, &m.consumer, &m.flags, size)
	r.cachedCons = size
	return r
}

// mapRing points a ring at its mmap'd region.
func mapRing(r *ring, mem []byte, off ringOffsets, size uint32) {
	r.init(
		(*uint32)(unsafe.Pointer(&mem[off.Producer])),
		(*uint32)(unsafe.Pointer(&mem[off.Consumer])),
		(*uint32)(unsafe.Pointer(&mem[off.Flags])),
		size)
	r.mapping = mem
	// Start from whatever the kernel has (zero for a new socket).
	r.cachedProd = atomic.LoadUint32(r.producer)
	r.cachedCons = atomic.LoadUint32(r.consumer)
}
