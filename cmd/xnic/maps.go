package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/flows/offload"
	"github.com/xnic/xnic/internal/cli"
	"github.com/xnic/xnic/umem"
)

// engineOf says whether the engine behind a port's pins runs: "running"
// while a process holds the port's lock, else "gone"; PID is the holder's,
// or the last holder's.
type engineOf struct {
	Engine string `json:"engine"`
	PID    int    `json:"pid,omitempty"`
}

func (e engineOf) String() string {
	switch {
	case e.Engine == "running":
		return fmt.Sprintf("running, pid %d", e.PID)
	case e.PID != 0:
		return fmt.Sprintf("gone, was pid %d", e.PID)
	}
	return "gone"
}

const goneNote = "the engine that pinned these maps no longer runs: they are leftovers; remove them with xnic clean --iface PORT, or start the next engine with --reuse-pins (it removes them, or with pin: true reuses them without the old guests' rules and flows)"

func engineOfPort(port string) (engineOf, error) {
	state, pid, err := engine.EngineState(engine.DefaultLockDir, port)
	if err != nil {
		return engineOf{}, err
	}
	return engineOf{Engine: state, PID: pid}, nil
}

// pinnedMap is one line of `xnic maps`.
type pinnedMap struct {
	bpf.PinnedMap
	engineOf
}

// pinnedStats is one port of `xnic stats`.
type pinnedStats struct {
	bpf.PinnedStats
	engineOf
}

// statsJSON is one port of `xnic stats --json`: its pinned counters, and
// the engine's XSK counters (summed over all its sockets, the same on
// every port) when the engine answers.
type statsJSON struct {
	pinnedStats
	XSK *umem.Statistics `json:"xsk,omitempty"`
}

// connsJSON is `xnic stats --top N --json`.
type connsJSON struct {
	Conns       []engine.ConnStat    `json:"conns"`
	Pipeline    engine.PipelineStats `json:"pipeline"`
	EmptyPasses uint64               `json:"empty_passes"`
	Sleeps      uint64               `json:"sleeps"`
	Tx          engine.TxStats       `json:"tx"`
	XSK         umem.Statistics      `json:"xsk"`
}

func runMaps(ctx context.Context, args []string) error {
	fs := cli.NewFlags("maps", "[--pin-dir DIR] [--json]")
	root := fs.String("pin-dir", engine.DefaultPinDir, "where the engine pins its maps, one directory per port")
	asJSON := fs.Bool("json", false, "JSON output")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	pinned, err := bpf.ListPinned(*root)
	if err != nil {
		return err
	}
	maps := make([]pinnedMap, len(pinned))
	for i, m := range pinned {
		maps[i].PinnedMap = m
		if maps[i].engineOf, err = engineOfPort(m.Port); err != nil {
			return err
		}
	}
	if *asJSON {
		return writeJSON(os.Stdout, maps)
	}
	if len(maps) == 0 {
		fmt.Printf("no maps pinned under %s (is an engine running?)\n", *root)
		return nil
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "PORT\tENGINE\tMAP\tID\tTYPE\tKEY\tVALUE\tMAX ENTRIES\tPATH")
	for _, m := range maps {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\n", m.Port, m.engineOf, m.Name, m.ID, m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Path)
	}
	w.Flush()
	for _, m := range maps {
		if m.Engine == "gone" {
			fmt.Printf("\nport %s: %s\n", m.Port, goneNote)
			break
		}
	}
	fmt.Printf("\ninspect with: bpftool map dump pinned %s\n", maps[0].Path)
	return nil
}

