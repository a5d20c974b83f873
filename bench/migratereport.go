package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/xnic/xnic/bench/internal/stat"
)

// MigrateReport is a whole migration benchmark run: where it ran, the
// goodput on each port, every event and the summary per kind.
type MigrateReport struct {
	Env     MigrateEnv     `json:"env"`
	Goodput []PortGoodput  `json:"goodput"`
	Events  []MigrateEvent `json:"events"`
	Summary []EventSummary `json:"summary"`
	// Targets are the issue's, each met or missed.
	Targets []MigrateTarget `json:"targets"`
	// Reference is bonding's link-check interval, beside the targets.
	Reference MigrateReference `json:"reference"`
}

// MigrateEnv describes the machine and the set-up of a migration run.
type MigrateEnv struct {
	Machine
	// LoadAvgEnd is /proc/loadavg at the end; Noise is what other tasks
	// used of the CPUs over the whole run.
	LoadAvgEnd string   `json:"loadavg_end"`
	Noise      Noise    `json:"noise"`
	Lab        string   `json:"lab"`
	Ports      []string `json:"ports"`
	Reps       int      `json:"reps"`
	SettleSec  float64  `json:"settle_seconds"`
	GoodputSec float64  `json:"goodput_seconds"`
	// Setup, Stream and Stall say what ran and what was measured.
	Setup  string `json:"setup"`
	Stream string `json:"stream"`
	Stall  string `json:"stall"`
}

