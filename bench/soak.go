package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xnic/xnic/bench/internal/stat"
	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/services"
)

// Soak. RunSoak starts `xnic serve` with one guest (the servers of `xnic
// bench tcp`, servers.go) serving HTTP and UDP echo on a one-port lab, and
// keeps a mix of load going from the lab's peer netns for
// SoakOptions.Duration:
//
//   - Clients keep-alive HTTP clients doing GET / back to back, each
//     opening a new connection every ConnRequests requests, so that
//     connections come and go as well;
//   - a download of DownloadSize bytes every DownloadEvery, every byte
//     checked against the pattern the service sends, and its length;
//   - UDP echo, one datagram in flight, each answer checked.
//
// Every Interval it samples the `xnic serve` process (VmRSS and VmHWM from
// /proc/PID/status, its threads, its open fds), the engine's counters over
// its control socket (packets in, connections live, XSK drops) and the
// guest's own (GET /status: requests served, connections open, serve
// errors). The verdict (judgeSoak) compares the median RSS of the first
// Window after Warmup with the median of the last Window: the soak passes
// when RSS grew by less than MaxGrowthPct and no request, download, echo or
// sample failed.

// Limits of SoakOptions.
const (
	MinSoakInterval     = 100 * time.Millisecond
	MaxSoakClients      = 64
	MinSoakDownload     = 1 << 10
	MaxSoakDownload     = 1 << 30
	soakEchoSize        = 64
	soakEchoBatch       = 200
	soakEchoTimeout     = time.Second
	soakSampleTimeout   = 5 * time.Second
	soakRetryPause      = 100 * time.Millisecond
	soakMaxErrorsKept   = 20
	defaultSoakWarmup   = time.Minute
	defaultSoakWindow   = time.Minute
	defaultSoakMaxGrowt = 10.0
)

// SoakOptions configure RunSoak.
type SoakOptions struct {
	// Duration is how long the load runs, and Interval the time between
	// two samples.
	Duration, Interval time.Duration
	// Warmup is the time after the start before the first window, and
	// Window the length of the first and of the last window whose median
	// RSS the verdict compares; 0 picks min(1m, Duration/10) and min(1m,
	// Duration/4).
	Warmup, Window time.Duration
	// MaxGrowthPct bounds the RSS growth from the first window's median to
	// the last's, in percent of the first.
	MaxGrowthPct float64
	// Clients is the number of keep-alive HTTP clients, and ConnRequests
	// the requests each sends on a connection before it opens a new one (0:
	// one connection for the whole soak, unless it fails).
	Clients, ConnRequests int
	// DownloadSize is the bytes of each download, one every DownloadEvery.
	DownloadSize  int64
	DownloadEvery time.Duration
	// HTTPPort and EchoPort are the guest's HTTP and UDP echo ports.
	HTTPPort, EchoPort int

	// Xnic is the xnic binary, run as `xnic serve`.
	Xnic string
	// ServerCPU is the CPU of the xnic serve process; -1 leaves the
	// placement to the scheduler.
	ServerCPU int

	// LabSlot is the lock file held while the lab is up; "" holds none.
	LabSlot string
	// LabPrefix starts the lab's name, followed by four hex digits.
	LabPrefix string
	// Log receives a line per sample; nil discards them.
	Log io.Writer
}

// DefaultSoakOptions: 10 minutes sampled every 10 s, windows of a minute
// after a minute of warm-up, a 10% bound, 4 clients of 1,000 requests per
// connection, 4 MiB every 5 s, HTTP on 80 and UDP echo on 7. Xnic must
// still be set.
func DefaultSoakOptions() SoakOptions {
	return SoakOptions{
		Duration:      10 * time.Minute,
		Interval:      10 * time.Second,
		MaxGrowthPct:  defaultSoakMaxGrowt,
		Clients:       4,
		ConnRequests:  1000,
		DownloadSize:  4 << 20,
		DownloadEvery: 5 * time.Second,
		HTTPPort:      services.DefaultPort(services.HTTP),
		EchoPort:      services.DefaultPort(services.UDPEcho),
		ServerCPU:     -1,
		LabSlot:       DefaultLabSlot,
		LabPrefix:     "xs",
	}
}

// windows returns Warmup and Window with 0 resolved.
func (o SoakOptions) windows() (warmup, window time.Duration) {
	warmup, window = o.Warmup, o.Window
	if warmup == 0 {
		warmup = min(defaultSoakWarmup, o.Duration/10)
	}
	if window == 0 {
		window = min(defaultSoakWindow, o.Duration/4)
	}
	return warmup, window
}

