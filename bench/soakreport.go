package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xnic/xnic/bench/internal/stat"
)

// SoakReport is a whole RunSoak: where it ran, every sample, the load's
// totals and the verdict.
type SoakReport struct {
	Env     SoakEnv      `json:"env"`
	Samples []SoakSample `json:"samples"`
	Totals  SoakTotals   `json:"totals"`
	// Errors are the first errors of the load and the sampler.
	Errors  []SoakError `json:"errors,omitempty"`
	Verdict SoakVerdict `json:"verdict"`
	// Server is xnic serve's own final JSON report; Err why the server
	// failed (it exited during the soak, or did not stop cleanly).
	Server map[string]any `json:"server,omitempty"`
	Err    string         `json:"error,omitempty"`
}

// SoakEnv describes the machine and the set-up of a soak.
type SoakEnv struct {
	Machine
	Lab              string  `json:"lab"`
	DurationSec      float64 `json:"duration_seconds"`
	IntervalSec      float64 `json:"interval_seconds"`
	WarmupSec        float64 `json:"warmup_seconds"`
	WindowSec        float64 `json:"window_seconds"`
	MaxGrowthPct     float64 `json:"max_growth_pct"`
	Clients          int     `json:"clients"`
	ConnRequests     int     `json:"conn_requests"`
	DownloadSize     int64   `json:"download_size"`
	DownloadEverySec float64 `json:"download_every_seconds"`
	ServerCPU        int     `json:"server_cpu"` // -1: unpinned
	Server           string  `json:"server"`
	Load             string  `json:"load"`
}

// SoakSample is one sample: the xnic serve process, the engine's and the
// guest's counters, and the load's so far.
type SoakSample struct {
	T float64 `json:"t_seconds"` // since the load started
	// The process, from /proc/PID.
	RSSKiB  uint64 `json:"rss_kib"` // VmRSS
	HWMKiB  uint64 `json:"hwm_kib"` // VmHWM: the peak RSS so far
	Threads int    `json:"threads"`
	FDs     int    `json:"fds"`
	// The engine, over its control socket.
	RxPackets uint64 `json:"rx_packets"`
	ConnsLive uint64 `json:"conns_live"` // the pipeline's connection table
	XSKDrops  uint64 `json:"xsk_drops"`  // rx dropped, rx ring full, fill ring empty
	// The guest's services (GET /status).
	Served      uint64 `json:"served_requests"`
	ServeErrors uint64 `json:"serve_errors"`
	Datagrams   uint64 `json:"datagrams_echoed"`
	// The load so far: what succeeded, and every failure (requests,
	// downloads, echo errors and losses, samples).
	Requests  uint64 `json:"requests"`
	Downloads uint64 `json:"downloads"`
	Echoes    uint64 `json:"echoes"`
	Errors    uint64 `json:"errors"`
	// Err is what this sample could not read.
	Err string `json:"error,omitempty"`
}

// SoakTotals are the load's counts over the whole soak.
type SoakTotals struct {
	Requests       uint64 `json:"requests"`
	RequestErrors  uint64 `json:"request_errors"`
	Downloads      uint64 `json:"downloads"` // complete and verified
	DownloadBytes  uint64 `json:"download_bytes"`
	DownloadErrors uint64 `json:"download_errors"`
	// DownloadMedSec and DownloadMaxSec are the median and the longest
	// time of the complete downloads.
	DownloadMedSec float64 `json:"download_median_seconds"`
	DownloadMaxSec float64 `json:"download_max_seconds"`
	Echoes         uint64  `json:"echoes"`
	EchoLost       uint64  `json:"echo_lost"`
	EchoErrors     uint64  `json:"echo_errors"`
	SampleErrors   uint64  `json:"sample_errors"`
}

// failures is every failure the totals count.
func (t SoakTotals) failures() uint64 {
	return t.RequestErrors + t.DownloadErrors + t.EchoLost + t.EchoErrors + t.SampleErrors
}

// SoakError is one error of the load or the sampler.
type SoakError struct {
	T    float64 `json:"t_seconds"`
	What string  `json:"what"` // request, download, udp echo, sample
	Err  string  `json:"error"`
}

