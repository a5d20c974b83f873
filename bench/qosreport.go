package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/xnic/xnic/bench/internal/stat"
)

// QoSReport is a whole QoS benchmark run: where it ran, every raw
// measurement, the summary per contender and the targets.
type QoSReport struct {
	Env     QoSEnv       `json:"env"`
	Rounds  []QoSRound   `json:"rounds"`
	Summary []QoSSummary `json:"summary"`
	// DropCost is the CPU per frame of an early drop in XDP against a drop
	// in user space; nil until the benchmark measures it.
	DropCost *QoSDropCost `json:"drop_cost,omitempty"`
	Targets  []QoSTarget  `json:"targets"`
}

// QoSEnv describes the machine and the set-up of a QoS run.
type QoSEnv struct {
	Machine
	// LoadAvgEnd is /proc/loadavg at the end; Noise is what other tasks
	// used of the CPUs over the whole run.
	LoadAvgEnd     string  `json:"loadavg_end"`
	Noise          Noise   `json:"noise"`
	Lab            string  `json:"lab"`
	Port           string  `json:"port"`
	Rounds         int     `json:"rounds"`
	WindowSec      float64 `json:"window_seconds"`
	SettleSec      float64 `json:"settle_seconds"`
	RateBitsPerSec uint64  `json:"rate_bits_per_second"` // configured
	Weights        []int   `json:"weights"`
	Requests       int     `json:"requests"`
	Warmup         int     `json:"warmup"`
	PingSize       int     `json:"ping_size"`
	// Setup, HTB and Method say what ran and what was measured.
	Setup  string `json:"setup"`
	HTB    string `json:"htb"`
	Method string `json:"method"`
}

// QoSRound is one measurement of every contender.
type QoSRound struct {
	Index   int         `json:"index"`
	Results []QoSResult `json:"results"`
}

// QoSResult is one contender measured once.
type QoSResult struct {
	Contender string `json:"contender"`
	// Classes are the bulk classes' downloads over the window.
	Classes []ClassBytes `json:"classes"`
	Seconds float64      `json:"seconds"`
	// WireBytes is what the host veth sent in the window (tx_bytes: frames
	// from the Ethernet header on, no FCS); WireBitsPerSec its rate.
	WireBytes      int64   `json:"wire_bytes"`
	WireBitsPerSec float64 `json:"wire_bits_per_second"`
	// GoodputBitsPerSec is every class's bytes at the peer over the window.
	GoodputBitsPerSec float64 `json:"goodput_bits_per_second"`
	// Alone and Loaded are the priority class's ping-pong without and with
	// the downloads (xnic only).
	Alone  *LatencyStat `json:"alone,omitempty"`
	Loaded *LatencyStat `json:"loaded,omitempty"`
	Noise  Noise        `json:"noise"`
	Err    string       `json:"error,omitempty"`
}

// OK reports whether the measurement succeeded.
func (r QoSResult) OK() bool { return r.Err == "" }

// ClassBytes is one bulk class's download over the window.
type ClassBytes struct {
	Name   string `json:"name"`
	Port   int    `json:"port"`
	Weight int    `json:"weight"`
	Bytes  int64  `json:"bytes"`
	// Share is Bytes over every class's.
	Share float64 `json:"share"`
}

// fill computes the shares and the rates from the bytes and the window.
func (r *QoSResult) fill() {
	var total int64
	for _, c := range r.Classes {
		total += c.Bytes
	}
	for i := range r.Classes {
		if total > 0 {
			r.Classes[i].Share = float64(r.Classes[i].Bytes) / float64(total)
		}
	}
	if r.Seconds > 0 {
		r.GoodputBitsPerSec = float64(total) * 8 / r.Seconds
		r.WireBitsPerSec = float64(r.WireBytes) * 8 / r.Seconds
	}
}

