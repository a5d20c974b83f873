package benchcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/internal/cli"
)

// runBenchLatency is `xnic bench latency`: round-trip times of small
// messages, TCP ping-pong and UDP echo, against an xnic guest (idle workers
// sleeping, then spinning), gVisor's netstack on its own AF_XDP endpoint
// and the host kernel, on one veth lab. With the hidden --serve-kernel ADDR
// it is instead the kernel contender's echo server, which the benchmark
// runs as a child, and with the hidden --trace-client SPEC the client
// process of --trace.
func runBenchLatency(ctx context.Context, args []string) error {
	if len(args) == 2 && (args[0] == "--serve-kernel" || args[0] == "-serve-kernel") {
		// Internal, and not in the usage: the kernel contender's server.
		return bench.ServeKernelEcho(ctx, args[1], os.Stderr, os.Stdout)
	}
	if len(args) == 2 && (args[0] == "--trace-client" || args[0] == "-trace-client") {
		// Internal, and not in the usage: the client process of --trace.
		return bench.RunTraceClient(ctx, args[1], os.Stdout)
	}
	fs := cli.NewFlags("bench latency", "[--rounds N] [--requests N] [--warmup N] [--size BYTES] [--only a,b] "+
		"[--breakdown | --trace] [--gvisorxdp PATH] [-o FILE] [--plot FILE.svg|FILE.png] [--markdown]")
	d := bench.DefaultLatencyOptions()
	rounds := fs.Int("rounds", d.Rounds, "rounds; the table shows the median of each round's percentiles")
	requests := fs.Int("requests", d.Requests, "timed requests of each kind (TCP, UDP) per contender and round")
	warmup := fs.Int("warmup", d.Warmup, "requests before the timed ones, not counted")
	size := fs.Int("size", d.Size, "bytes of each request and of its answer")
	timeout := fs.Duration("timeout", d.Timeout, "bound on one request: a TCP one fails the round, a UDP one is lost")
	only := fs.String("only", "", "comma-separated contenders to run (default: "+strings.Join(bench.LatencyContenders(), ",")+
		"; known: "+strings.Join(bench.AllLatencyContenders(), ",")+")")
	breakdown := fs.Bool("breakdown", false, "add in-process engine UDP echoes without netstack ("+
		strings.Join(bench.BreakdownContenders(), ",")+") and attribute the round trip to its parts by differences")
	port := fs.Int("port", d.Port, "port of the TCP and UDP echo services")
	gvisorxdp := fs.String("gvisorxdp", "", "the gvisorxdp binary (default: gvisorxdp beside this xnic; make -C bench/peers builds it)")
	clientCPU := fs.Int("client-cpu", d.ClientCPU, "CPU of the client (this process); -1: unpinned")
	serverCPU := fs.Int("server-cpu", d.ServerCPU, "CPU of every server process; -1: unpinned")
	jsonFile := jsonOutFlag(fs, "write every raw round, the summary and the distributions as JSON to this file")
	plotFile := fs.String("plot", "", "draw the latency distributions (CDF) into this .svg or .png file")
	markdown := fs.Bool("markdown", false, "also print the summary as Markdown for the README")
	quiet := fs.Bool("quiet", false, "no per-measurement lines on stderr")
	trace := fs.Bool("trace", false, "instead, trace single requests against an in-process xnic guest, stamp by stamp, "+
		"with engine.poll_ms 10 and 0, from a client process of its own (uses --requests, --warmup, --size, --timeout, --port, "+
		"--gomaxprocs, -o)")
	procs := fs.Int("gomaxprocs", 0, "with --trace: the engine's process's GOMAXPROCS; 0: as xnic serve sets it (the GOMAXPROCS environment variable, else one per worker)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if ext := strings.ToLower(filepath.Ext(*plotFile)); *plotFile != "" && ext != ".svg" && ext != ".png" {
		return cli.FlagError("plot", "want a .svg or .png file, got %q", *plotFile)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the xnic executable: %w", err)
	}
	if *trace {
		return runLatencyTrace(ctx, fs, self, *procs, *requests, *warmup, *size, *timeout, *port, *jsonFile, *quiet)
	}
	o := d
	o.Rounds, o.Requests, o.Warmup, o.Size, o.Timeout, o.Port = *rounds, *requests, *warmup, *size, *timeout, *port
	o.ClientCPU, o.ServerCPU = *clientCPU, *serverCPU
	o.Xnic, o.GvisorXDP = self, *gvisorxdp
	if o.GvisorXDP == "" {
		o.GvisorXDP = filepath.Join(filepath.Dir(self), "gvisorxdp")
	}
	o.Only = cli.SplitList(*only)
	o.Breakdown = *breakdown
	if !*quiet {
		o.Log = os.Stderr
	}
	if err := o.Validate(); err != nil {
		return benchOptionError(err, fs)
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: it builds a netns and a veth pair and loads XDP programs (try sudo)")
	}

	rep, err := bench.RunLatency(ctx, o)
	if rep == nil {
		return trimBenchErr(err, "bench latency: ")
	}
	err = printBenchReport(rep, len(rep.Rounds), *markdown, *jsonFile, trimBenchErr(err, "bench latency: "))
	if *plotFile != "" && len(rep.CDF) > 0 {
		if perr := rep.WritePlot(*plotFile); perr != nil {
			return errors.Join(err, perr)
		}
	}
	return err
}

// runLatencyTrace is `xnic bench latency --trace`: the stages of single
// requests' round trips against an xnic guest in this process, from a
// client process (self) in the lab's peer netns.
func runLatencyTrace(ctx context.Context, fs *flag.FlagSet, self string, procs, requests, warmup, size int, timeout time.Duration,
	port int, jsonFile string, quiet bool) error {
	o := bench.DefaultLatencyTraceOptions()
	o.Xnic, o.Procs = self, procs
	// The trace keeps every stamp: a thousand requests are plenty, unless
	// asked for more.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["requests"] {
		o.Requests = requests
	}
	if set["warmup"] {
		o.Warmup = warmup
	}
	o.Size, o.Timeout, o.Port = size, timeout, port
	if !quiet {
		o.Log = os.Stderr
	}
	if err := o.Validate(); err != nil {
		return benchOptionError(err, fs)
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: it builds a netns and a veth pair and loads XDP programs (try sudo)")
	}
	rep, err := bench.RunLatencyTrace(ctx, o)
	if rep == nil {
		return trimBenchErr(err, "bench latency --trace: ")
	}
	if werr := rep.WriteTable(os.Stdout); werr != nil {
		return errors.Join(err, werr)
	}
	if jsonFile != "" {
		f, ferr := os.Create(jsonFile)
		if ferr == nil {
			ferr = errors.Join(rep.WriteJSON(f), f.Close())
		}
		if ferr != nil {
			return errors.Join(err, fmt.Errorf("write %s: %w", jsonFile, ferr))
		}
	}
	return err
}
