package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/config"
	"github.com/xnic/xnic/engine/metrics"
	"github.com/xnic/xnic/engine/services"
	"github.com/xnic/xnic/engine/stack"
	"github.com/xnic/xnic/flows/offload"
	"github.com/xnic/xnic/flows/replay"
	"github.com/xnic/xnic/internal/cli"
)

// serveGuestStats is one guest in `xnic serve --json`.
type serveGuestStats struct {
	Name       string      `json:"name"`
	ID         int         `json:"id"`
	Port       string      `json:"port"`
	RxPackets  uint64      `json:"rx_packets"`
	RxBytes    uint64      `json:"rx_bytes"`
	Stack      stack.Stats `json:"stack"`
	Conns      uint64      `json:"conns"`
	BytesIn    uint64      `json:"bytes_in"`
	BytesOut   uint64      `json:"bytes_out"`
	Requests   uint64      `json:"requests"`
	TxRefused  uint64      `json:"tx_refused"`
	ServeError string      `json:"serve_error,omitempty"`
}

// serveTick is an interval line of `xnic serve --json`.
type serveTick struct {
	Type     string               `json:"type"`    // "interval"
	Seconds  float64              `json:"seconds"` // since the guests were ready
	Packets  uint64               `json:"packets"` // the engine's, in
	Pipeline engine.PipelineStats `json:"pipeline"`
	Guests   []serveGuestStats    `json:"guests"`
}

// serveReport is the summary line of `xnic serve --json`, its last.
type serveReport struct {
	Type   string            `json:"type"` // "summary"
	Guests []serveGuestStats `json:"guests"`
}

// serveCounters reads the guests' counters now.
func serveCounters(guests []*servedGuest) []serveGuestStats {
	out := make([]serveGuestStats, 0, len(guests))
	for _, sg := range guests {
		eg := sg.g.EngineGuest()
		s := serveGuestStats{
			Name: sg.name, ID: eg.ID, Port: eg.Spec.Port,
			RxPackets: eg.RxPackets.Load(), RxBytes: eg.RxBytes.Load(), Stack: sg.g.Stats(),
			Conns: sg.c.Conns.Load(), BytesIn: sg.c.BytesIn.Load(), BytesOut: sg.c.BytesOut.Load(),
			Requests: sg.c.Requests.Load(), TxRefused: sg.g.TxRefused(),
		}
		s.ServeError, _ = sg.c.LastError()
		out = append(out, s)
	}
	return out
}

type servedGuest struct {
	name string
	g    *stack.Guest
	c    *services.Counters
	svc  []*services.Service
}

