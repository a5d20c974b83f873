package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"time"
)

// TCP benchmark. RunTCP measures HTTP over TCP between a Go client in the
// lab's peer netns (the kernel's TCP, peer offloads off: MTU frames with full
// checksums on the veth) and one server at a time on the host end of the
// veth, on queue 0:
//
//   - xnic-gro-tso: `xnic serve` with one guest serving http, the engine's
//     GRO and TSO on;
//   - xnic-off: the same with GRO and TSO off;
//   - gvisor-xdp: gVisor's netstack on gVisor's own AF_XDP link endpoint
//     (bench/peers/gvisorxdp), behind xnic's steering program;
//   - kernel: the host's own TCP on the host veth, GRO on, TSO off (the
//     kernel segments in software, as xnic does), served by `xnic bench tcp
//     --serve-kernel ADDR`.
//
// For each it measures upload goodput (POST /upload of a streamed pattern
// for Duration), download goodput (GET /bytes/N read for Duration) and
// HTTP requests per second (Concurrency keep-alive clients doing GET /),
// checking the content both ways, and the noise of the machine meanwhile.

// TCP contender names, as they appear in reports and in TCPOptions.Only.
const (
	TCPXnicGROTSO = "xnic-gro-tso"
	TCPXnicOff    = "xnic-off"
	// TCPXnicClasses is xnic-gro-tso with three traffic classes: its
	// sends go through the class scheduler.
	TCPXnicClasses = "xnic-classes"
	TCPGvisorXDP   = "gvisor-xdp"
	TCPKernel      = "kernel"
)

// TCPContenders returns every TCP contender in the order a round runs them.
func TCPContenders() []string {
	return []string{TCPXnicGROTSO, TCPXnicClasses, TCPXnicOff, TCPGvisorXDP, TCPKernel}
}

// The guest the xnic and gVisor contenders run, on port 0 of the lab.
var (
	TCPGuestIPv4 = netip.MustParsePrefix("198.18.0.10/24")
	TCPGuestIPv6 = netip.MustParsePrefix("2001:2::10/64")
	// TCPGuestMAC is the guest's MAC address, the same for every contender
	// so that the peer's neighbour entry stays right.
	TCPGuestMAC = net.HardwareAddr{0x02, 0x78, 0x6e, 0x62, 0x00, 0x10}
)

// Limits of TCPOptions.
const (
	MaxConcurrency = 1024
	// MinTCPDuration is the shortest measurement window.
	MinTCPDuration = 200 * time.Millisecond
)

