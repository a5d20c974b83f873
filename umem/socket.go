package umem

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BindMode chooses between zero-copy and copy mode.
type BindMode uint8

const (
	// BindAuto lets the kernel use zero-copy where the driver supports it and
	// copy mode otherwise (no mode flag at bind).
	BindAuto BindMode = iota
	// BindZeroCopy insists on zero-copy (XDP_ZEROCOPY); bind fails without it.
	BindZeroCopy
	// BindCopy forces copy mode (XDP_COPY).
	BindCopy
)

func (m BindMode) String() string {
	switch m {
	case BindAuto:
		return "auto"
	case BindZeroCopy:
		return "zerocopy"
	case BindCopy:
		return "copy"
	}
	return fmt.Sprintf("bindmode(%d)", uint8(m))
}

// ParseBindMode reads "auto", "zerocopy" or "copy".
func ParseBindMode(s string) (BindMode, error) {
	switch s {
	case "auto", "":
		return BindAuto, nil
	case "zerocopy", "zc":
		return BindZeroCopy, nil
	case "copy":
		return BindCopy, nil
	}
	return 0, fmt.Errorf("bind mode %q: want auto, zerocopy or copy", s)
}

// SocketOptions configures an XSK socket. Ring sizes are powers of two; a
// zero Rx or Tx size leaves that ring out.
type SocketOptions struct {
	RxSize, TxSize           uint32
	FillSize, CompletionSize uint32
	Mode                     BindMode
	NeedWakeup               bool
}

// DefaultSocketOptions: 2048-slot rx and tx rings, 4096-slot fill and
// 2048-slot completion rings, auto mode, need_wakeup on.
func DefaultSocketOptions() SocketOptions {
	return SocketOptions{RxSize: 2048, TxSize: 2048, FillSize: 4096, CompletionSize: 2048, NeedWakeup: true}
}

func (o SocketOptions) validate() error {
	if o.RxSize == 0 && o.TxSize == 0 {
		return fmt.Errorf("socket: rx and tx ring sizes are both zero: %w", ErrRingSize)
	}
	for _, r := range []struct {
		name string
		n    uint32
		opt  bool
	}{{"rx", o.RxSize, true}, {"tx", o.TxSize, true}, {"fill", o.FillSize, false}, {"completion", o.CompletionSize, false}} {
		if r.opt && r.n == 0 {
			continue
		}
		if err := checkRingSize(r.name, r.n); err != nil {
			return fmt.Errorf("socket: %w", err)
		}
	}
	return nil
}

// SocketCounters are the socket's own event counts, kept by the application
// side. The kernel's are in Statistics.
type SocketCounters struct {
	RxPackets    uint64 // descriptors taken from the rx ring
	RxBytes      uint64
	TxPackets    uint64 // descriptors posted to the tx ring
	TxBytes      uint64
	TxCompleted  uint64 // frames back from the completion ring
	FillPosted   uint64 // frames posted to the fill ring
	FillRingFull uint64 // a refill found no room for the whole batch
	TxRingFull   uint64 // a transmit found no room for the whole batch
	RxWakeups    uint64 // syscalls made because the fill ring needed a wakeup
	TxWakeups    uint64 // syscalls made because the tx ring needed a wakeup
	RxEmptyPolls uint64 // rx peeks that found nothing
}

// Statistics are the kernel's XDP_STATISTICS for the socket.
type Statistics struct {
	RxDropped            uint64 `json:"rx_dropped"`
	RxInvalidDescs       uint64 `json:"rx_invalid_descs"`
	TxInvalidDescs       uint64 `json:"tx_invalid_descs"`
	RxRingFull           uint64 `json:"rx_ring_full"`
	RxFillRingEmptyDescs uint64 `json:"rx_fill_ring_empty_descs"`
	TxRingEmptyDescs     uint64 `json:"tx_ring_empty_descs"`
}

// Socket is an AF_XDP socket bound to one (interface, queue) on a UMEM.
// Sockets on the same (interface, queue) share one fill and one completion
// ring; each other (interface, queue) gets its own pair.
type Socket struct {
	// Immutable after bind.
	u        *UMEM
	fd       int // -1 for in-memory sockets
	ifindex  int
	queue    int
	group    uint8   // ring group id: index into u.groups
	ringHost *Socket // the socket whose fill/completion rings this one uses (itself if it made them)
	zeroCopy bool
	wakeup   bool
	kern     kernel // the other side of the rings; the data path only kicks it

	// The rings; Fill and Completion may be shared with ringHost.
	Fill       *FillRing
	Completion *CompletionRing
	Rx         *RxRing
	Tx         *TxRing

	// Owned by the worker that polls the socket.
	Counters SocketCounters
	closed   bool
}

