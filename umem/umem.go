package umem

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	xdpRingNeedWakeup = unix.XDP_RING_NEED_WAKEUP
	// minPacketRoom is what a frame must keep free after the headroom: the
	// kernel's XDP_PACKET_HEADROOM plus a 1514-byte Ethernet frame.
	minPacketRoom = unix.XDP_PACKET_HEADROOM + 1514
	maxFrames     = 1 << 24
)

// Options configures a UMEM.
type Options struct {
	// NumFrames is the number of frames in the UMEM.
	NumFrames uint32
	// FrameSize is the size of one frame: 2048 or 4096.
	FrameSize uint32
	// Headroom is reserved in front of each packet for the application,
	// beyond the kernel's own XDP_PACKET_HEADROOM in copy mode.
	Headroom uint32
}

// DefaultOptions is 4096 frames of 2048 bytes with no extra headroom.
func DefaultOptions() Options {
	return Options{NumFrames: 4096, FrameSize: 2048}
}

// Validate checks the options and names the field at fault.
func (o Options) Validate() error {
	if o.FrameSize != 2048 && o.FrameSize != 4096 {
		return fmt.Errorf("umem: frame size %d: %w", o.FrameSize, ErrFrameSize)
	}
	if o.NumFrames == 0 || o.NumFrames > maxFrames {
		return fmt.Errorf("umem: num frames %d: %w", o.NumFrames, ErrNumFrames)
	}
	if o.Headroom+minPacketRoom > o.FrameSize {
		return fmt.Errorf("umem: headroom %d with frame size %d: %w", o.Headroom, o.FrameSize, ErrHeadroom)
	}
	return nil
}

// Place is where a frame is. Every frame is in exactly one place.
type Place uint8

const (
	// PlaceFree: on the UMEM's free list.
	PlaceFree Place = iota
	// PlaceRx: lent for receiving: in a fill ring, in the kernel or in an rx ring.
	PlaceRx
	// PlaceEngine: held by the application (peeked from rx, or allocated).
	PlaceEngine
	// PlaceTx: lent for sending: in a tx ring, in the kernel or in a completion ring.
	PlaceTx
)

func (p Place) String() string {
	switch p {
	case PlaceFree:
		return "free"
	case PlaceRx:
		return "rx"
	case PlaceEngine:
		return "engine"
	case PlaceTx:
		return "tx"
	}
	return fmt.Sprintf("place(%d)", uint8(p))
}

// UMEM is a region of frames shared with the kernel by one or more sockets.
// It is not safe for concurrent use: one worker owns it, as DESIGN.md asks.
type UMEM struct {
	// Immutable after New.
	opts  Options
	mem   []byte
	shift uint32 // log2(FrameSize)

	// The frame allocator: a stack of free frame base addresses.
	free []uint64
	top  int

	// Frame accounting, indexed by frame number: where each frame is, and
	// for frames lent to the kernel, the ring group (fill/completion pair)
	// it was lent through, so closing a socket takes back exactly its own.
	place []Place
	group []uint8

	// Counters of misuse, reported by the audit instead of panicking.
	doubleFrees uint64
	badAddrs    uint64

	// Sockets. pendingFD is a socket the UMEM is registered on that no
	// Socket has taken yet; the next NewSocket binds it. Later sockets share
	// the UMEM (XDP_SHARED_UMEM) through any bound socket.
	pendingFD int
	sockets   []*Socket
	groups    [256]*Socket // ring group id -> the socket that owns the fill/completion rings
	closed    bool
}

// New maps and registers a UMEM. Registration needs an AF_XDP socket; that
// socket becomes the first one bound with NewSocket.
func New(opts Options) (*UMEM, error) {
	u, err := newUnregistered(opts)
	if err != nil {
		return nil, err
	}
	if err := u.register(); err != nil {
		u.unmap()
		return nil, err
	}
	return u, nil
}

// NewInMemory returns a UMEM that is not registered with the kernel, for
// sockets made with NewSimSocket: tests and benchmarks of the data path
// without root.
func NewInMemory(opts Options) (*UMEM, error) {
	return newUnregistered(opts)
}

func newUnregistered(opts Options) (*UMEM, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	size := int(opts.NumFrames) * int(opts.FrameSize)
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("umem: mmap %d bytes: %w", size, err)
	}
	u := &UMEM{
		opts:      opts,
		mem:       mem,
		free:      make([]uint64, opts.NumFrames),
		place:     make([]Place, opts.NumFrames),
		group:     make([]uint8, opts.NumFrames),
		pendingFD: -1,
	}
	for s := opts.FrameSize; s > 1; s >>= 1 {
		u.shift++
	}
	// Hand out low addresses first: the stack top is frame 0.
	for i := range u.free {
		u.free[i] = uint64(int(opts.NumFrames)-1-i) << u.shift
	}
	u.top = len(u.free)
	return u, nil
}

