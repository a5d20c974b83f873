package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/config"
	"github.com/xnic/xnic/engine/metrics"
	"github.com/xnic/xnic/internal/cli"
)

// runGuestStats is one guest in `xnic run --json`.
type runGuestStats struct {
	Name      string `json:"name"`
	ID        int    `json:"id"`
	Port      string `json:"port"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
}

// runTick is an interval line of `xnic run --json`.
type runTick struct {
	Type     string                `json:"type"`    // "interval"
	Seconds  float64               `json:"seconds"` // since the engine started
	Guests   []runGuestStats       `json:"guests"`
	Pipeline *engine.PipelineStats `json:"pipeline,omitempty"` // when the engine runs the pipeline
}

// runReport is the summary line of `xnic run --json`, its last.
type runReport struct {
	Type   string          `json:"type"` // "summary"
	Guests []runGuestStats `json:"guests"`
}

// runGuestCounters reads each guest's counters now.
func runGuestCounters(guests []*engine.Guest) []runGuestStats {
	out := make([]runGuestStats, 0, len(guests))
	for _, g := range guests {
		out = append(out, runGuestStats{Name: g.Spec.Name, ID: g.ID, Port: g.Spec.Port, RxPackets: g.RxPackets.Load(), RxBytes: g.RxBytes.Load()})
	}
	return out
}

func runRun(ctx context.Context, args []string) error {
	fs := cli.NewFlags("run", "--config FILE.yaml [--duration D] [--ctl SOCKET] [--reuse-pins] [--metrics-addr HOST:PORT] [--log-level L] [--log-format text|json] [--json]")
	file := fs.String("config", "", "the engine's ports, classes and guests (YAML; required)")
	duration := fs.Duration("duration", 0, "stop after this long (0: until Ctrl-C)")
	asJSON := fs.Bool("json", false, "JSON on stdout: each guest's counters once a second (unless --quiet) and a summary object; text on stderr")
	quiet := fs.Bool("quiet", false, "no per-second lines")
	ctl := fs.String("ctl", engine.DefaultControlPath, "serve counters and connections at this unix socket, for xnic stats --top (\"\": none)")
	reusePins := reusePinsFlag(fs)
	metricsAddr := metricsFlag(fs)
	lf := addLogFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	logger, err := lf.logger()
	if err != nil {
		return err
	}
	if *file == "" {
		return cli.FlagError("config", "required")
	}
	if err := checkMetricsAddr(*metricsAddr); err != nil {
		return err
	}
	// The whole file is checked before anything is loaded.
	cfg, err := config.Load(*file)
	if err != nil {
		return err
	}
	for _, w := range cfg.Ignored(config.Run) {
		logger.Warn("xnic run: " + w.Error())
	}
	r, err := cfg.Resolve()
	if err != nil {
		return err
	}
	r.Options.Logger = logger
	r.Options.ReusePins = *reusePins
	e, stopCtl, err := startConfigEngine(r, *ctl)
	if err != nil {
		return err
	}
	defer e.Close()
	defer stopCtl()
	opts := e.Options()
	var guests []*engine.Guest
	for _, spec := range r.Guests {
		g, err := e.AttachGuest(spec.GuestSpec, nil)
		if err != nil {
			return err
		}
		guests = append(guests, g)
		logger.Info("guest attached", "guest", spec.Name, "id", g.ID, "port", spec.Port, "rules", len(spec.Rules))
	}
	stopMetrics, err := startMetrics(logger, "run", *metricsAddr, e, metrics.Options{})
	if err != nil {
		return err
	}
	defer stopMetrics()
	logger.Info("xnic run: running", "ports", len(opts.Ifaces), "guests", len(guests), "pin_dir", opts.PinDir)
	start := time.Now()
	everySecond(ctx, e.Done(), *duration, *quiet, func() {
		if *asJSON {
			tk := runTick{Type: lineInterval, Seconds: time.Since(start).Seconds(), Guests: runGuestCounters(guests)}
			if st, err := e.Stats(); err == nil && opts.Pipeline != nil {
				tk.Pipeline = &st.Pipeline
			}
			writeJSON(os.Stdout, tk)
			return
		}
		// Without --json the per-second figures are log records on
		// stderr, in the format --log-format asks for.
		for _, g := range guests {
			logger.Info("guest", "guest", g.Spec.Name, "rx_packets", g.RxPackets.Load(), "rx_bytes", g.RxBytes.Load())
		}
		if st, err := e.Stats(); err == nil && opts.Pipeline != nil {
			p := st.Pipeline
			logger.Info("pipeline", "conns", p.Conns, "loads_per_packet", round3(p.LoadsPerPacket()), "gro_segs_per_agg", round3(p.GRORatio()),
				"malformed", p.Malformed, "csum_bad", p.CsumBad)
		}
	})
	out := runGuestCounters(guests)
	for _, s := range out {
		if *asJSON {
			// The summary object on stdout says it all; stderr has the log.
			logger.Info("guest summary", "guest", s.Name, "rx_packets", s.RxPackets, "rx_bytes", s.RxBytes)
			continue
		}
		fmt.Printf("guest %s: %d packets, %d bytes\n", s.Name, s.RxPackets, s.RxBytes)
	}
	if err := errors.Join(stopMetrics(), e.Err(), e.Close()); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(os.Stdout, runReport{Type: lineSummary, Guests: out})
	}
	return nil
}

// startConfigEngine starts the engine a checked config describes, for run
// and serve: traffic no guest claims stays with the host, the DSCP map is
// loaded, and the control socket serves at ctl ("" for none). The caller
// closes the engine after calling stopCtl.
func startConfigEngine(r *config.Resolved, ctl string) (_ *engine.Engine, stopCtl func(), err error) {
	e, err := engine.New(r.Options, nil)
	if err != nil {
		return nil, nil, err
	}
	applyGoMaxProcs(r.Options.Logger, r.GoMaxProcs, len(e.Workers()))
	e.Start()
	stopCtl = func() {}
	if ctl != "" {
		cs, err := e.ServeControl(ctl)
		if err != nil {
			e.Close()
			return nil, nil, err
		}
		stopCtl = func() { cs.Close() }
	}
	return e, stopCtl, nil
}

// reusePinsFlag defines --reuse-pins, for the commands that start an
// engine from a config: engine.Options.ReusePins.
func reusePinsFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("reuse-pins", false, "take over the pins a dead engine (kill -9, crash) left under "+engine.DefaultPinDir+
		": remove them, or with pin: true (rx: --pin) reuse them; without it the start refuses such a port (xnic clean --iface IF removes them)")
}

// round3 rounds a ratio for a log record.
func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// metricsFlag defines --metrics-addr, for run and serve.
func metricsFlag(fs *flag.FlagSet) *string {
	return fs.String("metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics (\"\": none; port 0 picks a free one)")
}

// checkMetricsAddr checks --metrics-addr before anything is loaded.
func checkMetricsAddr(addr string) error {
	if addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return cli.FlagError("metrics-addr", "want HOST:PORT: %s", err)
	}
	return nil
}

// startMetrics serves e's metrics at addr ("" for none) and logs where.
// stop is safe to call more than once; call it before closing the engine,
// so that no scrape reads an engine being torn down.
func startMetrics(logger *slog.Logger, cmd, addr string, e *engine.Engine, o metrics.Options) (stop func() error, err error) {
	if addr == "" {
		return func() error { return nil }, nil
	}
	s, err := metrics.Serve(addr, metrics.New(metrics.FromEngine(e), o), nil)
	if err != nil {
		return nil, err
	}
	logger.Info("xnic "+cmd+": metrics", "url", "http://"+s.Addr().String()+"/metrics")
	var once sync.Once
	return func() error {
		err := error(nil)
		once.Do(func() { err = s.Close() })
		return err
	}, nil
}

// everySecond calls fn once a second (unless quiet) until ctx is done, stop
// is closed (the engine stopped on its own) or, when d > 0, d has passed.
func everySecond(ctx context.Context, stop <-chan struct{}, d time.Duration, quiet bool, fn func()) {
	var deadline <-chan time.Time
	if d > 0 {
		deadline = time.After(d)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-deadline:
			return
		case <-tick.C:
			if !quiet {
				fn()
			}
		}
	}
}