// Validate checks the options and returns an *OptionError naming the first
// bad field; it does not look at the file system.
func (o SoakOptions) Validate() error {
	if o.Interval < MinSoakInterval {
		return optErr("interval", "must be at least %s, got %s", MinSoakInterval, o.Interval)
	}
	if o.Duration < 4*o.Interval {
		return optErr("duration", "must be at least 4 intervals (%s), got %s", 4*o.Interval, o.Duration)
	}
	if o.Warmup < 0 || o.Window < 0 {
		return optErr("window", "warm-up and window must not be negative, got %s and %s", o.Warmup, o.Window)
	}
	warmup, window := o.windows()
	if window < o.Interval {
		return optErr("window", "must hold a sample: at least the interval %s, got %s", o.Interval, window)
	}
	if warmup+2*window > o.Duration {
		return optErr("duration", "must hold the warm-up %s and two windows of %s apart, got %s", warmup, window, o.Duration)
	}
	if !(o.MaxGrowthPct > 0) {
		return optErr("max growth", "must be a positive percentage, got %v", o.MaxGrowthPct)
	}
	if o.Clients < 1 || o.Clients > MaxSoakClients {
		return optErr("clients", "must be 1..%d, got %d", MaxSoakClients, o.Clients)
	}
	if o.ConnRequests < 0 {
		return optErr("conn requests", "must not be negative, got %d", o.ConnRequests)
	}
	if o.DownloadSize < MinSoakDownload || o.DownloadSize > MaxSoakDownload {
		return optErr("download size", "must be %d..%d bytes, got %d", MinSoakDownload, MaxSoakDownload, o.DownloadSize)
	}
	if o.DownloadEvery < MinSoakInterval {
		return optErr("download every", "must be at least %s, got %s", MinSoakInterval, o.DownloadEvery)
	}
	for _, p := range []struct {
		name string
		port int
	}{{"http port", o.HTTPPort}, {"echo port", o.EchoPort}} {
		if p.port < 1 || p.port > 65535 {
			return optErr(p.name, "must be 1..65535, got %d", p.port)
		}
	}
	if o.ServerCPU < -1 || o.ServerCPU >= runtime.NumCPU() {
		return optErr("server cpu", "must be -1 (unpinned) or 0..%d, got %d", runtime.NumCPU()-1, o.ServerCPU)
	}
	if o.Xnic == "" {
		return optErr("xnic", "path to the xnic binary must be set")
	}
	if o.LabPrefix == "" || len(o.LabPrefix) > 6 {
		return optErr("lab prefix", "must be 1..6 characters, got %q", o.LabPrefix)
	}
	return nil
}

// checkBinaries fails with ErrMissingBinary if Xnic is not an executable
// file.
func (o SoakOptions) checkBinaries() error {
	st, err := os.Stat(o.Xnic)
	if err == nil && (st.IsDir() || st.Mode()&0o111 == 0) {
		err = errors.New("not an executable file")
	}
	if err != nil {
		return fmt.Errorf("bench soak: %s: %w (%w; go build ./cmd/xnic)", o.Xnic, ErrMissingBinary, err)
	}
	return nil
}