// ClassSummary is a bulk class over the rounds.
type ClassSummary struct {
	Name   string `json:"name"`
	Port   int    `json:"port"`
	Weight int    `json:"weight"`
	// WantShare is the weight over the sum of the weights; Share the
	// median share measured; ErrPct the share's error against WantShare,
	// in percent of WantShare.
	WantShare float64 `json:"want_share"`
	Share     float64 `json:"share"`
	ErrPct    float64 `json:"error_percent"`
	// BitsPerSec is the class's median goodput.
	BitsPerSec float64 `json:"bits_per_second"`
}

// QoSSummary is a contender over the rounds: medians of what succeeded.
type QoSSummary struct {
	Contender string         `json:"contender"`
	Rounds    int            `json:"rounds"` // successful
	Failed    int            `json:"failed"`
	Classes   []ClassSummary `json:"classes"`
	// WireBitsPerSec is the median shaped rate on the wire and RateErrPct
	// its error against the configured rate, in percent of it.
	WireBitsPerSec    float64 `json:"wire_bits_per_second"`
	RateErrPct        float64 `json:"rate_error_percent"`
	GoodputBitsPerSec float64 `json:"goodput_bits_per_second"`
	// The priority class's medians of p50 and p99 alone and loaded (µs),
	// and the loaded p99 over the alone one; nil without ping-pong.
	AloneP50Us  float64  `json:"alone_p50_us,omitempty"`
	AloneP99Us  float64  `json:"alone_p99_us,omitempty"`
	LoadedP50Us float64  `json:"loaded_p50_us,omitempty"`
	LoadedP99Us float64  `json:"loaded_p99_us,omitempty"`
	P99Ratio    *float64 `json:"p99_loaded_over_alone,omitempty"`
	MaxOthers   float64  `json:"max_others"`
}

// WorstShareErrPct is the largest share error of the classes, in absolute
// value.
func (s QoSSummary) WorstShareErrPct() float64 {
	w := 0.0
	for _, c := range s.Classes {
		w = max(w, math.Abs(c.ErrPct))
	}
	return w
}

// QoSDropCost is the CPU time per frame of dropping a class's frames early
// in XDP against dropping them in user space.
type QoSDropCost struct {
	// XDPNsPerFrame and UserNsPerFrame are the two drops' CPU per frame
	// above the baseline: the generator flooding a bare XDP_DROP.
	XDPNsPerFrame  float64 `json:"xdp_ns_per_frame"`
	UserNsPerFrame float64 `json:"user_ns_per_frame"`
	// The measured totals, generator included.
	BaselineNsPerFrame   float64 `json:"baseline_ns_per_frame,omitempty"`
	EarlyTotalNsPerFrame float64 `json:"early_total_ns_per_frame,omitempty"`
	UserTotalNsPerFrame  float64 `json:"user_total_ns_per_frame,omitempty"`
	Method               string  `json:"method"`
}

// Metrics of a QoSTarget.
const (
	QoSMetricShares   = "shares"
	QoSMetricRate     = "rate"
	QoSMetricPriority = "priority"
	QoSMetricDrop     = "drop"
)

// QoSTarget is one of the targets for a contender, or the same
// bound applied to the reference (Reference: HTB's figures, for
// comparison).
type QoSTarget struct {
	Contender string `json:"contender"`
	Metric    string `json:"metric"`
	// Limit bounds Value: the share error's and the rate error's absolute
	// value in percent, the ratio of p99s or of CPU per frame.
	Limit     float64  `json:"limit"`
	Value     *float64 `json:"value,omitempty"` // nil: not measured
	Met       bool     `json:"met"`
	Reference bool     `json:"reference,omitempty"`
}

// Goal says the target in words.
func (t QoSTarget) Goal() string {
	var g string
	switch t.Metric {
	case QoSMetricShares:
		g = fmt.Sprintf("shares within ±%g%% of the weights", t.Limit)
	case QoSMetricRate:
		g = fmt.Sprintf("shaped rate within ±%g%% of the configured rate", t.Limit)
	case QoSMetricPriority:
		g = fmt.Sprintf("strict-priority p99 loaded <= %gx alone", t.Limit)
	case QoSMetricDrop:
		return fmt.Sprintf("XDP early drop vs user-space drop (CPU per frame) <= %gx", t.Limit)
	}
	if t.Reference {
		return t.Contender + " (reference): " + g
	}
	return t.Contender + ": " + g
}

