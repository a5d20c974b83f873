package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/internal/cli"
	"github.com/xnic/xnic/umem"
)

// rxResult is the summary line of `xnic rx --json`, its last.
type rxResult struct {
	Type      string          `json:"type"` // "summary"
	Name      string          `json:"name"`
	Iface     string          `json:"iface"`
	Queue     int             `json:"queue"`
	Packets   uint64          `json:"packets"`
	Bytes     uint64          `json:"bytes"`
	Seconds   float64         `json:"seconds"`
	PPS       float64         `json:"pps"`
	ZeroCopy  bool            `json:"zerocopy"`
	XDPMode   string          `json:"xdp_mode"`
	XSK       umem.Statistics `json:"xsk"`
	Steer     bpf.SteerStats  `json:"steer"`
	RxWakeups uint64          `json:"rx_wakeups"`
	// With --pipeline: its counters and settings.
	Pipeline *engine.PipelineStats `json:"pipeline,omitempty"`
	Window   int                   `json:"window,omitempty"`
	Cache    int                   `json:"cache,omitempty"`
}

// rxTick is an interval line of `xnic rx --json`.
type rxTick struct {
	Type          string  `json:"type"`    // "interval"
	Seconds       float64 `json:"seconds"` // since the start
	Packets       uint64  `json:"packets"` // received so far
	PPS           float64 `json:"pps"`     // over the last interval
	Drops         uint64  `json:"drops"`
	FillRingEmpty uint64  `json:"rx_fill_ring_empty_descs"`
}

// engineFlags are the data-path flags rx and demo share.
type engineFlags struct {
	mode, attach        *string
	frames, ring, batch *int
	poll                *int
}

// Raw receive's default UMEM and rings (xnic rx and xnic demo, which share
// these flags): one socket per queue, so 1024
// frames (2 MiB) and a 512-descriptor rx ring (fill ring 1024), the ring
// size NIC drivers default to. The kernel copies every frame into the
// next frame of the fill ring, so the frames in circulation are the
// copy's working set: with 4096 frames (8 MiB) each copy wrote to memory
// no cache held, and at 7 Mpps xnic rx received 2-4% less (xnic bench,
// 64-byte UDP, the same rx-ring-full share of 0.35-0.38% either way). An
// engine with guests and classes sizes its shared UMEM by config instead
// (engine.frames, engine.ring: 4096 and 2048).
const (
	rxDefaultFrames = 1024
	rxDefaultRing   = 512
)

func addEngineFlags(fs *flag.FlagSet) engineFlags {
	defer cli.Alias(fs, "mode", "bind-mode")
	return engineFlags{
		mode:   fs.String("bind-mode", "auto", "XSK bind mode: auto, zerocopy or copy"),
		attach: fs.String("attach", "auto", "XDP attach mode: auto, native or generic"),
		frames: fs.Int("frames", rxDefaultFrames, "UMEM frames per queue"),
		ring:   fs.Int("ring", rxDefaultRing, "rx ring size (fill ring is twice this)"),
		batch:  fs.Int("batch", engine.DefaultBatch, "descriptors per ring access"),
		poll:   fs.Int("poll", 0, "when > 0, idle workers sleep in poll(2) up to this many ms instead of spinning"),
	}
}

func (f engineFlags) options(ifaces []string, queues []int) (engine.Options, error) {
	o := engine.DefaultOptions()
	o.Ifaces, o.Queues = ifaces, queues
	var err error
	if o.Socket.Mode, err = umem.ParseBindMode(*f.mode); err != nil {
		return o, cli.FlagError("bind-mode", "%s", err)
	}
	if o.Attach, err = bpf.ParseAttachMode(*f.attach); err != nil {
		return o, cli.FlagError("attach", "want auto, native or generic, got %q", *f.attach)
	}
	if *f.frames < 64 || *f.frames > 1<<20 {
		return o, cli.FlagError("frames", "must be 64..%d, got %d", 1<<20, *f.frames)
	}
	o.UMEM.NumFrames = uint32(*f.frames)
	r := *f.ring
	if r < 64 || r > 1<<16 || r&(r-1) != 0 {
		return o, cli.FlagError("ring", "must be a power of two in 64..65536, got %d", r)
	}
	o.Socket.RxSize, o.Socket.TxSize = uint32(r), uint32(r)
	o.Socket.FillSize, o.Socket.CompletionSize = uint32(2*r), uint32(r)
	if *f.batch < 1 || *f.batch > r {
		return o, cli.FlagError("batch", "must be 1..%d (the ring size), got %d", r, *f.batch)
	}
	o.Batch = *f.batch
	if *f.poll < 0 {
		return o, cli.FlagError("poll", "must be >= 0, got %d", *f.poll)
	}
	o.PollMs = *f.poll
	return o, nil
}