// PortGoodput is the download's goodput with the guest on one port, not
// moving.
type PortGoodput struct {
	Port       string  `json:"port"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	BitsPerSec float64 `json:"bits_per_second"`
}

// MigrateEvent is one event measured once.
type MigrateEvent struct {
	Rep    int    `json:"rep"`
	Kind   string `json:"kind"`
	From   string `json:"from"` // the guest's port before the event
	To     string `json:"to"`   // and after it
	Reason string `json:"reason,omitempty"`
	// StallMs is the longest interval without payload at the peer in the
	// event's window; StallStartMs when it began, from the event's start
	// (negative: before it).
	StallMs      float64 `json:"stall_ms"`
	StallStartMs float64 `json:"stall_start_ms"`
	// The stream's goodput at the peer in the settle time before the
	// event and in the settle time after its end.
	BeforeBitsPerSec float64 `json:"before_bits_per_second"`
	AfterBitsPerSec  float64 `json:"after_bits_per_second"`
	// The engine's own view of the move: EngineStartMs from the event's
	// start to the move's start (for link-down, the detection through
	// the link watch, the `ip link set down` included), EngineTookMs the
	// control plane's time for it (Migration.Took) and EngineGapMs the
	// guest's own receive gap (MigrationStats.LastGap; absent if nothing
	// arrived on the new port).
	EngineStartMs float64  `json:"engine_start_ms,omitempty"`
	EngineTookMs  float64  `json:"engine_took_ms,omitempty"`
	EngineGapMs   *float64 `json:"engine_gap_ms,omitempty"`
	// Frames lost in the window, by the engine's counters: on the way in,
	// XSK rx drops and rx ring overflows over every socket, and what the
	// steering programs passed to the kernel unmatched, passed for want
	// of a socket, or dropped as malformed; on the way out, the guest's
	// packets the engine's send queue refused and the work requests its
	// send path dropped; and what the host ports' veths dropped on
	// transmit, in the kernel (tx_dropped), which the engine does not see.
	XSKLost       uint64 `json:"xsk_rx_dropped_or_ring_full"`
	Unmatched     uint64 `json:"steer_pass_unmatched"`
	NoSocket      uint64 `json:"steer_pass_no_socket"`
	Malformed     uint64 `json:"steer_dropped_malformed"`
	TxRefused     uint64 `json:"tx_refused"`
	TxDropped     uint64 `json:"tx_dropped"`
	VethTxDropped uint64 `json:"veth_tx_dropped"`
	// The guest's TCP in the window: RSTs sent and received,
	// retransmitted segments and retransmission timeouts.
	Resets      uint64 `json:"resets"`
	Retransmits uint64 `json:"retransmits"`
	Timeouts    uint64 `json:"rto_timeouts"`
	Err         string `json:"error,omitempty"`
}

// Lost is every frame the engine's counters lost in the event's window.
func (e MigrateEvent) Lost() uint64 {
	return e.XSKLost + e.Unmatched + e.NoSocket + e.Malformed + e.TxRefused + e.TxDropped + e.VethTxDropped
}

// OK reports whether the event was measured.
func (e MigrateEvent) OK() bool { return e.Err == "" }

// EventSummary is one kind of event over its repetitions; totals and
// medians are over the measured ones.
type EventSummary struct {
	Kind          string  `json:"kind"`
	Reps          int     `json:"reps"` // measured
	Failed        int     `json:"failed"`
	StallMedianMs float64 `json:"stall_median_ms"`
	StallMinMs    float64 `json:"stall_min_ms"`
	StallMaxMs    float64 `json:"stall_max_ms"`
	// Medians of the goodput before and after.
	BeforeBitsPerSec float64 `json:"before_median_bits_per_second"`
	AfterBitsPerSec  float64 `json:"after_median_bits_per_second"`
	// Medians of the engine's figures (zero for steady); EngineGapMs
	// over the events that had one.
	EngineStartMs float64  `json:"engine_start_median_ms"`
	EngineTookMs  float64  `json:"engine_took_median_ms"`
	EngineGapMs   *float64 `json:"engine_gap_median_ms,omitempty"`
	Lost          uint64   `json:"frames_lost"`
	XSKLost       uint64   `json:"xsk_rx_dropped_or_ring_full"`
	Resets        uint64   `json:"resets"`
	Retransmits   uint64   `json:"retransmits"`
	Timeouts      uint64   `json:"rto_timeouts"`
}

// MigrateTarget is one of the targets: a kind's median stall at
// most MaxStallMs, and no frame lost (NoLoss) or no connection reset
// (NoReset) over all its repetitions.
type MigrateTarget struct {
	Kind       string  `json:"kind"`
	MaxStallMs float64 `json:"max_median_stall_ms"`
	NoLoss     bool    `json:"no_frame_lost,omitempty"`
	NoReset    bool    `json:"no_reset,omitempty"`
	// Met is false too when a repetition failed or none was measured.
	Met bool `json:"met"`
}

// Goal says the target in words.
func (t MigrateTarget) Goal() string {
	g := fmt.Sprintf("%s: stall <= %g ms median", t.Kind, t.MaxStallMs)
	if t.NoLoss {
		g += ", no frame lost"
	}
	if t.NoReset {
		g += ", 0 connections reset"
	}
	return g
}

// MigrateTargets are the targets: a commanded migration stops
// traffic at most 20 ms at the median with no frame lost; a link-down
// failover at most 250 ms at the median with no connection reset.
func MigrateTargets() []MigrateTarget {
	return []MigrateTarget{
		{Kind: EventCommand, MaxStallMs: 20, NoLoss: true},
		{Kind: EventLinkDown, MaxStallMs: 250, NoReset: true},
	}
}

// MigrateReference is the point of comparison the issue names: Linux
// bonding's link check. It is a documented interval, not a measurement.
type MigrateReference struct {
	Name       string  `json:"name"`
	IntervalMs float64 `json:"interval_ms"`
	Note       string  `json:"note"`
}

// BondingMiimon is the reference line: bonding's documented default
// miimon.
func BondingMiimon() MigrateReference {
	return MigrateReference{
		Name:       "Linux bonding active-backup, miimon",
		IntervalMs: 100,
		Note: "the documented default link-check interval (Documentation/networking/bonding.rst: miimon is 100 ms " +
			"when arp_interval is not set), not a measurement: bonding notices a lost link up to one interval " +
			"after it goes, and only then fails over",
	}
}

// summarize fills Summary and Targets from Events.
func (r *MigrateReport) summarize() {
	r.Summary = nil
	for _, kind := range MigrateEvents() {
		s := EventSummary{Kind: kind}
		var stalls, starts, tooks, gaps, befores, afters []float64
		for _, ev := range r.Events {
			if ev.Kind != kind {
				continue
			}
			if !ev.OK() {
				s.Failed++
				continue
			}
			s.Reps++
			stalls = append(stalls, ev.StallMs)
			befores, afters = append(befores, ev.BeforeBitsPerSec), append(afters, ev.AfterBitsPerSec)
			starts = append(starts, ev.EngineStartMs)
			tooks = append(tooks, ev.EngineTookMs)
			if ev.EngineGapMs != nil {
				gaps = append(gaps, *ev.EngineGapMs)
			}
			s.Lost += ev.Lost()
			s.XSKLost += ev.XSKLost
			s.Resets += ev.Resets
			s.Retransmits += ev.Retransmits
			s.Timeouts += ev.Timeouts
		}
		if s.Reps == 0 && s.Failed == 0 {
			continue
		}
		if s.Reps > 0 {
			s.StallMedianMs = stat.Median(stalls)
			s.StallMinMs, s.StallMaxMs = minMax(stalls)
			s.BeforeBitsPerSec, s.AfterBitsPerSec = stat.Median(befores), stat.Median(afters)
			s.EngineStartMs, s.EngineTookMs = stat.Median(starts), stat.Median(tooks)
		}
		if len(gaps) > 0 {
			g := stat.Median(gaps)
			s.EngineGapMs = &g
		}
		r.Summary = append(r.Summary, s)
	}
	r.Targets = MigrateTargets()
	for i, t := range r.Targets {
		s := r.summary(t.Kind)
		r.Targets[i].Met = s != nil && s.Reps > 0 && s.Failed == 0 && s.StallMedianMs <= t.MaxStallMs &&
			(!t.NoLoss || s.Lost == 0) && (!t.NoReset || s.Resets == 0)
	}
	r.Reference = BondingMiimon()
}

func (r *MigrateReport) summary(kind string) *EventSummary {
	for i := range r.Summary {
		if r.Summary[i].Kind == kind {
			return &r.Summary[i]
		}
	}
	return nil
}

func minMax(v []float64) (lo, hi float64) {
	lo, hi = v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// msCell is a figure in milliseconds, with one decimal below 100 ms.
func msCell(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// summaryCells are the table's cells of s after its kind.
func summaryCells(s EventSummary) []string {
	reps := fmt.Sprintf("%d/%d", s.Reps, s.Reps+s.Failed)
	if s.Reps == 0 {
		cells := []string{reps, "failed"}
		for len(cells) < len(summaryHeader)-1 {
			cells = append(cells, "-")
		}
		return cells
	}
	engine := []string{"-", "-", "-"}
	if s.Kind != EventSteady {
		gap := "-"
		if s.EngineGapMs != nil {
			gap = msCell(*s.EngineGapMs)
		}
		engine = []string{msCell(s.EngineStartMs), msCell(s.EngineTookMs), gap}
	}
	cells := []string{reps, msCell(s.StallMedianMs), msCell(s.StallMinMs), msCell(s.StallMaxMs),
		gbps(s.BeforeBitsPerSec), gbps(s.AfterBitsPerSec)}
	cells = append(cells, engine...)
	return append(cells, fmt.Sprint(s.Lost), fmt.Sprint(s.Resets), fmt.Sprint(s.Retransmits), fmt.Sprint(s.Timeouts))
}

var summaryHeader = []string{"event", "reps", "stall median ms", "min", "max", "Gbit/s before", "after",
	"engine moved after ms", "engine took ms", "engine gap ms", "frames lost", "resets", "retransmits", "RTOs"}

// targetValue is what a target is judged on.
func (r *MigrateReport) targetValue(t MigrateTarget) string {
	s := r.summary(t.Kind)
	if s == nil || s.Reps == 0 {
		return "not measured"
	}
	v := fmt.Sprintf("%s ms median", msCell(s.StallMedianMs))
	if t.NoLoss {
		v += fmt.Sprintf(", %d frames lost", s.Lost)
	}
	if t.NoReset {
		v += fmt.Sprintf(", %d resets", s.Resets)
	}
	if s.Failed > 0 {
		v += fmt.Sprintf(", %d of %d reps failed", s.Failed, s.Reps+s.Failed)
	}
	return v
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "missed"
}

func (r *MigrateReport) headline() string {
	e := r.Env
	return fmt.Sprintf("a guest's download to the peer stalls around a commanded migration and a link-down failover "+
		"between two ports into one bridge; %d reps of each event, %gs of settle after each", e.Reps, e.SettleSec)
}

func (r *MigrateReport) machineLine() string {
	e := r.Env
	return fmt.Sprintf("%s, Linux %s, %s, %d cores, load average %s at the start and %s at the end, "+
		"other tasks used %.0f%% of the CPUs; lab %s", e.Date.Format("2006-01-02 15:04"), e.Kernel, e.CPUModel, e.Cores,
		e.LoadAvg, e.LoadAvgEnd, e.Noise.Others*100, e.Lab)
}

func (r *MigrateReport) noiseWarning() string {
	if r.Env.Noise.Others <= NoisyOthers {
		return ""
	}
	return fmt.Sprintf("warning: other tasks used %.0f%% of the CPUs during the run (more than %.0f%%): "+
		"the machine was not idle, and a stall includes the time the peer's reader or the guest waited for a core",
		r.Env.Noise.Others*100, NoisyOthers*100)
}

func (r *MigrateReport) failures() []string {
	var out []string
	for _, ev := range r.Events {
		if !ev.OK() {
			out = append(out, fmt.Sprintf("rep %d %s: %s", ev.Rep, ev.Kind, ev.Err))
		}
	}
	return out
}

// WriteTable prints the goodput, the summary per event, bonding's
// reference line, the targets and any failures as aligned text.
func (r *MigrateReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "xnic bench migrate: %s\n%s\n\n", r.headline(), r.machineLine())
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "guest alone on\tdownload Gbit/s\tseconds\t")
	for _, g := range r.Goodput {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t\n", g.Port, gbps(g.BitsPerSec), g.Seconds)
	}
	tw.Flush()
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(summaryHeader, "\t")+"\t")
	for _, s := range r.Summary {
		fmt.Fprintln(tw, s.Kind+"\t"+strings.Join(summaryCells(s), "\t")+"\t")
	}
	tw.Flush()
	ref := r.Reference
	fmt.Fprintf(&b, "reference: %s %g ms, %s\n\n", ref.Name, ref.IntervalMs, ref.Note)
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, t := range r.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Goal(), r.targetValue(t), verdict(t.Met))
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
func (r *MigrateReport) WriteMarkdown(w io.Writer) error {
	e := r.Env
	var b strings.Builder
	fmt.Fprintf(&b, "Migration benchmark (`xnic bench migrate`): %s.\n", r.headline())
	fmt.Fprintf(&b, "Run on %s.\n\n", r.machineLine())
	fmt.Fprintf(&b, "- Set-up: %s.\n- Stream: %s.\n- Stall: %s.\n\n", e.Setup, e.Stream, e.Stall)
	b.WriteString("| guest alone on | download Gbit/s |\n|---|---:|\n")
	for _, g := range r.Goodput {
		fmt.Fprintf(&b, "| %s | %s |\n", g.Port, gbps(g.BitsPerSec))
	}
	b.WriteString("\n| " + strings.Join(summaryHeader, " | ") + " |\n|---|")
	b.WriteString(strings.Repeat("---:|", len(summaryHeader)-1) + "\n")
	for _, s := range r.Summary {
		fmt.Fprintf(&b, "| %s | %s |\n", s.Kind, strings.Join(summaryCells(s), " | "))
	}
	ref := r.Reference
	refCells := make([]string, len(summaryHeader)-1)
	refCells[1] = fmt.Sprintf("%g", ref.IntervalMs)
	fmt.Fprintf(&b, "| %s (reference) | %s |\n\n", ref.Name, strings.Join(refCells, " | "))
	fmt.Fprintf(&b, "The reference line is %s.\n\n", ref.Note)
	b.WriteString("| target | value | |\n|---|---|---|\n")
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", strings.Replace(t.Goal(), "<=", "≤", 1), r.targetValue(t), verdict(t.Met))
	}
	writeTail(&b, r.noiseWarning(), r.failures())
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the whole report, every event included, as indented
// JSON.
func (r *MigrateReport) WriteJSON(w io.Writer) error {
	return writeJSON(w, r, "migrate bench report")
}