// NewSocket creates an XSK socket on the UMEM, bound to queue of ifindex. The
// first socket on a UMEM binds the socket the UMEM was registered on; later
// ones share the UMEM.
func NewSocket(u *UMEM, ifindex, queue int, opts SocketOptions) (*Socket, error) {
	if u.closed {
		return nil, fmt.Errorf("socket on ifindex %d queue %d: umem: %w", ifindex, queue, ErrClosed)
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &Socket{u: u, fd: -1, ifindex: ifindex, queue: queue}
	s.kern = xskKernel{s}
	if host := u.ringHostFor(ifindex, queue); host != nil {
		s.ringHost = host
		s.group = host.group
	} else {
		g, err := u.newGroup()
		if err != nil {
			return nil, fmt.Errorf("socket on ifindex %d queue %d: %w", ifindex, queue, err)
		}
		s.group = g
		s.ringHost = s
	}
	if err := s.open(opts); err != nil {
		s.unwind()
		return nil, fmt.Errorf("socket on ifindex %d queue %d: %w", ifindex, queue, err)
	}
	if s.ringHost == s {
		u.groups[s.group] = s
	}
	u.sockets = append(u.sockets, s)
	return s, nil
}

func (u *UMEM) ringHostFor(ifindex, queue int) *Socket {
	for _, s := range u.sockets {
		if s.ifindex == ifindex && s.queue == queue && s.ringHost == s {
			return s
		}
	}
	return nil
}

func (u *UMEM) newGroup() (uint8, error) {
	for g := 1; g < len(u.groups); g++ {
		if u.groups[g] == nil {
			return uint8(g), nil
		}
	}
	return 0, errors.New("too many (interface, queue) pairs on one umem (255)")
}

func (s *Socket) open(opts SocketOptions) error {
	u := s.u
	var shareFD = -1
	switch {
	case u.pendingFD >= 0:
		s.fd, u.pendingFD = u.pendingFD, -1
	case len(u.sockets) > 0:
		fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("create AF_XDP socket: %w", err)
		}
		// A socket that shares its (interface, queue)'s fill and
		// completion rings must name the socket that owns them; one with
		// rings of its own may name any socket of the UMEM.
		s.fd, shareFD = fd, u.sockets[0].fd
		if s.ringHost != s {
			shareFD = s.ringHost.fd
		}
	default:
		// Every earlier socket is closed: register the UMEM anew.
		if err := u.register(); err != nil {
			return err
		}
		s.fd, u.pendingFD = u.pendingFD, -1
	}

	ownRings := s.ringHost == s
	if ownRings {
		if err := setsockoptInt(s.fd, unix.XDP_UMEM_FILL_RING, opts.FillSize); err != nil {
			return fmt.Errorf("set fill ring size %d: %w", opts.FillSize, err)
		}
		if err := setsockoptInt(s.fd, unix.XDP_UMEM_COMPLETION_RING, opts.CompletionSize); err != nil {
			return fmt.Errorf("set completion ring size %d: %w", opts.CompletionSize, err)
		}
	}
	if opts.RxSize > 0 {
		if err := setsockoptInt(s.fd, unix.XDP_RX_RING, opts.RxSize); err != nil {
			return fmt.Errorf("set rx ring size %d: %w", opts.RxSize, err)
		}
	}
	if opts.TxSize > 0 {
		if err := setsockoptInt(s.fd, unix.XDP_TX_RING, opts.TxSize); err != nil {
			return fmt.Errorf("set tx ring size %d: %w", opts.TxSize, err)
		}
	}
	var off unix.XDPMmapOffsets
	if err := getsockopt(s.fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return fmt.Errorf("get mmap offsets: %w", err)
	}
	if ownRings {
		m, err := mmapRing(s.fd, unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, opts.FillSize, 8)
		if err != nil {
			return fmt.Errorf("map fill ring: %w", err)
		}
		s.Fill = &FillRing{descs: unsafe.Slice((*uint64)(unsafe.Pointer(&m[off.Fr.Desc])), opts.FillSize)}
		s.Fill.init(mappedWords(m, ringOffsets(off.Fr)), opts.FillSize)
		s.Fill.mapping = m
		m, err = mmapRing(s.fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, opts.CompletionSize, 8)
		if err != nil {
			return fmt.Errorf("map completion ring: %w", err)
		}
		s.Completion = &CompletionRing{descs: unsafe.Slice((*uint64)(unsafe.Pointer(&m[off.Cr.Desc])), opts.CompletionSize)}
		s.Completion.init(mappedWords(m, ringOffsets(off.Cr)), opts.CompletionSize)
		s.Completion.mapping = m
	} else {
		s.Fill, s.Completion = s.ringHost.Fill, s.ringHost.Completion
	}
	if opts.RxSize > 0 {
		m, err := mmapRing(s.fd, unix.XDP_PGOFF_RX_RING, off.Rx, opts.RxSize, uint64(unsafe.Sizeof(Desc{})))
		if err != nil {
			return fmt.Errorf("map rx ring: %w", err)
		}
		s.Rx = &RxRing{descs: unsafe.Slice((*Desc)(unsafe.Pointer(&m[off.Rx.Desc])), opts.RxSize)}
		s.Rx.init(mappedWords(m, ringOffsets(off.Rx)), opts.RxSize)
		s.Rx.mapping = m
	}
	if opts.TxSize > 0 {
		m, err := mmapRing(s.fd, unix.XDP_PGOFF_TX_RING, off.Tx, opts.TxSize, uint64(unsafe.Sizeof(Desc{})))
		if err != nil {
			return fmt.Errorf("map tx ring: %w", err)
		}
		s.Tx = &TxRing{descs: unsafe.Slice((*Desc)(unsafe.Pointer(&m[off.Tx.Desc])), opts.TxSize)}
		s.Tx.init(mappedWords(m, ringOffsets(off.Tx)), opts.TxSize)
		s.Tx.mapping = m
	}

	sa := &unix.SockaddrXDP{Ifindex: uint32(s.ifindex), QueueID: uint32(s.queue)}
	if shareFD >= 0 {
		// The kernel takes copy/zero-copy and need_wakeup from the UMEM's
		// first socket and refuses those flags here.
		sa.Flags = unix.XDP_SHARED_UMEM
		sa.SharedUmemFD = uint32(shareFD)
	} else {
		switch opts.Mode {
		case BindZeroCopy:
			sa.Flags |= unix.XDP_ZEROCOPY
		case BindCopy:
			sa.Flags |= unix.XDP_COPY
		}
		if opts.NeedWakeup {
			sa.Flags |= unix.XDP_USE_NEED_WAKEUP
		}
	}
	if err := unix.Bind(s.fd, sa); err != nil {
		return fmt.Errorf("bind (mode %s, shared %t): %w", opts.Mode, shareFD >= 0, err)
	}
	xo, err := s.xdpOptions()
	if err != nil {
		return err
	}
	s.zeroCopy = xo&unix.XDP_OPTIONS_ZEROCOPY != 0
	if shareFD >= 0 {
		s.wakeup = u.sockets[0].wakeup
	} else {
		s.wakeup = opts.NeedWakeup
	}
	return nil
}

