package bench

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/engine/lab"
)

// Contender names, as they appear in reports and in Options.Only.
const (
	XDPDrop = "xdp-drop"
	XnicRx  = "xnic-rx"
	// The AF_XDP peers as their users run them, each on its own XDP
	// program: libxdp's rxdrop on a program that only redirects to the
	// queue's socket, asavie/xdp on the program the library loads.
	LibXDPBare = "libxdp-bare"
	AsavieOwn  = "asavie-own"
	// The same peers behind xnic's steering program, so that only the
	// user-space loops differ from xnic-rx; against the bare ones they show
	// what the steering program costs.
	LibXDPSteer = "libxdp-steer"
	AsavieSteer = "asavie-steer"
	AFPacket    = "afpacket"
	// The engine's receive pipeline (parse, lookahead, connection contexts,
	// GRO) without and with lookahead: `xnic rx --pipeline --window 1|64`.
	XnicPipeW1  = "xnic-pipe-w1"
	XnicPipeW64 = "xnic-pipe-w64"
)

// Peer binaries expected in Options.PeersDir, by contender.
var peerBinaries = map[string]string{
	LibXDPBare:  "rxdrop_libxdp",
	LibXDPSteer: "rxdrop_libxdp",
	AsavieOwn:   "asavie",
	AsavieSteer: "asavie",
	AFPacket:    "afpacket",
}

// Contenders returns the default contenders in the order a round runs them.
func Contenders() []string {
	return []string{XDPDrop, XnicRx, LibXDPBare, AsavieOwn, LibXDPSteer, AsavieSteer, AFPacket}
}

// AllContenders are every contender Options.Only may name, in run order:
// the defaults and the pipeline ones.
func AllContenders() []string { return append(Contenders(), XnicPipeW1, XnicPipeW64) }

// usesXnic reports whether the contender runs the xnic binary.
func usesXnic(name string) bool { return name == XnicRx || name == XnicPipeW1 || name == XnicPipeW64 }

// FCSLen is the Ethernet frame check sequence: a "64-byte" frame on the wire
// is 60 bytes in memory.
const FCSLen = 4

// Limits of Options.
const (
	MaxRounds   = 1000
	MinDuration = 100 * time.Millisecond
	// MinFrameSize and MaxFrameSize bound Options.FrameSize (on the wire).
	MinFrameSize = gen.MinFrameSize + FCSLen
	MaxFrameSize = gen.MaxLiveFrameSize + FCSLen
)

// DefaultLabSlot is the lab slot the tests take turns on (lab.SlotPath);
// Run holds it while its lab is up.
const DefaultLabSlot = lab.SlotPath

// Sentinel errors returned (wrapped) by this package.
var (
	// ErrInvalidOptions wraps every error from Options.Validate.
	ErrInvalidOptions = errors.New("invalid bench options")
	// ErrNotRoot: Run builds a netns and veth pair and loads XDP programs.
	ErrNotRoot = errors.New("must run as root")
	// ErrMissingBinary: a contender's binary is not where Options says.
	ErrMissingBinary = errors.New("binary not found")
	// ErrFailed: some measurements failed; the report says which and why.
	ErrFailed = errors.New("measurements failed")
)

// Options configure Run.
type Options struct {
	// Rounds is the number of times every contender is measured.
	Rounds int
	// Duration is each receiver's measurement window.
	Duration time.Duration
	// FrameSize is the UDP frame's size on the wire, FCS included (64 is
	// the Ethernet minimum): MinFrameSize..MaxFrameSize.
	FrameSize int
	// Flows is the number of UDP flows the generator cycles through (see
	// gen.Options.Flows).
	Flows int
	// Only restricts the run to these contenders (nil: all). They still run
	// in the order of Contenders.
	Only []string
	// PipeCache is the context cache size of the pipeline contenders, and
	// PipeConns their connection table capacity (powers of two).
	PipeCache, PipeConns int

	// Xnic is the xnic binary run as `xnic rx` for xnic-rx.
	Xnic string
	// PeersDir holds rxdrop_libxdp, asavie and afpacket.
	PeersDir string

	// GenBatch is the generator's kernel live-frames batch, 1..256, and
	// GenRepeat the frames per BPF_PROG_RUN call. Every call swaps the
	// kernel's XDP dispatcher in and out (text patching, with IPIs to every
	// CPU): on a 2-core VM, 1<<19 frames per call sent 20% more into
	// XDP_DROP and 11% more into libxdp than gen's default 1<<16. The
	// generator stops up to one call (0.3 s at 2 Mpps) after it is told.
	GenBatch, GenRepeat int

	// GenCPU is the CPU this process, the generator's thread with it, is
	// pinned to while Run runs; RxCPU the CPU of every receiver subprocess.
	// -1 leaves the placement to the scheduler.
	GenCPU, RxCPU int
	// Slack is the warm-up before xdp-drop's window opens (and the load
	// after it closes).
	Slack time.Duration
	// Pause is the quiet time between two contenders.
	Pause time.Duration

	// LabSlot is the lock file held while the lab is up; "" holds none.
	LabSlot string
	// LabPrefix starts the lab's name, followed by four hex digits.
	LabPrefix string
	// Log receives a line per measurement; nil discards them.
	Log io.Writer
}

