package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xnic/xnic/bench/internal/stat"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := append([]float64(nil), c.in...)
		if got := stat.Median(c.in); got != c.want {
			t.Errorf("stat.Median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !slicesEqual(in, c.in) {
			t.Errorf("median reordered its input: %v", c.in)
		}
	}
}

func slicesEqual(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fakeRounds: xdp-drop 20/26/24 Mpps, xnic-rx 9/10/11, libxdp-bare
// 10/10/10, asavie-own 4/5/6, behind steering 8/8/8 and 3/4/5, afpacket
// failing once.
func fakeRounds() []Round {
	pps := map[string][]float64{
		XDPDrop:     {20e6, 26e6, 24e6},
		XnicRx:      {9e6, 10e6, 11e6},
		LibXDPBare:  {10e6, 10e6, 10e6},
		AsavieOwn:   {4e6, 5e6, 6e6},
		LibXDPSteer: {8e6, 8e6, 8e6},
		AsavieSteer: {3e6, 4e6, 5e6},
		AFPacket:    {1e6, 0, 2e6},
	}
	var rounds []Round
	for i := range 3 {
		rd := Round{Index: i + 1}
		for _, name := range Contenders() {
			r := Result{Contender: name, PPS: pps[name][i], Sent: Sent{PPS: 2 * pps[name][i]},
				Noise: Noise{Others: 0.01}}
			if name == AsavieOwn && i == 2 {
				r.Noise.Others = 0.2 // a build ran meanwhile
			}
			if r.PPS == 0 {
				r.Err = "peer crashed"
			}
			rd.Results = append(rd.Results, r)
		}
		rounds = append(rounds, rd)
	}
	return rounds
}

func TestSummarize(t *testing.T) {
	sums, ratios := summarize(Contenders(), fakeRounds())
	want := map[string][4]float64{ // median, min, max, rounds
		XDPDrop:     {24e6, 20e6, 26e6, 3},
		XnicRx:      {10e6, 9e6, 11e6, 3},
		LibXDPBare:  {10e6, 10e6, 10e6, 3},
		AsavieOwn:   {5e6, 4e6, 6e6, 3},
		LibXDPSteer: {8e6, 8e6, 8e6, 3},
		AsavieSteer: {4e6, 3e6, 5e6, 3},
		AFPacket:    {1.5e6, 1e6, 2e6, 2},
	}
	if len(sums) != len(want) {
		t.Fatalf("%d summaries, want %d", len(sums), len(want))
	}
	for i, s := range sums {
		if s.Contender != Contenders()[i] {
			t.Errorf("summary %d is %s, want %s", i, s.Contender, Contenders()[i])
		}
		w := want[s.Contender]
		if s.Median != w[0] || s.Min != w[1] || s.Max != w[2] || s.Rounds != int(w[3]) {
			t.Errorf("%s: median %v min %v max %v rounds %d, want %v", s.Contender, s.Median, s.Min, s.Max, s.Rounds, w)
		}
		if s.SentMed != 2*s.Median {
			t.Errorf("%s: sent median %v, want %v", s.Contender, s.SentMed, 2*s.Median)
		}
		if s.OfDrop == nil || *s.OfDrop != s.Median/24e6 {
			t.Errorf("%s: of xdp-drop %v, want %v", s.Contender, s.OfDrop, s.Median/24e6)
		}
	}
	if sums[3].MaxOthers != 0.2 || sums[1].MaxOthers != 0.01 {
		t.Errorf("max others: asavie %v, xnic-rx %v", sums[3].MaxOthers, sums[1].MaxOthers)
	}
	if sums[6].Failed != 1 {
		t.Errorf("afpacket failed %d, want 1", sums[6].Failed)
	}
	if len(ratios) != 4 {
		t.Fatalf("%d ratios, want 4", len(ratios))
	}
	if r := ratios[0]; r.Name() != "xnic-rx / libxdp-bare" || *r.Value != 1.0 || !r.Met() {
		t.Errorf("xnic-rx / libxdp-bare: %+v value %v", r, *r.Value)
	}
	if r := ratios[1]; r.Name() != "xnic-rx / asavie-own" || *r.Value != 2.0 || !r.Met() {
		t.Errorf("xnic-rx / asavie-own: %+v value %v", r, *r.Value)
	}
	if r := ratios[2]; r.Name() != "libxdp-steer / libxdp-bare" || *r.Value != 0.8 || r.Target != 0 {
		t.Errorf("steering cost, libxdp: %+v value %v", r, *r.Value)
	}
	if r := ratios[3]; r.Name() != "asavie-steer / asavie-own" || *r.Value != 0.8 || r.Target != 0 {
		t.Errorf("steering cost, asavie: %+v value %v", r, *r.Value)
	}

	// Without xdp-drop and asavie: no ceiling fraction, ratios unmeasured.
	only := []string{XnicRx, LibXDPBare}
	sums, ratios = summarize(only, fakeRounds())
	if len(sums) != 2 || sums[0].OfDrop != nil {
		t.Errorf("summaries without xdp-drop: %+v", sums)
	}
	if ratios[1].Value != nil || ratios[1].Met() || ratios[0].Value == nil || ratios[2].Value != nil {
		t.Errorf("ratios without asavie and the steered peers: %+v", ratios)
	}
}

func TestRender(t *testing.T) {
	rep := &Report{Env: Env{Machine: Machine{Date: time.Date(2025, 1, 2, 3, 4, 0, 0, time.UTC), Kernel: "6.18.0",
		CPUModel: "Test CPU", Cores: 2}, Rounds: 3, WindowSec: 5, FrameSize: 64, Flows: 1,
		Placement: "somewhere", Generator: "something"}, Rounds: fakeRounds()}
	rep.Summary, rep.Ratios = summarize(Contenders(), rep.Rounds)

	var table, md, js bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, name := range Contenders() {
		if !strings.Contains(table.String(), name) {
			t.Errorf("table lacks %s:\n%s", name, table.String())
		}
		if !strings.Contains(md.String(), "| "+name+" | ") {
			t.Errorf("markdown lacks a row for %s:\n%s", name, md.String())
		}
	}
	for _, s := range []string{"24.000", "xnic-rx / asavie-own", "2.00", "(target >= 1.50: met)",
		"libxdp-steer / libxdp-bare  0.80  (steering program's cost", "+25 ns per packet",
		"round 2 afpacket: peer crashed", "2/3", "20.0%",
		"warning: in 1 of 20 measurements other tasks used more than 5%", "64-byte UDP", "median of 3 rounds of 5s"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, table.String())
		}
	}
	for _, s := range []string{"2025-01-02", "Linux 6.18.0", "Test CPU", "2 cores", "64-byte UDP",
		"| xnic-rx | 10.000 | 9.000 | 11.000 | 41.7% | 20.000 |", "| xnic-rx / libxdp-bare | 1.00 | ≥ 0.95 (met) |",
		"|---|---:|---:|---:|---:|---:|", "warning: in 1 of 20"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("markdown lacks %q:\n%s", s, md.String())
		}
	}

	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not parse back: %v", err)
	}
	if len(back.Rounds) != 3 || len(back.Rounds[1].Results) != 7 || back.Rounds[1].Results[6].Err != "peer crashed" {
		t.Errorf("raw rounds lost in JSON: %+v", back.Rounds)
	}
	if *back.Ratios[1].Value != 2.0 || back.Summary[1].Median != 10e6 || back.Ratios[2].Label == "" {
		t.Errorf("summary lost in JSON: %+v %+v", back.Summary, back.Ratios)
	}
}