// SoakVerdict compares the RSS at the start and at the end of the soak.
type SoakVerdict struct {
	Pass bool `json:"pass"`
	// The first window [FirstFrom, FirstTo] after the warm-up and the
	// last one [LastFrom, LastTo], in seconds since the start; the median
	// RSS and the number of samples in each.
	FirstFrom    float64 `json:"first_from_seconds"`
	FirstTo      float64 `json:"first_to_seconds"`
	LastFrom     float64 `json:"last_from_seconds"`
	LastTo       float64 `json:"last_to_seconds"`
	FirstMiB     float64 `json:"first_rss_mib"`
	LastMiB      float64 `json:"last_rss_mib"`
	FirstSamples int     `json:"first_samples"`
	LastSamples  int     `json:"last_samples"`
	// GrowthMiB is LastMiB − FirstMiB, GrowthPct the same in percent of
	// FirstMiB, which must stay below MaxGrowthPct.
	GrowthMiB    float64 `json:"growth_mib"`
	GrowthPct    float64 `json:"growth_pct"`
	MaxGrowthPct float64 `json:"max_growth_pct"`
	// PeakMiB is the last sample's VmHWM.
	PeakMiB float64 `json:"peak_rss_mib"`
	// Failures counts every failed request, download, echo and sample.
	Failures uint64 `json:"failures"`
	// Reasons say why the soak failed; empty when it passed.
	Reasons []string `json:"reasons,omitempty"`
}

// judgeSoak decides a soak from its samples and totals: it passes when
// the median RSS of the last window grew by less than maxPct percent over
// the median of the first window after the warm-up, the load ran (requests,
// downloads and echoes all above zero), nothing failed, and the server
// (serverErr) did not.
func judgeSoak(samples []SoakSample, t SoakTotals, serverErr string, warmup, window time.Duration, maxPct float64) SoakVerdict {
	v := SoakVerdict{MaxGrowthPct: maxPct, Failures: t.failures()}
	fail := func(format string, a ...any) { v.Reasons = append(v.Reasons, fmt.Sprintf(format, a...)) }
	if serverErr != "" {
		fail("server: %s", serverErr)
	}
	if len(samples) > 0 {
		end := samples[len(samples)-1].T
		v.FirstFrom, v.FirstTo = warmup.Seconds(), (warmup + window).Seconds()
		v.LastFrom, v.LastTo = end-window.Seconds(), end
		v.PeakMiB = kibMiB(samples[len(samples)-1].HWMKiB)
	}
	var first, last []float64
	for _, s := range samples {
		if s.RSSKiB == 0 {
			continue // not read
		}
		if s.T >= v.FirstFrom && s.T <= v.FirstTo {
			first = append(first, kibMiB(s.RSSKiB))
		}
		if s.T >= v.LastFrom && s.T <= v.LastTo {
			last = append(last, kibMiB(s.RSSKiB))
		}
	}
	v.FirstSamples, v.LastSamples = len(first), len(last)
	switch {
	case len(samples) == 0:
		fail("no sample")
	case v.LastFrom < v.FirstTo:
		fail("the soak ended at %.0fs, before its last window could follow the first (%.0fs–%.0fs)", v.LastTo, v.FirstFrom, v.FirstTo)
	case len(first) == 0 || len(last) == 0:
		fail("RSS samples: %d in the first window, %d in the last: want at least one in each", len(first), len(last))
	default:
		v.FirstMiB, v.LastMiB = stat.Median(first), stat.Median(last)
		v.GrowthMiB = v.LastMiB - v.FirstMiB
		v.GrowthPct = v.GrowthMiB / v.FirstMiB * 100
		if !(v.GrowthPct < maxPct) {
			fail("RSS grew %.1f MiB (%+.1f%%), the bound is %g%%", v.GrowthMiB, v.GrowthPct, maxPct)
		}
	}
	for _, c := range []struct {
		n    uint64
		what string
	}{{t.RequestErrors, "requests failed"}, {t.DownloadErrors, "downloads failed"}, {t.EchoErrors, "udp echo runs failed"},
		{t.EchoLost, "udp echoes lost"}, {t.SampleErrors, "samples failed"}} {
		if c.n > 0 {
			fail("%d %s", c.n, c.what)
		}
	}
	for _, c := range []struct {
		n    uint64
		what string
	}{{t.Requests, "request"}, {t.Downloads, "download"}, {t.Echoes, "udp echo"}} {
		if c.n == 0 {
			fail("no %s succeeded", c.what)
		}
	}
	v.Pass = len(v.Reasons) == 0
	return v
}

// kibMiB converts KiB to MiB; mib formats bytes as MiB.
func kibMiB(kib uint64) float64 { return float64(kib) / 1024 }

func mib(b int64) string { return fmt.Sprintf("%g MiB", float64(b)/(1<<20)) }

// headline is the one-line description of the soak.
func (r *SoakReport) headline() string {
	e := r.Env
	return fmt.Sprintf("%s of load on one xnic serve guest (%d HTTP clients, a %s download every %gs, UDP echo), a sample every %gs",
		time.Duration(e.DurationSec*float64(time.Second)), e.Clients, mib(e.DownloadSize), e.DownloadEverySec, e.IntervalSec)
}

