package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// qosResult is a synthetic measurement: the bulk classes' bytes over 2 s,
// the host veth's bytes, and the ping-pong's p99s (0: none).
func qosResult(name string, bytes []int64, wire int64, aloneP99, loadedP99 float64) QoSResult {
	r := QoSResult{Contender: name, Seconds: 2, WireBytes: wire}
	for i, n := range bytes {
		cname, port := bulkClass(i)
		r.Classes = append(r.Classes, ClassBytes{Name: cname, Port: port, Weight: []int{6, 3, 1}[i], Bytes: n})
	}
	if aloneP99 > 0 {
		r.Alone = &LatencyStat{P50Us: aloneP99 / 2, P99Us: aloneP99}
		r.Loaded = &LatencyStat{P50Us: loadedP99 / 2, P99Us: loadedP99}
	}
	r.fill()
	return r
}

func TestQoSResultFill(t *testing.T) {
	r := qosResult(QoSXnic, []int64{600, 300, 100}, 50_000_000, 0, 0)
	for i, want := range []float64{0.6, 0.3, 0.1} {
		if !near(r.Classes[i].Share, want) {
			t.Errorf("class %d share %v, want %v", i, r.Classes[i].Share, want)
		}
	}
	if !near(r.GoodputBitsPerSec, 1000*8/2.0) || !near(r.WireBitsPerSec, 200e6) {
		t.Errorf("goodput %v, wire %v bit/s", r.GoodputBitsPerSec, r.WireBitsPerSec)
	}
	z := qosResult(QoSXnic, []int64{0, 0, 0}, 0, 0, 0)
	if z.Classes[0].Share != 0 || z.GoodputBitsPerSec != 0 {
		t.Errorf("nothing read: %+v", z)
	}
}

// syntheticQoS is a report of three rounds: xnic ignoring the weights
// (equal shares), above the rate and slowed by the load; HTB close to the
// weights and the rate; and a failed xnic round whose figures must not
// count.
func syntheticQoS() *QoSReport {
	r := &QoSReport{Env: QoSEnv{RateBitsPerSec: 200_000_000, Weights: []int{6, 3, 1}, Rounds: 3, WindowSec: 2}}
	const mb = 1_000_000
	rounds := [][]QoSResult{
		{qosResult(QoSXnic, []int64{17 * mb, 16 * mb, 17 * mb}, 51_500_000, 100, 240),
			qosResult(QoSHTB, []int64{30 * mb, 15 * mb, 5 * mb}, 49_900_000, 0, 0)},
		{qosResult(QoSXnic, []int64{16 * mb, 17 * mb, 17 * mb}, 51_000_000, 120, 300),
			qosResult(QoSHTB, []int64{29 * mb, 15 * mb, 6 * mb}, 50_000_000, 0, 0)},
		{qosResult(QoSXnic, []int64{50 * mb, 0, 0}, 90_000_000, 1, 1000),
			qosResult(QoSHTB, []int64{30 * mb, 16 * mb, 4 * mb}, 49_800_000, 0, 0)},
	}
	rounds[2][0].Err = "download of bulk-b: peer read: connection reset"
	for i, rs := range rounds {
		r.Rounds = append(r.Rounds, QoSRound{Index: i + 1, Results: rs})
	}
	r.summarize()
	return r
}

