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

// runBenchSoak is `xnic bench soak`: `xnic serve` with one guest under a
// mix of HTTP requests, verified downloads and UDP echo for a long while,
// its RSS, threads, fds and the engine's counters sampled every interval,
// and a verdict on the RSS growth and the failures.
func runBenchSoak(ctx context.Context, args []string) error {
	fs := cli.NewFlags("bench soak", "[--duration 10m] [--interval 10s] [--warmup D] [--window D] [--max-growth PCT] "+
		"[-o FILE] [--markdown] [--svg FILE.svg|FILE.png]")
	d := bench.DefaultSoakOptions()
	duration := fs.Duration("duration", d.Duration, "how long the load runs")
	interval := fs.Duration("interval", d.Interval, "time between two samples")
	warmup := fs.Duration("warmup", 0, "time before the first window (default: min(1m, duration/10))")
	window := fs.Duration("window", 0, "length of the first and last windows whose median RSS are compared (default: min(1m, duration/4))")
	maxGrowth := fs.Float64("max-growth", d.MaxGrowthPct, "the soak fails when RSS grows by this many percent or more")
	clients := fs.Int("clients", d.Clients, "keep-alive HTTP clients doing GET / back to back")
	connRequests := fs.Int("conn-requests", d.ConnRequests, "requests per connection before a client opens a new one (0: never)")
	downloadSize := fs.Int64("download-size", d.DownloadSize, "bytes of each verified download")
	downloadEvery := fs.Duration("download-every", d.DownloadEvery, "time between two downloads")
	serverCPU := fs.Int("server-cpu", d.ServerCPU, "CPU of the xnic serve process; -1: unpinned")
	jsonFile := jsonOutFlag(fs, "write every sample, the totals and the verdict as JSON to this file")
	svgFile := fs.String("svg", "", "draw RSS over time into this .svg or .png file")
	markdown := fs.Bool("markdown", false, "also print the samples and the verdict as Markdown")
	quiet := fs.Bool("quiet", false, "no per-sample lines on stderr")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if ext := strings.ToLower(filepath.Ext(*svgFile)); *svgFile != "" && ext != ".svg" && ext != ".png" {
		return cli.FlagError("svg", "want a .svg or .png file, got %q", *svgFile)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the xnic executable: %w", err)
	}
	o := d
	o.Duration, o.Interval, o.Warmup, o.Window, o.MaxGrowthPct = *duration, *interval, *warmup, *window, *maxGrowth
	o.Clients, o.ConnRequests, o.DownloadSize, o.DownloadEvery = *clients, *connRequests, *downloadSize, *downloadEvery
	o.ServerCPU, o.Xnic = *serverCPU, self
	if !*quiet {
		o.Log = os.Stderr
	}
	if err := o.Validate(); err != nil {
		return benchOptionError(err, fs)
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: it builds a netns and a veth pair and loads XDP programs (try sudo)")
	}

	rep, err := bench.RunSoak(ctx, o)
	if rep == nil {
		return trimBenchErr(err, "bench soak: ")
	}
	err = printBenchReport(rep, len(rep.Samples), *markdown, *jsonFile, trimBenchErr(err, "bench soak: "))
	if *svgFile != "" && len(rep.Samples) > 1 {
		if perr := rep.WritePlot(*svgFile); perr != nil {
			return errors.Join(err, perr)
		}
	}
	return err
}
