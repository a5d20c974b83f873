package benchcmd

import (
	"context"
	"os"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/internal/cli"
)

// runBenchMigrate is `xnic bench migrate`: how long a guest's download
// stalls at the peer around a commanded migration and a link-down
// failover between two ports, against the targets, with the
// download's goodput on each port alone.
func runBenchMigrate(ctx context.Context, args []string) error {
	fs := cli.NewFlags("bench migrate", "[--reps N] [--settle D] [--goodput D] [--poll-ms N] [-o FILE] [--markdown]")
	d := bench.DefaultMigrateOptions()
	reps := fs.Int("reps", d.Reps, "repetitions of each event; the table shows the median and the max")
	settle := fs.Duration("settle", d.Settle, "quiet stream after each event, the tail of its window")
	goodput := fs.Duration("goodput", d.Goodput, "goodput window on each port")
	pollMs := fs.Int("poll-ms", d.PollMs, "the engine's poll_ms: an idle worker sleeps up to this many ms; 0 spins")
	jsonFile := jsonOutFlag(fs, "write every event and the summary as JSON to this file")
	markdown := fs.Bool("markdown", false, "also print the summary as Markdown for docs/benchmarks.md")
	quiet := fs.Bool("quiet", false, "no per-event lines and engine events on stderr")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	o := d
	o.Reps, o.Settle, o.Goodput, o.PollMs = *reps, *settle, *goodput, *pollMs
	if !*quiet {
		o.Log = os.Stderr
	}
	if err := o.Validate(); err != nil {
		return benchOptionError(err, fs)
	}
	rep, err := bench.RunMigrate(ctx, o)
	if rep == nil {
		return trimBenchErr(err, "bench migrate: ")
	}
	return printBenchReport(rep, len(rep.Events)+len(rep.Goodput), *markdown, *jsonFile, trimBenchErr(err, "bench migrate: "))
}