// DefaultOptions: 3 rounds of 5 s, 64-byte frames, one flow, every
// contender, the generator on CPU 0 and the receivers on CPU 1. Xnic and
// PeersDir must still be set.
func DefaultOptions() Options {
	return Options{
		Rounds:    3,
		Duration:  5 * time.Second,
		FrameSize: 64,
		Flows:     1,
		PipeCache: 512,
		PipeConns: 1 << 21,
		GenBatch:  gen.DefaultOptions().BatchSize,
		GenRepeat: 1 << 19,
		GenCPU:    0,
		RxCPU:     1,
		Slack:     500 * time.Millisecond,
		Pause:     300 * time.Millisecond,
		LabSlot:   DefaultLabSlot,
		LabPrefix: "xb",
	}
}

// OptionError names the option that failed validation; it matches
// ErrInvalidOptions.
type OptionError struct {
	Field string // e.g. "rounds", "gen cpu"
	Msg   string // e.g. "must be 1..1000, got 0"
}

func (e *OptionError) Error() string { return "bench: " + e.Field + ": " + e.Msg }

// Is makes errors.Is(err, ErrInvalidOptions) true.
func (e *OptionError) Is(target error) bool { return target == ErrInvalidOptions }

func optErr(field, format string, a ...any) error {
	return &OptionError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Validate checks the options; it does not look at the file system.
func (o Options) Validate() error {
	if o.Rounds < 1 || o.Rounds > MaxRounds {
		return optErr("rounds", "must be 1..%d, got %d", MaxRounds, o.Rounds)
	}
	if o.Duration < MinDuration {
		return optErr("duration", "must be at least %s, got %s", MinDuration, o.Duration)
	}
	if o.FrameSize < MinFrameSize || o.FrameSize > MaxFrameSize {
		return optErr("size", "must be %d..%d bytes on the wire, got %d", MinFrameSize, MaxFrameSize, o.FrameSize)
	}
	if o.Flows < 1 || o.Flows > bpf.MaxGenFlows {
		return optErr("flows", "must be 1..%d, got %d", bpf.MaxGenFlows, o.Flows)
	}
	if o.GenBatch < 1 || o.GenBatch > bpf.MaxLiveBatch {
		return optErr("gen batch", "must be 1..%d, got %d", bpf.MaxLiveBatch, o.GenBatch)
	}
	if o.GenRepeat < 1 || o.GenRepeat > gen.MaxRepeat {
		return optErr("gen repeat", "must be 1..%d, got %d", gen.MaxRepeat, o.GenRepeat)
	}
	for _, name := range o.Only {
		if !slices.Contains(AllContenders(), name) {
			return optErr("only", "unknown contender %q (known: %v)", name, AllContenders())
		}
	}
	if len(o.contenders()) == 0 {
		return optErr("only", "no contender selected")
	}
	pow2 := func(n int) bool { return n > 0 && n&(n-1) == 0 }
	if !pow2(o.PipeCache) || o.PipeCache > 1<<20 {
		return optErr("pipe cache", "must be a power of two up to %d, got %d", 1<<20, o.PipeCache)
	}
	if !pow2(o.PipeConns) || o.PipeConns > 1<<26 {
		return optErr("pipe conns", "must be a power of two up to %d, got %d", 1<<26, o.PipeConns)
	}
	ncpu := runtime.NumCPU()
	for _, c := range []struct {
		name string
		cpu  int
	}{{"gen cpu", o.GenCPU}, {"rx cpu", o.RxCPU}} {
		if c.cpu < -1 || c.cpu >= ncpu {
			return optErr(c.name, "must be -1 (unpinned) or 0..%d, got %d", ncpu-1, c.cpu)
		}
	}
	if o.Slack < 0 || o.Pause < 0 {
		return optErr("slack", "slack %s and pause %s must not be negative", o.Slack, o.Pause)
	}
	if o.Xnic == "" && slices.ContainsFunc(o.contenders(), usesXnic) {
		return optErr("xnic", "path to the xnic binary must be set")
	}
	if o.PeersDir == "" && slices.ContainsFunc(o.contenders(), func(n string) bool { return peerBinaries[n] != "" }) {
		return optErr("peers", "directory of the peer binaries must be set")
	}
	if o.LabPrefix == "" || len(o.LabPrefix) > 6 {
		return optErr("lab prefix", "must be 1..6 characters, got %q", o.LabPrefix)
	}
	return nil
}

// contenders are the selected contenders in run order.
func (o Options) contenders() []string {
	if len(o.Only) == 0 {
		return Contenders()
	}
	var out []string
	for _, c := range AllContenders() {
		if slices.Contains(o.Only, c) {
			out = append(out, c)
		}
	}
	return out
}