// RunSoak builds a lab, runs `xnic serve` under load for
// SoakOptions.Duration while sampling it, and tears everything down. It
// needs root. The report holds every sample and the verdict; when the
// verdict fails RunSoak returns the report with an error matching
// ErrFailed. On cancellation it returns the report so far with ctx's
// error.
func RunSoak(ctx context.Context, opts SoakOptions) (rep *SoakReport, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	log, release, err := prepare(ctx, "bench soak", opts.checkBinaries, opts.Log, opts.LabSlot)
	if err != nil {
		return nil, err
	}
	defer release()
	dir, err := os.MkdirTemp("", "xnic-bench-soak-")
	if err != nil {
		return nil, fmt.Errorf("bench soak: %w", err)
	}
	defer os.RemoveAll(dir)
	l, err := upLab("bench soak", opts.LabPrefix, true) // the guest has an IPv6 address
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("bench soak: tear down lab: %w", derr))
		}
	}()
	srv := &serverLab{lab: l, port: l.Ports[0], dir: dir, ctl: filepath.Join(dir, "engine.sock")}
	spec, err := srv.xnicServe(opts.Xnic, "soak", nil, "",
		[]guestService{{kind: services.HTTP, port: opts.HTTPPort}, {kind: services.UDPEcho, port: opts.EchoPort}})
	if err != nil {
		return nil, fmt.Errorf("bench soak: %w", err)
	}
	warmup, window := opts.windows()
	rep = &SoakReport{Env: SoakEnv{
		Machine: ThisMachine(time.Now()), Lab: l.Name,
		DurationSec: opts.Duration.Seconds(), IntervalSec: opts.Interval.Seconds(),
		WarmupSec: warmup.Seconds(), WindowSec: window.Seconds(), MaxGrowthPct: opts.MaxGrowthPct,
		Clients: opts.Clients, ConnRequests: opts.ConnRequests,
		DownloadSize: opts.DownloadSize, DownloadEverySec: opts.DownloadEvery.Seconds(),
		ServerCPU: opts.ServerCPU,
		Server: fmt.Sprintf("xnic serve: one guest with its own gVisor netstack on the engine, http on port %d and "+
			"udp-echo on port %d at %s, the config's engine defaults", opts.HTTPPort, opts.EchoPort, TCPGuestIPv4.Addr()),
		Load: fmt.Sprintf("from the lab's peer netns: %d keep-alive HTTP clients doing GET / back to back "+
			"(a new connection every %d requests), a %s download every %s checked byte by byte, UDP echo of %d bytes, one in flight",
			opts.Clients, opts.ConnRequests, mib(opts.DownloadSize), opts.DownloadEvery, soakEchoSize),
	}}
	fmt.Fprintf(log, "lab %s: %s (host) <-> %s (netns %s); soak of %s, a sample every %s\n",
		l.Name, srv.port.Host, srv.port.Peer, l.Netns, opts.Duration, opts.Interval)
	s := &soaker{opts: opts, srv: srv, rep: rep, log: log, hash: newPatternHasher(0)}
	run, err := srv.withServer(ctx, spec, opts.ServerCPU, false, s.run)
	rep.Server = run.report
	if err != nil {
		rep.Err = err.Error()
	}
	rep.Verdict = judgeSoak(rep.Samples, rep.Totals, rep.Err, warmup, window, opts.MaxGrowthPct)
	if ctx.Err() != nil {
		return rep, fmt.Errorf("bench soak: %w", ctx.Err())
	}
	if !rep.Verdict.Pass {
		return rep, fmt.Errorf("bench soak: %s: %w", strings.Join(rep.Verdict.Reasons, "; "), ErrFailed)
	}
	return rep, nil
}

// soaker is one RunSoak's load and sampler.
type soaker struct {
	opts SoakOptions
	srv  *serverLab
	rep  *SoakReport
	log  io.Writer
	hash *patternHasher

	start time.Time
	// The load's counters, cumulative; errMu guards rep.Errors.
	requests, requestErrors                  atomic.Uint64
	downloads, downloadBytes, downloadErrors atomic.Uint64
	echoes, echoLost, echoErrors             atomic.Uint64
	sampleErrors                             atomic.Uint64
	errMu                                    sync.Mutex
	// downloadSecs are the times of the complete downloads; only
	// downloadLoop touches it until the load has stopped.
	downloadSecs []float64
}

// run is the measurement: the load until Duration, a sample at the start
// and every Interval, and the totals.
func (s *soaker) run(ctx context.Context, pid int, exited <-chan struct{}) {
	o := s.opts
	s.start = time.Now()
	end := s.start.Add(o.Duration)
	loadCtx, abort := context.WithCancel(ctx)
	defer abort()
	c := &tcpClient{dial: s.srv.dial, base: "http://" + guestTarget(o.HTTPPort).String(), hash: s.hash}
	var wg sync.WaitGroup
	for range o.Clients {
		wg.Go(func() { s.requestLoop(loadCtx, c, end) })
	}
	wg.Go(func() { s.downloadLoop(loadCtx, c, end) })
	wg.Go(func() { s.echoLoop(loadCtx, end) })

	status := c.transport(1)
	defer status.CloseIdleConnections()
	s.sample(ctx, pid, status)
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
sampling:
	for time.Since(s.start) < o.Duration {
		select {
		case <-tick.C:
			s.sample(ctx, pid, status)
		case <-exited:
			abort() // withServer reports the exit
			break sampling
		case <-ctx.Done():
			break sampling
		}
	}
	wg.Wait()
	s.rep.Totals = SoakTotals{
		Requests: s.requests.Load(), RequestErrors: s.requestErrors.Load(),
		Downloads: s.downloads.Load(), DownloadBytes: s.downloadBytes.Load(), DownloadErrors: s.downloadErrors.Load(),
		Echoes: s.echoes.Load(), EchoLost: s.echoLost.Load(), EchoErrors: s.echoErrors.Load(),
		SampleErrors: s.sampleErrors.Load(),
	}
	if len(s.downloadSecs) > 0 {
		s.rep.Totals.DownloadMedSec, s.rep.Totals.DownloadMaxSec = stat.Median(s.downloadSecs), slices.Max(s.downloadSecs)
	}
}