// TCPOptions configure RunTCP.
type TCPOptions struct {
	// Rounds is the number of times every contender is measured.
	Rounds int
	// Duration is the window of each metric: how long the upload streams,
	// the download is read and the request loops run.
	Duration time.Duration
	// Only restricts the run to these contenders (nil: all), still in the
	// order of TCPContenders.
	Only []string
	// Concurrency is the number of keep-alive clients of the requests/s
	// metric.
	Concurrency int
	// Port is the TCP port every server listens on.
	Port int

	// Xnic is the xnic binary: `xnic serve` for the xnic contenders and
	// `xnic bench tcp --serve-kernel` for the kernel.
	Xnic string
	// GvisorXDP is the gvisorxdp binary (bench/peers/gvisorxdp).
	GvisorXDP string

	// ClientCPU is the CPU this process, the client, is pinned to while
	// RunTCP runs, and ServerCPU the CPU of every server process; -1
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

// DefaultTCPOptions: 3 rounds of 5 s, every contender, 8 clients for
// requests/s, port 80, nothing pinned. Xnic and GvisorXDP must still be
// set.
func DefaultTCPOptions() TCPOptions {
	return TCPOptions{
		Rounds:      3,
		Duration:    5 * time.Second,
		Concurrency: 8,
		Port:        80,
		ClientCPU:   -1,
		ServerCPU:   -1,
		Pause:       300 * time.Millisecond,
		LabSlot:     DefaultLabSlot,
		LabPrefix:   "xc",
	}
}

// Validate checks the options and returns an *OptionError naming the first
// bad field; it does not look at the file system.
func (o TCPOptions) Validate() error {
	if o.Rounds < 1 || o.Rounds > MaxRounds {
		return optErr("rounds", "must be 1..%d, got %d", MaxRounds, o.Rounds)
	}
	if o.Duration < MinTCPDuration {
		return optErr("duration", "must be at least %s, got %s", MinTCPDuration, o.Duration)
	}
	for _, name := range o.Only {
		if !slices.Contains(TCPContenders(), name) {
			return optErr("only", "unknown contender %q (known: %v)", name, TCPContenders())
		}
	}
	if len(o.contenders()) == 0 {
		return optErr("only", "no contender selected")
	}
	if o.Concurrency < 1 || o.Concurrency > MaxConcurrency {
		return optErr("concurrency", "must be 1..%d, got %d", MaxConcurrency, o.Concurrency)
	}
	if o.Port < 1 || o.Port > 65535 {
		return optErr("port", "must be 1..65535, got %d", o.Port)
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
	if o.Xnic == "" && slices.ContainsFunc(o.contenders(), tcpUsesXnic) {
		return optErr("xnic", "path to the xnic binary must be set")
	}
	if o.GvisorXDP == "" && slices.Contains(o.contenders(), TCPGvisorXDP) {
		return optErr("gvisorxdp", "path to the gvisorxdp binary must be set")
	}
	if o.LabPrefix == "" || len(o.LabPrefix) > 6 {
		return optErr("lab prefix", "must be 1..6 characters, got %q", o.LabPrefix)
	}
	return nil
}

// tcpUsesXnic reports whether the contender's server is the xnic binary
// (the kernel's is `xnic bench tcp --serve-kernel`).
func tcpUsesXnic(name string) bool { return name != TCPGvisorXDP }

// contenders are the selected contenders in run order.
func (o TCPOptions) contenders() []string {
	if len(o.Only) == 0 {
		return TCPContenders()
	}
	var out []string
	for _, c := range TCPContenders() {
		if slices.Contains(o.Only, c) {
			out = append(out, c)
		}
	}
	return out
}

// checkBinaries fails with ErrMissingBinary if a selected contender's
// binary is not an executable file, or ethtool is missing for the kernel.
func (o TCPOptions) checkBinaries() error {
	for _, name := range o.contenders() {
		path := o.Xnic
		if name == TCPGvisorXDP {
			path = o.GvisorXDP
		}
		st, err := os.Stat(path)
		if err == nil && (st.IsDir() || st.Mode()&0o111 == 0) {
			err = errors.New("not an executable file")
		}
		if err != nil {
			hint := "go build ./cmd/xnic"
			if name == TCPGvisorXDP {
				hint = "make -C bench/peers builds it"
			}
			return fmt.Errorf("bench tcp: %s: %s: %w (%w; %s)", name, path, ErrMissingBinary, err, hint)
		}
		if name == TCPKernel {
			if _, err := exec.LookPath("ethtool"); err != nil {
				return fmt.Errorf("bench tcp: kernel: ethtool, to turn GRO on on the host veth: %w (%w)", ErrMissingBinary, err)
			}
		}
	}
	return nil
}

// tcpBencher is one RunTCP: the lab and what every measurement shares.
type tcpBencher struct {
	opts TCPOptions
	srv  *serverLab
	log  io.Writer
	hash *patternHasher
}

// RunTCP builds a lab, measures every selected contender TCPOptions.Rounds
// times and tears the lab down. It needs root. On cancellation it stops
// what runs, cleans up and returns the report so far with ctx's error. A
// failed measurement does not stop the run: it is recorded in the report
// and RunTCP returns an error matching ErrFailed.
func RunTCP(ctx context.Context, opts TCPOptions) (rep *TCPReport, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	log, release, err := prepare(ctx, "bench tcp", opts.checkBinaries, opts.Log, opts.LabSlot)
	if err != nil {
		return nil, err
	}
	defer release()
	dir, err := os.MkdirTemp("", "xnic-bench-tcp-")
	if err != nil {
		return nil, fmt.Errorf("bench tcp: %w", err)
	}
	defer os.RemoveAll(dir)
	l, err := upLab("bench tcp", opts.LabPrefix, true) // the guest has an IPv6 address
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("bench tcp: tear down lab: %w", derr))
		}
	}()
	restore, err := pinProcess(opts.ClientCPU)
	if err != nil {
		return nil, fmt.Errorf("bench tcp: %w", err)
	}
	defer func() {
		if rerr := restore(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("bench tcp: %w", rerr))
		}
	}()

	b := &tcpBencher{opts: opts, srv: &serverLab{lab: l, port: l.Ports[0], dir: dir}, log: log, hash: newPatternHasher(0)}
	rep = &TCPReport{Env: b.env()}
	fmt.Fprintf(log, "lab %s: %s (host) <-> %s (netns %s); client on %s, servers on %s\n",
		l.Name, b.srv.port.Host, b.srv.port.Peer, l.Netns, cpuName(opts.ClientCPU), cpuName(opts.ServerCPU))
	defer func() { rep.Summary, rep.Ratios = summarizeTCP(opts.contenders(), rep.Rounds) }()

	err = runRounds(ctx, "bench tcp", opts.Rounds, opts.contenders(), opts.Pause, b.measure, func(i int, res TCPResult) {
		if len(rep.Rounds) < i {
			rep.Rounds = append(rep.Rounds, TCPRound{Index: i})
		}
		rd := &rep.Rounds[i-1]
		rd.Results = append(rd.Results, res)
		b.logResult(i, res)
	})
	return rep, err
}

