package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/config"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/stack"
)

// QoS benchmark. RunQoS builds a one-port lab, runs one engine over its
// host port in this process with traffic classes, and attaches a guest
// with its own gVisor netstack, shaped to QoSOptions.Rate over all its
// sends. The classes are an interactive one at priority 0 (TCP port
// qosPriorityPort) and QoSOptions.Weights bulk ones at priority 1, one
// TCP port each from qosBulkPort, all chosen by ClassSpec.Ports: the
// guest's connections on a class's port are the class's, and so are its
// sends on them.
//
// Each round measures two contenders:
//
//   - xnic: the priority class's 64-byte TCP ping-pong alone; then one
//     download per bulk class from the guest (the guest writes as fast as
//     its stack lets it, the peer reads), each offering more than the
//     shaped rate; after QoSOptions.Settle, the bytes each connection
//     brings to the peer over QoSOptions.Duration (its share of the
//     total against its weight's) and the bytes the host veth sent (the
//     shaped rate against the configured one); then the ping-pong again
//     with the downloads still running.
//   - htb: the same downloads from kernel TCP servers on the host
//     address, through the kernel's HTB on the same veth: one class per
//     bulk class with its weight's share of the rate as its rate and the
//     whole rate as its ceil, at one prio, under a parent of the whole
//     rate, chosen by u32 filters on the source port.
//
// Frames are MTU-sized both ways (the lab's offloads are off on both ends),
// so the host veth's tx_bytes are the frames' bytes from the Ethernet
// header on, what HTB counts and what a guest's token bucket counts.

// QoS contenders, in round order.
const (
	QoSXnic = "xnic"
	QoSHTB  = "htb"
)

// QoSContenders returns the contenders in round order.
func QoSContenders() []string { return []string{QoSXnic, QoSHTB} }

// Limits of QoSOptions.
const (
	MaxQoSClasses = 6
	MaxQoSWeight  = 1000
	MinQoSRate    = 1_000_000      // bits per second
	MaxQoSRate    = 10_000_000_000 // bits per second
	MaxQoSRequest = 1 << 20
)

// The guest, its classes' ports and its token bucket's depth.
var qosGuestMAC = net.HardwareAddr{0x02, 0x78, 0x6e, 0x62, 0x00, 0x30}

const (
	qosGuestHost    = 10
	qosPriorityPort = 5000
	qosBulkPort     = 5001 // the first bulk class's; the next ones follow
	// qosPriorityID is the priority class's id; bulk class i is
	// qosPriorityID+1+i.
	qosPriorityID = 1
	// qosBurst is the guest's token bucket depth in bytes: 2 ms at
	// 200 Mbit/s, a rounding error over a window of seconds.
	qosBurst = 64 << 10
	// qosPingSize is the priority class's request and answer.
	qosPingSize = 64
)

// Deep rings, as in the migration benchmark: the worker shares two cores
// with the guest's stack and the peer's TCP.
const (
	qosUMEMFrames = 32768
	qosRingSize   = 8192
)

// QoSOptions configure RunQoS.
type QoSOptions struct {
	// Rounds is the number of times every contender is measured.
	Rounds int
	// Duration is the window over which the shares and the rate are
	// measured, after Settle.
	Duration time.Duration
	// Settle is the time the downloads run before the window opens.
	Settle time.Duration
	// Rate is the guest's shaped rate (and HTB's) in bits per second.
	Rate uint64
	// Weights are the bulk classes' ETS weights (and HTB's rate shares).
	Weights []int
	// Requests and Warmup are the ping-pong's timed and untimed requests
	// in each of its two measurements; Timeout bounds one request.
	Requests, Warmup int
	Timeout          time.Duration
	// PollMs is the engine's engine.Options.PollMs.
	PollMs int

	// LabSlot is the lock file held while the lab is up; "" holds none.
	LabSlot string
	// LabPrefix starts the lab's name, followed by four hex digits.
	LabPrefix string
	// Log receives a line per measurement and the engine's events; nil
	// discards them.
	Log io.Writer
}

