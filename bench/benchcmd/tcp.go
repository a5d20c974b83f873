package benchcmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/internal/cli"
)

// runBenchTCP is `xnic bench tcp`: HTTP upload and download goodput and
// requests/s of xnic guests (GRO and TSO on, then off) against gVisor's
// netstack on its own AF_XDP endpoint and against the host kernel, on one
// veth lab. With the hidden --serve-kernel ADDR it is instead the kernel
// contender's server, which the benchmark runs as a child.
func runBenchTCP(ctx context.Context, args []string) error {
	if len(args) == 2 && (args[0] == "--serve-kernel" || args[0] == "-serve-kernel") {
		// Internal, and not in the usage: the kernel contender's server.
		return bench.ServeKernel(ctx, args[1], os.Stderr, os.Stdout)
	}
	fs := cli.NewFlags("bench tcp", "[--rounds N] [--duration D] [--only a,b] [--concurrency N] "+
		"[--gvisorxdp PATH] [-o FILE] [--markdown]")
	d := bench.DefaultTCPOptions()
	rounds := fs.Int("rounds", d.Rounds, "rounds; the table shows the median over them")
	duration := fs.Duration("duration", d.Duration, "window of each metric (upload, download, requests)")
	only := fs.String("only", "", "comma-separated contenders to run (default: "+strings.Join(bench.TCPContenders(), ",")+")")
	concurrency := fs.Int("concurrency", d.Concurrency, "keep-alive clients of the requests/s metric")
	port := fs.Int("port", d.Port, "TCP port of every server")
	gvisorxdp := fs.String("gvisorxdp", "", "the gvisorxdp binary (default: gvisorxdp beside this xnic; make -C bench/peers builds it)")
	clientCPU := fs.Int("client-cpu", d.ClientCPU, "CPU of the client (this process); -1: unpinned")
	serverCPU := fs.Int("server-cpu", d.ServerCPU, "CPU of every server process; -1: unpinned")
	jsonFile := jsonOutFlag(fs, "write every raw round and the summary as JSON to this file")
	markdown := fs.Bool("markdown", false, "also print the summary as Markdown for the README")
	quiet := fs.Bool("quiet", false, "no per-measurement lines on stderr")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the xnic executable: %w", err)
	}
	o := d
	o.Rounds, o.Duration, o.Concurrency, o.Port = *rounds, *duration, *concurrency, *port
	o.ClientCPU, o.ServerCPU = *clientCPU, *serverCPU
	o.Xnic, o.GvisorXDP = self, *gvisorxdp
	if o.GvisorXDP == "" {
		o.GvisorXDP = filepath.Join(filepath.Dir(self), "gvisorxdp")
	}
	o.Only = cli.SplitList(*only)
	if !*quiet {
		o.Log = os.Stderr
	}
	if err := o.Validate(); err != nil {
		return benchOptionError(err, fs)
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: it builds a netns and a veth pair and loads XDP programs (try sudo)")
	}

	rep, err := bench.RunTCP(ctx, o)
	if rep == nil {
		return trimBenchErr(err, "bench tcp: ")
	}
	return printBenchReport(rep, len(rep.Rounds), *markdown, *jsonFile, trimBenchErr(err, "bench tcp: "))
}
