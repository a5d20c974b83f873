package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xnic/xnic/bench/internal/stat"
)

// LatencyReport is a whole latency benchmark run: where it ran, every raw
// measurement, the summary over rounds, the targets and the distributions.
type LatencyReport struct {
	Env     LatencyEnv       `json:"env"`
	Rounds  []LatencyRound   `json:"rounds"`
	Summary []LatencySummary `json:"summary"`
	Targets []LatencyTarget  `json:"targets"`
	// CDF is the distribution of every contender and kind over all
	// rounds, as WritePlot draws it.
	CDF []LatencyCDF `json:"cdf"`
	// Breakdown attributes the round trip to its parts by differences
	// between contenders (with LatencyOptions.Breakdown).
	Breakdown []BreakdownStep `json:"breakdown,omitempty"`
}

// LatencyEnv describes the machine and the set-up of a latency run.
type LatencyEnv struct {
	Machine
	Lab        string   `json:"lab"`
	Rounds     int      `json:"rounds"`
	Requests   int      `json:"requests"` // timed requests per kind per round
	Warmup     int      `json:"warmup"`
	Size       int      `json:"size"` // bytes of a request and of its answer
	TimeoutSec float64  `json:"timeout_seconds"`
	Contenders []string `json:"contenders"`
	ClientCPU  int      `json:"client_cpu"` // -1: unpinned
	ServerCPU  int      `json:"server_cpu"` // -1: unpinned
	// Client and Servers say what ran where.
	Client  string            `json:"client"`
	Servers map[string]string `json:"servers"`
}

// LatencyRound is one measurement of every contender.
type LatencyRound struct {
	Index   int             `json:"index"`
	Results []LatencyResult `json:"results"`
}

// LatencyResult is one contender measured once: both kinds.
type LatencyResult struct {
	Contender string      `json:"contender"`
	TCP       LatencyStat `json:"tcp"`
	UDP       LatencyStat `json:"udp"`
	// Noise is what else ran from the server's start to its exit.
	Noise Noise `json:"noise"`
	// ServerCPUs are the CPUs the server's threads were allowed on.
	ServerCPUs string `json:"server_cpus,omitempty"`
	// Server is the server's own final JSON report, verbatim.
	Server map[string]any `json:"server,omitempty"`
	// Err says why the server failed (start, stop); the kinds may still
	// hold figures.
	Err string `json:"error,omitempty"`
}

// OK reports whether the server and both kinds succeeded.
func (r LatencyResult) OK() bool { return r.Err == "" && r.TCP.OK() && r.UDP.OK() }

// stat is the result's statistic of a kind.
func (r *LatencyResult) stat(kind string) *LatencyStat {
	if kind == KindUDP {
		return &r.UDP
	}
	return &r.TCP
}

// LatencyStat is the round-trip times of one kind in one measurement, in
// microseconds. Percentiles are nearest-rank over the answered requests.
type LatencyStat struct {
	Requests int     `json:"requests"` // timed requests answered
	Lost     int     `json:"lost,omitempty"`
	Seconds  float64 `json:"seconds"` // wall time of the timed requests
	MinUs    float64 `json:"min_us"`
	MeanUs   float64 `json:"mean_us"`
	P50Us    float64 `json:"p50_us"`
	P90Us    float64 `json:"p90_us"`
	P99Us    float64 `json:"p99_us"`
	P999Us   float64 `json:"p999_us"`
	MaxUs    float64 `json:"max_us"`
	Err      string  `json:"error,omitempty"`
	// NotRun: the contender does not serve this kind (the breakdown's
	// engine echoes answer UDP only). Not a failure.
	NotRun bool `json:"not_run,omitempty"`
}

// OK reports whether the measurement succeeded.
func (s LatencyStat) OK() bool { return s.Err == "" }

// latencyStat computes the statistics of samples (µs; reordered).
func latencyStat(samples []float64, lost int, elapsed time.Duration) LatencyStat {
	st := LatencyStat{Requests: len(samples), Lost: lost, Seconds: elapsed.Seconds()}
	if len(samples) == 0 {
		return st
	}
	slices.Sort(samples)
	sum := 0.0
	for _, v := range samples {
		sum += v
	}
	st.MinUs, st.MaxUs, st.MeanUs = samples[0], samples[len(samples)-1], sum/float64(len(samples))
	st.P50Us, st.P90Us = percentile(samples, 0.5), percentile(samples, 0.9)
	st.P99Us, st.P999Us = percentile(samples, 0.99), percentile(samples, 0.999)
	return st
}

