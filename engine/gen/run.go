package gen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xnic/xnic/bpf"
)

// Result is what a run sent.
type Result struct {
	// Packets and Bytes count the frames xnic_gen sent to XDP_TX, from its
	// own counters. The receiver may see fewer: a full veth ring drops.
	Packets uint64
	Bytes   uint64
	// Duration is from starting the sending threads to their last return.
	Duration time.Duration
	// PPS is Packets per second of Duration.
	PPS float64
	// Mode is the mode that sent: ModeLive or ModeXSK.
	Mode Mode
}

// Tick is a progress report, about once a second.
type Tick struct {
	Elapsed time.Duration // since the start of the run
	Packets uint64        // total so far
	PPS     float64       // rate over the last interval
}

// Run sends frames until opts.Duration or opts.Count is reached or ctx is
// done, whichever comes first, and reports what was sent. ctx being done is
// a normal stop, not an error. opts.Mode picks live frames, AF_XDP TX, or
// (ModeAuto) live frames where the kernel runs them. Run needs root (BPF,
// netns).
func Run(ctx context.Context, opts Options) (Result, error) {
	if err := opts.Validate(); err != nil {
		return Result{}, err
	}
	switch opts.Mode {
	case ModeXSK:
		return RunXSK(ctx, opts)
	case ModeLive:
		return runLive(ctx, opts)
	}
	if err := bpf.ProbeLiveFrames(); err != nil {
		if errors.Is(err, bpf.ErrLiveFramesRefused) {
			return RunXSK(ctx, opts)
		}
		return Result{}, fmt.Errorf("gen: %w", err)
	}
	return runLive(ctx, opts)
}

// runLive is Run in ModeLive: xnic_gen's BPF_PROG_RUN loops, one per thread.
func runLive(ctx context.Context, opts Options) (Result, error) {
	info, err := resolveIface(opts.Netns, opts.Iface)
	if err != nil {
		return Result{}, fmt.Errorf("gen: resolve %s in netns %q: %w", opts.Iface, opts.Netns, err)
	}
	frame, err := BuildUDP(frameOptions(opts, info))
	if err != nil {
		return Result{}, fmt.Errorf("gen: %w", err)
	}
	seqOff := PayloadOffset(opts.IPv6)
	if opts.FrameSize < seqOff+SeqLen {
		seqOff = 0 // no room for a sequence number
	}
	prog, err := bpf.LoadGen(bpf.GenOptions{
		Flows:       opts.Flows,
		SrcPortBase: opts.SrcPortBase,
		SrcAddrWord: srcAddrWord(frameOptions(opts, info).SrcIP),
		IPv6:        opts.IPv6,
		L4Offset:    UDPOffset(opts.IPv6),
		SeqOffset:   seqOff,
	})
	if err != nil {
		return Result{}, fmt.Errorf("gen: %w", err)
	}
	defer prog.Close()

	r := &runner{opts: opts, prog: prog, frame: frame, ifindex: info.index}
	if opts.Count > 0 {
		r.budget.Store(opts.Count)
	}
	return r.run(ctx)
}

func frameOptions(opts Options, info ifaceInfo) FrameOptions {
	src, dst := opts.addresses()
	fo := FrameOptions{
		Size:    opts.FrameSize,
		SrcMAC:  opts.SrcMAC,
		DstMAC:  opts.DstMAC,
		SrcIP:   src,
		DstIP:   dst,
		SrcPort: opts.SrcPortBase,
		DstPort: opts.DstPort,
	}
	if fo.SrcMAC == nil {
		fo.SrcMAC = info.mac
	}
	if len(fo.SrcMAC) != 6 { // an interface without an Ethernet address
		fo.SrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0}
	}
	if fo.DstMAC == nil {
		fo.DstMAC = info.peerMAC
	}
	if len(fo.DstMAC) != 6 {
		fo.DstMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	return fo
}

// runner is one Run: workers claim frames from budget and stop on stop.
type runner struct {
	opts    Options
	prog    *bpf.Gen
	frame   []byte
	ifindex int

	// Shared by the workers, lock-free.
	stop   atomic.Bool   // set by the controller or by a failing worker
	budget atomic.Uint64 // frames still to send when opts.Count > 0
}

// claim reserves up to opts.Repeat frames; 0 means the run is over.
func (r *runner) claim() uint32 {
	want := uint64(r.opts.Repeat)
	if r.opts.Count == 0 {
		return uint32(want)
	}
	for {
		left := r.budget.Load()
		if left == 0 {
			return 0
		}
		n := min(left, want)
		if r.budget.CompareAndSwap(left, left-n) {
			return uint32(n)
		}
	}
}

// sendRound runs opts.Threads workers until they all return.
func (r *runner) sendRound(fail func(error)) {
	var wg sync.WaitGroup
	for i := range r.opts.Threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.worker(); err != nil {
				fail(fmt.Errorf("gen: thread %d: %w", i, err))
			}
		}()
	}
	wg.Wait()
}

// worker is one sending thread, locked into the netns for its whole life.
func (r *runner) worker() error {
	return inNetns(r.opts.Netns, func() error {
		lr, err := r.prog.NewLiveRunner(r.frame, r.ifindex, r.opts.BatchSize)
		if err != nil {
			return err
		}
		for !r.stop.Load() {
			n := r.claim()
			if n == 0 {
				return nil
			}
			if err := lr.Run(n); err != nil && !errors.Is(err, bpf.ErrInterrupted) {
				return err
			}
		}
		return nil
	})
}

// maxTopUps bounds the extra rounds that make up for interrupted calls.
const maxTopUps = 8

func (r *runner) run(ctx context.Context) (Result, error) {
	var errMu sync.Mutex
	var errs []error
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for round := 0; ; round++ {
			r.sendRound(func(err error) {
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
				r.stop.Store(true)
			})
			if r.stop.Load() || r.opts.Count == 0 || round == maxTopUps {
				return
			}
			// A signal may have cut calls short: their claimed frames were
			// not all sent. Send what the program's counter says is missing.
			st, err := r.prog.Stats()
			if err != nil || st.FramesGenerated >= r.opts.Count {
				return
			}
			r.budget.Store(r.opts.Count - st.FramesGenerated)
		}
	}()

	var deadline <-chan time.Time
	if r.opts.Duration > 0 {
		t := time.NewTimer(r.opts.Duration)
		defer t.Stop()
		deadline = t.C
	}
	var tick <-chan time.Time
	if r.opts.Progress != nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	var last Tick
	ctxDone := ctx.Done()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-ctxDone:
			r.stop.Store(true)
			ctxDone = nil // closed: stop selecting it
		case <-deadline:
			r.stop.Store(true)
		case now := <-tick:
			st, err := r.prog.Stats()
			if err != nil {
				continue
			}
			cur := Tick{Elapsed: now.Sub(start), Packets: st.FramesGenerated}
			if dt := (cur.Elapsed - last.Elapsed).Seconds(); dt > 0 {
				cur.PPS = float64(cur.Packets-last.Packets) / dt
			}
			last = cur
			r.opts.Progress(cur)
		}
	}
	elapsed := time.Since(start)

	res := Result{Duration: elapsed, Mode: ModeLive} // done is closed: errs is ours now
	st, err := r.prog.Stats()
	if err != nil {
		return res, errors.Join(append(errs, fmt.Errorf("gen: %w", err))...)
	}
	res.Packets, res.Bytes = st.FramesGenerated, st.BytesGenerated
	if s := elapsed.Seconds(); s > 0 {
		res.PPS = float64(res.Packets) / s
	}
	return res, errors.Join(errs...)
}
