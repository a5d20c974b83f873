package bpf

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// Live-frames limits of BPF_PROG_RUN (net/bpf/test_run.c).
const (
	// MaxLiveBatch is the largest batch the kernel accepts (TEST_XDP_MAX_BATCH).
	MaxLiveBatch = 256
	// DefaultLiveBatch is the kernel's default batch (NAPI_POLL_WEIGHT).
	DefaultLiveBatch = 64
	// MinLiveFrame is the smallest template: an Ethernet header.
	MinLiveFrame = 14
)

// xdpMD mirrors struct xdp_md, the context of an XDP BPF_PROG_RUN.
type xdpMD struct {
	data           uint32
	dataEnd        uint32
	dataMeta       uint32
	ingressIfindex uint32
	rxQueueIndex   uint32
	egressIfindex  uint32
}

// progRunAttr mirrors the BPF_PROG_TEST_RUN member of union bpf_attr.
// The pointers are unsafe.Pointer so the garbage collector sees them.
type progRunAttr struct {
	progFD      uint32
	retval      uint32
	dataSizeIn  uint32
	dataSizeOut uint32
	dataIn      unsafe.Pointer
	dataOut     unsafe.Pointer
	repeat      uint32
	duration    uint32
	ctxSizeIn   uint32
	ctxSizeOut  uint32
	ctxIn       unsafe.Pointer
	ctxOut      unsafe.Pointer
	flags       uint32
	cpu         uint32
	batchSize   uint32
	_           uint32
}

// LiveRunner runs an XDP program with BPF_F_TEST_XDP_LIVE_FRAMES over one
// template frame, as if the frame arrived on an interface: XDP_TX sends it
// out of that interface, XDP_REDIRECT wherever the program says.
//
// The kernel resolves the interface in the network namespace of the calling
// thread, so create and run the LiveRunner on a thread locked
// (runtime.LockOSThread) into that namespace. A LiveRunner is not safe for
// concurrent use; give each thread its own. Run makes no allocations, unlike
// ebpf.Program.Run, which serialises the context on every call.
type LiveRunner struct {
	prog  *ebpf.Program
	frame []byte // private copy of the template
	md    xdpMD
	attr  progRunAttr
}

// NewLiveRunner prepares live-frames runs of prog over a copy of frame,
// entering on interface ifindex, in batches of batchSize frames
// (0: DefaultLiveBatch; at most MaxLiveBatch).
func NewLiveRunner(prog *ebpf.Program, frame []byte, ifindex int, batchSize int) (*LiveRunner, error) {
	switch {
	case prog == nil:
		return nil, fmt.Errorf("new live runner: no program: %w", ErrInvalidOptions)
	case len(frame) < MinLiveFrame:
		return nil, fmt.Errorf("new live runner: frame of %d bytes, need %d: %w", len(frame), MinLiveFrame, ErrInvalidOptions)
	case ifindex <= 0:
		return nil, fmt.Errorf("new live runner: ifindex %d: %w", ifindex, ErrInvalidOptions)
	case batchSize < 0 || batchSize > MaxLiveBatch:
		return nil, fmt.Errorf("new live runner: batch size must be 0..%d, got %d: %w", MaxLiveBatch, batchSize, ErrInvalidOptions)
	}
	r := &LiveRunner{prog: prog, frame: append([]byte(nil), frame...)}
	r.md = xdpMD{dataEnd: uint32(len(r.frame)), ingressIfindex: uint32(ifindex)}
	r.attr = progRunAttr{
		progFD:     uint32(prog.FD()),
		dataSizeIn: uint32(len(r.frame)),
		dataIn:     unsafe.Pointer(&r.frame[0]),
		ctxSizeIn:  uint32(unsafe.Sizeof(r.md)),
		ctxIn:      unsafe.Pointer(&r.md),
		flags:      unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		batchSize:  uint32(batchSize),
	}
	return r, nil
}

// NewLiveRunner prepares live-frames runs of xnic_gen; see NewLiveRunner.
func (g *Gen) NewLiveRunner(frame []byte, ifindex int, batchSize int) (*LiveRunner, error) {
	if g.objs.XnicGen == nil {
		return nil, fmt.Errorf("new live runner: %w", ErrClosed)
	}
	return NewLiveRunner(g.objs.XnicGen, frame, ifindex, batchSize)
}

// Run runs the program repeat times (at least once). It returns
// ErrInterrupted, without allocating, when a signal cut the call short;
// the caller may just call again.
func (r *LiveRunner) Run(repeat uint32) error {
	r.attr.repeat = repeat
	r.attr.retval, r.attr.duration = 0, 0
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN,
		uintptr(unsafe.Pointer(&r.attr)), unsafe.Sizeof(r.attr))
	runtime.KeepAlive(r)
	runtime.KeepAlive(r.prog)
	switch errno {
	case 0:
		return nil
	case unix.EINTR:
		return ErrInterrupted
	case unix.EPERM, unix.EOPNOTSUPP:
		return fmt.Errorf("run %s in live-frames mode: %w: %w", r.prog, ErrLiveFramesRefused, errno)
	}
	return fmt.Errorf("run %s in live-frames mode: %w", r.prog, errno)
}

var liveProbe struct {
	once sync.Once
	err  error
}

// ProbeLiveFrames reports whether this kernel runs XDP programs in
// live-frames mode: nil if it does, an error matching ErrLiveFramesRefused
// if it refuses them, another error if the probe itself could not run. It
// runs a program that only returns XDP_DROP once, on the loopback
// interface, so nothing is sent; the answer is kept for the process.
func ProbeLiveFrames() error {
	liveProbe.once.Do(func() {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "xnic_probe", Type: ebpf.XDP, License: "GPL",
			Instructions: asm.Instructions{asm.LoadImm(asm.R0, 1, asm.DWord), asm.Return()}, // XDP_DROP
		})
		if err != nil {
			liveProbe.err = fmt.Errorf("probe live frames: load: %w", err)
			return
		}
		defer prog.Close()
		r, err := NewLiveRunner(prog, make([]byte, 60), 1, 1) // ifindex 1: lo, in every netns
		if err != nil {
			liveProbe.err = fmt.Errorf("probe live frames: %w", err)
			return
		}
		for {
			if err = r.Run(1); err != ErrInterrupted {
				break
			}
		}
		if err != nil {
			liveProbe.err = fmt.Errorf("probe live frames: %w", err)
		}
	})
	return liveProbe.err
}
