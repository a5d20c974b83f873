package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/xnic/xnic/engine/config"
	"github.com/xnic/xnic/engine/services"
)

// Latency benchmark. RunLatency measures the round-trip time of small
// messages between a Go client in the lab's peer netns (the kernel's TCP
// and UDP) and one server at a time on the host end of the veth, on queue
// 0, the servers of `xnic bench tcp` (servers.go) running echo services:
//
//   - xnic: `xnic serve`, one guest with TCP echo and UDP echo on its own
//     netstack on the engine, engine.poll_ms left at its default (idle
//     workers sleep in poll(2));
//   - xnic-busy: the same with poll_ms: 0 (workers spin);
//   - gvisor-xdp: gVisor's netstack on gVisor's own AF_XDP endpoint
//     (bench/peers/gvisorxdp --echo);
//   - kernel: the host's own TCP and UDP on the host veth, served by `xnic
//     bench latency --serve-kernel ADDR`.
//
// Two kinds of message: TCP ping-pong (a Size-byte request and the same
// bytes back on one connection, the next request once the answer is in)
// and UDP echo (a Size-byte datagram and its echo). Each request is timed
// alone with the monotonic clock, from before the write to after the last
// byte of the answer is read; the first Warmup requests of each kind are
// not counted. A round yields the percentiles of its Requests samples per
// kind; the summary is the median over rounds of each percentile.

// Latency contender names, as they appear in reports and in
// LatencyOptions.Only.
const (
	LatXnic      = "xnic"
	LatXnicBusy  = "xnic-busy"
	LatGvisorXDP = TCPGvisorXDP
	LatKernel    = TCPKernel
)

// LatencyContenders returns the latency contenders a run measures by
// default, in the order a round runs them.
func LatencyContenders() []string {
	return []string{LatXnic, LatXnicBusy, LatGvisorXDP, LatKernel}
}

// AllLatencyContenders are the default contenders and then the breakdown's
// (BreakdownContenders), the order of a round that runs them all.
func AllLatencyContenders() []string {
	return append(LatencyContenders(), BreakdownContenders()...)
}

// Kinds of latency measurement.
const (
	KindTCP = "tcp" // TCP ping-pong on one connection
	KindUDP = "udp" // UDP echo
)

// LatencyKinds are the kinds in the order a measurement runs them.
func LatencyKinds() []string { return []string{KindTCP, KindUDP} }

// Limits of LatencyOptions.
const (
	MinLatencySize = 8 // the request's sequence number
	MaxLatencySize = 1400
	MaxRequests    = 10_000_000
)

// LatencyOptions configure RunLatency.
type LatencyOptions struct {
	// Rounds is the number of times every contender is measured.
	Rounds int
	// Requests is the number of timed requests of each kind per round,
	// and Warmup the requests before them, not counted.
	Requests, Warmup int
	// Size is the bytes of each request and of its answer.
	Size int
	// Timeout bounds one request: a TCP request not answered by then fails
	// the measurement; a UDP one is counted lost.
	Timeout time.Duration
	// Only restricts the run to these contenders (nil: LatencyContenders,
	// and BreakdownContenders with Breakdown), still in the order of
	// AllLatencyContenders.
	Only []string
	// Breakdown adds the breakdown's contenders (latencybreakdown.go):
	// in-process engines that echo UDP without a netstack, on the worker
	// and through a goroutine, so that differences between contenders
	// attribute the round trip to its parts.
	Breakdown bool
	// Port is the port of the TCP and UDP echo services, and HTTPPort the
	// port gvisorxdp's HTTP service takes (it always runs one).
	Port, HTTPPort int

	// Xnic is the xnic binary: `xnic serve` for the xnic contenders and
	// `xnic bench latency --serve-kernel` for the kernel.
	Xnic string
	// GvisorXDP is the gvisorxdp binary (bench/peers/gvisorxdp).
	GvisorXDP string

	// ClientCPU is the CPU this process, the client, is pinned to while
	// RunLatency runs, and ServerCPU the CPU of every server process; -1
	// leaves the placement to the scheduler.
	ClientCPU, ServerCPU int
	// Pause is the quiet time between two contenders.
	Pause time.Duration

	// LabSlot is the lock file held while the lab is up; "" holds none.
	LabSlot string
	// LabPrefix starts the lab's name, followed by four hex digits.
	LabPrefix string
	// Log receives a line per measurement; nil discards them.
	Log io.Writer
}

