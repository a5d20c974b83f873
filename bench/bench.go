package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/engine/lab"
)

// bencher is one Run: the lab and what every measurement shares.
type bencher struct {
	opts    Options
	lab     *lab.Lab
	port    lab.Port
	genOpts gen.Options
	genWhy  string // why the generator sends from an AF_XDP tx ring, if it does
	pinDir  string // where libxdp's and asavie's XSKMAP is pinned
	log     io.Writer
}

// Run builds a lab, measures every selected contender Options.Rounds times
// and tears the lab down. It needs root. On cancellation it stops what runs,
// cleans up and returns the report so far with ctx's error. A failed
// measurement does not stop the run: it is recorded in the report and Run
// returns an error matching ErrFailed.
func Run(ctx context.Context, opts Options) (rep *Report, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	log, release, err := prepare(ctx, "bench", opts.checkBinaries, opts.Log, opts.LabSlot)
	if err != nil {
		return nil, err
	}
	defer release()
	// No IPv6: no router or neighbour solicitations in the counts.
	l, err := upLab("bench", opts.LabPrefix, false)
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("bench: tear down lab: %w", derr))
		}
	}()
	restore, err := pinProcess(opts.GenCPU)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer func() {
		if rerr := restore(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("bench: %w", rerr))
		}
	}()

	b := &bencher{opts: opts, lab: l, port: l.Ports[0], log: log,
		pinDir: filepath.Join("/sys/fs/bpf", "xnic-bench-"+l.Name)}
	b.genOpts = gen.DefaultOptions()
	b.genOpts.Netns, b.genOpts.Iface = l.Netns, b.port.Peer
	b.genOpts.FrameSize, b.genOpts.Flows = opts.FrameSize-FCSLen, opts.Flows
	b.genOpts.BatchSize, b.genOpts.Repeat = opts.GenBatch, opts.GenRepeat
	// Every round sends the same way: decide once, and say so in the report.
	b.genOpts.Mode, b.genWhy = gen.ModeLive, ""
	if perr := bpf.ProbeLiveFrames(); perr != nil {
		if !errors.Is(perr, bpf.ErrLiveFramesRefused) {
			return nil, fmt.Errorf("bench: %w", perr)
		}
		b.genOpts.Mode, b.genWhy = gen.ModeXSK, perr.Error()
	}

	rep = &Report{Env: b.env()}
	fmt.Fprintf(log, "lab %s: %s (host) <-> %s (netns %s); %s\n",
		l.Name, b.port.Host, b.port.Peer, l.Netns, rep.Env.Placement)
	defer func() { rep.Summary, rep.Ratios = summarize(opts.contenders(), rep.Rounds) }()

	err = runRounds(ctx, "bench", opts.Rounds, opts.contenders(), opts.Pause, b.measure, func(i int, res Result) {
		if len(rep.Rounds) < i {
			rep.Rounds = append(rep.Rounds, Round{Index: i})
		}
		rd := &rep.Rounds[i-1]
		rd.Results = append(rd.Results, res)
		b.logResult(i, res)
	})
	return rep, err
}

// checkBinaries fails with ErrMissingBinary if a selected contender's
// binary is not an executable file.
func (o Options) checkBinaries() error {
	for _, name := range o.contenders() {
		var path string
		switch {
		case usesXnic(name):
			path = o.Xnic
		case peerBinaries[name] != "":
			path = filepath.Join(o.PeersDir, peerBinaries[name])
		default:
			continue
		}
		st, err := os.Stat(path)
		if err == nil && (st.IsDir() || st.Mode()&0o111 == 0) {
			err = errors.New("not an executable file")
		}
		if err != nil {
			return fmt.Errorf("bench: %s: %s: %w (%w; build with `make build`)", name, path, ErrMissingBinary, err)
		}
	}
	return nil
}

// upLab builds a one-port, one-queue lab under a fresh random name with
// prefix; what prefixes errors.
func upLab(what, prefix string, ipv6 bool) (*lab.Lab, error) {
	lo := lab.DefaultOptions()
	lo.IPv6 = ipv6
	return upLabWith(what, prefix, lo)
}

// upLabWith builds the lab lo describes under a fresh random name with
// prefix (a few tries if the name is taken); what prefixes errors.
func upLabWith(what, prefix string, lo lab.Options) (*lab.Lab, error) {
	for attempt := 0; ; attempt++ {
		lo.Name = lab.RandomName(prefix)
		l, err := lab.Up(lo)
		switch {
		case err == nil:
			return l, nil
		case errors.Is(err, lab.ErrExists) && attempt < 3:
			continue
		case errors.Is(err, lab.ErrAddrInUse):
			return nil, fmt.Errorf("%s: %w (see `ip netns list`; `xnic lab down --name NAME` removes a lab)", what, err)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
}

// env describes the machine and this run's set-up.
func (b *bencher) env() Env {
	e := Env{Machine: ThisMachine(time.Now())}
	e.Lab = b.lab.Name
	e.Rounds, e.WindowSec = b.opts.Rounds, b.opts.Duration.Seconds()
	e.FrameSize, e.Flows = b.opts.FrameSize, b.opts.Flows
	e.Contenders = b.opts.contenders()
	e.GenCPU, e.RxCPU = b.opts.GenCPU, b.opts.RxCPU
	e.Placement = placement(b.opts.GenCPU, b.opts.RxCPU)
	e.Generator = fmt.Sprintf("xnic_gen in-kernel live frames (BPF_PROG_RUN, XDP_TX) out of the peer veth "+
		"inside the lab netns, %d thread, kernel batch %d, %d frames per call, into the host veth's native XDP program",
		b.genOpts.Threads, b.genOpts.BatchSize, b.genOpts.Repeat)
	if b.genOpts.Mode == gen.ModeXSK {
		e.Generator = "AF_XDP TX (copy mode, 1 thread) out of the peer veth inside the lab netns, into the host veth's " +
			"native XDP program; live frames refused by this kernel (" + b.genWhy + ")"
	}
	return e
}

func cpuName(cpu int) string {
	if cpu < 0 {
		return "any CPU"
	}
	return fmt.Sprintf("CPU %d", cpu)
}

// placement says where the work runs for the report.
func placement(genCPU, rxCPU int) string {
	return fmt.Sprintf("generator thread on %s, which also runs, in its softirq, the veth receive, "+
		"the XDP program and the copy into the socket or skb; receiver process on %s",
		cpuName(genCPU), cpuName(rxCPU))
}

func (b *bencher) logResult(round int, r Result) {
	if !r.OK() {
		fmt.Fprintf(b.log, "round %d/%d %-9s FAILED: %s\n", round, b.opts.Rounds, r.Contender, r.Err)
		return
	}
	cpus := ""
	if r.RxCPUs != "" {
		cpus = ", receiver on CPU " + r.RxCPUs
	}
	fmt.Fprintf(b.log, "round %d/%d %-9s %8.3f Mpps  (sent %.3f Mpps, XDP saw %d, generator start %.0f ms%s)\n",
		round, b.opts.Rounds, r.Contender, r.PPS/1e6, r.Sent.PPS/1e6, r.XDPPackets, r.Sent.StartLagSec*1e3, cpus)
}
