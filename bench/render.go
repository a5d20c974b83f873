package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

func mpps(pps float64) string { return fmt.Sprintf("%.3f", pps/1e6) }

func percent(f *float64) string {
	if f == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", *f*100)
}

// ratioValue and ratioVerdict render a ratio of either benchmark's report:
// its value and whether it meets its target.
func ratioValue(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", *v)
}

func ratioVerdict(v *float64, met bool) string {
	switch {
	case v == nil:
		return "not measured"
	case met:
		return "met"
	}
	return "missed"
}

// rateCells are the rate columns of a summary row, or dashes when every
// round failed.
func rateCells(s Summary) []string {
	if s.Rounds == 0 {
		return []string{"failed", "-", "-", "-", "-"}
	}
	return []string{mpps(s.Median), mpps(s.Min), mpps(s.Max), percent(s.OfDrop), mpps(s.SentMed)}
}

// headline is the one-line description of the run.
func (r *Report) headline() string {
	e := r.Env
	flows := "1 flow"
	if e.Flows != 1 {
		flows = fmt.Sprintf("%d flows", e.Flows)
	}
	return fmt.Sprintf("%d-byte UDP, %s, one veth pair, one queue; median of %d rounds of %gs",
		e.FrameSize, flows, e.Rounds, e.WindowSec)
}

// WriteTable prints the summary as an aligned text table with the targets
// and any failures.
func (r *Report) WriteTable(w io.Writer) error {
	e := r.Env
	var b strings.Builder
	fmt.Fprintf(&b, "xnic bench: %s\n", r.headline())
	fmt.Fprintf(&b, "%s, Linux %s, %s, %d cores, load %s, lab %s\n",
		e.Date.Format("2006-01-02 15:04"), e.Kernel, e.CPUModel, e.Cores, e.LoadAvg, e.Lab)
	fmt.Fprintf(&b, "generator: %s\nplacement: %s\n\n", e.Generator, e.Placement)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "contender\tmedian Mpps\tmin\tmax\tof XDP_DROP\tsent Mpps\trounds\tothers' CPU\t")
	for _, s := range r.Summary {
		cells := append([]string{s.Contender}, rateCells(s)...)
		cells = append(cells, fmt.Sprintf("%d/%d", s.Rounds, s.Rounds+s.Failed), percentOf(s.MaxOthers))
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	tw.Flush()
	b.WriteString("\n")
	for _, t := range r.Ratios {
		if t.Target == 0 {
			fmt.Fprintf(&b, "%-26s %5s  (%s%s)\n", t.Name(), ratioValue(t.Value), t.Label, perPacketCost(r, t))
			continue
		}
		fmt.Fprintf(&b, "%-26s %5s  (target >= %.2f: %s)\n", t.Name(), ratioValue(t.Value), t.Target, ratioVerdict(t.Value, t.Met()))
	}
	if w := r.noiseWarning(); w != "" {
		b.WriteString(w + "\n")
	}
	for _, rd := range r.Rounds {
		for _, res := range rd.Results {
			if !res.OK() {
				fmt.Fprintf(&b, "round %d %s: %s\n", rd.Index, res.Contender, res.Err)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteMarkdown prints the summary as Markdown, ready for the README: a
// line on the machine and the method, the table and the targets.
func (r *Report) WriteMarkdown(w io.Writer) error {
	e := r.Env
	var b strings.Builder
	fmt.Fprintf(&b, "Receive benchmark (`xnic bench`), %s.\n", r.headline())
	fmt.Fprintf(&b, "Run on %s: Linux %s, %s, %d cores (load average %s at the start).\n",
		e.Date.Format("2006-01-02"), e.Kernel, e.CPUModel, e.Cores, e.LoadAvg)
	fmt.Fprintf(&b, "Generator: %s. Placement: %s.\n\n", e.Generator, e.Placement)
	b.WriteString("| contender | median Mpps | min | max | of XDP_DROP | sent Mpps |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Summary {
		fmt.Fprintf(&b, "| %s | %s |\n", s.Contender, strings.Join(rateCells(s), " | "))
	}
	b.WriteString("\n| ratio | value | target |\n|---|---:|---:|\n")
	for _, t := range r.Ratios {
		if t.Target == 0 {
			fmt.Fprintf(&b, "| %s | %s | %s%s |\n", t.Name(), ratioValue(t.Value), t.Label, perPacketCost(r, t))
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | ≥ %.2f (%s) |\n", t.Name(), ratioValue(t.Value), t.Target, ratioVerdict(t.Value, t.Met()))
	}
	if w := r.noiseWarning(); w != "" {
		b.WriteString("\n" + w + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func percentOf(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }

// perPacketCost is ", N ns per packet": the time per packet Num adds over
// Den at their median rates, or "" when either is missing.
func perPacketCost(r *Report, t Ratio) string {
	var num, den float64
	for _, s := range r.Summary {
		switch s.Contender {
		case t.Num:
			num = s.Median
		case t.Den:
			den = s.Median
		}
	}
	if num <= 0 || den <= 0 {
		return ""
	}
	return fmt.Sprintf(", %+.0f ns per packet", 1e9/num-1e9/den)
}

// noiseWarning says how many measurements other tasks disturbed, or "".
func (r *Report) noiseWarning() string {
	n, total := r.noisy()
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("warning: in %d of %d measurements other tasks used more than %.0f%% of the CPUs "+
		"(column others' CPU, the worst round): the machine was not idle; rerun when it is",
		n, total, NoisyOthers*100)
}

// WriteJSON writes the whole report, every raw round included, as indented
// JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	return writeJSON(w, r, "bench report")
}

// writeJSON writes v, a whole report, as indented JSON; what names it in
// the error.
func writeJSON(w io.Writer, v any, what string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode %s: %w", what, err)
	}
	return nil
}

// writeTail ends a Markdown report as every one ends: the noise warning,
// if any, and the failed measurements as a list.
func writeTail(b *strings.Builder, warning string, failures []string) {
	if warning != "" {
		b.WriteString("\n" + warning + "\n")
	}
	if len(failures) > 0 {
		b.WriteString("\nFailures:\n\n")
		for _, line := range failures {
			b.WriteString("- " + line + "\n")
		}
	}
}