// DefaultLatencyOptions: 5 rounds of 10,000 requests of each kind after
// 1,000 of warm-up, 64-byte messages, a 1 s timeout, every contender, echo
// on port 7, nothing pinned. Xnic and GvisorXDP must still be set.
func DefaultLatencyOptions() LatencyOptions {
	return LatencyOptions{
		Rounds:    5,
		Requests:  10_000,
		Warmup:    1_000,
		Size:      64,
		Timeout:   time.Second,
		Port:      services.DefaultPort(services.Echo),
		HTTPPort:  services.DefaultPort(services.HTTP),
		ClientCPU: -1,
		ServerCPU: -1,
		Pause:     300 * time.Millisecond,
		LabSlot:   DefaultLabSlot,
		LabPrefix: "xl",
	}
}

// Validate checks the options and returns an *OptionError naming the first
// bad field; it does not look at the file system.
func (o LatencyOptions) Validate() error {
	if o.Rounds < 1 || o.Rounds > MaxRounds {
		return optErr("rounds", "must be 1..%d, got %d", MaxRounds, o.Rounds)
	}
	if o.Requests < 1 || o.Requests > MaxRequests {
		return optErr("requests", "must be 1..%d, got %d", MaxRequests, o.Requests)
	}
	if o.Warmup < 0 || o.Warmup > MaxRequests {
		return optErr("warmup", "must be 0..%d, got %d", MaxRequests, o.Warmup)
	}
	if o.Size < MinLatencySize || o.Size > MaxLatencySize {
		return optErr("size", "must be %d..%d bytes, got %d", MinLatencySize, MaxLatencySize, o.Size)
	}
	if o.Timeout < time.Millisecond {
		return optErr("timeout", "must be at least 1ms, got %s", o.Timeout)
	}
	for _, name := range o.Only {
		if !slices.Contains(AllLatencyContenders(), name) {
			return optErr("only", "unknown contender %q (known: %v)", name, AllLatencyContenders())
		}
	}
	if len(o.contenders()) == 0 {
		return optErr("only", "no contender selected")
	}
	for _, p := range []struct {
		name string
		port int
	}{{"port", o.Port}, {"http port", o.HTTPPort}} {
		if p.port < 1 || p.port > 65535 {
			return optErr(p.name, "must be 1..65535, got %d", p.port)
		}
	}
	if o.Port == o.HTTPPort {
		return optErr("http port", "must differ from the echo port %d", o.Port)
	}
	ncpu := runtime.NumCPU()
	for _, c := range []struct {
		name string
		cpu  int
	}{{"client cpu", o.ClientCPU}, {"server cpu", o.ServerCPU}} {
		if c.cpu < -1 || c.cpu >= ncpu {
			return optErr(c.name, "must be -1 (unpinned) or 0..%d, got %d", ncpu-1, c.cpu)
		}
	}
	if o.Pause < 0 {
		return optErr("pause", "must not be negative, got %s", o.Pause)
	}
	if o.Xnic == "" && slices.ContainsFunc(o.contenders(), latUsesXnic) {
		return optErr("xnic", "path to the xnic binary must be set")
	}
	if o.GvisorXDP == "" && slices.Contains(o.contenders(), LatGvisorXDP) {
		return optErr("gvisorxdp", "path to the gvisorxdp binary must be set")
	}
	if o.LabPrefix == "" || len(o.LabPrefix) > 6 {
		return optErr("lab prefix", "must be 1..6 characters, got %q", o.LabPrefix)
	}
	return nil
}

// latUsesXnic reports whether the contender's server is the xnic binary.
func latUsesXnic(name string) bool {
	return name == LatXnic || name == LatXnicBusy || name == LatKernel
}

// contenders are the selected contenders in run order.
func (o LatencyOptions) contenders() []string {
	if len(o.Only) == 0 {
		if o.Breakdown {
			return AllLatencyContenders()
		}
		return LatencyContenders()
	}
	var out []string
	for _, c := range AllLatencyContenders() {
		if slices.Contains(o.Only, c) {
			out = append(out, c)
		}
	}
	return out
}

// checkBinaries fails with ErrMissingBinary if a selected contender's
// binary is not an executable file, or ethtool is missing for the kernel.
func (o LatencyOptions) checkBinaries() error {
	for _, name := range o.contenders() {
		if isEngineEcho(name) {
			continue // in this process
		}
		path, hint := o.Xnic, "go build ./cmd/xnic"
		if name == LatGvisorXDP {
			path, hint = o.GvisorXDP, "make -C bench/peers builds it"
		}
		st, err := os.Stat(path)
		if err == nil && (st.IsDir() || st.Mode()&0o111 == 0) {
			err = errors.New("not an executable file")
		}
		if err != nil {
			return fmt.Errorf("bench latency: %s: %s: %w (%w; %s)", name, path, ErrMissingBinary, err, hint)
		}
		if name == LatKernel {
			if _, err := exec.LookPath("ethtool"); err != nil {
				return fmt.Errorf("bench latency: kernel: ethtool, to set the host veth's offloads: %w (%w)", ErrMissingBinary, err)
			}
		}
	}
	return nil
}

