package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/bench/internal/stat"
)

// Report is a whole benchmark run: where it ran, every raw measurement and
// the summary over rounds.
type Report struct {
	Env     Env       `json:"env"`
	Rounds  []Round   `json:"rounds"`
	Summary []Summary `json:"summary"`
	Ratios  []Ratio   `json:"ratios"`
}

// Machine is when and on what a benchmark ran; every benchmark's report
// starts with it.
type Machine struct {
	Date     time.Time `json:"date"`
	Kernel   string    `json:"kernel"`
	CPUModel string    `json:"cpu_model"`
	Cores    int       `json:"cores"`
	LoadAvg  string    `json:"loadavg"` // /proc/loadavg's 1, 5 and 15 min figures at the start
}

// String is "CPU, N cores, Linux KERNEL, GOVERSION", for report headers.
func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, Linux %s, %s", m.CPUModel, m.Cores, m.Kernel, runtime.Version())
}

// Env describes the machine and the set-up of a run.
type Env struct {
	Machine
	Lab        string   `json:"lab"`
	Rounds     int      `json:"rounds"`
	WindowSec  float64  `json:"window_seconds"`
	FrameSize  int      `json:"frame_size"` // on the wire, FCS included
	Flows      int      `json:"flows"`
	Contenders []string `json:"contenders"`
	GenCPU     int      `json:"gen_cpu"` // -1: unpinned
	RxCPU      int      `json:"rx_cpu"`  // -1: unpinned
	Placement  string   `json:"placement"`
	Generator  string   `json:"generator"`
}

// Round is one measurement of every contender.
type Round struct {
	Index   int      `json:"index"`
	Results []Result `json:"results"`
}

// Result is one contender measured once.
type Result struct {
	Contender string `json:"contender"`
	// PPS is the receiver's own rate over its window (for xdp-drop, the
	// counted packets over Run's window); Packets and Seconds make it up.
	PPS     float64 `json:"pps"`
	Packets uint64  `json:"packets"`
	Seconds float64 `json:"seconds"`
	// Sent is what the generator sent during its whole run.
	Sent Sent `json:"sent"`
	// XDPPackets is what the XDP program on the host veth counted during
	// the generator's run (xnic-rx: its steering program, from its report).
	XDPPackets uint64 `json:"xdp_packets"`
	// Noise is what else ran during the measurement.
	Noise Noise `json:"noise"`
	// RxCPUs are the CPUs the receiver's threads were allowed on ("" for
	// xdp-drop, which has no receiver).
	RxCPUs string `json:"rx_cpus,omitempty"`
	// Receiver is the receiver's JSON report, verbatim.
	Receiver map[string]any `json:"receiver,omitempty"`
	// Err says why the measurement failed; PPS is then 0.
	Err string `json:"error,omitempty"`
}

// Sent is the generator's side of one measurement.
type Sent struct {
	Packets uint64  `json:"packets"`
	Seconds float64 `json:"seconds"`
	PPS     float64 `json:"pps"`
	// StartLagSec is how long the generator took from being started to its
	// first frame (loading xnic_gen, entering the netns).
	StartLagSec float64 `json:"start_lag_seconds"`
}

// OK reports whether the measurement succeeded.
func (r Result) OK() bool { return r.Err == "" }

// Summary is a contender over all rounds. Rates are packets per second.
type Summary struct {
	Contender string  `json:"contender"`
	Rounds    int     `json:"rounds"` // successful rounds
	Failed    int     `json:"failed"`
	Median    float64 `json:"median_pps"`
	Min       float64 `json:"min_pps"`
	Max       float64 `json:"max_pps"`
	SentMed   float64 `json:"sent_median_pps"`
	// MaxOthers is the highest Noise.Others of the rounds.
	MaxOthers float64 `json:"max_others"`
	// OfDrop is Median over xdp-drop's median; nil without xdp-drop.
	OfDrop *float64 `json:"of_xdp_drop,omitempty"`
}

// Ratio is one of the project's targets, Num's median over Den's, or with
// Target 0 a figure the report shows without a target.
type Ratio struct {
	Num    string  `json:"num"`
	Den    string  `json:"den"`
	Target float64 `json:"target"` // 0: no target
	// What the ratio shows, for lines that are not targets.
	Label string   `json:"label,omitempty"`
	Value *float64 `json:"value,omitempty"` // nil when either side is missing
}

// Met reports whether the ratio was measured and reaches its target.
func (r Ratio) Met() bool { return r.Value != nil && *r.Value >= r.Target }

// Name is "num / den".
func (r Ratio) Name() string { return r.Num + " / " + r.Den }

// Targets are the ratios the project aims for against each peer as its
// users run it, then the steering program's cost: each peer's rate behind
// xnic_steer over its rate on its own program.
func Targets() []Ratio {
	return []Ratio{
		{Num: XnicRx, Den: LibXDPBare, Target: 0.95},
		{Num: XnicRx, Den: AsavieOwn, Target: 1.5},
		{Num: LibXDPSteer, Den: LibXDPBare, Label: "steering program's cost: libxdp behind xnic_steer over libxdp on its bare redirect"},
		{Num: AsavieSteer, Den: AsavieOwn, Label: "steering program's cost: asavie behind xnic_steer over asavie on its own program"},
	}
}

// noisy counts the successful measurements in which other tasks used more
// than NoisyOthers of the CPUs.
func (r *Report) noisy() (n, total int) {
	for _, rd := range r.Rounds {
		for _, res := range rd.Results {
			if res.OK() {
				total++
				if res.Noise.Others > NoisyOthers {
					n++
				}
			}
		}
	}
	return n, total
}

// summarize computes the summary of rounds for contenders, and the targets.
func summarize(contenders []string, rounds []Round) ([]Summary, []Ratio) {
	var sums []Summary
	byName := map[string]*Summary{}
	for _, name := range contenders {
		var pps, sent []float64
		failed, others := 0, 0.0
		for _, r := range rounds {
			for _, res := range r.Results {
				if res.Contender != name {
					continue
				}
				if !res.OK() {
					failed++
					continue
				}
				pps = append(pps, res.PPS)
				sent = append(sent, res.Sent.PPS)
				others = max(others, res.Noise.Others)
			}
		}
		s := Summary{Contender: name, Rounds: len(pps), Failed: failed, MaxOthers: others}
		if len(pps) > 0 {
			s.Median, s.SentMed = stat.Median(pps), stat.Median(sent)
			s.Min, s.Max = slices.Min(pps), slices.Max(pps)
		}
		sums = append(sums, s)
	}
	for i := range sums {
		byName[sums[i].Contender] = &sums[i]
	}
	if d := byName[XDPDrop]; d != nil && d.Rounds > 0 && d.Median > 0 {
		for i := range sums {
			if sums[i].Rounds > 0 {
				f := sums[i].Median / d.Median
				sums[i].OfDrop = &f
			}
		}
	}
	ratios := Targets()
	for i, r := range ratios {
		n, d := byName[r.Num], byName[r.Den]
		if n != nil && d != nil && n.Rounds > 0 && d.Rounds > 0 && d.Median > 0 {
			v := n.Median / d.Median
			ratios[i].Value = &v
		}
	}
	return sums, ratios
}

// ThisMachine describes this machine at now.
func ThisMachine(now time.Time) Machine {
	e := Machine{Date: now, Cores: runtime.NumCPU(), CPUModel: cpuModel()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		e.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			e.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return e
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "unknown"
}