// DefaultQoSOptions: 3 rounds of a 5 s window after 1 s of settle, the
// guest shaped at 200 Mbit/s, bulk weights 6:3:1, 2000 ping-pong requests
// after 200 of warm-up, and idle workers that sleep as in a config file's
// default.
func DefaultQoSOptions() QoSOptions {
	return QoSOptions{
		Rounds:    3,
		Duration:  5 * time.Second,
		Settle:    time.Second,
		Rate:      200_000_000,
		Weights:   []int{6, 3, 1},
		Requests:  2000,
		Warmup:    200,
		Timeout:   2 * time.Second,
		PollMs:    config.DefaultPollMs,
		LabSlot:   DefaultLabSlot,
		LabPrefix: "xq",
	}
}

// Validate checks the options and returns an *OptionError naming the first
// bad field.
func (o QoSOptions) Validate() error {
	if o.Rounds < 1 || o.Rounds > MaxRounds {
		return optErr("rounds", "must be 1..%d, got %d", MaxRounds, o.Rounds)
	}
	if o.Duration < MinGoodputTime {
		return optErr("duration", "must be at least %s, got %s", MinGoodputTime, o.Duration)
	}
	if o.Settle < MinSettle {
		return optErr("settle", "must be at least %s, got %s", MinSettle, o.Settle)
	}
	if o.Rate < MinQoSRate || o.Rate > MaxQoSRate {
		return optErr("rate", "must be %d..%d bits per second, got %d", uint64(MinQoSRate), uint64(MaxQoSRate), o.Rate)
	}
	if len(o.Weights) < 2 || len(o.Weights) > MaxQoSClasses {
		return optErr("weights", "must name 2..%d classes, got %d", MaxQoSClasses, len(o.Weights))
	}
	for i, w := range o.Weights {
		if w < 1 || w > MaxQoSWeight {
			return optErr("weights", "weight %d must be 1..%d, got %d", i, MaxQoSWeight, w)
		}
	}
	if o.Requests < 1 || o.Requests > MaxQoSRequest {
		return optErr("requests", "must be 1..%d, got %d", MaxQoSRequest, o.Requests)
	}
	if o.Warmup < 0 || o.Warmup > MaxQoSRequest {
		return optErr("warmup", "must be 0..%d, got %d", MaxQoSRequest, o.Warmup)
	}
	if o.Timeout <= 0 {
		return optErr("timeout", "must be positive, got %s", o.Timeout)
	}
	if o.PollMs < 0 || o.PollMs > maxPollMs {
		return optErr("poll ms", "must be 0..%d, got %d", maxPollMs, o.PollMs)
	}
	if o.LabPrefix == "" || len(o.LabPrefix) > 6 {
		return optErr("lab prefix", "must be 1..6 characters, got %q", o.LabPrefix)
	}
	return nil
}

// bulkClass is bulk class i: its name and TCP port.
func bulkClass(i int) (name string, port int) {
	return fmt.Sprintf("bulk-%c", 'a'+i), qosBulkPort + i
}

// classes are the engine's classes: the priority one, then the bulk ones.
func (o QoSOptions) classes() []engine.ClassSpec {
	cs := []engine.ClassSpec{{Name: "interactive", ID: qosPriorityID, Priority: 0, Weight: 1,
		Ports: []engine.PortRange{{Lo: qosPriorityPort, Hi: qosPriorityPort}}}}
	for i, w := range o.Weights {
		name, port := bulkClass(i)
		cs = append(cs, engine.ClassSpec{Name: name, ID: uint8(qosPriorityID + 1 + i), Priority: 1, Weight: w,
			Ports: []engine.PortRange{{Lo: uint16(port), Hi: uint16(port)}}})
	}
	return cs
}

// qosBencher is one RunQoS: the lab, the engine, the guest and its echo
// server.
type qosBencher struct {
	opts  QoSOptions
	lab   *lab.Lab
	eng   *engine.Engine
	guest *stack.Guest
	echo  *echoServer
	log   io.Writer
	// stopped: stop has run (before the drop-cost runs, which need the
	// port to themselves).
	stopped bool
	// floodSent and floodMode: the last drop-cost flood's frames and
	// generator mode.
	floodSent uint64
	floodMode gen.Mode
}