func runServe(ctx context.Context, args []string) error {
	fs := cli.NewFlags("serve", "--config FILE.yaml [--duration D] [--gro on|off] [--tso on|off] [--capture FILE.pcap] [--ctl SOCKET] [--reuse-pins] [--metrics-addr HOST:PORT] [--log-level L] [--log-format text|json] [--json]")
	file := fs.String("config", "", "ports, guests and their services (YAML; required)")
	duration := fs.Duration("duration", 0, "stop after this long (0: until Ctrl-C)")
	asJSON := fs.Bool("json", false, "JSON on stdout: the engine's and each guest's counters once a second (unless --quiet) and a summary object; text on stderr")
	quiet := fs.Bool("quiet", false, "no per-second lines")
	ctl := fs.String("ctl", engine.DefaultControlPath, "serve counters and connections at this unix socket, for xnic stats --top (\"\": none)")
	capture := fs.String("capture", "", "write what the engine delivers to the guests (GRO aggregates, single frames) to this pcap; slows the data path")
	gro := fs.String("gro", "", "on or off: override the config's engine.gro")
	tso := fs.String("tso", "", "on or off: override the config's engine.tso")
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
	if err := checkMetricsAddr(*metricsAddr); err != nil {
		return err
	}
	onOff := func(name, v string) (set, on bool, err error) {
		switch v {
		case "":
			return false, false, nil
		case "on", "true":
			return true, true, nil
		case "off", "false":
			return true, false, nil
		}
		return false, false, cli.FlagError(name, "want on or off, got %q", v)
	}
	groSet, groOn, err := onOff("gro", *gro)
	if err != nil {
		return err
	}
	tsoSet, tsoOn, err := onOff("tso", *tso)
	if err != nil {
		return err
	}
	if *file == "" {
		return cli.FlagError("config", "required")
	}
	if *duration < 0 {
		return cli.FlagError("duration", "must not be negative, got %s", *duration)
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return err
	}
	r, err := cfg.Resolve()
	if err != nil {
		return err
	}
	if r.Options.Pipeline == nil {
		return fmt.Errorf("%s: engine.pipeline: xnic serve needs the pipeline, which feeds the guests' stacks", *file)
	}
	if groSet {
		r.Options.Pipeline.GRO = groOn
	}
	if tsoSet {
		r.TSO = tsoOn
	}
	var capw *captureWriter
	if *capture != "" {
		if capw, err = newCaptureWriter(*capture); err != nil {
			return cli.FlagError("capture", "%s", err)
		}
		defer capw.Close()
	}
	for i, g := range r.Guests {
		if len(g.Addrs) == 0 {
			return fmt.Errorf("%s: guests[%d].ipv4: a guest with its own stack needs at least one address", *file, i)
		}
		if g.MAC == nil {
			// A locally administered address of our own, stable per guest.
			r.Guests[i].MAC = net.HardwareAddr{0x02, 0x78, 0x6e, 0x69, 0x63, byte(0x10 + i)}
		}
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
	var guests []*servedGuest
	defer func() {
		for _, sg := range guests {
			for _, s := range sg.svc {
				s.Stop()
			}
			sg.g.Close()
		}
	}()
	for _, spec := range r.Guests {
		so := stack.DefaultOptions()
		if !r.TSO {
			so.GSOMaxSize = 0
		}
		g, err := stack.Attach(e, spec.GuestSpec, so)
		if err != nil {
			return err
		}
		sg := &servedGuest{name: spec.Name, g: g, c: &services.Counters{}}
		if capw != nil {
			g.SetTap(capw.write)
		}
		guests = append(guests, sg)
		status := func() any { return g.Stats() }
		for _, sv := range spec.Services {
			s, err := services.Start(g, sv.Kind, sv.Port, spec.Name, sg.c, status)
			if err != nil {
				return fmt.Errorf("guest %s: %w", spec.Name, err)
			}
			sg.svc = append(sg.svc, s)
			logger.Info("service started", "guest", spec.Name, "kind", sv.Kind, "port", s.Addr[1:])
		}
		logger.Info("guest attached", "guest", spec.Name, "id", g.EngineGuest().ID, "port", spec.Port, "addrs", addrList(spec.GuestSpec),
			"mac", spec.MAC.String(), "rules", len(spec.Rules)+len(stack.OwnRules(spec.Addrs)))
	}
	var stacks []metrics.GuestStack
	for _, sg := range guests {
		stacks = append(stacks, metrics.GuestStack{Guest: sg.name, Stack: sg.g})
	}
	stopMetrics, err := startMetrics(logger, "serve", *metricsAddr, e, metrics.Options{Stacks: stacks})
	if err != nil {
		return err
	}
	defer stopMetrics()
	logger.Info("xnic serve: ready", "guests", len(guests), "ports", len(opts.Ifaces), "gro", r.Options.Pipeline.GRO, "tso", r.TSO)

	start := time.Now()
	everySecond(ctx, e.Done(), *duration, *quiet, func() {
		st, _ := e.Stats()
		p := st.Pipeline
		if *asJSON {
			writeJSON(os.Stdout, serveTick{Type: lineInterval, Seconds: time.Since(start).Seconds(), Packets: st.RxPackets,
				Pipeline: p, Guests: serveCounters(guests)})
			return
		}
		// Without --json the per-second figures are log records on
		// stderr, in the format --log-format asks for.
		logger.Info("engine", "rx_packets", st.RxPackets, "conns", p.Conns, "gro_segs_per_agg", round3(p.GRORatio()),
			"malformed", p.Malformed, "csum_bad", p.CsumBad)
		for _, sg := range guests {
			ss := sg.g.Stats()
			logger.Info("guest", "guest", sg.name, "rx_packets", ss.RxPackets, "rx_aggregates", ss.RxAggregates,
				"tx_packets", ss.TxPackets, "tx_gso_packets", ss.TxGSOPackets, "conns", sg.c.Conns.Load(),
				"bytes_in", sg.c.BytesIn.Load(), "bytes_out", sg.c.BytesOut.Load(), "requests", sg.c.Requests.Load())
		}
	})
	out := serveCounters(guests)
	for _, s := range out {
		if *asJSON {
			// The summary object on stdout says it all; stderr has the log.
			logger.Info("guest summary", "guest", s.Name, "rx_packets", s.RxPackets, "conns", s.Conns,
				"bytes_in", s.BytesIn, "bytes_out", s.BytesOut, "requests", s.Requests)
			continue
		}
		fmt.Printf("guest %s: %d packets in, %d connections, %d bytes in, %d bytes out, %d http requests\n",
			s.Name, s.RxPackets, s.Conns, s.BytesIn, s.BytesOut, s.Requests)
	}
	errs := []error{stopMetrics(), e.Err()}
	for _, sg := range guests {
		for _, s := range sg.svc {
			errs = append(errs, s.Stop())
		}
		errs = append(errs, sg.g.Close())
	}
	guests = nil
	errs = append(errs, e.Close())
	if capw != nil {
		n, err := capw.Close()
		errs = append(errs, err)
		logger.Info("xnic serve: capture written", "packets", n, "file", *capture)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(os.Stdout, serveReport{Type: lineSummary, Guests: out})
	}
	return nil
}

func addrList(g engine.GuestSpec) string {
	s := ""
	for i, a := range g.Addrs {
		if i > 0 {
			s += " "
		}
		s += a.String()
	}
	return s
}

// captureWriter writes the engine's deliveries to guests to a pcap. The
// workers of every port call write, so it takes a lock: a debugging aid,
// not a data-path feature.
type captureWriter struct {
	mu  sync.Mutex
	f   *os.File
	bw  *bufio.Writer
	w   *pcapgo.Writer
	buf []byte
	n   uint64
	err error
}

func newCaptureWriter(path string) (*captureWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	c := &captureWriter{f: f, bw: bufio.NewWriterSize(f, 1<<20), buf: make([]byte, 0, 1<<17)}
	c.w = pcapgo.NewWriterNanos(c.bw)
	if err := c.w.WriteFileHeader(replay.MaxSnaplen, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return nil, fmt.Errorf("write pcap header: %w", err)
	}
	return c, nil
}

func (c *captureWriter) write(a *offload.Aggregate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || c.f == nil {
		return
	}
	c.buf = a.AppendTo(c.buf[:0])
	ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(c.buf), Length: len(c.buf)}
	if c.err = c.w.WritePacket(ci, c.buf); c.err == nil {
		c.n++
	}
}

// Close flushes and closes the file; it returns the packets written.
func (c *captureWriter) Close() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return c.n, nil
	}
	err := errors.Join(c.err, c.bw.Flush(), c.f.Close())
	c.f = nil
	return c.n, err
}