// latBencher is one RunLatency: the lab and what every measurement shares.
type latBencher struct {
	opts LatencyOptions
	srv  *serverLab
	log  io.Writer
	// samples are every round's samples, per contender and kind, for the
	// distributions.
	samples map[latKey][]float64
}

type latKey struct{ contender, kind string }

// RunLatency builds a lab, measures every selected contender
// LatencyOptions.Rounds times and tears the lab down. It needs root. On
// cancellation it stops what runs, cleans up and returns the report so far
// with ctx's error. A failed measurement does not stop the run: it is
// recorded in the report and RunLatency returns an error matching
// ErrFailed.
func RunLatency(ctx context.Context, opts LatencyOptions) (rep *LatencyReport, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	log, release, err := prepare(ctx, "bench latency", opts.checkBinaries, opts.Log, opts.LabSlot)
	if err != nil {
		return nil, err
	}
	defer release()
	dir, err := os.MkdirTemp("", "xnic-bench-latency-")
	if err != nil {
		return nil, fmt.Errorf("bench latency: %w", err)
	}
	defer os.RemoveAll(dir)
	l, err := upLab("bench latency", opts.LabPrefix, true) // the guest has an IPv6 address
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("bench latency: tear down lab: %w", derr))
		}
	}()
	restore, err := pinProcess(opts.ClientCPU)
	if err != nil {
		return nil, fmt.Errorf("bench latency: %w", err)
	}
	defer func() {
		if rerr := restore(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("bench latency: %w", rerr))
		}
	}()

	b := &latBencher{opts: opts, srv: &serverLab{lab: l, port: l.Ports[0], dir: dir}, log: log,
		samples: map[latKey][]float64{}}
	rep = &LatencyReport{Env: b.env()}
	fmt.Fprintf(log, "lab %s: %s (host) <-> %s (netns %s); client on %s, servers on %s\n",
		l.Name, b.srv.port.Host, b.srv.port.Peer, l.Netns, cpuName(opts.ClientCPU), cpuName(opts.ServerCPU))
	defer func() {
		rep.Summary, rep.Targets = summarizeLatency(opts.contenders(), rep.Rounds)
		rep.CDF = b.distributions()
		if opts.Breakdown {
			rep.Breakdown = latencyBreakdown(rep.Summary)
		}
	}()

	err = runRounds(ctx, "bench latency", opts.Rounds, opts.contenders(), opts.Pause, b.measure, func(i int, res LatencyResult) {
		if len(rep.Rounds) < i {
			rep.Rounds = append(rep.Rounds, LatencyRound{Index: i})
		}
		rd := &rep.Rounds[i-1]
		rd.Results = append(rd.Results, res)
		b.logResult(i, res)
	})
	return rep, err
}

// env describes the machine and this run's set-up.
func (b *latBencher) env() LatencyEnv {
	o := b.opts
	return LatencyEnv{
		Machine: ThisMachine(time.Now()),
		Lab:     b.srv.lab.Name, Rounds: o.Rounds, Requests: o.Requests, Warmup: o.Warmup, Size: o.Size,
		TimeoutSec: o.Timeout.Seconds(), Contenders: o.contenders(), ClientCPU: o.ClientCPU, ServerCPU: o.ServerCPU,
		Client: "Go in the lab's peer netns over the kernel's TCP (TCP_NODELAY) and UDP, one request in flight; " +
			"peer veth with tx checksum, TSO, GSO and GRO off",
		Servers: map[string]string{
			LatXnic: fmt.Sprintf("xnic serve: one guest with its own gVisor netstack on the engine, TCP echo and UDP echo "+
				"on %s, engine.poll_ms %d (the default: idle workers sleep in poll(2)), GRO and TSO on, %s", TCPGuestIPv4.Addr(), config.DefaultPollMs, serveProcs()),
			LatXnicBusy:  "the same with engine.poll_ms 0: the worker spins",
			LatGvisorXDP: "gVisor netstack on gVisor's AF_XDP link endpoint (copy mode), xnic_steer redirecting the guest's addresses",
			LatKernel:    "the host kernel's TCP and UDP on the host veth (" + b.srv.port.HostIPv4.String() + "), GRO on",
			LatEngineEcho: fmt.Sprintf("UDP only: an engine in the client's process, engine.poll_ms %d, pipeline on, a raw guest "+
				"(no netstack) on %s whose frame handler swaps each datagram's addresses and ports and sends it back "+
				"with Guest.Send on the worker", config.DefaultPollMs, TCPGuestIPv4.Addr()),
			LatEngineEchoBusy: "the same with engine.poll_ms 0",
			LatEngineHandoff: fmt.Sprintf("UDP only: as %s, but the handler copies each frame to a channel and a goroutine "+
				"swaps and sends it (the hand-off, and the worker woken to send), engine.poll_ms %d", LatEngineEcho, config.DefaultPollMs),
			LatEngineHandoffBusy: "the same with engine.poll_ms 0",
		},
	}
}