func runRx(ctx context.Context, args []string) error {
	fs := cli.NewFlags("rx", "--iface IF [--duration D] [--queue Q] [--pipeline [--window W] [--cache N] [--conn-table N]] [--rules N] [--exact-flows N] [--pin] [--reuse-pins] [--log-level L] [--log-format text|json] [--json]")
	iface := fs.String("iface", "", "interface to receive on (required)")
	duration := fs.Duration("duration", 10*time.Second, "how long to receive")
	queue := fs.Int("queue", 0, "rx queue id")
	asJSON := fs.Bool("json", false, "JSON on stdout: one object per second (unless --quiet) and a summary object; text on stderr")
	quiet := fs.Bool("quiet", false, "no per-second lines")
	nRules := fs.Int("rules", 0, "steering benchmark: install this many rules (one of them, 198.18.0.1/32 UDP, matches the lab's traffic; the others are /32s elsewhere)")
	nFlows := fs.Int("exact-flows", 0, "steering benchmark: install this many exact flows, the first ones those of xnic gen --flows (src port 10000+i)")
	pin := fs.Bool("pin", false, "keep the maps pinned under "+engine.DefaultPinDir+"/IFACE after exit; the next run reuses them")
	reusePins := reusePinsFlag(fs)
	pipeline := fs.Bool("pipeline", false, "run the receive pipeline: parse, lookahead, connection contexts, GRO")
	window := fs.Int("window", 64, "with --pipeline: lookahead window W (1: none)")
	cache := fs.Int("cache", 512, "with --pipeline: context cache entries, a power of two")
	conns := fs.Int("conn-table", 1<<18, "with --pipeline: connection table capacity, a power of two")
	gro := fs.Bool("gro", true, "with --pipeline: merge TCP segments")
	ef := addEngineFlags(fs)
	cli.Alias(fs, "flows", "exact-flows")
	cli.Alias(fs, "conns", "conn-table")
	lf := addLogFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	logger, err := lf.logger()
	if err != nil {
		return err
	}
	if *iface == "" {
		return cli.FlagError("iface", "required")
	}
	if *duration <= 0 {
		return cli.FlagError("duration", "must be positive, got %s", *duration)
	}
	if *queue < 0 {
		return cli.FlagError("queue", "must be >= 0, got %d", *queue)
	}
	opts, err := ef.options([]string{*iface}, []int{*queue})
	if err != nil {
		return err
	}
	opts.KeepPins = *pin
	opts.ReusePins = *reusePins
	opts.Logger = logger
	if *pipeline {
		po := engine.DefaultPipelineOptions()
		po.Window, po.Cache.Entries, po.Table.Capacity, po.GRO = *window, *cache, *conns, *gro
		po.Cache.Ways = min(po.Cache.Ways, max(*cache, 1))
		if err := po.Validate(); err != nil {
			switch {
			case strings.Contains(err.Error(), "window"):
				return cli.FlagError("window", "%s", err)
			case strings.Contains(err.Error(), "cache"):
				return cli.FlagError("cache", "%s", err)
			default:
				return cli.FlagError("conn-table", "%s", err)
			}
		}
		opts.Pipeline = &po
	}
	if *nRules < 0 || *nRules > 16384 {
		return cli.FlagError("rules", "must be 0..16384, got %d", *nRules)
	}
	if *nFlows < 0 || *nFlows > 131072 {
		return cli.FlagError("exact-flows", "must be 0..131072, got %d", *nFlows)
	}
	e, err := engine.New(opts, nil)
	if err != nil {
		return err
	}
	if err := gen.InstallSteering(e.Ports()[0].Steer(), *nRules, *nFlows); err != nil {
		e.Close()
		return err
	}
	sock := e.Workers()[0].Endpoints()[0].Sock
	if reused := e.Ports()[0].Steer().Reused(); len(reused) > 0 {
		fmt.Fprintf(os.Stderr, "xnic rx: reused %d pinned maps from %s/%s (rules and flows kept)\n", len(reused), opts.PinDir, *iface)
	}
	fmt.Fprintf(os.Stderr, "xnic rx: %s queue %d, xdp %s, xsk %s, need_wakeup %t, batch %d\n",
		*iface, *queue, e.Ports()[0].AttachMode(), map[bool]string{true: "zero-copy", false: "copy"}[sock.ZeroCopy()],
		sock.NeedWakeup(), opts.Batch)
	start := time.Now()
	e.Start()
	last, lastT := uint64(0), start
	tick := time.NewTicker(time.Second)
	deadline := time.NewTimer(*duration)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-deadline.C:
			break loop
		case <-e.Done():
			break loop
		case now := <-tick.C:
			if *quiet {
				continue
			}
			st, err := e.Stats()
			if err != nil {
				continue
			}
			tk := rxTick{Type: lineInterval, Seconds: now.Sub(start).Seconds(), Packets: st.RxPackets,
				PPS: float64(st.RxPackets-last) / now.Sub(lastT).Seconds(), Drops: st.Drops(), FillRingEmpty: st.XSK.RxFillRingEmptyDescs}
			if *asJSON {
				writeJSON(os.Stdout, tk)
			} else {
				fmt.Fprintf(os.Stderr, "%6.1fs  %12d pkts  %8.3f Mpps  drops %d  fill-ring-empty %d\n",
					tk.Seconds, tk.Packets, tk.PPS/1e6, tk.Drops, tk.FillRingEmpty)
			}
			last, lastT = st.RxPackets, now
		}
	}
	tick.Stop()
	e.Stop()
	elapsed := time.Since(start)
	st, err := e.Stats()
	if cerr := errors.Join(e.Err(), e.Close()); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	res := rxResult{
		Type: lineSummary, Name: "xnic-rx", Iface: *iface, Queue: *queue, Packets: st.RxPackets, Bytes: st.RxBytes,
		Seconds: elapsed.Seconds(), PPS: float64(st.RxPackets) / elapsed.Seconds(),
		ZeroCopy: sock.ZeroCopy(), XDPMode: e.Ports()[0].AttachMode().String(),
		XSK: st.XSK, Steer: st.Steer, RxWakeups: st.RxWakeups,
	}
	if opts.Pipeline != nil {
		res.Name = fmt.Sprintf("xnic-pipe-w%d", *window)
		res.Pipeline, res.Window, res.Cache = &st.Pipeline, *window, *cache
	}
	human := humanOut(*asJSON)
	fmt.Fprintf(human, "received %d packets (%d bytes) in %.2fs: %.3f Mpps\n", res.Packets, res.Bytes, res.Seconds, res.PPS/1e6)
	fmt.Fprintf(human, "xsk: rx_dropped %d rx_ring_full %d rx_fill_ring_empty_descs %d rx_invalid_descs %d\n",
		st.XSK.RxDropped, st.XSK.RxRingFull, st.XSK.RxFillRingEmptyDescs, st.XSK.RxInvalidDescs)
	fmt.Fprintf(human, "steer: seen %d redirected %d pass_non_ip %d pass_control %d pass_unmatched %d pass_no_socket %d malformed %d\n",
		st.Steer.RxPackets, st.Steer.Redirected, st.Steer.PassNonIp, st.Steer.PassControl, st.Steer.PassUnmatched, st.Steer.PassNoSocket, st.Steer.DroppedMalformed)
	if p := res.Pipeline; p != nil {
		fmt.Fprintf(human, "pipeline: W=%d cache %d: %d packets, %d connections, %.3f context loads per packet, %d evictions, %d malformed\n",
			*window, *cache, p.Packets, p.Conns, p.LoadsPerPacket(), p.Evictions, p.Malformed)
	}
	if *asJSON {
		return writeJSON(os.Stdout, res)
	}
	return nil
}
