package connbench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// formatConns writes a connection count the short way: 16, 1k, 100k, 1M.
func formatConns(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// Traffic describes the rows' traffic model in a few words.
func Traffic(rows []Row) string {
	if len(rows) == 0 {
		return ""
	}
	r := rows[0]
	how := "shuffled in blocks of"
	if r.Model == ModelOverlap {
		how = "overlapping, each spread over"
	}
	return fmt.Sprintf("UDP bursts of %d packets per connection, %s %d packets", r.Burst, how, r.Spread)
}

// baseline is the window the rows' speedups compare with.
func baseline(rows []Row) int {
	if len(rows) == 0 {
		return 1
	}
	return rows[0].Baseline
}

func speedupCell(r Row) string {
	if r.Window == r.Baseline {
		return "1"
	}
	return fmt.Sprintf("%.2fx", r.Speedup)
}

// WriteTable prints rows as an aligned text table.
func WriteTable(w io.Writer, rows []Row) error {
	var b strings.Builder
	if len(rows) > 0 {
		r := rows[0]
		fmt.Fprintf(&b, "%s; batches of %d, %d-way caches, %d packets per pass, median of %d passes\n\n",
			Traffic(rows), r.Batch, r.Ways, r.Packets, r.Rounds)
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "conns\tcache\tW\tns/pkt\tmin\tmax\tMpps\tloads/pkt\tlookahead alone\twb/pkt\tvs W=%d\t\n", baseline(rows))
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.2f\t%.3f\t%.3f\t%.3f\t%s\t\n",
			r.Conns, r.Cache, r.Window, r.NsPerPacket, r.NsMin, r.NsMax, r.Mpps,
			r.LoadsPerPacket, r.ExpectedLoads, r.WritebacksPerPacket, speedupCell(r))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// RenderMarkdown gives rows as a Markdown table for the README: per
// configuration the median ns per packet, Mpps, context loads per packet
// measured and expected from lookahead alone (1/packets per connection in
// the window), and the speedup over the baseline window.
func RenderMarkdown(rows []Row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| connections | cache | W | ns/packet | Mpps | loads/packet | 1/(packets per connection in window) | speedup vs W=%d |\n", baseline(rows))
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %.1f | %.2f | %.3f | %.3f | %s |\n",
			formatConns(r.Conns), r.Cache, r.Window, r.NsPerPacket, r.Mpps,
			r.LoadsPerPacket, r.ExpectedLoads, speedupCell(r))
	}
	return b.String()
}