func TestQoSSummarize(t *testing.T) {
	r := syntheticQoS()
	x, h := r.summary(QoSXnic), r.summary(QoSHTB)
	if x == nil || h == nil || len(r.Summary) != 2 {
		t.Fatalf("summary %+v", r.Summary)
	}
	if x.Rounds != 2 || x.Failed != 1 || h.Rounds != 3 || h.Failed != 0 {
		t.Fatalf("xnic %d/%d, htb %d/%d rounds", x.Rounds, x.Failed, h.Rounds, h.Failed)
	}
	// xnic: the median of 0.34 and 0.32 for bulk-a, against 0.6.
	if c := x.Classes[0]; !near(c.Share, 0.33) || !near(c.WantShare, 0.6) || !near(c.ErrPct, (0.33/0.6-1)*100) {
		t.Errorf("xnic bulk-a %+v", c)
	}
	// bulk-c: 0.34 against 0.1 is the worst error, +240%.
	if c := x.Classes[2]; !near(c.ErrPct, 240) || !near(x.WorstShareErrPct(), 240) {
		t.Errorf("xnic bulk-c %+v, worst %v", c, x.WorstShareErrPct())
	}
	// The rate: the median of 206 and 204 Mbit/s, +2.5%.
	if !near(x.WireBitsPerSec, 205e6) || !near(x.RateErrPct, 2.5) {
		t.Errorf("xnic wire %v, error %v%%", x.WireBitsPerSec, x.RateErrPct)
	}
	// The failed round's 1 µs and 1000 µs do not count: 110 and 270.
	if x.P99Ratio == nil || !near(x.AloneP99Us, 110) || !near(x.LoadedP99Us, 270) || !near(*x.P99Ratio, 270.0/110) {
		t.Errorf("xnic p99 %v alone, %v loaded, ratio %v", x.AloneP99Us, x.LoadedP99Us, x.P99Ratio)
	}
	// HTB: bulk-a 0.58, 0.6, 0.6; bulk-c 0.1, 0.12, 0.08.
	if !near(h.Classes[0].Share, 0.6) || !near(h.Classes[2].Share, 0.1) || !near(h.WorstShareErrPct(), 0) {
		t.Errorf("htb classes %+v", h.Classes)
	}
	if !near(h.WireBitsPerSec, 199.6e6) || !near(h.RateErrPct, -0.2) || h.P99Ratio != nil {
		t.Errorf("htb wire %v, error %v%%, p99 ratio %v", h.WireBitsPerSec, h.RateErrPct, h.P99Ratio)
	}

	verdicts := map[string]bool{}
	for _, tg := range r.Targets {
		verdicts[tg.Goal()] = tg.Met
	}
	want := map[string]bool{
		"xnic: shares within ±5% of the weights":                         false,
		"xnic: shaped rate within ±2% of the configured rate":            false,
		"xnic: strict-priority p99 loaded <= 2x alone":                   false,
		"XDP early drop vs user-space drop (CPU per frame) <= 0.3x":      false,
		"htb (reference): shares within ±5% of the weights":              true,
		"htb (reference): shaped rate within ±2% of the configured rate": true,
	}
	if len(verdicts) != len(want) {
		t.Fatalf("targets %v", verdicts)
	}
	for g, met := range want {
		if got, ok := verdicts[g]; !ok || got != met {
			t.Errorf("target %q: met %v (present %v), want %v", g, got, ok, met)
		}
	}
	for _, tg := range r.Targets {
		if tg.Metric == QoSMetricDrop && tg.Value != nil {
			t.Errorf("drop cost measured without a measurement: %v", *tg.Value)
		}
	}
}

// TestQoSTargetBounds checks the bounds both ways: a share error or a rate
// error of either sign within the limit meets it, one beyond misses; the
// p99 ratio and the drop cost are at most their limit.
func TestQoSTargetBounds(t *testing.T) {
	r := &QoSReport{Env: QoSEnv{RateBitsPerSec: 100_000_000}}
	// 0.57/0.6 is -5%, 0.315/0.3 +5%, 0.115/0.1 +15%: worst 15.
	r.Rounds = []QoSRound{{Index: 1, Results: []QoSResult{
		{Contender: QoSXnic, Seconds: 1, WireBytes: 12_300_000, Classes: []ClassBytes{
			{Weight: 6, Bytes: 570}, {Weight: 3, Bytes: 315}, {Weight: 1, Bytes: 115}},
			Alone: &LatencyStat{P99Us: 100}, Loaded: &LatencyStat{P99Us: 200}},
		{Contender: QoSHTB, Seconds: 1, WireBytes: 12_800_000, Classes: []ClassBytes{
			{Weight: 6, Bytes: 5700}, {Weight: 3, Bytes: 3150}, {Weight: 1, Bytes: 1050}}},
	}}}
	for i := range r.Rounds[0].Results {
		r.Rounds[0].Results[i].fill()
	}
	r.DropCost = &QoSDropCost{XDPNsPerFrame: 30, UserNsPerFrame: 120}
	r.summarize()
	got := map[string]float64{}
	met := map[string]bool{}
	for _, tg := range r.Targets {
		if tg.Value == nil {
			t.Fatalf("%s not measured", tg.Goal())
		}
		got[tg.Contender+" "+tg.Metric], met[tg.Contender+" "+tg.Metric] = *tg.Value, tg.Met
	}
	for _, c := range []struct {
		key   string
		value float64
		met   bool
	}{
		{"xnic shares", 15, false},
		{"xnic rate", -1.6, true},
		{"xnic priority", 2, true},
		{"xnic drop", 0.25, true},
		// 5.7/9.9 is 0.5757..: -4.04%; 1.05/9.9 is +6.06%.
		{"htb shares", (1.05/9.9/0.1 - 1) * 100, false},
		{"htb rate", 2.4, false},
	} {
		if math.Abs(got[c.key]-c.value) > 1e-6 || met[c.key] != c.met {
			t.Errorf("%s: %v met %v, want %v met %v", c.key, got[c.key], met[c.key], c.value, c.met)
		}
	}
}