// verdictLine is the verdict in a sentence.
func (r *SoakReport) verdictLine() string {
	v := r.Verdict
	word := "PASS"
	if !v.Pass {
		word = "FAIL"
	}
	t := r.Totals
	s := fmt.Sprintf("%s: RSS median %.1f MiB (%.0fs–%.0fs, %d samples) → %.1f MiB (%.0fs–%.0fs, %d samples): %+.1f MiB (%+.1f%%, bound %g%%); peak %.1f MiB; "+
		"%d failures in %d requests, %d downloads (median %.2fs, longest %.2fs), %d echoes",
		word, v.FirstMiB, v.FirstFrom, v.FirstTo, v.FirstSamples, v.LastMiB, v.LastFrom, v.LastTo, v.LastSamples,
		v.GrowthMiB, v.GrowthPct, v.MaxGrowthPct, v.PeakMiB, v.Failures, t.Requests, t.Downloads, t.DownloadMedSec, t.DownloadMaxSec, t.Echoes)
	if len(v.Reasons) > 0 {
		s += "\n  " + strings.Join(v.Reasons, "\n  ")
	}
	return s
}

// sampleCells are a sample's columns.
func sampleCells(s SoakSample) []string {
	return []string{fmt.Sprintf("%.0fs", s.T), fmt.Sprintf("%.1f", kibMiB(s.RSSKiB)), fmt.Sprintf("%.1f", kibMiB(s.HWMKiB)),
		fmt.Sprint(s.Threads), fmt.Sprint(s.FDs), fmt.Sprint(s.ConnsLive), fmt.Sprint(s.XSKDrops),
		fmt.Sprint(s.Requests), fmt.Sprint(s.Served), fmt.Sprint(s.Downloads), fmt.Sprint(s.Echoes), fmt.Sprint(s.Errors)}
}

const soakColumns = "time\tRSS MiB\tHWM MiB\tthreads\tfds\tconns live\txsk drops\trequests\tserved\tdownloads\techoes\terrors"

// WriteTable prints the samples as an aligned text table, the verdict and
// the first errors.
func (r *SoakReport) WriteTable(w io.Writer) error {
	e := r.Env
	var b strings.Builder
	fmt.Fprintf(&b, "xnic bench soak: %s\n", r.headline())
	fmt.Fprintf(&b, "%s, Linux %s, %s, %d cores, load %s, lab %s; server on %s\n\n",
		e.Date.Format("2006-01-02 15:04"), e.Kernel, e.CPUModel, e.Cores, e.LoadAvg, e.Lab, cpuName(e.ServerCPU))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, soakColumns+"\t")
	for _, s := range r.Samples {
		fmt.Fprintln(tw, strings.Join(sampleCells(s), "\t")+"\t")
	}
	tw.Flush()
	b.WriteString("\n" + r.verdictLine() + "\n")
	for _, f := range r.failures() {
		b.WriteString(f + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// failures are the kept errors, one line each.
func (r *SoakReport) failures() []string {
	var out []string
	for _, e := range r.Errors {
		out = append(out, fmt.Sprintf("at %.0fs, %s: %s", e.T, e.What, e.Err))
	}
	return out
}

// WriteMarkdown prints the set-up, the samples and the verdict as
// Markdown, ready for the README.
func (r *SoakReport) WriteMarkdown(w io.Writer) error {
	e := r.Env
	var b strings.Builder
	fmt.Fprintf(&b, "Soak (`xnic bench soak`), %s.\n", r.headline())
	fmt.Fprintf(&b, "Run on %s: Linux %s, %s, %d cores (load average %s at the start).\n",
		e.Date.Format("2006-01-02"), e.Kernel, e.CPUModel, e.Cores, e.LoadAvg)
	fmt.Fprintf(&b, "Server: %s. Load: %s. RSS, threads and fds from /proc/PID of xnic serve; conns live from the engine's "+
		"control socket (its connection table; idle entries age out after 5 minutes), xsk drops the same; served from the guest's GET /status.\n\n", e.Server, e.Load)
	cols := strings.Split(soakColumns, "\t")
	b.WriteString("| " + strings.Join(cols, " | ") + " |\n|" + strings.Repeat("---:|", len(cols)) + "\n")
	for _, s := range r.Samples {
		b.WriteString("| " + strings.Join(sampleCells(s), " | ") + " |\n")
	}
	b.WriteString("\n" + strings.ReplaceAll(r.verdictLine(), "\n  ", "\n- ") + "\n")
	if f := r.failures(); len(f) > 0 {
		b.WriteString("\nFirst errors:\n\n")
		for _, line := range f {
			b.WriteString("- " + line + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the whole report, every sample included, as indented
// JSON.
func (r *SoakReport) WriteJSON(w io.Writer) error {
	return writeJSON(w, r, "soak report")
}
