package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// LatencyTraceReport is a whole latency trace: where it ran and, per idle
// mode and kind, the stages of the round trip.
type LatencyTraceReport struct {
	Env  LatencyTraceEnv `json:"env"`
	Runs []TraceRun      `json:"runs"`
}

// LatencyTraceEnv describes the machine and the set-up of a trace.
type LatencyTraceEnv struct {
	Machine
	Lab      string `json:"lab"`
	Requests int    `json:"requests"` // traced requests per kind and idle mode
	Warmup   int    `json:"warmup"`
	Size     int    `json:"size"`
	Client   string `json:"client"`
	Server   string `json:"server"`
	// Stamps are the names of the stamps, in the order a request passes
	// them.
	Stamps []string `json:"stamps"`
}

// TraceRun is one kind traced with one idle mode.
type TraceRun struct {
	Kind   string `json:"kind"`
	PollMs int    `json:"poll_ms"`
	// Procs is the engine's process's GOMAXPROCS.
	Procs int `json:"gomaxprocs"`
	// Requests were traced; Complete of them have every stamp of the
	// chain (the others are left out of the stages); Lost UDP requests
	// were never answered.
	Requests int `json:"requests"`
	Complete int `json:"complete"`
	Lost     int `json:"lost,omitempty"`
	// SleepsPerRequest is the worker's sleeps in poll(2) over the run,
	// warm-up included, per request: about 1 when it sleeps between
	// requests.
	SleepsPerRequest float64 `json:"sleeps_per_request"`
	SendErrors       uint64  `json:"send_errors,omitempty"`
	// Stages are the chain from the client's write to its read, then the
	// side measures; Total is the round trip.
	Stages []TraceStage `json:"stages"`
	Total  TraceStage   `json:"total"`
}

// TraceStage is the time between two stamps over the complete requests,
// in microseconds.
type TraceStage struct {
	From string `json:"from"`
	To   string `json:"to"`
	What string `json:"what"`
	// Chain: the stage is a link of the chain from the client's write to
	// its read (the links add up to the round trip); else it overlaps.
	Chain   bool    `json:"chain"`
	Samples int     `json:"samples"`
	P50Us   float64 `json:"p50_us"`
	P99Us   float64 `json:"p99_us"`
	MeanUs  float64 `json:"mean_us"`
	MaxUs   float64 `json:"max_us"`
	// TailMeanUs is the stage's mean over the slowest requests: those
	// whose round trip is at or above the round trip's p99. Beside MeanUs,
	// it says which stages a slow request is slow in.
	TailMeanUs float64 `json:"tail_mean_us"`
	// Share is the stage's mean over the round trip's mean (chain only).
	Share float64 `json:"share,omitempty"`
}

// complete reports whether s has every stamp of the chain.
func (s *traceSample) complete() bool {
	for _, d := range traceStageDefs {
		if d.chain && (s[d.from] == 0 || s[d.to] == 0) {
			return false
		}
	}
	return true
}

// traceStages computes the stages over the complete samples, the round
// trip, and how many samples were complete.
func traceStages(samples []traceSample) (stages []TraceStage, total TraceStage, complete int) {
	vals := make([][]float64, len(traceStageDefs))
	rt := -1 // the round trip's index in traceStageDefs
	for j, d := range traceStageDefs {
		if d.from == stClientWrite && d.to == stClientRead {
			rt = j
		}
	}
	for i := range samples {
		s := &samples[i]
		if !s.complete() {
			continue
		}
		complete++
		for j, d := range traceStageDefs {
			if s[d.from] == 0 || s[d.to] == 0 {
				continue // a side stamp missing
			}
			vals[j] = append(vals[j], float64(s[d.to]-s[d.from])/1e3)
		}
	}
	// The slowest requests: round trip at or above its p99.
	tailSum := make([]float64, len(traceStageDefs))
	tailN := make([]int, len(traceStageDefs))
	if len(vals[rt]) > 0 {
		p99 := latencyStat(slices.Clone(vals[rt]), 0, 0).P99Us
		for i := range samples {
			s := &samples[i]
			if !s.complete() || float64(s[stClientRead]-s[stClientWrite])/1e3 < p99 {
				continue
			}
			for j, d := range traceStageDefs {
				if s[d.from] != 0 && s[d.to] != 0 {
					tailSum[j] += float64(s[d.to]-s[d.from]) / 1e3
					tailN[j]++
				}
			}
		}
	}
	for j, d := range traceStageDefs {
		st := TraceStage{From: stampNames[d.from], To: stampNames[d.to], What: d.what, Chain: d.chain}
		if v := vals[j]; len(v) > 0 {
			ls := latencyStat(v, 0, 0)
			st.Samples, st.P50Us, st.P99Us, st.MeanUs, st.MaxUs = ls.Requests, ls.P50Us, ls.P99Us, ls.MeanUs, ls.MaxUs
		}
		if tailN[j] > 0 {
			st.TailMeanUs = tailSum[j] / float64(tailN[j])
		}
		if j == rt {
			total = st
			continue
		}
		stages = append(stages, st)
	}
	if total.MeanUs > 0 {
		for i := range stages {
			if stages[i].Chain {
				stages[i].Share = stages[i].MeanUs / total.MeanUs
			}
		}
	}
	return stages, total, complete
}

// WriteTable prints one table per run: every stage's median, p99, mean
// and mean over the slowest 1% of requests, the chain's share of the round
// trip, then the side measures.
func (r *LatencyTraceReport) WriteTable(w io.Writer) error {
	e := r.Env
	var b strings.Builder
	fmt.Fprintf(&b, "xnic bench latency --trace: where a %d-byte request's round trip goes, stamp to stamp, "+
		"over %d requests per kind (after %d of warm-up); µs\n", e.Size, e.Requests, e.Warmup)
	fmt.Fprintf(&b, "%s, Linux %s, %s, %d cores, load %s, lab %s\n", e.Date.Format("2006-01-02 15:04"), e.Kernel,
		e.CPUModel, e.Cores, e.LoadAvg, e.Lab)
	for _, run := range r.Runs {
		fmt.Fprintf(&b, "\n%s, engine.poll_ms %d, GOMAXPROCS %d: %d of %d requests traced whole", run.Kind, run.PollMs, run.Procs,
			run.Complete, run.Requests)
		if run.Lost > 0 {
			fmt.Fprintf(&b, ", %d lost", run.Lost)
		}
		fmt.Fprintf(&b, "; %.2f worker sleeps per request\n", run.SleepsPerRequest)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "stage\tp50\tp99\tmean\tslowest 1%\tshare\twhat\t")
		row := func(s TraceStage, share string) {
			fmt.Fprintf(tw, "%s → %s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.From, s.To, us(s.P50Us), us(s.P99Us), us(s.MeanUs),
				us(s.TailMeanUs), share, s.What)
		}
		for _, s := range run.Stages {
			if s.Chain {
				row(s, percentOf(s.Share))
			}
		}
		row(run.Total, "100%")
		for _, s := range run.Stages {
			if !s.Chain {
				row(s, "(inside)")
			}
		}
		tw.Flush()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the whole report as indented JSON.
func (r *LatencyTraceReport) WriteJSON(w io.Writer) error {
	return writeJSON(w, r, "latency trace report")
}