// RunQoS builds the lab, runs the engine and the guest, measures every
// contender QoSOptions.Rounds times, and tears everything down (the HTB
// qdisc, the downloads, the guest, the engine and the lab), also on error.
// It needs root. A failed measurement does not stop the run; RunQoS then
// returns the report with an error matching ErrFailed. On cancellation it
// returns the report so far with ctx's error.
func RunQoS(ctx context.Context, opts QoSOptions) (rep *QoSReport, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	log, release, err := prepare(ctx, "bench qos", func() error { return nil }, opts.Log, opts.LabSlot)
	if err != nil {
		return nil, err
	}
	defer release()
	l, err := upQoSLab(opts.LabPrefix)
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("bench qos: tear down lab: %w", derr))
		}
	}()
	b := &qosBencher{opts: opts, lab: l, log: log}
	if err := b.start(); err != nil {
		return nil, fmt.Errorf("bench qos: %w", err)
	}
	defer func() {
		if cerr := b.stop(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("bench qos: %w", cerr))
		}
	}()
	rep = &QoSReport{Env: b.env()}
	start := sampleNoise()
	defer func() {
		rep.Env.Noise = noiseBetween(start, sampleNoise())
		rep.Env.LoadAvgEnd = ThisMachine(time.Now()).LoadAvg
		rep.summarize()
	}()
	fmt.Fprintf(log, "lab %s: host %s at %s, guest at %s shaped to %s Mbit/s; the peer reads in netns %s\n",
		l.Name, l.Ports[0].Host, l.Ports[0].HostIPv4, b.guestAddr(), mbps(float64(opts.Rate)), l.Netns)
	err = runRounds(ctx, "bench qos", opts.Rounds, QoSContenders(), 300*time.Millisecond,
		func(ctx context.Context, name string) QoSResult {
			t0 := sampleNoise()
			var res QoSResult
			if name == QoSHTB {
				res = b.measureHTB(ctx)
			} else {
				res = b.measureXnic(ctx)
			}
			res.Noise = noiseBetween(t0, sampleNoise())
			return res
		},
		func(round int, res QoSResult) {
			if len(rep.Rounds) < round {
				rep.Rounds = append(rep.Rounds, QoSRound{Index: round})
			}
			rep.Rounds[round-1].Results = append(rep.Rounds[round-1].Results, res)
			b.logResult(round, res)
		})
	if err != nil {
		return rep, err
	}
	// The drop cost needs the port without the main engine.
	if err := b.stop(); err != nil {
		return rep, fmt.Errorf("bench qos: %w", err)
	}
	d, derr := b.measureDropCost(ctx)
	if derr != nil {
		fmt.Fprintf(log, "drop cost: %v\n", derr)
	} else {
		rep.DropCost = d
		fmt.Fprintf(log, "drop cost: early in XDP %.0f ns per frame, in user space %.0f ns per frame\n", d.XDPNsPerFrame, d.UserNsPerFrame)
	}
	return rep, nil
}

// upQoSLab builds a one-port lab, IPv4 only, with the offloads off on both
// ends: MTU frames on the veth for the kernel's servers as for the guest.
func upQoSLab(prefix string) (*lab.Lab, error) {
	lo := lab.DefaultOptions()
	lo.IPv6, lo.HostOffloadsOff = false, true
	return upLabWith("bench qos", prefix, lo)
}

// start runs the engine with the classes, attaches the shaped guest and
// starts its echo server on the priority class's port.
func (b *qosBencher) start() error {
	o := engine.DefaultOptions()
	o.Ifaces = []string{b.lab.Ports[0].Host}
	o.NoCatchAll = true
	o.PinDir = ""
	o.PollMs = b.opts.PollMs
	o.UMEM.NumFrames = qosUMEMFrames
	o.Socket.RxSize, o.Socket.FillSize = qosRingSize, qosRingSize
	o.Classes = b.opts.classes()
	po := engine.DefaultPipelineOptions()
	o.Pipeline = &po
	o.Logger = slog.New(slog.NewTextHandler(b.log, nil))
	e, err := engine.New(o, nil)
	if err != nil {
		return fmt.Errorf("start the engine: %w", err)
	}
	e.Start()
	spec := engine.GuestSpec{
		Name: "shaped", Port: b.lab.Ports[0].Host, MAC: qosGuestMAC,
		Addrs: []netip.Prefix{netip.PrefixFrom(b.guestAddr(), lab.PrefixLenIPv4)},
		Rate:  b.opts.Rate / 8, Burst: qosBurst,
	}
	g, err := stack.Attach(e, spec, stack.DefaultOptions())
	if err != nil {
		return errors.Join(fmt.Errorf("attach the guest: %w", err), e.Close())
	}
	ln, err := g.Listen("tcp", b.addr(b.guestAddr(), qosPriorityPort))
	if err != nil {
		return errors.Join(fmt.Errorf("listen on the guest: %w", err), g.Close(), e.Close())
	}
	b.eng, b.guest, b.echo = e, g, startEcho(ln)
	return nil
}