func TestValidate(t *testing.T) {
	ok := DefaultOptions()
	ok.Xnic, ok.PeersDir = "/x/xnic", "/x"
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cases := map[string]func(*Options){
		"rounds":   func(o *Options) { o.Rounds = 0 },
		"duration": func(o *Options) { o.Duration = time.Millisecond },
		"size":     func(o *Options) { o.FrameSize = 63 },
		"big size": func(o *Options) { o.FrameSize = MaxFrameSize + 1 },
		"flows":    func(o *Options) { o.Flows = 0 },
		"only":     func(o *Options) { o.Only = []string{"xdp-drop", "nope"} },
		"gen cpu":  func(o *Options) { o.GenCPU = runtime.NumCPU() },
		"rx cpu":   func(o *Options) { o.RxCPU = -2 },
		"batch":    func(o *Options) { o.GenBatch = 257 },
		"repeat":   func(o *Options) { o.GenRepeat = 0 },
		"xnic":     func(o *Options) { o.Xnic = "" },
		"peers":    func(o *Options) { o.PeersDir = "" },
		"prefix":   func(o *Options) { o.LabPrefix = "toolong" },
	}
	for name, mod := range cases {
		o := ok
		mod(&o)
		if err := o.Validate(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// What a selection does not run needs no binary.
	o := ok
	o.Only, o.Xnic, o.PeersDir = []string{XDPDrop}, "", ""
	if err := o.Validate(); err != nil {
		t.Errorf("xdp-drop alone: %v", err)
	}
	o.Only = []string{AFPacket, XnicRx}
	o.Xnic, o.PeersDir = "/x/xnic", "/x"
	if got := o.contenders(); len(got) != 2 || got[0] != XnicRx || got[1] != AFPacket {
		t.Errorf("contenders %v, want run order [xnic-rx afpacket]", got)
	}
	o.PeersDir = t.TempDir()
	if err := o.checkBinaries(); !errors.Is(err, ErrMissingBinary) || !strings.Contains(err.Error(), "make build") {
		t.Errorf("missing binaries: %v", err)
	}
}

func TestCPUList(t *testing.T) {
	for s, want := range map[string]string{"0": "0", "0-3": "0-3", "0,2-3,5": "0,2-3,5", "1,2": "1-2"} {
		if got := formatCPUList(parseCPUList(s)); got != want {
			t.Errorf("%q: got %q, want %q", s, got, want)
		}
	}
}

// TestPinning checks that a child started pinned has all its threads on
// that CPU, that pinProcess moves every thread of this process, and that
// both restore what was there.
func TestPinning(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs to tell pinned from unpinned")
	}
	all := formatCPUList(parseCPUList("0-" + itoa(runtime.NumCPU()-1)))
	if got := processCPUs(os.Getpid()); got != all {
		t.Skipf("this process already runs on CPUs %s, not all %s", got, all)
	}
	cmd := exec.Command("sleep", "5")
	if err := startPinned(cmd, 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if got := processCPUs(cmd.Process.Pid); got != "1" {
		t.Errorf("child on CPUs %q, want 1", got)
	}
	if got := processCPUs(os.Getpid()); got != all {
		t.Errorf("after startPinned this process runs on %q, want %s", got, all)
	}

	restore, err := pinProcess(0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // threads made while pinned inherit the pin
		runtimeSpin()
		close(done)
	}()
	<-done
	if got := processCPUs(os.Getpid()); got != "0" {
		t.Errorf("pinned process on CPUs %q, want 0", got)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if got := processCPUs(os.Getpid()); got != all {
		t.Errorf("restored process on CPUs %q, want %s", got, all)
	}
}

func itoa(i int) string { return formatCPUList([]int{i}) }

// runtimeSpin makes the runtime start a thread or two.
func runtimeSpin() {
	c := make(chan struct{})
	for range 4 {
		go func() {
			runtime.LockOSThread()
			time.Sleep(time.Millisecond)
			c <- struct{}{}
		}()
	}
	for range 4 {
		<-c
	}
}

func TestLineWriter(t *testing.T) {
	var lines []string
	w := &lineWriter{onLine: func(s string) { lines = append(lines, s) }}
	w.Write([]byte("a\nre"))
	w.Write([]byte("ady\r\n"))
	w.Write([]byte("tail"))
	if len(lines) != 2 || lines[0] != "a" || lines[1] != "ready" {
		t.Errorf("lines %q", lines)
	}
	if got := w.Tail(); got != "a\nready\ntail" {
		t.Errorf("tail %q", got)
	}
	for i := range 2 * tailLines {
		w.Write([]byte(itoa(i) + "\n"))
	}
	tail := strings.Split(w.Tail(), "\n")
	if len(tail) != tailLines || tail[0] != itoa(tailLines) || tail[tailLines-1] != itoa(2*tailLines-1) {
		t.Errorf("tail %q, want the last %d lines", tail, tailLines)
	}
}

func TestNoiseBetween(t *testing.T) {
	ncpu := time.Duration(runtime.NumCPU())
	a := noiseSample{at: time.Unix(0, 0), busy: time.Second, all: 2 * time.Second, ours: time.Second}
	b := a
	b.at = a.at.Add(time.Second)
	// Over 1 s: CPUs busy ncpu s in user/system, half of it ours.
	b.busy += ncpu * time.Second
	b.ours += ncpu * time.Second / 2
	b.all += ncpu * time.Second
	b.steal = ncpu * time.Second / 10
	n := noiseBetween(a, b)
	if n.Others != 0.5 || n.Steal < 0.099 || n.Steal > 0.101 {
		t.Errorf("noise %+v, want others 0.5 and steal 0.1", n)
	}
	b.ours += 10 * ncpu * time.Second // our child's startup before the window
	if n := noiseBetween(a, b); n.Others != 0 {
		t.Errorf("others %v, want clamped to 0", n.Others)
	}
	if n := noiseBetween(a, noiseSample{statUnknown: true}); n != (Noise{}) {
		t.Errorf("unknown stat gives %+v", n)
	}
	s := sampleNoise()
	if s.statUnknown || s.all == 0 || s.ours == 0 {
		t.Errorf("sample of this machine: %+v", s)
	}
}