func TestQoSReportWrite(t *testing.T) {
	r := syntheticQoS()
	r.Env.Lab, r.Env.Kernel = "xq1234", "6.18"
	var tb, md, js bytes.Buffer
	if err := r.WriteTable(&tb); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	table := tb.String()
	for _, want := range []string{
		"xnic bench qos: 3 bulk classes with weights 6:3:1", "shaped to 200.0 Mbit/s", "lab xq1234",
		"bulk-a", "5003", "60.0%", "-45.0%", "+240.0%", // xnic's shares
		"205.0", "+2.5%", "199.6", "-0.2%", "2/3", "3/3", // the rates and rounds
		"2.45", // p99 loaded over alone
		"XDP early drop vs user-space drop (CPU per frame) <= 0.3x", "not measured",
		"xnic: shares within ±5% of the weights", "worst 240.0%", "missed",
		"htb (reference): shares within ±5% of the weights", "met",
		"round 3 xnic: download of bulk-b: peer read: connection reset",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	for _, want := range []string{"| xnic | bulk-a | 5001 | 6 | 60.0% | 33.0% | -45.0% |", "| htb | 199.6 | 200.0 | -0.2% |",
		"≤ 0.3x | - | not measured |", "Failures:"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	var back QoSReport
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Rounds) != 3 || len(back.Summary) != 2 || len(back.Targets) != 6 || back.Summary[0].P99Ratio == nil {
		t.Errorf("json round trip: %+v", back)
	}
}

func TestHTBCommands(t *testing.T) {
	cmds := htbCommands("xq12340", 200_000_000, []int{6, 3, 1})
	if len(cmds) != 2+2*3 {
		t.Fatalf("%d commands", len(cmds))
	}
	line := func(i int) string { return strings.Join(cmds[i], " ") }
	if line(0) != "qdisc add dev xq12340 root handle 1: htb default 0" ||
		line(1) != "class add dev xq12340 parent 1: classid 1:1 htb rate 200000000bit ceil 200000000bit" {
		t.Errorf("root: %q, %q", line(0), line(1))
	}
	for i, c := range []struct{ rate, id, port, quantum string }{
		{"120000000bit", "1:10", "5001", "9084"}, {"60000000bit", "1:11", "5002", "4542"}, {"20000000bit", "1:12", "5003", "1514"},
	} {
		cl, f := line(2+2*i), line(3+2*i)
		if want := "class add dev xq12340 parent 1:1 classid " + c.id + " htb rate " + c.rate +
			" ceil 200000000bit prio 0 quantum " + c.quantum; cl != want {
			t.Errorf("class %d: %q, want %q", i, cl, want)
		}
		if want := "filter add dev xq12340 parent 1: protocol ip prio 1 u32 match ip sport " + c.port +
			" 0xffff flowid " + c.id; f != want {
			t.Errorf("filter %d: %q, want %q", i, f, want)
		}
	}
}

func TestQoSOptions(t *testing.T) {
	d := DefaultQoSOptions()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	cs := d.classes()
	if len(cs) != 4 || cs[0].Priority != 0 || cs[0].Ports[0].Lo != qosPriorityPort {
		t.Fatalf("classes %+v", cs)
	}
	for i, c := range cs[1:] {
		name, port := bulkClass(i)
		if c.Name != name || c.Priority != 1 || c.Weight != d.Weights[i] || int(c.Ports[0].Lo) != port ||
			c.Ports[0].Hi != c.Ports[0].Lo || int(c.ID) != qosPriorityID+1+i {
			t.Errorf("bulk class %d: %+v", i, c)
		}
	}
	for _, c := range []struct {
		field string
		edit  func(*QoSOptions)
	}{
		{"rounds", func(o *QoSOptions) { o.Rounds = 0 }},
		{"duration", func(o *QoSOptions) { o.Duration = MinGoodputTime - 1 }},
		{"settle", func(o *QoSOptions) { o.Settle = 0 }},
		{"rate", func(o *QoSOptions) { o.Rate = MinQoSRate - 1 }},
		{"weights", func(o *QoSOptions) { o.Weights = []int{1} }},
		{"weights", func(o *QoSOptions) { o.Weights = []int{6, 0, 1} }},
		{"weights", func(o *QoSOptions) { o.Weights = slices.Repeat([]int{1}, MaxQoSClasses+1) }},
		{"requests", func(o *QoSOptions) { o.Requests = 0 }},
		{"timeout", func(o *QoSOptions) { o.Timeout = 0 }},
		{"poll ms", func(o *QoSOptions) { o.PollMs = -1 }},
		{"lab prefix", func(o *QoSOptions) { o.LabPrefix = "" }},
	} {
		o := DefaultQoSOptions()
		c.edit(&o)
		var oe *OptionError
		if err := o.Validate(); !errors.As(err, &oe) || oe.Field != c.field || !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: %v", c.field, err)
		}
	}
}