// stop ends the echo server, detaches the guest and closes the engine,
// whose frame audit fails Close if a frame went missing.
func (b *qosBencher) stop() error {
	if b.stopped {
		return nil
	}
	b.stopped = true
	var errs []error
	b.echo.close()
	if err := b.guest.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close the guest: %w", err))
	}
	if err := b.eng.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close the engine: %w", err))
	}
	return errors.Join(errs...)
}

func (b *qosBencher) guestAddr() netip.Addr { return b.lab.Ports[0].AddrIPv4(qosGuestHost) }

func (b *qosBencher) addr(a netip.Addr, port int) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(port))
}

// measureXnic is one xnic measurement: the ping-pong alone, the bulk
// downloads' shares and rate, the ping-pong under their load.
func (b *qosBencher) measureXnic(ctx context.Context) QoSResult {
	res := QoSResult{Contender: QoSXnic}
	pc := &pingClient{dial: b.lab.PeerDial, addr: b.addr(b.guestAddr(), qosPriorityPort), size: qosPingSize,
		warmup: b.opts.Warmup, requests: b.opts.Requests, timeout: b.opts.Timeout}
	alone, _ := pc.pingPong(ctx)
	res.Alone = &alone
	if !alone.OK() {
		res.Err = "ping-pong alone: " + alone.Err
		return res
	}
	listen := func(addr string) (net.Listener, error) { return b.guest.Listen("tcp", addr) }
	err := b.withDownloads(ctx, b.guestAddr(), listen, &res, func() error {
		loaded, _ := pc.pingPong(ctx)
		res.Loaded = &loaded
		if !loaded.OK() {
			return errors.New("ping-pong loaded: " + loaded.Err)
		}
		return nil
	})
	if err != nil {
		res.Err = err.Error()
	}
	return res
}

// measureHTB is one HTB measurement: the kernel's servers behind HTB on the
// host veth, the same downloads; the qdisc goes away after it.
func (b *qosBencher) measureHTB(ctx context.Context) (res QoSResult) {
	res = QoSResult{Contender: QoSHTB}
	dev := b.lab.Ports[0].Host
	if err := addHTB(ctx, dev, b.opts.Rate, b.opts.Weights); err != nil {
		res.Err = err.Error()
		return res
	}
	defer func() {
		if err := delHTB(dev); err != nil {
			res.Err = errors.Join(errorOf(res.Err), err).Error()
		}
	}()
	listen := func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	if err := b.withDownloads(ctx, b.lab.Ports[0].HostIPv4, listen, &res, nil); err != nil {
		res.Err = err.Error()
	}
	return res
}

// errorOf is s as an error, nil for "".
func errorOf(s string) error {
	if s == "" {
		return nil
	}
	return errors.New(s)
}

// withDownloads starts a download per bulk class from a server at addr
// (listen makes its listener), lets them settle, measures the window into
// res, runs then (if not nil) under their load, and closes them.
func (b *qosBencher) withDownloads(ctx context.Context, addr netip.Addr, listen func(string) (net.Listener, error),
	res *QoSResult, then func() error) error {
	dls := make([]*download, 0, len(b.opts.Weights))
	defer func() {
		for _, d := range dls {
			d.close()
		}
	}()
	for i := range b.opts.Weights {
		_, port := bulkClass(i)
		a := b.addr(addr, port)
		ln, err := listen(a)
		if err != nil {
			return fmt.Errorf("listen at %s: %w", a, err)
		}
		d, err := startDownloadOn(ctx, b.lab, ln, a)
		if err != nil {
			return err
		}
		dls = append(dls, d)
	}
	if err := sleep(ctx, b.opts.Settle, nil); err != nil {
		return err
	}
	txPath := filepath.Join("/sys/class/net", b.lab.Ports[0].Host, "statistics", "tx_bytes")
	tx0, err := readCounter(txPath)
	if err != nil {
		return err
	}
	t0 := time.Now()
	n0 := make([]int64, len(dls))
	for i, d := range dls {
		n0[i] = d.read.Load()
	}
	if err := sleep(ctx, b.opts.Duration, nil); err != nil {
		return err
	}
	tx1, err := readCounter(txPath)
	if err != nil {
		return err
	}
	res.Seconds = time.Since(t0).Seconds()
	res.WireBytes = int64(tx1 - tx0)
	for i, d := range dls {
		name, port := bulkClass(i)
		d.take() // the arrival times are the migration benchmark's; drop them
		res.Classes = append(res.Classes, ClassBytes{Name: name, Port: port, Weight: b.opts.Weights[i], Bytes: d.read.Load() - n0[i]})
		if err := d.failed(); err != nil {
			return fmt.Errorf("download of %s: %w", name, err)
		}
	}
	res.fill()
	if then != nil {
		if err := then(); err != nil {
			return err
		}
	}
	for i, d := range dls {
		if err := d.failed(); err != nil {
			name, _ := bulkClass(i)
			return fmt.Errorf("download of %s: %w", name, err)
		}
	}
	return nil
}

