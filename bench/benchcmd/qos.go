package benchcmd

import (
	"context"
	"os"
	"strconv"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/internal/cli"
)

// runBenchQoS is `xnic bench qos`: the shares of a shaped guest's weighted
// classes against their weights, its shaped rate against the configured
// one and a strict-priority class's p99 with the others loaded against
// alone, beside the kernel's HTB on the same veth, against the issue's
// targets.
func runBenchQoS(ctx context.Context, args []string) error {
	fs := cli.NewFlags("bench qos", "[--rounds N] [--duration D] [--settle D] [--rate-mbit N] [--weights 6,3,1] "+
		"[--requests N] [--poll-ms N] [-o FILE] [--markdown]")
	d := bench.DefaultQoSOptions()
	rounds := fs.Int("rounds", d.Rounds, "rounds; the table shows the median over them")
	duration := fs.Duration("duration", d.Duration, "window over which the shares and the rate are measured")
	settle := fs.Duration("settle", d.Settle, "time the downloads run before the window opens")
	rate := fs.Uint64("rate-mbit", d.Rate/1_000_000, "the guest's shaped rate (and HTB's), Mbit/s")
	weights := fs.String("weights", "6,3,1", "the bulk classes' weights, one class per weight")
	requests := fs.Int("requests", d.Requests, "timed ping-pong requests of the priority class, alone and loaded")
	pollMs := fs.Int("poll-ms", d.PollMs, "the engine's poll_ms: an idle worker sleeps up to this many ms; 0 spins")
	jsonFile := jsonOutFlag(fs, "write every round and the summary as JSON to this file")
	markdown := fs.Bool("markdown", false, "also print the summary as Markdown for docs/benchmarks.md")
	quiet := fs.Bool("quiet", false, "no per-measurement lines and engine events on stderr")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	o := d
	o.Rounds, o.Duration, o.Settle, o.Requests, o.PollMs = *rounds, *duration, *settle, *requests, *pollMs
	o.Rate = *rate * 1_000_000
	o.Weights = nil
	for _, w := range cli.SplitList(*weights) {
		n, err := strconv.Atoi(w)
		if err != nil {
			return cli.FlagError("weights", "weight %q is not a number", w)
		}
		o.Weights = append(o.Weights, n)
	}
	if !*quiet {
		o.Log = os.Stderr
	}
	if err := o.Validate(); err != nil {
		if field, msg, ok := optionFault(err); ok && field == "rate" {
			return cli.FlagError("rate-mbit", "%s", msg)
		}
		return benchOptionError(err, fs)
	}
	rep, err := bench.RunQoS(ctx, o)
	if rep == nil {
		return trimBenchErr(err, "bench qos: ")
	}
	return printBenchReport(rep, len(rep.Rounds), *markdown, *jsonFile, trimBenchErr(err, "bench qos: "))
}