// valueCell is the value as the table shows it.
func (t QoSTarget) valueCell() string {
	if t.Value == nil {
		return "-"
	}
	v := *t.Value
	switch t.Metric {
	case QoSMetricShares:
		return fmt.Sprintf("worst %.1f%%", v)
	case QoSMetricRate:
		return fmt.Sprintf("%+.1f%%", v)
	}
	return fmt.Sprintf("%.2fx", v)
}

// QoSTargets are the targets: xnic's shares within ±5% of the
// weights, its shaped rate within ±2%, its strict-priority p99 loaded at
// most twice alone, an early drop in XDP at most 0.3 times the CPU of a
// user-space one; and HTB's shares and rate against the same bounds, as
// the reference.
func QoSTargets() []QoSTarget {
	return []QoSTarget{
		{Contender: QoSXnic, Metric: QoSMetricShares, Limit: 5},
		{Contender: QoSXnic, Metric: QoSMetricRate, Limit: 2},
		{Contender: QoSXnic, Metric: QoSMetricPriority, Limit: 2},
		{Contender: QoSXnic, Metric: QoSMetricDrop, Limit: 0.3},
		{Contender: QoSHTB, Metric: QoSMetricShares, Limit: 5, Reference: true},
		{Contender: QoSHTB, Metric: QoSMetricRate, Limit: 2, Reference: true},
	}
}

// summarize fills Summary and Targets from Rounds (and DropCost).
func (r *QoSReport) summarize() {
	r.Summary = nil
	for _, name := range QoSContenders() {
		if s, ok := r.summarizeContender(name); ok {
			r.Summary = append(r.Summary, s)
		}
	}
	r.Targets = QoSTargets()
	for i := range r.Targets {
		t := &r.Targets[i]
		var v *float64
		if t.Metric == QoSMetricDrop {
			if d := r.DropCost; d != nil && d.UserNsPerFrame > 0 {
				x := d.XDPNsPerFrame / d.UserNsPerFrame
				v = &x
			}
		} else if s := r.summary(t.Contender); s != nil && s.Rounds > 0 {
			switch t.Metric {
			case QoSMetricShares:
				x := s.WorstShareErrPct()
				v = &x
			case QoSMetricRate:
				x := s.RateErrPct
				v = &x
			case QoSMetricPriority:
				v = s.P99Ratio
			}
		}
		t.Value = v
		t.Met = v != nil && math.Abs(*v) <= t.Limit
	}
}

