package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/xnic/xnic/bench/internal/stat"
)

// TCPReport is a whole TCP benchmark run: where it ran, every raw
// measurement and the summary over rounds.
type TCPReport struct {
	Env     TCPEnv       `json:"env"`
	Rounds  []TCPRound   `json:"rounds"`
	Summary []TCPSummary `json:"summary"`
	Ratios  []TCPRatio   `json:"ratios"`
}

// TCPEnv describes the machine and the set-up of a TCP run.
type TCPEnv struct {
	Machine
	Lab         string   `json:"lab"`
	Rounds      int      `json:"rounds"`
	WindowSec   float64  `json:"window_seconds"`
	Concurrency int      `json:"concurrency"`
	Contenders  []string `json:"contenders"`
	ClientCPU   int      `json:"client_cpu"` // -1: unpinned
	ServerCPU   int      `json:"server_cpu"` // -1: unpinned
	// Client and Servers say what ran where.
	Client  string            `json:"client"`
	Servers map[string]string `json:"servers"`
}

// TCPRound is one measurement of every contender.
type TCPRound struct {
	Index   int         `json:"index"`
	Results []TCPResult `json:"results"`
}

// TCPResult is one contender measured once: its three metrics.
type TCPResult struct {
	Contender string      `json:"contender"`
	Upload    Transfer    `json:"upload"`
	Download  Transfer    `json:"download"`
	Requests  RequestRate `json:"requests"`
	// Noise is what else ran from the server's start to its exit.
	Noise Noise `json:"noise"`
	// ServerCPUs are the CPUs the server's threads were allowed on.
	ServerCPUs string `json:"server_cpus,omitempty"`
	// Server is the server's own final JSON report, verbatim.
	Server map[string]any `json:"server,omitempty"`
	// Err says why the server failed (start, stop); the metrics may still
	// hold figures.
	Err string `json:"error,omitempty"`
}

// OK reports whether the server and every metric succeeded.
func (r TCPResult) OK() bool {
	return r.Err == "" && r.Upload.OK() && r.Download.OK() && r.Requests.OK()
}

// Transfer is one goodput measurement: application bytes over the time
// from the request to the response (upload) or to the end of the window
// (download).
type Transfer struct {
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	BitsPerSec float64 `json:"bits_per_second"`
	// SHA256 is the server's hash of an upload, checked against the
	// pattern's.
	SHA256 string `json:"sha256,omitempty"`
	Err    string `json:"error,omitempty"`
}

// OK reports whether the transfer succeeded.
func (t Transfer) OK() bool { return t.Err == "" }

// RequestRate is the HTTP requests/s measurement.
type RequestRate struct {
	Requests int64   `json:"requests"`
	Seconds  float64 `json:"seconds"`
	PerSec   float64 `json:"per_second"`
	Err      string  `json:"error,omitempty"`
}

// OK reports whether the measurement succeeded.
func (r RequestRate) OK() bool { return r.Err == "" }

// TCP metrics, as named in TCPRatio.
const (
	MetricUpload   = "upload"
	MetricDownload = "download"
	MetricRequests = "requests"
)