// env describes the machine and this run's set-up.
func (b *tcpBencher) env() TCPEnv {
	return TCPEnv{
		Machine: ThisMachine(time.Now()),
		Lab:     b.srv.lab.Name, Rounds: b.opts.Rounds, WindowSec: b.opts.Duration.Seconds(),
		Concurrency: b.opts.Concurrency, Contenders: b.opts.contenders(),
		ClientCPU: b.opts.ClientCPU, ServerCPU: b.opts.ServerCPU,
		Client: "Go net/http in the lab's peer netns over the kernel's TCP; peer veth with tx checksum, " +
			"TSO, GSO and GRO off, so MTU-sized frames with full checksums cross the veth",
		Servers: map[string]string{
			TCPXnicGROTSO: "xnic serve: one guest with its own gVisor netstack on the engine, GRO and TSO on, " + serveProcs() + ", http on " + TCPGuestIPv4.String(),
			TCPXnicOff:    "xnic serve: the same guest with the engine's GRO and TSO off",
			TCPXnicClasses: "xnic serve: xnic-gro-tso with three traffic classes (strict priority, ETS weights, WRED/ECN): " +
				"every send goes through the guest's class scheduler",
			TCPGvisorXDP: "gVisor netstack on gVisor's AF_XDP link endpoint (copy mode), xnic_steer redirecting the guest's addresses",
			TCPKernel:    "the host kernel's TCP on the host veth (" + b.srv.port.HostIPv4.String() + "), GRO on, TSO off (software GSO), tx checksum off",
		},
	}
}

func (b *tcpBencher) logResult(round int, r TCPResult) {
	line := fmt.Sprintf("round %d/%d %-12s", round, b.opts.Rounds, r.Contender)
	if r.Err != "" {
		fmt.Fprintf(b.log, "%s FAILED: %s\n", line, r.Err)
		return
	}
	cell := func(ok bool, v, msg string) string {
		if !ok {
			return "FAILED (" + msg + ")"
		}
		return v
	}
	fmt.Fprintf(b.log, "%s upload %s, download %s, %s; others %.0f%% of the CPUs\n", line,
		cell(r.Upload.OK(), gbps(r.Upload.BitsPerSec)+" Gbit/s", r.Upload.Err),
		cell(r.Download.OK(), gbps(r.Download.BitsPerSec)+" Gbit/s", r.Download.Err),
		cell(r.Requests.OK(), fmt.Sprintf("%.0f req/s", r.Requests.PerSec), r.Requests.Err),
		r.Noise.Others*100)
}
