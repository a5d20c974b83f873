package benchcmd

import (
	"context"
	"errors"
	"os"
	"strings"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/internal/cli"
)

// runBenchSteerProg is `xnic bench steer-prog`: the steering program's own
// cost per frame, by BPF_PROG_TEST_RUN, beside a bare redirect program.
func runBenchSteerProg(ctx context.Context, args []string) error {
	fs := cli.NewFlags("bench steer-prog", "[--rounds N] [--repeat N] [--only a,b] [-o FILE] [--markdown]")
	d := bench.DefaultSteerProgOptions()
	rounds := fs.Int("rounds", d.Rounds, "BPF_PROG_TEST_RUN calls per case; the table shows the median")
	repeat := fs.Int("repeat", d.Repeat, "runs of the program per call")
	only := fs.String("only", "", "comma-separated cases (default: all: "+strings.Join(bench.SteerProgCases(), ", ")+")")
	jsonFile := jsonOutFlag(fs, "write every round and the summary as JSON to this file")
	markdown := fs.Bool("markdown", false, "also print the table as Markdown for the README")
	quiet := fs.Bool("quiet", false, "no per-case lines on stderr")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	o := d
	o.Rounds, o.Repeat, o.Only = *rounds, *repeat, cli.SplitList(*only)
	if !*quiet {
		o.Log = os.Stderr
	}
	if err := o.Validate(); err != nil {
		return benchOptionError(err, fs)
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: it loads XDP programs and binds an AF_XDP socket (try sudo)")
	}
	rep, err := bench.RunSteerProg(ctx, o)
	if rep == nil {
		return trimBenchErr(err, "bench steer-prog: ")
	}
	return printBenchReport(rep, len(rep.Rows), *markdown, *jsonFile, trimBenchErr(err, "bench steer-prog: "))
}