// summarizeContender is name over the rounds; ok is false when no round
// measured it.
func (r *QoSReport) summarizeContender(name string) (s QoSSummary, ok bool) {
	s = QoSSummary{Contender: name}
	var wire, good, a50, a99, l50, l99 []float64
	var shares, rates [][]float64 // by class
	var classes []ClassBytes
	for _, rd := range r.Rounds {
		for _, res := range rd.Results {
			if res.Contender != name {
				continue
			}
			ok = true
			s.MaxOthers = max(s.MaxOthers, res.Noise.Others)
			if !res.OK() || len(res.Classes) == 0 {
				s.Failed++
				continue
			}
			s.Rounds++
			if classes == nil {
				classes = res.Classes
				shares, rates = make([][]float64, len(classes)), make([][]float64, len(classes))
			}
			for i, c := range res.Classes {
				if i < len(classes) {
					shares[i] = append(shares[i], c.Share)
					rates[i] = append(rates[i], float64(c.Bytes)*8/res.Seconds)
				}
			}
			wire, good = append(wire, res.WireBitsPerSec), append(good, res.GoodputBitsPerSec)
			if res.Alone != nil && res.Loaded != nil {
				a50, a99 = append(a50, res.Alone.P50Us), append(a99, res.Alone.P99Us)
				l50, l99 = append(l50, res.Loaded.P50Us), append(l99, res.Loaded.P99Us)
			}
		}
	}
	if s.Rounds == 0 {
		return s, ok
	}
	total := 0
	for _, c := range classes {
		total += c.Weight
	}
	for i, c := range classes {
		cs := ClassSummary{Name: c.Name, Port: c.Port, Weight: c.Weight,
			Share: stat.Median(shares[i]), BitsPerSec: stat.Median(rates[i])}
		if total > 0 {
			cs.WantShare = float64(c.Weight) / float64(total)
			cs.ErrPct = (cs.Share/cs.WantShare - 1) * 100
		}
		s.Classes = append(s.Classes, cs)
	}
	s.WireBitsPerSec, s.GoodputBitsPerSec = stat.Median(wire), stat.Median(good)
	if rate := r.Env.RateBitsPerSec; rate > 0 {
		s.RateErrPct = (s.WireBitsPerSec/float64(rate) - 1) * 100
	}
	if len(a99) > 0 {
		s.AloneP50Us, s.AloneP99Us = stat.Median(a50), stat.Median(a99)
		s.LoadedP50Us, s.LoadedP99Us = stat.Median(l50), stat.Median(l99)
		if s.AloneP99Us > 0 {
			x := s.LoadedP99Us / s.AloneP99Us
			s.P99Ratio = &x
		}
	}
	return s, ok
}

func (r *QoSReport) summary(name string) *QoSSummary {
	for i := range r.Summary {
		if r.Summary[i].Contender == name {
			return &r.Summary[i]
		}
	}
	return nil
}

func mbps(bps float64) string { return fmt.Sprintf("%.1f", bps/1e6) }

func pct(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }

func (r *QoSReport) headline() string {
	e := r.Env
	return fmt.Sprintf("%d bulk classes with weights %s of one guest shaped to %s Mbit/s, each offered more than the whole, "+
		"and a strict-priority class's ping-pong; beside the kernel's HTB on the same veth; median of %d rounds of %gs",
		len(e.Weights), weightsString(e.Weights), mbps(float64(e.RateBitsPerSec)), e.Rounds, e.WindowSec)
}

func weightsString(ws []int) string {
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = fmt.Sprint(w)
	}
	return strings.Join(s, ":")
}

func (r *QoSReport) machineLine() string {
	e := r.Env
	return fmt.Sprintf("%s, Linux %s, %s, %d cores, load average %s at the start and %s at the end, "+
		"other tasks used %.0f%% of the CPUs; lab %s", e.Date.Format("2006-01-02 15:04"), e.Kernel, e.CPUModel, e.Cores,
		e.LoadAvg, e.LoadAvgEnd, e.Noise.Others*100, e.Lab)
}

func (r *QoSReport) noiseWarning() string {
	if r.Env.Noise.Others <= NoisyOthers {
		return ""
	}
	return fmt.Sprintf("warning: other tasks used %.0f%% of the CPUs during the run (more than %.0f%%): the machine was not idle",
		r.Env.Noise.Others*100, NoisyOthers*100)
}

func (r *QoSReport) failures() []string {
	var out []string
	for _, rd := range r.Rounds {
		for _, res := range rd.Results {
			if !res.OK() {
				out = append(out, fmt.Sprintf("round %d %s: %s", rd.Index, res.Contender, res.Err))
			}
		}
	}
	return out
}

var (
	qosShareHeader = []string{"contender", "class", "port", "weight", "want share", "share", "error", "goodput Mbit/s"}
	qosRateHeader  = []string{"contender", "wire Mbit/s", "configured", "error", "goodput Mbit/s", "rounds", "others' CPU"}
	qosPrioHeader  = []string{"contender", "p50 alone µs", "p99 alone µs", "p50 loaded µs", "p99 loaded µs", "p99 loaded / alone"}
)

