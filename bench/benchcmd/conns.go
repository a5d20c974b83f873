package benchcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/bench/connbench"
	"github.com/xnic/xnic/internal/cli"
)

// runBenchConns is `xnic bench conns`: the connection-processing curve
// (context loads and ns per packet against the number of connections, per
// cache size and lookahead window), in pure Go: no root, no lab.
func runBenchConns(ctx context.Context, args []string) error {
	fs := cli.NewFlags("bench conns", "[--conns 16,1000,100000,1000000] [--cache 64,512] [--window 1,64] "+
		"[--packets N] [--rounds N] [--svg FILE] [-o FILE] [--markdown]")
	d := connbench.DefaultOptions()
	conns := fs.String("conns", connsJoin(d.Conns), "connection counts N, comma-separated (k and M suffixes allowed)")
	caches := fs.String("cache", connsJoin(d.CacheSizes), "context cache sizes in entries, powers of two, comma-separated")
	windows := fs.String("window", connsJoin(d.Windows), "lookahead windows W, comma-separated; the smallest is the speedup baseline")
	ways := fs.Int("ways", d.Ways, "cache associativity (a smaller cache is fully associative)")
	prefetch := fs.Bool("prefetch", d.Prefetch, "processors with W > 1 prefetch the table memory of their misses")
	model := fs.String("model", string(d.Model), "traffic model: blocks (bursts shuffled in aligned blocks of --spread packets) "+
		"or overlap (overlapping bursts, each spread over --spread packets)")
	burst := fs.Int("burst", d.Burst, "packets per connection per burst")
	spread := fs.Int("spread", d.Spread, "packets a burst is spread over")
	batch := fs.Int("batch", d.Batch, "packets per Process call (rx batch); a larger W uses batches of W")
	packets := fs.Int("packets", d.Packets, "packets per timed pass")
	rounds := fs.Int("rounds", d.Rounds, "timed passes per configuration; the table shows the median")
	seed := fs.Int64("seed", d.Seed, "seed of the traffic and of the table's insertion order")
	svgFile := fs.String("svg", "", "draw the curve into this SVG file")
	jsonFile := jsonOutFlag(fs, "write the options, the machine and every row as JSON to this file")
	markdown := fs.Bool("markdown", false, "also print the table in Markdown for the README")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	o := d
	lists := []struct {
		flag string
		in   string
		out  *[]int
	}{{"conns", *conns, &o.Conns}, {"cache", *caches, &o.CacheSizes}, {"window", *windows, &o.Windows}}
	for _, l := range lists {
		vs, err := connsIntList(l.in)
		if err != nil {
			return cli.FlagError(l.flag, "%s", err)
		}
		*l.out = vs
	}
	o.Ways, o.Prefetch, o.Model = *ways, *prefetch, connbench.Model(*model)
	o.Burst, o.Spread, o.Batch = *burst, *spread, *batch
	o.Packets, o.Rounds, o.Seed = *packets, *rounds, *seed
	if err := o.Validate(); err != nil {
		return benchOptionError(err, fs)
	}

	var progress io.Writer
	if !*quiet {
		progress = os.Stderr
	}
	date, machine := time.Now().Format("2006-01-02"), bench.ThisMachine(time.Now()).String()
	rows, err := connbench.Run(ctx, o, progress)
	if len(rows) == 0 {
		return err
	}
	fmt.Printf("xnic bench conns: %s, %s\n", date, machine)
	if werr := connbench.WriteTable(os.Stdout, rows); werr != nil {
		return errors.Join(err, werr)
	}
	if *markdown {
		fmt.Println()
		fmt.Print(connbench.RenderMarkdown(rows))
	}
	if *svgFile != "" {
		if werr := connbench.WriteSVG(rows, *svgFile, date, machine); werr != nil {
			return errors.Join(err, werr)
		}
	}
	if *jsonFile != "" {
		if werr := connsWriteJSON(*jsonFile, date, machine, o, rows); werr != nil {
			return errors.Join(err, werr)
		}
	}
	return err
}

// connsJoin writes a list of counts as the flags take it.
func connsJoin(vs []int) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

// connsIntList parses a comma-separated list of positive counts; a k or M
// suffix multiplies by 1000 or 1000000.
func connsIntList(s string) ([]int, error) {
	var vs []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		mul := 1
		switch {
		case strings.HasSuffix(f, "k"):
			mul, f = 1000, strings.TrimSuffix(f, "k")
		case strings.HasSuffix(f, "M"):
			mul, f = 1_000_000, strings.TrimSuffix(f, "M")
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 1 || v > (1<<31)/mul {
			return nil, fmt.Errorf("%q is not a positive count in %q", f, s)
		}
		vs = append(vs, v*mul)
	}
	return vs, nil
}

// connsWriteJSON writes the run as JSON to path.
func connsWriteJSON(path, date, machine string, o connbench.Options, rows []connbench.Row) error {
	b, err := json.MarshalIndent(struct {
		Date    string            `json:"date"`
		Machine string            `json:"machine"`
		Options connbench.Options `json:"options"`
		Rows    []connbench.Row   `json:"rows"`
	}{date, machine, o, rows}, "", "  ")
	if err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