// percentile is the nearest-rank p-quantile of sorted, non-empty s: the
// smallest sample with at least a share p of the samples at or below it.
func percentile(s []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// CDFPoint is a point of a distribution: a share P of the requests took at
// most Us microseconds.
type CDFPoint struct {
	Us float64 `json:"us"`
	P  float64 `json:"p"`
}

// LatencyCDF is the distribution of one contender and kind over every
// round's samples, at points evenly spaced in "nines" (−log10(1−P)) up to
// the resolution of the sample count, so that the tail has as many points
// as the body.
type LatencyCDF struct {
	Contender string     `json:"contender"`
	Kind      string     `json:"kind"`
	Samples   int        `json:"samples"`
	Points    []CDFPoint `json:"points"`
}

// cdfSteps is the number of steps of a distribution per nine.
const cdfSteps = 40

// cdfPoints computes the distribution of samples (reordered).
func cdfPoints(samples []float64) []CDFPoint {
	n := len(samples)
	if n == 0 {
		return nil
	}
	slices.Sort(samples)
	top := math.Log10(float64(n)) // 1−1/n: the highest share n samples resolve
	var pts []CDFPoint
	for k := 0; ; k++ {
		x := float64(k) / cdfSteps
		if x > top {
			x = top
		}
		p := 1 - math.Pow(10, -x)
		pt := CDFPoint{Us: percentile(samples, p), P: p}
		if len(pts) == 0 || pt.P > pts[len(pts)-1].P {
			pts = append(pts, pt)
		}
		if x == top {
			return pts
		}
	}
}

// Percentiles of a kind, as named in LatencyTarget.
const (
	PctP50  = "p50"
	PctP99  = "p99"
	PctP999 = "p99.9"
)

// LatencyKindSummary is a kind over the rounds: the median (and range) of
// each per-round percentile, in microseconds.
type LatencyKindSummary struct {
	P50  Stat `json:"p50_us"`
	P99  Stat `json:"p99_us"`
	P999 Stat `json:"p999_us"`
	// Lost is the UDP requests lost over all rounds.
	Lost int `json:"lost"`
}

func (k *LatencyKindSummary) pct(name string) *Stat {
	switch name {
	case PctP99:
		return &k.P99
	case PctP999:
		return &k.P999
	}
	return &k.P50
}

// LatencySummary is a contender over all rounds.
type LatencySummary struct {
	Contender string             `json:"contender"`
	TCP       LatencyKindSummary `json:"tcp"`
	UDP       LatencyKindSummary `json:"udp"`
	// MaxOthers is the highest Noise.Others of the rounds.
	MaxOthers float64 `json:"max_others"`
}

func (s *LatencySummary) kind(kind string) *LatencyKindSummary {
	if kind == KindUDP {
		return &s.UDP
	}
	return &s.TCP
}

// LatencyTarget is one of the project's latency targets: Num's median of a
// percentile of a kind at most Max times Den's.
type LatencyTarget struct {
	Kind       string   `json:"kind"`
	Percentile string   `json:"percentile"`
	Num        string   `json:"num"`
	Den        string   `json:"den"`
	Max        float64  `json:"max"`
	Value      *float64 `json:"value,omitempty"` // nil when either side is missing
}

// Met reports whether the ratio was measured and is within its target.
func (t LatencyTarget) Met() bool { return t.Value != nil && *t.Value <= t.Max }

// Name is "kind percentile num / den".
func (t LatencyTarget) Name() string {
	return t.Kind + " " + t.Percentile + " " + t.Num + " / " + t.Den
}

// LatencyTargets are the latency targets of issue 12, for both xnic
// contenders: TCP ping-pong p50 at most gVisor's endpoint's, and p99 at
// most 3 times the kernel's.
func LatencyTargets() []LatencyTarget {
	var ts []LatencyTarget
	for _, x := range []string{LatXnic, LatXnicBusy} {
		ts = append(ts,
			LatencyTarget{Kind: KindTCP, Percentile: PctP50, Num: x, Den: LatGvisorXDP, Max: 1},
			LatencyTarget{Kind: KindTCP, Percentile: PctP99, Num: x, Den: LatKernel, Max: 3})
	}
	return ts
}

// summarizeLatency computes the summary of rounds for contenders, and the
// targets.
func summarizeLatency(contenders []string, rounds []LatencyRound) ([]LatencySummary, []LatencyTarget) {
	var sums []LatencySummary
	for _, name := range contenders {
		s := LatencySummary{Contender: name}
		for _, kind := range LatencyKinds() {
			ks := s.kind(kind)
			vals := map[string][]float64{}
			for _, rd := range rounds {
				for _, r := range rd.Results {
					if r.Contender != name {
						continue
					}
					st := r.stat(kind)
					if st.NotRun {
						continue
					}
					ks.Lost += st.Lost
					ok := r.Err == "" && st.OK() && st.Requests > 0
					for _, pct := range []struct {
						name string
						v    float64
					}{{PctP50, st.P50Us}, {PctP99, st.P99Us}, {PctP999, st.P999Us}} {
						if !ok {
							ks.pct(pct.name).Failed++
							continue
						}
						vals[pct.name] = append(vals[pct.name], pct.v)
					}
				}
			}
			for _, pct := range []string{PctP50, PctP99, PctP999} {
				st, v := ks.pct(pct), vals[pct]
				st.Rounds = len(v)
				if len(v) > 0 {
					st.Median, st.Min, st.Max = stat.Median(v), slices.Min(v), slices.Max(v)
				}
			}
		}
		for _, rd := range rounds {
			for _, r := range rd.Results {
				if r.Contender == name {
					s.MaxOthers = max(s.MaxOthers, r.Noise.Others)
				}
			}
		}
		sums = append(sums, s)
	}
	targets := LatencyTargets()
	for i, t := range targets {
		n, d := findLatencySummary(sums, t.Num), findLatencySummary(sums, t.Den)
		if n == nil || d == nil {
			continue
		}
		ns, ds := n.kind(t.Kind).pct(t.Percentile), d.kind(t.Kind).pct(t.Percentile)
		if ns.Rounds > 0 && ds.Rounds > 0 && ds.Median > 0 {
			v := ns.Median / ds.Median
			targets[i].Value = &v
		}
	}
	return sums, targets
}

func findLatencySummary(sums []LatencySummary, name string) *LatencySummary {
	for i := range sums {
		if sums[i].Contender == name {
			return &sums[i]
		}
	}
	return nil
}

// pctCells are the medians of a kind's percentiles, or "failed".
func pctCells(k LatencyKindSummary) []string {
	var out []string
	for _, st := range []Stat{k.P50, k.P99, k.P999} {
		if st.Rounds == 0 && st.Failed == 0 {
			out = append(out, "-") // not run
			continue
		}
		if st.Rounds == 0 {
			out = append(out, "failed")
			continue
		}
		out = append(out, us(st.Median))
	}
	return out
}

// latRoundsCell is "ok/all" over the kinds the contender ran in every
// round.
func latRoundsCell(s LatencySummary) string {
	ok, all := -1, 0
	for _, k := range []LatencyKindSummary{s.TCP, s.UDP} {
		n := k.P50.Rounds + k.P50.Failed
		if n == 0 {
			continue // not run
		}
		if ok < 0 || k.P50.Rounds < ok {
			ok = k.P50.Rounds
		}
		all = max(all, n)
	}
	return fmt.Sprintf("%d/%d", max(ok, 0), all)
}

func (r *LatencyReport) headline() string {
	e := r.Env
	return fmt.Sprintf("round-trip time of %d-byte messages in µs, one veth pair, one queue; median over %d rounds "+
		"of each round's percentiles of %d requests per kind (after %d of warm-up)", e.Size, e.Rounds, e.Requests, e.Warmup)
}

func (r *LatencyReport) noiseWarning() string {
	n, total := 0, 0
	for _, rd := range r.Rounds {
		for _, res := range rd.Results {
			total++
			if res.Noise.Others > NoisyOthers {
				n++
			}
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("warning: in %d of %d measurements other tasks used more than %.0f%% of the CPUs "+
		"(column others' CPU, the worst round): the machine was not idle; rerun when it is",
		n, total, NoisyOthers*100)
}

// failures lists every failed server or kind, one per line.
func (r *LatencyReport) failures() []string {
	var out []string
	for _, rd := range r.Rounds {
		for _, res := range rd.Results {
			for _, f := range []struct{ what, err string }{
				{"server", res.Err}, {KindTCP, res.TCP.Err}, {KindUDP, res.UDP.Err},
			} {
				if f.err != "" {
					out = append(out, fmt.Sprintf("round %d %s %s: %s", rd.Index, res.Contender, f.what, f.err))
				}
			}
		}
	}
	return out
}

func targetLine(t LatencyTarget) (value, verdict string) {
	return ratioValue(t.Value), ratioVerdict(t.Value, t.Met())
}

// WriteTable prints the summary as an aligned text table with the targets
// and any failures.
func (r *LatencyReport) WriteTable(w io.Writer) error {
	e := r.Env
	var b strings.Builder
	fmt.Fprintf(&b, "xnic bench latency: %s\n", r.headline())
	fmt.Fprintf(&b, "%s, Linux %s, %s, %d cores, load %s, lab %s; client on %s, servers on %s\n\n",
		e.Date.Format("2006-01-02 15:04"), e.Kernel, e.CPUModel, e.Cores, e.LoadAvg, e.Lab,
		cpuName(e.ClientCPU), cpuName(e.ServerCPU))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "contender\ttcp p50\tp99\tp99.9\tudp p50\tp99\tp99.9\tudp lost\trounds\tothers' CPU\t")
	for _, s := range r.Summary {
		cells := append([]string{s.Contender}, pctCells(s.TCP)...)
		cells = append(cells, pctCells(s.UDP)...)
		cells = append(cells, fmt.Sprint(s.UDP.Lost), latRoundsCell(s), percentOf(s.MaxOthers))
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	tw.Flush()
	b.WriteString("\n")
	for _, t := range r.Targets {
		v, verdict := targetLine(t)
		fmt.Fprintf(&b, "%-32s %5s  (target <= %.2f: %s)\n", t.Name(), v, t.Max, verdict)
	}
	writeBreakdownTable(&b, r.Breakdown)
	if w := r.noiseWarning(); w != "" {
		b.WriteString(w + "\n")
	}
	for _, f := range r.failures() {
		b.WriteString(f + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteMarkdown prints the summary as Markdown, ready for the README: the
// machine and the method, the table and the targets.
func (r *LatencyReport) WriteMarkdown(w io.Writer) error {
	e := r.Env
	var b strings.Builder
	fmt.Fprintf(&b, "Latency benchmark (`xnic bench latency`), %s.\n", r.headline())
	fmt.Fprintf(&b, "Run on %s: Linux %s, %s, %d cores (load average %s at the start); client on %s, servers on %s.\n",
		e.Date.Format("2006-01-02"), e.Kernel, e.CPUModel, e.Cores, e.LoadAvg, cpuName(e.ClientCPU), cpuName(e.ServerCPU))
	fmt.Fprintf(&b, "Client: %s. TCP: ping-pong on one connection; UDP: echo of one datagram at a time "+
		"(a request unanswered after %gs is lost and left out). Each request timed alone, write to last byte read.\n\n",
		e.Client, e.TimeoutSec)
	for _, name := range e.Contenders {
		if s := e.Servers[name]; s != "" {
			fmt.Fprintf(&b, "- %s: %s\n", name, s)
		}
	}
	b.WriteString("\n| contender | TCP p50 µs | p99 | p99.9 | UDP p50 µs | p99 | p99.9 | UDP lost |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Summary {
		cells := append(pctCells(s.TCP), pctCells(s.UDP)...)
		fmt.Fprintf(&b, "| %s | %s | %d |\n", s.Contender, strings.Join(cells, " | "), s.UDP.Lost)
	}
	b.WriteString("\n| ratio | value | target |\n|---|---:|---:|\n")
	for _, t := range r.Targets {
		v, verdict := targetLine(t)
		fmt.Fprintf(&b, "| %s | %s | ≤ %.2f (%s) |\n", t.Name(), v, t.Max, verdict)
	}
	writeBreakdownMarkdown(&b, r.Breakdown)
	writeTail(&b, r.noiseWarning(), r.failures())
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the whole report, every raw round included, as indented
// JSON.
func (r *LatencyReport) WriteJSON(w io.Writer) error {
	return writeJSON(w, r, "latency bench report")
}