func (u *UMEM) register() error {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("umem: create AF_XDP socket: %w", err)
	}
	reg := unix.XDPUmemReg{
		Addr:     uint64(uintptr(unsafe.Pointer(&u.mem[0]))),
		Len:      uint64(len(u.mem)),
		Size:     u.opts.FrameSize,
		Headroom: u.opts.Headroom,
	}
	if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		unix.Close(fd)
		return fmt.Errorf("umem: register %d frames of %d bytes: %w", u.opts.NumFrames, u.opts.FrameSize, err)
	}
	u.pendingFD = fd
	return nil
}

func (u *UMEM) unmap() {
	if u.mem != nil {
		_ = unix.Munmap(u.mem)
		u.mem = nil
	}
}

// Options returns the options the UMEM was made with.
func (u *UMEM) Options() Options { return u.opts }

// FrameSize is the size of each frame in bytes.
func (u *UMEM) FrameSize() uint32 { return u.opts.FrameSize }

// NumFrames is the number of frames.
func (u *UMEM) NumFrames() uint32 { return u.opts.NumFrames }

// Frame returns the whole frame that contains addr.
func (u *UMEM) Frame(addr uint64) []byte {
	base := addr &^ uint64(u.opts.FrameSize-1)
	return u.mem[base : base+uint64(u.opts.FrameSize) : base+uint64(u.opts.FrameSize)]
}

// Bytes returns the packet a descriptor points at.
func (u *UMEM) Bytes(d Desc) []byte {
	end := d.Addr + uint64(d.Len)
	return u.mem[d.Addr:end:end]
}

// DataOffset is where the application should place a packet it builds in a
// frame for transmit: after its headroom.
func (u *UMEM) DataOffset() uint64 { return uint64(u.opts.Headroom) }

// index maps an address to its frame number, or -1 if outside the UMEM.
func (u *UMEM) index(addr uint64) int {
	i := addr >> u.shift
	if i >= uint64(u.opts.NumFrames) {
		return -1
	}
	return int(i)
}

// Free reports how many frames are on the free list.
func (u *UMEM) Free() int { return u.top }

// Alloc takes a frame off the free list and gives it to the caller
// (PlaceEngine). It returns false when the free list is empty.
func (u *UMEM) Alloc() (uint64, bool) {
	if u.top == 0 {
		return 0, false
	}
	u.top--
	a := u.free[u.top]
	u.place[a>>u.shift] = PlaceEngine
	return a, true
}

// AllocN fills dst with up to len(dst) frames and returns how many.
func (u *UMEM) AllocN(dst []uint64) int {
	n := len(dst)
	if n > u.top {
		n = u.top
	}
	for i := 0; i < n; i++ {
		u.top--
		a := u.free[u.top]
		u.place[a>>u.shift] = PlaceEngine
		dst[i] = a
	}
	return n
}

// Release returns a frame the caller holds to the free list. The address
// may point anywhere inside the frame. Releasing a frame the caller does
// not hold is counted, not obeyed, and reported by Audit.
func (u *UMEM) Release(addr uint64) {
	i := u.index(addr)
	if i < 0 {
		u.badAddrs++
		return
	}
	if u.place[i] != PlaceEngine {
		u.doubleFrees++
		return
	}
	u.place[i] = PlaceFree
	u.free[u.top] = uint64(i) << u.shift
	u.top++
}

// ReleaseN releases a batch of frames.
func (u *UMEM) ReleaseN(addrs []uint64) {
	for _, a := range addrs {
		u.Release(a)
	}
}

// PlaceOf tells where the frame holding addr is.
func (u *UMEM) PlaceOf(addr uint64) Place {
	i := u.index(addr)
	if i < 0 {
		return 0xff
	}
	return u.place[i]
}

// Close closes every socket on the UMEM, which takes back the frames they had
// lent to the kernel, then unmaps it. Frames the application still holds are
// reported by Audit as leaked; call Audit before Close to see them.
func (u *UMEM) Close() error {
	if u.closed {
		return nil
	}
	var first error
	for len(u.sockets) > 0 {
		if err := u.sockets[len(u.sockets)-1].Close(); err != nil && first == nil {
			first = err
		}
	}
	if u.pendingFD >= 0 {
		if err := unix.Close(u.pendingFD); err != nil && first == nil {
			first = fmt.Errorf("umem: close registration socket: %w", err)
		}
		u.pendingFD = -1
	}
	u.unmap()
	u.closed = true
	return first
}