// Stat is one metric of a contender over the rounds: bits per second for
// goodput, requests per second for requests.
type Stat struct {
	Rounds int     `json:"rounds"` // successful rounds
	Failed int     `json:"failed"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// TCPSummary is a contender over all rounds.
type TCPSummary struct {
	Contender string `json:"contender"`
	Upload    Stat   `json:"upload_bps"`
	Download  Stat   `json:"download_bps"`
	Requests  Stat   `json:"requests_per_second"`
	// MaxOthers is the highest Noise.Others of the rounds.
	MaxOthers float64 `json:"max_others"`
}

func (s *TCPSummary) stat(metric string) *Stat {
	switch metric {
	case MetricUpload:
		return &s.Upload
	case MetricDownload:
		return &s.Download
	}
	return &s.Requests
}

// TCPRatio is one of the project's targets: Num's median over Den's for a
// metric.
type TCPRatio struct {
	Metric string   `json:"metric"`
	Num    string   `json:"num"`
	Den    string   `json:"den"`
	Target float64  `json:"target"`
	Value  *float64 `json:"value,omitempty"` // nil when either side is missing
}

// Met reports whether the ratio was measured and reaches its target.
func (r TCPRatio) Met() bool { return r.Value != nil && *r.Value >= r.Target }

// Name is "metric num / den".
func (r TCPRatio) Name() string { return r.Metric + " " + r.Num + " / " + r.Den }

// TCPTargets are the goodput ratios the project aims for: xnic with GRO
// and TSO at least 3 times gVisor on its own AF_XDP endpoint, and at least
// 0.75 of the kernel, both ways; and with traffic classes on, at least 0.9
// of itself without.
func TCPTargets() []TCPRatio {
	var rs []TCPRatio
	for _, m := range []string{MetricUpload, MetricDownload} {
		rs = append(rs,
			TCPRatio{Metric: m, Num: TCPXnicGROTSO, Den: TCPGvisorXDP, Target: 3},
			TCPRatio{Metric: m, Num: TCPXnicGROTSO, Den: TCPKernel, Target: 0.75})
	}
	for _, m := range []string{MetricUpload, MetricDownload} {
		rs = append(rs, TCPRatio{Metric: m, Num: TCPXnicClasses, Den: TCPXnicGROTSO, Target: 0.9})
	}
	return rs
}

// summarizeTCP computes the summary of rounds for contenders, and the
// targets.
func summarizeTCP(contenders []string, rounds []TCPRound) ([]TCPSummary, []TCPRatio) {
	var sums []TCPSummary
	for _, name := range contenders {
		s := TCPSummary{Contender: name}
		var up, down, req []float64
		add := func(st *Stat, vals *[]float64, ok bool, v float64) {
			if !ok {
				st.Failed++
				return
			}
			*vals = append(*vals, v)
		}
		for _, rd := range rounds {
			for _, r := range rd.Results {
				if r.Contender != name {
					continue
				}
				srvOK := r.Err == ""
				add(&s.Upload, &up, srvOK && r.Upload.OK(), r.Upload.BitsPerSec)
				add(&s.Download, &down, srvOK && r.Download.OK(), r.Download.BitsPerSec)
				add(&s.Requests, &req, srvOK && r.Requests.OK(), r.Requests.PerSec)
				s.MaxOthers = max(s.MaxOthers, r.Noise.Others)
			}
		}
		for _, x := range []struct {
			st   *Stat
			vals []float64
		}{{&s.Upload, up}, {&s.Download, down}, {&s.Requests, req}} {
			x.st.Rounds = len(x.vals)
			if len(x.vals) > 0 {
				x.st.Median, x.st.Min, x.st.Max = stat.Median(x.vals), slices.Min(x.vals), slices.Max(x.vals)
			}
		}
		sums = append(sums, s)
	}
	ratios := TCPTargets()
	for i, r := range ratios {
		n, d := findTCPSummary(sums, r.Num), findTCPSummary(sums, r.Den)
		if n == nil || d == nil {
			continue
		}
		ns, ds := n.stat(r.Metric), d.stat(r.Metric)
		if ns.Rounds > 0 && ds.Rounds > 0 && ds.Median > 0 {
			v := ns.Median / ds.Median
			ratios[i].Value = &v
		}
	}
	return sums, ratios
}

func findTCPSummary(sums []TCPSummary, name string) *TCPSummary {
	for i := range sums {
		if sums[i].Contender == name {
			return &sums[i]
		}
	}
	return nil
}

func gbps(bps float64) string { return fmt.Sprintf("%.2f", bps/1e9) }

// statCells are the median, min and max of a metric, or "failed" and dashes.
func statCells(st Stat, format func(float64) string) []string {
	if st.Rounds == 0 {
		return []string{"failed", "-", "-"}
	}
	return []string{format(st.Median), format(st.Min), format(st.Max)}
}

func reqps(v float64) string { return fmt.Sprintf("%.0f", v) }

// tcpRoundsCell is "ok/all" over the metrics of every round.
func tcpRoundsCell(s TCPSummary) string {
	ok := min(s.Upload.Rounds, s.Download.Rounds, s.Requests.Rounds)
	all := s.Upload.Rounds + s.Upload.Failed
	return fmt.Sprintf("%d/%d", ok, all)
}

func (r *TCPReport) headline() string {
	e := r.Env
	return fmt.Sprintf("HTTP over TCP, one veth pair, one queue, MTU 1500; median of %d rounds of %gs per metric, %d clients for requests/s",
		e.Rounds, e.WindowSec, e.Concurrency)
}

// noisy counts the measurements in which other tasks used more than
// NoisyOthers of the CPUs.
func (r *TCPReport) noisy() (n, total int) {
	for _, rd := range r.Rounds {
		for _, res := range rd.Results {
			total++
			if res.Noise.Others > NoisyOthers {
				n++
			}
		}
	}
	return n, total
}

func (r *TCPReport) noiseWarning() string {
	n, total := r.noisy()
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("warning: in %d of %d measurements other tasks used more than %.0f%% of the CPUs "+
		"(column others' CPU, the worst round): the machine was not idle; rerun when it is",
		n, total, NoisyOthers*100)
}

// failures lists every failed server or metric, one per line.
func (r *TCPReport) failures() []string {
	var out []string
	for _, rd := range r.Rounds {
		for _, res := range rd.Results {
			for _, f := range []struct{ what, err string }{
				{"server", res.Err}, {MetricUpload, res.Upload.Err},
				{MetricDownload, res.Download.Err}, {MetricRequests, res.Requests.Err},
			} {
				if f.err != "" {
					out = append(out, fmt.Sprintf("round %d %s %s: %s", rd.Index, res.Contender, f.what, f.err))
				}
			}
		}
	}
	return out
}

// WriteTable prints the summary as an aligned text table with the targets
// and any failures.
func (r *TCPReport) WriteTable(w io.Writer) error {
	e := r.Env
	var b strings.Builder
	fmt.Fprintf(&b, "xnic bench tcp: %s\n", r.headline())
	fmt.Fprintf(&b, "%s, Linux %s, %s, %d cores, load %s, lab %s; client on %s, servers on %s\n\n",
		e.Date.Format("2006-01-02 15:04"), e.Kernel, e.CPUModel, e.Cores, e.LoadAvg, e.Lab,
		cpuName(e.ClientCPU), cpuName(e.ServerCPU))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "contender\tupload Gbit/s\tmin\tmax\tdownload Gbit/s\tmin\tmax\treq/s\tmin\tmax\trounds\tothers' CPU\t")
	for _, s := range r.Summary {
		cells := []string{s.Contender}
		cells = append(cells, statCells(s.Upload, gbps)...)
		cells = append(cells, statCells(s.Download, gbps)...)
		cells = append(cells, statCells(s.Requests, reqps)...)
		cells = append(cells, tcpRoundsCell(s), percentOf(s.MaxOthers))
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	tw.Flush()
	b.WriteString("\n")
	for _, t := range r.Ratios {
		fmt.Fprintf(&b, "%-35s %5s  (target >= %.2f: %s)\n", t.Name(), ratioValue(t.Value), t.Target, ratioVerdict(t.Value, t.Met()))
	}
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
func (r *TCPReport) WriteMarkdown(w io.Writer) error {
	e := r.Env
	var b strings.Builder
	fmt.Fprintf(&b, "TCP benchmark (`xnic bench tcp`), %s.\n", r.headline())
	fmt.Fprintf(&b, "Run on %s: Linux %s, %s, %d cores (load average %s at the start); client on %s, servers on %s.\n",
		e.Date.Format("2006-01-02"), e.Kernel, e.CPUModel, e.Cores, e.LoadAvg, cpuName(e.ClientCPU), cpuName(e.ServerCPU))
	fmt.Fprintf(&b, "Client: %s. Upload: POST /upload of a streamed pattern for the window, goodput = bytes the server read "+
		"(sha256 checked) over the time to its response. Download: GET /bytes/N read for the window, every byte checked. "+
		"Requests: keep-alive clients doing GET /.\n\n", e.Client)
	for _, name := range e.Contenders {
		if s := e.Servers[name]; s != "" {
			fmt.Fprintf(&b, "- %s: %s\n", name, s)
		}
	}
	b.WriteString("\n| contender | upload Gbit/s | min | max | download Gbit/s | min | max | req/s | min | max |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Summary {
		cells := append(statCells(s.Upload, gbps), statCells(s.Download, gbps)...)
		cells = append(cells, statCells(s.Requests, reqps)...)
		fmt.Fprintf(&b, "| %s | %s |\n", s.Contender, strings.Join(cells, " | "))
	}
	b.WriteString("\n| ratio | value | target |\n|---|---:|---:|\n")
	for _, t := range r.Ratios {
		fmt.Fprintf(&b, "| %s | %s | ≥ %.2f (%s) |\n", t.Name(), ratioValue(t.Value), t.Target, ratioVerdict(t.Value, t.Met()))
	}
	writeTail(&b, r.noiseWarning(), r.failures())
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the whole report, every raw round included, as indented
// JSON.
func (r *TCPReport) WriteJSON(w io.Writer) error {
	return writeJSON(w, r, "tcp bench report")
}
