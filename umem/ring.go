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

// The words a ring shares with the kernel (the producer index, the consumer
// index and the flags) each have exactly one writer. The two types below say
// which side that is, so the compiler keeps the application from storing to
// a word the kernel owns. Go's atomics are sequentially consistent, at least
// as strong as the acquire/release pair (smp_load_acquire,
// smp_store_release) the kernel uses on the other side.

// appWord is a shared word only the application writes; the kernel only
// reads it.
type appWord struct{ p *atomic.Uint32 }

// Load reads the word. The application is its only writer, so this sees
// the last Store.
func (w appWord) Load() uint32 { return w.p.Load() }

// Store publishes v with release semantics: every slot written before it is
// visible to the kernel once the kernel sees v.
func (w appWord) Store(v uint32) { w.p.Store(v) }

// kernelWord is a shared word only the kernel writes; the application only
// reads it.
type kernelWord struct{ p *atomic.Uint32 }

// Load reads the word with acquire semantics: the slots the kernel wrote (or
// finished reading) before publishing the value are settled once it is seen.
func (w kernelWord) Load() uint32 { return w.p.Load() }

// sharedWords points at the three shared words of one ring.
type sharedWords struct {
	producer, consumer, flags *atomic.Uint32
}

// ring holds the state both ring kinds share.
type ring struct {
	flags kernelWord // only the kernel updates this (XDP_RING_NEED_WAKEUP)

	// Private to the application.
	cachedProd uint32
	cachedCons uint32
	mask       uint32
	size       uint32

	mapping []byte // the mmap'd region, unmapped on close; nil for in-memory rings
}

// Size is the number of slots in the ring.
func (r *ring) Size() uint32 { return r.size }

// NeedsWakeup reports whether the kernel asked to be kicked (a syscall)
// before it will process this ring again.
func (r *ring) NeedsWakeup() bool {
	return r.flags.Load()&xdpRingNeedWakeup != 0
}

// producerRing is the application-produces side (fill and tx).
type producerRing struct {
	ring
	producer appWord    // only the application updates this, in Submit
	consumer kernelWord // only the kernel updates this, as it takes entries
}

func (r *producerRing) init(w sharedWords, size uint32) {
	r.producer, r.consumer, r.flags = appWord{w.producer}, kernelWord{w.consumer}, kernelWord{w.flags}
	r.size, r.mask = size, size-1
	r.cachedProd = r.producer.Load()
	r.cachedCons = r.consumer.Load() + size // the + size trick: see free
}

// free returns how many slots can be reserved, refreshing the cached consumer
// index only when the cache cannot satisfy want.
func (r *producerRing) free(want uint32) uint32 {
	// The + size trick (libxdp's xsk_prod_nb_free): cachedCons is kept one
	// ring size ahead of the consumer index the kernel published, so it is
	// the index the producer may reach before it would overwrite an entry
	// not yet consumed. Free slots are then one subtraction, with no
	// "size - (prod - cons)" per call, and uint32 wrap-around keeps it
	// right past 2^32.
	n := r.cachedCons - r.cachedProd
	if n >= want {
		return n
	}
	// Acquire: the consumer's index tells which slots it has finished reading.
	r.cachedCons = r.consumer.Load() + r.size
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
	r.producer.Store(r.producer.Load() + n)
}

// Occupancy is the number of entries published but not yet consumed, as
// seen by reading both shared indices now: two atomic loads, which is why
// the batch calls use the cached indices instead. Audits and statistics use
// it, and so does Socket.TxPending, once per pass.
func (r *producerRing) Occupancy() uint32 {
	return r.producer.Load() - r.consumer.Load()
}

// published returns the index range [first, end) of entries published but
// not yet consumed.
func (r *producerRing) published() (first, end uint32) {
	return r.consumer.Load(), r.producer.Load()
}

// consumerRing is the application-consumes side (rx and completion).
type consumerRing struct {
	ring
	producer kernelWord // only the kernel updates this, as it posts entries
	consumer appWord    // only the application updates this, in Release
}

func (r *consumerRing) init(w sharedWords, size uint32) {
	r.producer, r.consumer, r.flags = kernelWord{w.producer}, appWord{w.consumer}, kernelWord{w.flags}
	r.size, r.mask = size, size-1
	r.cachedProd = r.producer.Load()
	r.cachedCons = r.consumer.Load()
}

// Peek takes up to max entries. It returns how many and the index of the
// first; they stay owned by the ring until Release.
func (r *consumerRing) Peek(max uint32) (n, idx uint32) {
	n = r.cachedProd - r.cachedCons
	if n == 0 {
		// Acquire: pairs with the producer's release store.
		r.cachedProd = r.producer.Load()
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
	// Release: the entries were read before the kernel may reuse their slots.
	r.consumer.Store(r.consumer.Load() + n)
}

// Occupancy is the number of entries published but not yet released; see
// producerRing.Occupancy.
func (r *consumerRing) Occupancy() uint32 {
	return r.producer.Load() - r.consumer.Load()
}

// published returns the index range [first, end) of entries published but
// not yet released.
func (r *consumerRing) published() (first, end uint32) {
	return r.consumer.Load(), r.producer.Load()
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

// mappedWords finds the three shared words of a ring in its mmap'd region.
func mappedWords(mem []byte, off ringOffsets) sharedWords {
	return sharedWords{
		producer: (*atomic.Uint32)(unsafe.Pointer(&mem[off.Producer])),
		consumer: (*atomic.Uint32)(unsafe.Pointer(&mem[off.Consumer])),
		flags:    (*atomic.Uint32)(unsafe.Pointer(&mem[off.Flags])),
	}
}