// unwind undoes a partial open.
func (s *Socket) unwind() {
	if s.ringHost == s {
		unmapRing(s.Fill, s.Completion)
	}
	if s.Rx != nil && s.Rx.mapping != nil {
		_ = unix.Munmap(s.Rx.mapping)
	}
	if s.Tx != nil && s.Tx.mapping != nil {
		_ = unix.Munmap(s.Tx.mapping)
	}
	if s.fd >= 0 {
		_ = unix.Close(s.fd)
		s.fd = -1
	}
}

func unmapRing(f *FillRing, c *CompletionRing) {
	if f != nil && f.mapping != nil {
		_ = unix.Munmap(f.mapping)
	}
	if c != nil && c.mapping != nil {
		_ = unix.Munmap(c.mapping)
	}
}

type ringOffsets unix.XDPRingOffset

func mmapRing(fd int, pgoff int64, off unix.XDPRingOffset, n uint32, descSize uint64) ([]byte, error) {
	size := int(off.Desc + uint64(n)*descSize)
	return unix.Mmap(fd, pgoff, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
}

// FD is the socket's file descriptor, for the XSKMAP. It is -1 for in-memory sockets.
func (s *Socket) FD() int { return s.fd }

// Ifindex is the interface the socket is bound to.
func (s *Socket) Ifindex() int { return s.ifindex }

// Queue is the queue the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// ZeroCopy reports whether the kernel bound the socket in zero-copy mode.
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// NeedWakeup reports whether the socket uses need_wakeup.
func (s *Socket) NeedWakeup() bool { return s.wakeup }

// UMEM is the UMEM the socket is bound on.
func (s *Socket) UMEM() *UMEM { return s.u }

// OwnsRings reports whether the socket made its fill and completion rings,
// rather than sharing another socket's on the same (interface, queue).
func (s *Socket) OwnsRings() bool { return s.ringHost == s }

// RingHost is the socket whose fill and completion rings s uses: s itself,
// or the first socket on the same (interface, queue) of the UMEM.
func (s *Socket) RingHost() *Socket { return s.ringHost }

// Statistics reads the kernel's XDP_STATISTICS.
func (s *Socket) Statistics() (Statistics, error) { return s.kern.statistics() }

// kernel is the other side of a socket's rings, chosen when the socket is
// made: the Linux kernel, reached through the socket's descriptor, or a
// SimKernel for in-memory sockets. The rings themselves are plain shared
// memory either way; the socket calls its kernel only to wake it, to wait
// for it, and to read its counters.
type kernel interface {
	wakeRx()                 // run the receive path: the fill ring has frames
	wakeTx()                 // run the transmit path: the tx ring has packets
	poll(timeoutMs int) bool // wait for the rx ring to have packets
	statistics() (Statistics, error)
}

var (
	_ kernel = xskKernel{}
	_ kernel = (*SimKernel)(nil)
)

// xskKernel is the Linux kernel behind an AF_XDP socket.
type xskKernel struct{ s *Socket }

func (k xskKernel) wakeRx() {
	// A zero-length non-blocking recvfrom runs the rx path; EAGAIN is expected.
	_, _, _ = unix.Syscall6(unix.SYS_RECVFROM, uintptr(k.s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

func (k xskKernel) wakeTx() {
	_, _, _ = unix.Syscall6(unix.SYS_SENDTO, uintptr(k.s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

func (k xskKernel) poll(timeoutMs int) bool {
	pfd := [1]unix.PollFd{{Fd: int32(k.s.fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd[:], timeoutMs)
	return err == nil && n > 0
}

func (k xskKernel) statistics() (Statistics, error) {
	var st Statistics
	if k.s.fd < 0 { // closed: the kernel's counters went with the socket
		return st, nil
	}
	if err := getsockopt(k.s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st)); err != nil {
		return st, fmt.Errorf("read xsk statistics: %w", err)
	}
	return st, nil
}

func (s *Socket) xdpOptions() (uint32, error) {
	var v uint32
	if err := getsockopt(s.fd, unix.XDP_OPTIONS, unsafe.Pointer(&v), unsafe.Sizeof(v)); err != nil {
		return 0, fmt.Errorf("read xdp options: %w", err)
	}
	return v, nil
}

// Close unbinds the socket and takes back every frame lent to the kernel
// through its rings: those in the fill ring, the kernel, the rx, tx and
// completion rings go back to the free list. Sockets sharing its fill and
// completion rings are closed first.
func (s *Socket) Close() error {
	if s.closed {
		return nil
	}
	u := s.u
	var first error
	if s.ringHost == s {
		for _, o := range append([]*Socket(nil), u.sockets...) {
			if o != s && o.ringHost == s {
				if err := o.Close(); err != nil && first == nil {
					first = err
				}
			}
		}
	}
	if s.fd >= 0 {
		if err := unix.Close(s.fd); err != nil && first == nil {
			first = fmt.Errorf("close xsk on ifindex %d queue %d: %w", s.ifindex, s.queue, err)
		}
		s.fd = -1
	}
	// Frames sent through a sharing socket's tx ring are accounted to the
	// ring host's group, which this sharer leaves to the host to reclaim.
	if s.ringHost == s {
		u.reclaimGroup(s.group)
		unmapRing(s.Fill, s.Completion)
		u.groups[s.group] = nil
	}
	if s.Rx != nil && s.Rx.mapping != nil {
		_ = unix.Munmap(s.Rx.mapping)
	}
	if s.Tx != nil && s.Tx.mapping != nil {
		_ = unix.Munmap(s.Tx.mapping)
	}
	s.closed = true
	for i, o := range u.sockets {
		if o == s {
			u.sockets = append(u.sockets[:i], u.sockets[i+1:]...)
			break
		}
	}
	return first
}

// reclaimGroup returns to the free list every frame lent through group g.
func (u *UMEM) reclaimGroup(g uint8) {
	for i := range u.place {
		if u.group[i] == g && (u.place[i] == PlaceRx || u.place[i] == PlaceTx) {
			u.place[i] = PlaceFree
			u.group[i] = 0
			u.free[u.top] = uint64(i) << u.shift
			u.top++
		}
	}
}

func setsockoptInt(fd, opt int, v uint32) error {
	return setsockopt(fd, opt, unsafe.Pointer(&v), unsafe.Sizeof(v))
}

func setsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), n, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	l := uint32(n)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}