func runStats(ctx context.Context, args []string) error {
	fs := cli.NewFlags("stats", "[--iface IFACE] [--pin-dir DIR] [--interval D] [--json] | --top N | --guests | --classes [--interval D] [--ctl SOCKET] [--json]")
	root := fs.String("pin-dir", engine.DefaultPinDir, "where the engine pins its maps, one directory per port")
	port := fs.String("iface", "", "only this port (default: every pinned port)")
	cli.Alias(fs, "port", "iface")
	asJSON := fs.Bool("json", false, "JSON output")
	conns := fs.Int("top", 0, "print the top N connections by bytes and the pipeline counters, from the engine's control socket")
	cli.Alias(fs, "conns", "top")
	guests := fs.Bool("guests", false, "print each guest's active and standby ports and its migrations, from the engine's control socket")
	showClasses := fs.Bool("classes", false, "print each (port, guest, class): received, queued, sent, drops by reason, ECN marks, queue depth and rate, from the engine's control socket")
	interval := fs.Duration("interval", time.Second, "plain stats: print the counters every interval until Ctrl-C (with --json, one object per interval and a summary); with --classes: the rate is measured over this interval")
	ctl := fs.String("ctl", engine.DefaultControlPath, "the engine's control socket (--top, --guests, and the XSK counters of plain stats)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *showClasses {
		if *guests || *conns != 0 {
			return cli.FlagError("classes", "give one of --classes, --guests and --top")
		}
		if *interval <= 0 || *interval > time.Minute {
			return cli.FlagError("interval", "want 1ms..1m, got %s", *interval)
		}
		return printClasses(ctx, *ctl, *interval, *asJSON)
	}
	if *guests {
		if *conns != 0 {
			return cli.FlagError("guests", "give --guests or --top, not both")
		}
		return printGuests(ctx, *ctl, *asJSON)
	}
	if *conns != 0 {
		if *conns < 0 || *conns > engine.MaxTopConns {
			return cli.FlagError("top", "want 1..%d, got %d", engine.MaxTopConns, *conns)
		}
		return printConns(ctx, *ctl, *conns, *asJSON)
	}
	live := false
	fs.Visit(func(f *flag.Flag) { live = live || f.Name == "interval" })
	if !live {
		all, xsk, err := readStats(ctx, *root, *port, *ctl)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(os.Stdout, statsLines(all, xsk))
		}
		printStats(all, xsk)
		return nil
	}
	// --interval D: the counters every D until Ctrl-C, then once more as
	// the summary.
	if *interval <= 0 {
		return cli.FlagError("interval", "must be positive, got %s", *interval)
	}
	start := time.Now()
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		done := false
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		all, xsk, err := readStats(context.WithoutCancel(ctx), *root, *port, *ctl)
		if err != nil {
			return err
		}
		switch {
		case *asJSON && done:
			return writeJSON(os.Stdout, statsLive{Type: lineSummary, Seconds: time.Since(start).Seconds(), Ports: statsLines(all, xsk)})
		case *asJSON:
			writeJSON(os.Stdout, statsLive{Type: lineInterval, Seconds: time.Since(start).Seconds(), Ports: statsLines(all, xsk)})
		default:
			fmt.Printf("--- %.1fs\n", time.Since(start).Seconds())
			printStats(all, xsk)
		}
		if done {
			return nil
		}
	}
}

// statsLive is a line of `xnic stats --interval D --json`.
type statsLive struct {
	Type    string      `json:"type"`    // "interval", or "summary" after Ctrl-C
	Seconds float64     `json:"seconds"` // since the start
	Ports   []statsJSON `json:"ports"`
}

// statsLines pairs each port's counters with the engine's XSK counters.
func statsLines(all []pinnedStats, xsk *umem.Statistics) []statsJSON {
	out := make([]statsJSON, len(all))
	for i := range all {
		out[i] = statsJSON{all[i], xsk}
	}
	return out
}

// readStats reads the pinned counters of port (every pinned port for "")
// and, if the engine at ctl answers, its XSK counters.
func readStats(ctx context.Context, root, port, ctl string) ([]pinnedStats, *umem.Statistics, error) {
	var dirs []string
	if port != "" {
		dirs = []string{filepath.Join(root, port)}
		if _, err := os.Stat(dirs[0]); err != nil {
			return nil, nil, fmt.Errorf("port %s: no maps pinned at %s (is an engine running on it?)", port, dirs[0])
		}
	} else {
		ents, err := os.ReadDir(root)
		if err != nil && !os.IsNotExist(err) {
			return nil, nil, fmt.Errorf("read %s: %w", root, err)
		}
		for _, e := range ents {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(root, e.Name()))
			}
		}
	}
	if len(dirs) == 0 {
		return nil, nil, fmt.Errorf("no maps pinned under %s (is an engine running?)", root)
	}
	var all []pinnedStats
	for _, d := range dirs {
		ps, err := bpf.ReadPinnedStats(d)
		if err != nil {
			return nil, nil, err
		}
		eo, err := engineOfPort(ps.Port)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, pinnedStats{PinnedStats: ps, engineOf: eo})
	}
	// The XSK counters live in the engine's sockets, not in the pins: ask
	// the engine, if one answers.
	var xsk *umem.Statistics
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if rep, err := engine.QueryControl(qctx, ctl, engine.ControlRequest{Op: "stats"}); err == nil && rep.Stats != nil {
		xsk = &rep.Stats.XSK
	}
	cancel()
	return all, xsk, nil
}