// fail counts an error of the load or the sampler and keeps the first
// soakMaxErrorsKept for the report.
func (s *soaker) fail(n *atomic.Uint64, what string, err error) {
	n.Add(1)
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if len(s.rep.Errors) < soakMaxErrorsKept {
		s.rep.Errors = append(s.rep.Errors, SoakError{T: time.Since(s.start).Seconds(), What: what, Err: err.Error()})
	}
}

// requestLoop does GET / back to back until end on keep-alive connections,
// a new one every ConnRequests requests or after an error.
func (s *soaker) requestLoop(ctx context.Context, c *tcpClient, end time.Time) {
	tr := c.transport(1)
	defer tr.CloseIdleConnections()
	buf := make([]byte, 512)
	onConn := 0
	for time.Now().Before(end) && ctx.Err() == nil {
		if err := c.get(ctx, tr, buf); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.fail(&s.requestErrors, "request", err)
			tr.CloseIdleConnections()
			sleep(ctx, soakRetryPause, nil)
			continue
		}
		s.requests.Add(1)
		if onConn++; s.opts.ConnRequests > 0 && onConn >= s.opts.ConnRequests {
			tr.CloseIdleConnections()
			onConn = 0
		}
	}
}

// downloadLoop starts a download every DownloadEvery until end.
func (s *soaker) downloadLoop(ctx context.Context, c *tcpClient, end time.Time) {
	tr := c.transport(1)
	defer tr.CloseIdleConnections()
	buf := make([]byte, clientBuffer)
	for next := time.Now(); next.Before(end) && ctx.Err() == nil; next = next.Add(s.opts.DownloadEvery) {
		if err := sleep(ctx, time.Until(next), nil); err != nil {
			return
		}
		t0 := time.Now()
		n, err := s.download(ctx, c, tr, buf)
		s.downloadBytes.Add(uint64(n))
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.fail(&s.downloadErrors, "download", err)
			tr.CloseIdleConnections()
		default:
			s.downloads.Add(1)
			s.downloadSecs = append(s.downloadSecs, time.Since(t0).Seconds())
		}
	}
}

