package benchcmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/bench/offloadbench"
	"github.com/xnic/xnic/internal/cli"
)

// benchOffloadFrameSize is the raw receive benchmark's frame on the wire:
// the offload stages' 1514-byte frames and the FCS.
const benchOffloadFrameSize = offloadbench.FrameLen + bench.FCSLen

// runBenchOffload is `xnic bench offload`: in one run, the raw receive rate
// of MTU frames on a veth lab (the receive benchmark with xnic-rx, and
// libxdp when its binary is there) and the rates of software GRO and GSO on
// one core, set against it (issue 5: each at least 5x the raw rate).
func runBenchOffload(ctx context.Context, args []string) error {
	fs := cli.NewFlags("bench offload", "[--rounds N] [--duration D] [--cpu N] [--batch N] [--no-rx] [--peers DIR] [-o FILE] [--markdown]")
	d := offloadbench.DefaultOptions()
	rounds := fs.Int("rounds", d.Rounds, "rounds of the receive benchmark and of every offload stage; tables show the median")
	duration := fs.Duration("duration", d.Duration, "measurement window of each receiver and each offload stage")
	cpu := fs.Int("cpu", d.CPU, "CPU of the offload stages and of the receiver process; -1: unpinned")
	batch := fs.Int("batch", d.Batch, "frames GRO receives between two flushes")
	noRx := fs.Bool("no-rx", false, "skip the raw receive benchmark (no root needed; no ratios)")
	peers := fs.String("peers", "", "directory of rxdrop_libxdp (default: the directory of this xnic); libxdp runs if it is there")
	jsonFile := jsonOutFlag(fs, "write the options, the machine, the receive report and every row as JSON to this file")
	markdown := fs.Bool("markdown", false, "also print the tables in Markdown for the README")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	o := d
	o.Rounds, o.Duration, o.CPU, o.Batch = *rounds, *duration, *cpu, *batch
	if err := o.Validate(); err != nil {
		return benchOptionError(err, fs)
	}
	var progress io.Writer
	if !*quiet {
		progress = os.Stderr
	}

	date := time.Now()
	machine := bench.ThisMachine(date).String()
	// The raw receive rate first: it builds (and tears down) its own lab.
	var rep *bench.Report
	var rxErr error
	if !*noRx {
		bo, err := offloadRxOptions(fs, o, *peers, progress)
		if err != nil {
			return err
		}
		rep, rxErr = bench.Run(ctx, bo)
		if rep == nil {
			return trimBenchErr(rxErr, "bench: ")
		}
		rxErr = trimBenchErr(rxErr, "bench: ")
		if ctx.Err() != nil {
			return rxErr
		}
	}

	rows, err := offloadbench.Run(ctx, o, progress)
	err = errors.Join(rxErr, err)
	if len(rows) == 0 && rep == nil {
		return err
	}
	raw := offloadRaw(rep)
	if raw == nil && !*noRx {
		err = errors.Join(err, errors.New("no raw receive rate: every xnic-rx round failed, so no ratios"))
	}

	fmt.Printf("xnic bench offload: %s, %s\n\n", date.Format("2006-01-02 15:04"), machine)
	if rep != nil {
		if werr := rep.WriteTable(os.Stdout); werr != nil {
			return errors.Join(err, werr)
		}
		fmt.Println()
	}
	if len(rows) > 0 {
		if werr := offloadbench.WriteTable(os.Stdout, rows, raw); werr != nil {
			return errors.Join(err, werr)
		}
	}
	if *markdown {
		fmt.Println()
		if rep != nil {
			if werr := rep.WriteMarkdown(os.Stdout); werr != nil {
				return errors.Join(err, werr)
			}
			fmt.Println()
		}
		if len(rows) > 0 {
			fmt.Print(offloadbench.RenderMarkdown(rows, raw))
		}
	}
	if *jsonFile != "" {
		if werr := offloadWriteJSON(*jsonFile, date.Format(time.RFC3339), machine, o, rep, raw, rows); werr != nil {
			return errors.Join(err, werr)
		}
	}
	return err
}

// offloadRxOptions are the receive benchmark's options for the raw rate:
// MTU frames, xnic-rx (and libxdp if its binary is there), the offload
// run's rounds and window, the receiver on the offload stages' CPU.
func offloadRxOptions(fs *flag.FlagSet, o offloadbench.Options, peers string, log io.Writer) (bench.Options, error) {
	if os.Geteuid() != 0 {
		return bench.Options{}, errors.New("must run as root for the raw receive rate: it builds a netns and a veth pair " +
			"and loads XDP programs (try sudo, or --no-rx for the offload stages alone)")
	}
	self, err := os.Executable()
	if err != nil {
		return bench.Options{}, fmt.Errorf("find the xnic executable: %w", err)
	}
	bo := bench.DefaultOptions()
	bo.Rounds, bo.Duration, bo.FrameSize = o.Rounds, o.Duration, benchOffloadFrameSize
	bo.RxCPU = o.CPU
	bo.Xnic, bo.PeersDir = self, peers
	if bo.PeersDir == "" {
		bo.PeersDir = filepath.Dir(self)
	}
	bo.Only = []string{bench.XnicRx}
	if st, err := os.Stat(filepath.Join(bo.PeersDir, "rxdrop_libxdp")); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		bo.Only = append(bo.Only, bench.LibXDPSteer)
	}
	bo.Log = log
	if err := bo.Validate(); err != nil {
		return bench.Options{}, benchOptionError(err, fs)
	}
	return bo, nil
}

// offloadRaw is xnic-rx's median from the receive report, or nil.
func offloadRaw(rep *bench.Report) *offloadbench.Raw {
	if rep == nil {
		return nil
	}
	for _, s := range rep.Summary {
		if s.Contender == bench.XnicRx && s.Rounds > 0 && s.Median > 0 {
			return &offloadbench.Raw{Name: s.Contender, Mpps: s.Median / 1e6}
		}
	}
	return nil
}

// offloadWriteJSON writes the run as JSON to path.
func offloadWriteJSON(path, date, machine string, o offloadbench.Options, rep *bench.Report,
	raw *offloadbench.Raw, rows []offloadbench.Row) error {
	b, err := json.MarshalIndent(struct {
		Date    string               `json:"date"`
		Machine string               `json:"machine"`
		Options offloadbench.Options `json:"options"`
		Receive *bench.Report        `json:"receive,omitempty"`
		Raw     *offloadbench.Raw    `json:"raw,omitempty"`
		Rows    []offloadbench.Row   `json:"rows"`
		Ratios  []offloadbench.Ratio `json:"ratios,omitempty"`
	}{date, machine, o, rep, raw, rows, offloadbench.Ratios(rows, raw)}, "", "  ")
	if err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
