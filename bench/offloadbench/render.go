package offloadbench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Raw is the raw receive rate the stages are set against: the median rate
// of a receiver of MTU frames measured in the same run.
type Raw struct {
	Name string  `json:"name"` // the receiver, e.g. "xnic-rx"
	Mpps float64 `json:"mpps"` // its median, million packets per second
}

// Ratio is a row's rate over the raw receive rate.
type Ratio struct {
	Row   string  `json:"row"` // Row.Name
	Raw   string  `json:"raw"` // Raw.Name
	Value float64 `json:"value"`
	// Target is TargetRatio for the rows issue 5 is about (Row.Target), 0
	// for the others; Met says whether Value reaches it.
	Target float64 `json:"target,omitempty"`
	Met    bool    `json:"met,omitempty"`
}

// Ratios sets every row against raw; nil if raw is nil or not positive.
func Ratios(rows []Row, raw *Raw) []Ratio {
	if raw == nil || !(raw.Mpps > 0) {
		return nil
	}
	out := make([]Ratio, len(rows))
	for i, r := range rows {
		out[i] = Ratio{Row: r.Name(), Raw: raw.Name, Value: r.MsegPerSec / raw.Mpps}
		if r.Target() {
			out[i].Target = TargetRatio
			out[i].Met = out[i].Value >= TargetRatio
		}
	}
	return out
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "missed"
}

func rounds(n int) string {
	if n == 1 {
		return "1 round"
	}
	return fmt.Sprintf("%d rounds", n)
}

// headline describes the traffic and the method of rows in a line.
func headline(rows []Row) string {
	if len(rows) == 0 {
		return ""
	}
	r := rows[0]
	cpu := "unpinned"
	if r.CPU >= 0 {
		cpu = fmt.Sprintf("CPU %d", r.CPU)
	}
	gro := r.Batch
	for _, x := range rows {
		if x.Stage == StageGRO {
			gro = x.Batch
			break
		}
	}
	return fmt.Sprintf("bulk TCP, %d-byte frames (MSS %d over IPv4, %d over IPv6, timestamps), one core (%s); "+
		"GRO batches of %d frames, GSO of 64 KB segments; median of %s of %s",
		FrameLen, MSS(IPv4), MSS(IPv6), cpu, gro, rounds(r.Rounds), r.Duration)
}

// WriteTable prints rows as an aligned text table: the median rate, the
// slowest and fastest round and segments per aggregate, and with raw each
// row's rate over it and the verdict on the target rows.
func WriteTable(w io.Writer, rows []Row, raw *Raw) error {
	ratios := Ratios(rows, raw)
	var b strings.Builder
	fmt.Fprintf(&b, "offload stages: %s\n", headline(rows))
	if ratios != nil {
		fmt.Fprintf(&b, "raw receive rate: %s %.3f Mpps of %d-byte frames\n", raw.Name, raw.Mpps, FrameLen)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "stage\tfamily\tmode\tMseg/s\tmin\tmax\tsegs/agg\t"
	if ratios != nil {
		head += "x raw\t"
	}
	fmt.Fprintln(tw, head)
	for i, r := range rows {
		line := fmt.Sprintf("%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.1f\t", r.Stage, r.Family, r.Mode, r.MsegPerSec, r.Min, r.Max, r.SegsPerAgg)
		if ratios != nil {
			line += fmt.Sprintf("%.2f\t", ratios[i].Value)
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	if ratios != nil {
		b.WriteString("\n")
		for _, t := range ratios {
			if t.Target > 0 {
				fmt.Fprintf(&b, "%-24s / %s %6.2fx  (target >= %gx: %s)\n", t.Row, t.Raw, t.Value, t.Target, verdict(t.Met))
			}
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// RenderMarkdown gives rows as Markdown for the README: a line on the
// method, the table and, with raw, the ratios and the target's verdicts.
func RenderMarkdown(rows []Row, raw *Raw) string {
	ratios := Ratios(rows, raw)
	var b strings.Builder
	fmt.Fprintf(&b, "Offload stages (`xnic bench offload`): %s.\n", headline(rows))
	if ratios != nil {
		fmt.Fprintf(&b, "Raw receive rate in the same run: %s, %.3f Mpps.\n", raw.Name, raw.Mpps)
	}
	b.WriteString("\n| stage | family | mode | Mseg/s | min | max | segs/agg |")
	if ratios != nil {
		fmt.Fprintf(&b, " × %s | target ≥ %gx |", raw.Name, TargetRatio)
	}
	b.WriteString("\n|---|---|---|---:|---:|---:|---:|")
	if ratios != nil {
		b.WriteString("---:|---|")
	}
	b.WriteString("\n")
	for i, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %.2f | %.2f | %.1f |", r.Stage, r.Family, r.Mode, r.MsegPerSec, r.Min, r.Max, r.SegsPerAgg)
		if ratios != nil {
			t := ratios[i]
			v := ""
			if t.Target > 0 {
				v = verdict(t.Met)
			}
			fmt.Fprintf(&b, " %.2f | %s |", t.Value, v)
		}
		b.WriteString("\n")
	}
	return b.String()
}