// printStats prints what readStats read, for a human.
func printStats(all []pinnedStats, xsk *umem.Statistics) {
	if xsk != nil {
		printXSK(*xsk)
	}
	classes := bpf.DefaultSteerOptions().Classes
	for _, ps := range all {
		t := ps.Total
		fmt.Printf("port %s (engine %s)\n", ps.Port, ps.engineOf)
		if ps.Engine == "gone" {
			fmt.Printf("  %s\n", goneNote)
		}
		fmt.Printf("  seen        %14d packets %16d bytes\n", t.RxPackets, t.RxBytes)
		fmt.Printf("  redirected  %14d   flow hits %d, rule hits %d\n", t.Redirected, t.FlowHits, t.RuleHits)
		fmt.Printf("  to kernel   %14d   non-ip %d, control %d, unmatched %d, no socket %d\n",
			t.PassNonIp+t.PassControl+t.PassUnmatched+t.PassNoSocket, t.PassNonIp, t.PassControl, t.PassUnmatched, t.PassNoSocket)
		fmt.Printf("  malformed   %14d   dropped\n", t.DroppedMalformed)
		if t.EarlyDrops+t.EcnMarked > 0 {
			fmt.Printf("  early drops %14d   over a receive threshold; %d ECN-capable let in with CE\n", t.EarlyDrops, t.EcnMarked)
		}
		if f := ps.Flows; f.Fast+f.LRU > 0 {
			full := 0.0
			if f.FastWays > 0 {
				full = 100 * float64(f.Fast) / float64(f.FastWays)
			}
			fmt.Printf("  exact flows %14d   %d in the fast table (%.0f%% of %d ways), %d in the LRU hash (of %d)\n",
				f.Fast+f.LRU, f.Fast, full, f.FastWays, f.LRU, f.LRUSize)
		}
		for q, st := range ps.Queues {
			fmt.Printf("  queue %-3d   %14d packets, %d redirected\n", q, st.RxPackets, st.Redirected)
		}
		for i, st := range ps.Slots {
			fmt.Printf("  guest %d class %d  %d packets %d bytes, %d redirected (%d to class 0), %d without a socket, %d early drops, %d ECN marked\n",
				i/classes, i%classes, st.Packets, st.Bytes, st.Redirected, st.RedirectedClass0, st.PassNoSocket, st.EarlyDrops, st.EcnMarked)
		}
	}
}

// printXSK prints the kernel's XSK drop counters, summed over sockets:
// frames steered to a socket that never reached the engine.
func printXSK(x umem.Statistics) {
	fmt.Printf("xsk: %d dropped (%d rx ring full, %d no frame: rx_dropped), fill ring empty %d, invalid rx %d tx %d\n",
		x.RxDropped+x.RxRingFull, x.RxRingFull, x.RxDropped, x.RxFillRingEmptyDescs, x.RxInvalidDescs, x.TxInvalidDescs)
}

