package benchcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/bench/connbench"
	"github.com/xnic/xnic/bench/offloadbench"
	"github.com/xnic/xnic/internal/cli"
)

// Run is `xnic bench ARGS`: the receive benchmark, or with a first argument
// conns, tcp, latency, steer-prog, offload, migrate, qos or soak, that benchmark.
func Run(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "conns" {
		// The connection-processing curve: pure Go, no lab, no root.
		return runBenchConns(ctx, args[1:])
	}
	if len(args) > 0 && args[0] == "tcp" {
		// TCP goodput of guests against gVisor's AF_XDP endpoint and the kernel.
		return runBenchTCP(ctx, args[1:])
	}
	if len(args) > 0 && args[0] == "latency" {
		// Round-trip times of small messages against the same servers.
		return runBenchLatency(ctx, args[1:])
	}
	if len(args) > 0 && args[0] == "steer-prog" {
		// The steering program's own cost, by BPF_PROG_TEST_RUN.
		return runBenchSteerProg(ctx, args[1:])
	}
	if len(args) > 0 && args[0] == "migrate" {
		// Stalls around a guest's migration and failover between two ports.
		return runBenchMigrate(ctx, args[1:])
	}
	if len(args) > 0 && args[0] == "soak" {
		// RSS, threads and fds of xnic serve under a long mix of load.
		return runBenchSoak(ctx, args[1:])
	}
	if len(args) > 0 && args[0] == "qos" {
		// Class shares, shaped rate and strict priority, beside the kernel's HTB.
		return runBenchQoS(ctx, args[1:])
	}
	if len(args) > 0 && args[0] == "offload" {
		// GRO and GSO on one core against the raw receive rate, in one run.
		return runBenchOffload(ctx, args[1:])
	}
	fs := cli.NewFlags("bench", "[--rounds N] [--duration D] [--size BYTES] [--flows N] [--peers DIR] [--only a,b] [-o FILE] [--markdown]")
	d := bench.DefaultOptions()
	rounds := fs.Int("rounds", d.Rounds, "rounds; the table shows the median over them")
	duration := fs.Duration("duration", d.Duration, "measurement window of each contender")
	size := fs.Int("size", d.FrameSize, "UDP frame size on the wire, FCS included")
	flows := fs.Int("flows", d.Flows, "UDP source ports the generator cycles through")
	peers := fs.String("peers", "", "directory of rxdrop_libxdp, asavie and afpacket (default: the directory of this xnic)")
	only := fs.String("only", "", "comma-separated contenders to run (default: "+strings.Join(bench.Contenders(), ",")+"); also: "+bench.XnicPipeW1+","+bench.XnicPipeW64)
	pipeCache := fs.Int("pipe-cache", d.PipeCache, "context cache entries of the pipeline contenders")
	pipeConns := fs.Int("pipe-conns", d.PipeConns, "connection table capacity of the pipeline contenders")
	jsonFile := jsonOutFlag(fs, "write every raw round and the summary as JSON to this file")
	markdown := fs.Bool("markdown", false, "also print the summary as a Markdown table for the README")
	genCPU := fs.Int("gen-cpu", d.GenCPU, "CPU of the generator (this process); -1: unpinned")
	rxCPU := fs.Int("rx-cpu", d.RxCPU, "CPU of every receiver process; -1: unpinned")
	genBatch := fs.Int("gen-batch", d.GenBatch, "generator: kernel live-frames batch (1..256)")
	genRepeat := fs.Int("gen-repeat", d.GenRepeat, "generator: frames per BPF_PROG_RUN call")
	quiet := fs.Bool("quiet", false, "no per-measurement lines on stderr")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: it builds a netns and a veth pair and loads XDP programs (try sudo)")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the xnic executable: %w", err)
	}
	o := d
	o.Rounds, o.Duration, o.FrameSize, o.Flows = *rounds, *duration, *size, *flows
	o.GenCPU, o.RxCPU = *genCPU, *rxCPU
	o.GenBatch, o.GenRepeat = *genBatch, *genRepeat
	o.Xnic, o.PeersDir = self, *peers
	o.PipeCache, o.PipeConns = *pipeCache, *pipeConns
	if o.PeersDir == "" {
		o.PeersDir = filepath.Dir(self)
	}
	o.Only = cli.SplitList(*only)
	if !*quiet {
		o.Log = os.Stderr
	}
	if err := o.Validate(); err != nil {
		return benchOptionError(err, fs)
	}

	rep, err := bench.Run(ctx, o)
	if rep == nil {
		return trimBenchErr(err, "bench: ")
	}
	return printBenchReport(rep, len(rep.Rounds), *markdown, *jsonFile, trimBenchErr(err, "bench: "))
}

// benchOptionError reports a benchmark option error as an error of the flag
// of the same name ("gen cpu" is --gen-cpu) when fs has one.
func benchOptionError(err error, fs *flag.FlagSet) error {
	if field, msg, ok := optionFault(err); ok {
		name := strings.ReplaceAll(field, " ", "-")
		if fs.Lookup(name) != nil {
			return cli.FlagError(name, "%s", msg)
		}
	}
	return err
}

// optionFault finds the field and message of a benchmark package's
// *OptionError (bench, connbench, offloadbench) in err.
func optionFault(err error) (field, msg string, ok bool) {
	var b *bench.OptionError
	var c *connbench.OptionError
	var o *offloadbench.OptionError
	switch {
	case errors.As(err, &b):
		return b.Field, b.Msg, true
	case errors.As(err, &c):
		return c.Field, c.Msg, true
	case errors.As(err, &o):
		return o.Field, o.Msg, true
	}
	return "", "", false
}

// benchReport is what both benchmarks' reports can do.
type benchReport interface {
	WriteTable(io.Writer) error
	WriteMarkdown(io.Writer) error
	WriteJSON(io.Writer) error
}

// trimBenchErr drops the package's prefix from err: main prefixes
// "xnic bench: " already.
func trimBenchErr(err error, prefix string) error {
	if err == nil {
		return nil
	}
	return errors.New(strings.TrimPrefix(err.Error(), prefix))
}

// printBenchReport prints a report's table (and Markdown), writes its JSON
// to jsonFile when set, and returns err joined with any write error.
func printBenchReport(rep benchReport, rounds int, markdown bool, jsonFile string, err error) error {
	if rounds > 0 {
		if werr := rep.WriteTable(os.Stdout); werr != nil {
			return errors.Join(err, werr)
		}
		if markdown {
			fmt.Println()
			if werr := rep.WriteMarkdown(os.Stdout); werr != nil {
				return errors.Join(err, werr)
			}
		}
	}
	if jsonFile != "" {
		if werr := writeReport(jsonFile, rep); werr != nil {
			return errors.Join(err, werr)
		}
	}
	return err
}

// writeReport writes a JSON report to path.
func writeReport(path string, rep benchReport) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

// jsonOutFlag defines -o FILE, also spelled --json-out FILE: the file a
// benchmark writes its JSON report to (its stdout is the human report).
// --json FILE is the old spelling, kept for one release.
func jsonOutFlag(fs *flag.FlagSet, usage string) *string {
	p := fs.String("json-out", "", usage)
	fs.Var(fs.Lookup("json-out").Value, "o", "short for --json-out")
	cli.Alias(fs, "json", "json-out")
	return p
}