// table is the report's tables as rows of cells, each with its header:
// shares, rates, priority.
func (r *QoSReport) tables() (shares, rates, prio [][]string) {
	rate := float64(r.Env.RateBitsPerSec)
	for _, s := range r.Summary {
		rounds := fmt.Sprintf("%d/%d", s.Rounds, s.Rounds+s.Failed)
		if s.Rounds == 0 {
			rates = append(rates, []string{s.Contender, "failed", mbps(rate), "-", "-", rounds, percentOf(s.MaxOthers)})
			continue
		}
		for _, c := range s.Classes {
			shares = append(shares, []string{s.Contender, c.Name, fmt.Sprint(c.Port), fmt.Sprint(c.Weight),
				pct(c.WantShare), pct(c.Share), fmt.Sprintf("%+.1f%%", c.ErrPct), mbps(c.BitsPerSec)})
		}
		rates = append(rates, []string{s.Contender, mbps(s.WireBitsPerSec), mbps(rate), fmt.Sprintf("%+.1f%%", s.RateErrPct),
			mbps(s.GoodputBitsPerSec), rounds, percentOf(s.MaxOthers)})
		if s.P99Ratio != nil {
			prio = append(prio, []string{s.Contender, fmt.Sprintf("%.0f", s.AloneP50Us), fmt.Sprintf("%.0f", s.AloneP99Us),
				fmt.Sprintf("%.0f", s.LoadedP50Us), fmt.Sprintf("%.0f", s.LoadedP99Us), ratioValue(s.P99Ratio)})
		}
	}
	return shares, rates, prio
}

// WriteTable prints the shares, the rates, the priority class's latency,
// the targets and any failures as aligned text.
func (r *QoSReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "xnic bench qos: %s\n%s\n", r.headline(), r.machineLine())
	shares, rates, prio := r.tables()
	for _, t := range []struct {
		header []string
		rows   [][]string
	}{{qosShareHeader, shares}, {qosRateHeader, rates}, {qosPrioHeader, prio}} {
		if len(t.rows) == 0 {
			continue
		}
		b.WriteString("\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(t.header, "\t")+"\t")
		for _, row := range t.rows {
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
		tw.Flush()
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, t := range r.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Goal(), t.valueCell(), ratioVerdict(t.Value, t.Met))
	}
	tw.Flush()
	if w := r.noiseWarning(); w != "" {
		b.WriteString(w + "\n")
	}
	for _, f := range r.failures() {
		b.WriteString(f + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteMarkdown prints the same as Markdown, with the method, for
// docs/benchmarks.md.
func (r *QoSReport) WriteMarkdown(w io.Writer) error {
	e := r.Env
	var b strings.Builder
	fmt.Fprintf(&b, "QoS benchmark (`xnic bench qos`): %s.\n", r.headline())
	fmt.Fprintf(&b, "Run on %s.\n\n", r.machineLine())
	fmt.Fprintf(&b, "- Set-up: %s.\n- HTB: %s.\n- Method: %s.\n", e.Setup, e.HTB, e.Method)
	shares, rates, prio := r.tables()
	for _, t := range []struct {
		header []string
		rows   [][]string
	}{{qosShareHeader, shares}, {qosRateHeader, rates}, {qosPrioHeader, prio}} {
		if len(t.rows) == 0 {
			continue
		}
		b.WriteString("\n| " + strings.Join(t.header, " | ") + " |\n|---|")
		b.WriteString(strings.Repeat("---:|", len(t.header)-1) + "\n")
		for _, row := range t.rows {
			b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		}
	}
	b.WriteString("\n| target | value | |\n|---|---|---|\n")
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", strings.Replace(t.Goal(), "<=", "≤", 1), t.valueCell(), ratioVerdict(t.Value, t.Met))
	}
	writeTail(&b, r.noiseWarning(), r.failures())
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the whole report, every round included, as indented
// JSON.
func (r *QoSReport) WriteJSON(w io.Writer) error {
	return writeJSON(w, r, "qos bench report")
}