// printConns asks the running engine for its top connections and its
// pipeline counters.
func printConns(ctx context.Context, path string, n int, asJSON bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rep, err := engine.QueryControl(ctx, path, engine.ControlRequest{Op: "conns", N: n})
	if err != nil {
		return err
	}
	st, err := engine.QueryControl(ctx, path, engine.ControlRequest{Op: "stats"})
	if err != nil {
		return err
	}
	if asJSON {
		c := connsJSON{Conns: rep.Conns, Pipeline: st.Stats.Pipeline, EmptyPasses: st.Stats.EmptyPasses,
			Sleeps: st.Stats.Sleeps, Tx: st.Stats.Tx, XSK: st.Stats.XSK}
		if c.Conns == nil {
			c.Conns = []engine.ConnStat{}
		}
		return writeJSON(os.Stdout, c)
	}
	p := st.Stats.Pipeline
	fmt.Printf("workers: %d empty passes, %d sleeps in poll(2)\n", st.Stats.EmptyPasses, st.Stats.Sleeps)
	printXSK(st.Stats.XSK)
	fmt.Printf("pipeline: %d packets, %d connections live, %d context loads (%.3f per packet), %d cache hits, %d evictions, %d malformed, %d bad checksums\n",
		p.Packets, p.Conns, p.CacheLoads, p.LoadsPerPacket(), p.CacheHits, p.Evictions, p.Malformed, p.CsumBad)
	if p.GROSegments > 0 {
		fmt.Printf("gro: %d segments in %d aggregates (%.1f per aggregate); flushes:", p.GROSegments, p.GROSegments-p.GROMerged, p.GRORatio())
		for r, n := range p.GROFlush {
			if n > 0 {
				fmt.Printf(" %s=%d", offload.FlushReason(r), n)
			}
		}
		if p.GROAcks > 0 {
			fmt.Printf("; %d pure ACKs coalesced", p.GROAcks)
		}
		fmt.Println()
	}
	if t := st.Stats.Tx; t.Requests > 0 {
		fmt.Printf("send: %d requests (%d segmented) in %d frames, %d bytes; dropped %d (no free frame %d, link down %d, malformed or too big %d); refused by spoof checks %d, by a full send queue %d; class queues dropped %d; %d MSS clamped\n",
			t.Requests, t.GSORequests, t.Segments, t.Bytes, t.Dropped, t.NoFrames, t.LinkDown, t.Dropped-t.NoFrames-t.LinkDown, t.Spoofed, t.SendQueueFull, t.QueueDrops, t.MSSClamped)
	}
	fmt.Printf("%4s  %-52s %5s %5s %12s %14s %12s %14s\n", "#", "flow (receive direction)", "guest", "class", "pkts in", "bytes in", "pkts out", "bytes out")
	for i, c := range rep.Conns {
		fmt.Printf("%4d  %-52s %5d %5d %12d %14d %12d %14d\n", i+1, c.Flow, c.Owner, c.Class, c.PacketsIn, c.BytesIn, c.PacketsOut, c.BytesOut)
	}
	return nil
}

// printClasses asks the running engine for its class counters twice,
// interval apart, and prints the second answer: its rates are over the
// interval.
func printClasses(ctx context.Context, path string, interval time.Duration, asJSON bool) error {
	ask := func() ([]engine.ClassStats, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		rep, err := engine.QueryControl(ctx, path, engine.ControlRequest{Op: "classes"})
		if err != nil {
			return nil, err
		}
		if rep.Classes == nil {
			return []engine.ClassStats{}, nil
		}
		return rep.Classes, nil
	}
	if _, err := ask(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(interval):
	}
	cs, err := ask()
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(os.Stdout, cs)
	}
	fmt.Printf("%-10s %-12s %-12s %10s %10s %10s %10s %8s %8s %8s %6s %7s %9s %12s\n", "port", "guest", "class", "rx pkts", "rx early",
		"tx queued", "tx sent", "tail", "red", "policer", "ecn", "depth", "max depth", "rate Mbit/s")
	for _, c := range cs {
		name := fmt.Sprintf("%d %s", c.Class, c.Name)
		if !c.Active {
			fmt.Printf("%-10s %-12s %-12s %10d %10d %10s (standby port: receive only)\n", c.Port, c.Guest, name, c.RxPackets, c.RxEarlyDrops, "-")
			continue
		}
		fmt.Printf("%-10s %-12s %-12s %10d %10d %10d %10d %8d %8d %8d %6d %7d %9d %12.1f\n", c.Port, c.Guest, name, c.RxPackets, c.RxEarlyDrops,
			c.Enqueued, c.Sent, c.DropTail, c.DropRED, c.DropPolicer, c.ECNMarks+c.RxECNMarked, c.Depth, c.MaxDepth, c.RateBps/1e6)
	}
	return nil
}