// download GETs DownloadSize bytes and checks every byte and the length.
func (s *soaker) download(ctx context.Context, c *tcpClient, tr *http.Transport, buf []byte) (int64, error) {
	size := s.opts.DownloadSize
	ctx, cancel := context.WithTimeout(ctx, s.opts.DownloadEvery+metricGrace)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/bytes/"+strconv.FormatInt(size, 10), nil)
	if err != nil {
		return 0, err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, fmt.Errorf("get /bytes: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("get /bytes: %s", resp.Status)
	}
	pc := newPatternChecker(len(buf))
	for {
		m, err := resp.Body.Read(buf)
		if pc.n+int64(m) > size {
			return pc.n, fmt.Errorf("get /bytes/%d: more than %d bytes", size, size)
		}
		if cerr := pc.check(buf[:m]); cerr != nil {
			return pc.n, fmt.Errorf("get /bytes/%d: %w", size, cerr)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return pc.n, fmt.Errorf("get /bytes/%d: after %d bytes: %w", size, pc.n, err)
		}
	}
	if pc.n != size {
		return pc.n, fmt.Errorf("get /bytes/%d: %d bytes", size, pc.n)
	}
	return pc.n, nil
}

// echoLoop runs UDP echo, one datagram in flight, in batches until end.
func (s *soaker) echoLoop(ctx context.Context, end time.Time) {
	c := &pingClient{dial: s.srv.dial, addr: guestTarget(s.opts.EchoPort).String(), size: soakEchoSize,
		requests: soakEchoBatch, timeout: soakEchoTimeout}
	for time.Now().Before(end) && ctx.Err() == nil {
		st, _ := c.echo(ctx)
		s.echoes.Add(uint64(st.Requests))
		s.echoLost.Add(uint64(st.Lost))
		if st.Err != "" && ctx.Err() == nil {
			s.fail(&s.echoErrors, "udp echo", errors.New(st.Err))
			sleep(ctx, soakRetryPause, nil)
		}
	}
}

// sample reads the server process, the engine and the guest, and appends
// the sample with the load's counters so far.
func (s *soaker) sample(ctx context.Context, pid int, status *http.Transport) {
	sm := SoakSample{T: time.Since(s.start).Seconds()}
	var errs []error
	if err := readProcStatus(pid, &sm); err != nil {
		errs = append(errs, err)
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err != nil {
		errs = append(errs, fmt.Errorf("count fds: %w", err))
	} else {
		sm.FDs = len(fds)
	}
	qctx, cancel := context.WithTimeout(ctx, soakSampleTimeout)
	defer cancel()
	if rep, err := engine.QueryControl(qctx, s.srv.ctl, engine.ControlRequest{Op: "stats"}); err != nil {
		errs = append(errs, fmt.Errorf("engine stats: %w", err))
	} else {
		st := rep.Stats
		sm.RxPackets, sm.ConnsLive = st.RxPackets, st.Pipeline.Conns
		sm.XSKDrops = st.XSK.RxRingFull + st.XSK.RxFillRingEmptyDescs + st.XSK.RxDropped
	}
	if err := s.guestStatus(qctx, status, &sm); err != nil {
		errs = append(errs, err)
	}
	sm.Requests, sm.Downloads, sm.Echoes = s.requests.Load(), s.downloads.Load(), s.echoes.Load()
	if err := errors.Join(errs...); err != nil && ctx.Err() == nil {
		sm.Err = err.Error()
		s.fail(&s.sampleErrors, "sample", err)
	}
	sm.Errors = s.requestErrors.Load() + s.downloadErrors.Load() + s.echoErrors.Load() + s.echoLost.Load() + s.sampleErrors.Load()
	s.rep.Samples = append(s.rep.Samples, sm)
	fmt.Fprintf(s.log, "%6.0fs  rss %7.1f MiB (hwm %.1f)  %3d threads  %4d fds  %5d conns  %d xsk drops  %9d requests  %4d downloads  %8d echoes  %d errors\n",
		sm.T, kibMiB(sm.RSSKiB), kibMiB(sm.HWMKiB), sm.Threads, sm.FDs, sm.ConnsLive, sm.XSKDrops, sm.Requests, sm.Downloads, sm.Echoes, sm.Errors)
}

// guestStatus reads the guest's counters from its HTTP service.
func (s *soaker) guestStatus(ctx context.Context, tr *http.Transport, sm *SoakSample) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+guestTarget(s.opts.HTTPPort).String()+"/status", nil)
	if err != nil {
		return err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("guest status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("guest status: %s", resp.Status)
	}
	var st struct {
		Requests    uint64 `json:"requests"`
		ServeErrors uint64 `json:"serve_errors"`
		Datagrams   uint64 `json:"datagrams"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return fmt.Errorf("guest status: %w", err)
	}
	sm.Served, sm.ServeErrors, sm.Datagrams = st.Requests, st.ServeErrors, st.Datagrams
	return nil
}

// readProcStatus fills VmRSS, VmHWM and Threads of process pid from
// /proc/PID/status.
func readProcStatus(pid int, sm *SoakSample) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return fmt.Errorf("read process status: %w", err)
	}
	return parseProcStatus(string(b), sm)
}

// parseProcStatus reads VmRSS and VmHWM (kB) and Threads from the text of
// /proc/PID/status; all three must be there.
func parseProcStatus(text string, sm *SoakSample) error {
	found := 0
	for line := range strings.SplitSeq(text, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch key {
		case "VmRSS":
			dst = &sm.RSSKiB
		case "VmHWM":
			dst = &sm.HWMKiB
		case "Threads":
			n, err := strconv.Atoi(strings.TrimSpace(val))
			if err != nil {
				return fmt.Errorf("process status: Threads %q: %w", strings.TrimSpace(val), err)
			}
			sm.Threads = n
			found++
			continue
		default:
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return fmt.Errorf("process status: %s %q: want N kB", key, strings.TrimSpace(val))
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("process status: %s: %w", key, err)
		}
		*dst = n
		found++
	}
	if found != 3 {
		return errors.New("process status: want VmRSS, VmHWM and Threads")
	}
	return nil
}