// echoServer echoes every connection it accepts, until closed.
type echoServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex // guards conns
	conns map[net.Conn]bool
}

func startEcho(ln net.Listener) *echoServer {
	s := &echoServer{ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				io.Copy(c, c)
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	return s
}

// close stops accepting, closes every connection and waits for their
// goroutines.
func (s *echoServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// env describes the machine and this run's set-up.
func (b *qosBencher) env() QoSEnv {
	o := b.opts
	return QoSEnv{
		Machine: ThisMachine(time.Now()),
		Lab:     b.lab.Name, Port: b.lab.Ports[0].Host,
		Rounds: o.Rounds, WindowSec: o.Duration.Seconds(), SettleSec: o.Settle.Seconds(),
		RateBitsPerSec: o.Rate, Weights: append([]int(nil), o.Weights...),
		Requests: o.Requests, Warmup: o.Warmup, PingSize: qosPingSize,
		Setup: fmt.Sprintf("one engine in this process on the host veth (one worker, queue 0, %d UMEM frames, rx and fill rings of %d, "+
			"idle sleep in poll(2) up to %d ms) with a guest on its own gVisor netstack at %s, shaped to %s Mbit/s "+
			"(GuestSpec.Rate, burst %d KB); classes by TCP port: interactive on %d at priority 0, bulk ones from %d at priority 1 "+
			"with weights %v; the peer's kernel TCP reads in the lab's netns (MTU 1500, offloads off on both veth ends)",
			qosUMEMFrames, qosRingSize, o.PollMs, b.guestAddr(), mbps(float64(o.Rate)), qosBurst>>10,
			qosPriorityPort, qosBulkPort, o.Weights),
		HTB: fmt.Sprintf("kernel TCP servers on %s, on the bulk classes' ports, behind `tc qdisc add dev %s root handle 1: htb`: "+
			"a parent class of %s Mbit/s and one class per port with its weight's share as rate, the whole as ceil, prio 0, "+
			"by u32 filters on the source port",
			b.lab.Ports[0].HostIPv4, b.lab.Ports[0].Host, mbps(float64(o.Rate))),
		Method: fmt.Sprintf("one TCP download per bulk class, the server writing 128 KB chunks without end, the peer reading; "+
			"after %gs, over %gs: each connection's bytes at the peer (share: of the total, against its weight's share; "+
			"error: share over weight share, minus 1) and the host veth's tx_bytes (Ethernet header on, no FCS) as the shaped rate; "+
			"priority: %d-byte TCP ping-pong on the interactive class's port, %d requests after %d of warm-up, "+
			"alone and with the downloads running",
			o.Settle.Seconds(), o.Duration.Seconds(), qosPingSize, o.Requests, o.Warmup),
	}
}

func (b *qosBencher) logResult(round int, res QoSResult) {
	line := fmt.Sprintf("round %d/%d %-4s", round, b.opts.Rounds, res.Contender)
	if !res.OK() {
		fmt.Fprintf(b.log, "%s FAILED: %s\n", line, res.Err)
		return
	}
	fmt.Fprintf(b.log, "%s %s Mbit/s on the wire, shares", line, mbps(res.WireBitsPerSec))
	for _, c := range res.Classes {
		fmt.Fprintf(b.log, " %s %.1f%%", c.Name, c.Share*100)
	}
	if res.Alone != nil && res.Loaded != nil {
		fmt.Fprintf(b.log, "; ping-pong p99 %.0f µs alone, %.0f µs loaded", res.Alone.P99Us, res.Loaded.P99Us)
	}
	fmt.Fprintln(b.log)
}