// measure measures one contender once: it starts its server, runs TCP
// ping-pong and UDP echo against it and stops it. Errors go into the
// result.
func (b *latBencher) measure(ctx context.Context, name string) LatencyResult {
	res := LatencyResult{Contender: name}
	if err := b.measureServer(ctx, name, &res); err != nil {
		res.Err = err.Error()
	}
	return res
}

func (b *latBencher) measureServer(ctx context.Context, name string, res *LatencyResult) error {
	o := b.opts
	var spec receiverSpec
	target := guestTarget(o.Port)
	switch name {
	case LatXnic, LatXnicBusy:
		var engine []string
		if name == LatXnicBusy {
			engine = []string{"poll_ms: 0"}
		}
		var err error
		spec, err = b.srv.xnicServe(o.Xnic, name, engine, "",
			[]guestService{{kind: services.Echo, port: o.Port}, {kind: services.UDPEcho, port: o.Port}})
		if err != nil {
			return err
		}
	case LatGvisorXDP:
		spec = b.srv.gvisorXDP(o.GvisorXDP, o.HTTPPort, "--echo", strconv.Itoa(o.Port))
	case LatKernel:
		target = b.srv.kernelTarget(o.Port)
		spec = kernelServer(o.Xnic, "bench", "latency", "--serve-kernel", target.String())
	case LatEngineEcho, LatEngineEchoBusy, LatEngineHandoff, LatEngineHandoffBusy:
		return b.measureEngineEcho(ctx, name, res)
	default:
		return fmt.Errorf("unknown contender %q", name)
	}
	c := &pingClient{dial: b.srv.dial, addr: target.String(), size: o.Size, warmup: o.Warmup,
		requests: o.Requests, timeout: o.Timeout}
	run, err := b.srv.withServer(ctx, spec, o.ServerCPU, name == LatKernel, func(ctx context.Context, _ int, _ <-chan struct{}) {
		var s []float64
		res.TCP, s = c.pingPong(ctx)
		b.keep(name, KindTCP, s)
		res.UDP, s = c.echo(ctx)
		b.keep(name, KindUDP, s)
	})
	res.ServerCPUs, res.Noise, res.Server = run.cpus, run.noise, run.report
	return err
}

// keep adds a measurement's samples to the distribution of its contender
// and kind.
func (b *latBencher) keep(name, kind string, s []float64) {
	k := latKey{name, kind}
	b.samples[k] = append(b.samples[k], s...)
}

// distributions are the CDFs of every contender and kind over all rounds.
func (b *latBencher) distributions() []LatencyCDF {
	var out []LatencyCDF
	for _, name := range b.opts.contenders() {
		for _, kind := range LatencyKinds() {
			if s := b.samples[latKey{name, kind}]; len(s) > 0 {
				out = append(out, LatencyCDF{Contender: name, Kind: kind, Samples: len(s), Points: cdfPoints(s)})
			}
		}
	}
	return out
}

func (b *latBencher) logResult(round int, r LatencyResult) {
	line := fmt.Sprintf("round %d/%d %-10s", round, b.opts.Rounds, r.Contender)
	if r.Err != "" {
		fmt.Fprintf(b.log, "%s FAILED: %s\n", line, r.Err)
		return
	}
	cell := func(s LatencyStat) string {
		if s.NotRun {
			return "not run"
		}
		if !s.OK() {
			return "FAILED (" + s.Err + ")"
		}
		lost := ""
		if s.Lost > 0 {
			lost = fmt.Sprintf(", %d lost", s.Lost)
		}
		return fmt.Sprintf("p50 %s p99 %s p99.9 %s µs%s", us(s.P50Us), us(s.P99Us), us(s.P999Us), lost)
	}
	fmt.Fprintf(b.log, "%s tcp %s; udp %s; others %.0f%% of the CPUs\n", line, cell(r.TCP), cell(r.UDP), r.Noise.Others*100)
}

// us formats microseconds.
func us(v float64) string {
	if v < 100 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
