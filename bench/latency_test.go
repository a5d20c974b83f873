package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/engine/lab/labtest"
)

func TestLatencyOptionsValidate(t *testing.T) {
	valid := bench.DefaultLatencyOptions()
	valid.Xnic, valid.GvisorXDP = "/x/xnic", "/x/gvisorxdp"
	if err := valid.Validate(); err != nil {
		t.Fatalf("defaults with binaries: %v", err)
	}
	for _, c := range []struct {
		field string
		mod   func(*bench.LatencyOptions)
	}{
		{"rounds", func(o *bench.LatencyOptions) { o.Rounds = 0 }},
		{"requests", func(o *bench.LatencyOptions) { o.Requests = 0 }},
		{"requests", func(o *bench.LatencyOptions) { o.Requests = bench.MaxRequests + 1 }},
		{"warmup", func(o *bench.LatencyOptions) { o.Warmup = -1 }},
		{"size", func(o *bench.LatencyOptions) { o.Size = bench.MinLatencySize - 1 }},
		{"size", func(o *bench.LatencyOptions) { o.Size = bench.MaxLatencySize + 1 }},
		{"timeout", func(o *bench.LatencyOptions) { o.Timeout = time.Microsecond }},
		{"only", func(o *bench.LatencyOptions) { o.Only = []string{"kernel", "bsd"} }},
		{"port", func(o *bench.LatencyOptions) { o.Port = 0 }},
		{"http port", func(o *bench.LatencyOptions) { o.HTTPPort = 70000 }},
		{"http port", func(o *bench.LatencyOptions) { o.HTTPPort = o.Port }},
		{"client cpu", func(o *bench.LatencyOptions) { o.ClientCPU = -2 }},
		{"server cpu", func(o *bench.LatencyOptions) { o.ServerCPU = runtime.NumCPU() }},
		{"pause", func(o *bench.LatencyOptions) { o.Pause = -time.Second }},
		{"xnic", func(o *bench.LatencyOptions) { o.Xnic, o.Only = "", []string{bench.LatKernel} }},
		{"gvisorxdp", func(o *bench.LatencyOptions) { o.GvisorXDP = "" }},
		{"lab prefix", func(o *bench.LatencyOptions) { o.LabPrefix = "" }},
	} {
		o := valid
		c.mod(&o)
		err := o.Validate()
		var oe *bench.OptionError
		if !errors.As(err, &oe) || oe.Field != c.field || !errors.Is(err, bench.ErrInvalidOptions) {
			t.Errorf("%s: Validate() = %v, want an OptionError for %q", c.field, err, c.field)
		}
	}
	o := valid
	o.Xnic, o.Only = "", []string{bench.LatGvisorXDP}
	if err := o.Validate(); err != nil {
		t.Errorf("gvisor-xdp alone without xnic: %v", err)
	}
}

// TestRunLatency runs one short round of every contender and checks that
// each answered every request of both kinds with sane percentiles, that
// the report, its JSON and its plot hold them all, and that nothing is
// left behind.
func TestRunLatency(t *testing.T) {
	labtest.RequireRoot(t, "builds a veth lab, loads XDP programs and runs AF_XDP servers")
	dir := buildTCPBinaries(t)
	labtest.HoldSlot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	o := bench.DefaultLatencyOptions()
	o.LabSlot = ""
	o.Rounds, o.Requests, o.Warmup, o.Pause = 1, 300, 50, 50*time.Millisecond
	o.Xnic, o.GvisorXDP = filepath.Join(dir, "xnic"), filepath.Join(dir, "gvisorxdp")
	o.Log = testLog{t}

	start := time.Now()
	rep, err := bench.RunLatency(ctx, o)
	if rep != nil {
		var table bytes.Buffer
		rep.WriteTable(&table)
		t.Logf("in %s:\n%s", time.Since(start).Round(time.Millisecond), table.String())
	}
	if err != nil {
		t.Fatalf("RunLatency: %v", err)
	}
	checkGone(t, rep.Env.Lab, dir)
	if len(rep.Rounds) != 1 || len(rep.Rounds[0].Results) != len(bench.LatencyContenders()) {
		t.Fatalf("rounds %+v, want one with every contender", rep.Rounds)
	}
	for i, r := range rep.Rounds[0].Results {
		if want := bench.LatencyContenders()[i]; r.Contender != want {
			t.Errorf("result %d is %s, want %s", i, r.Contender, want)
		}
		if !r.OK() {
			t.Errorf("%s failed: %+v", r.Contender, r)
			continue
		}
		for kind, st := range map[string]bench.LatencyStat{bench.KindTCP: r.TCP, bench.KindUDP: r.UDP} {
			// A lost datagram is possible but rare on a veth.
			if st.Requests+st.Lost != o.Requests || st.Lost > o.Requests/100 || (kind == bench.KindTCP && st.Lost != 0) {
				t.Errorf("%s %s: %d answered, %d lost of %d", r.Contender, kind, st.Requests, st.Lost, o.Requests)
			}
			// Below a microsecond no round trip through two stacks goes;
			// a second is the timeout.
			if !(st.MinUs >= 1 && st.MinUs <= st.P50Us && st.P50Us <= st.P99Us && st.P99Us <= st.P999Us &&
				st.P999Us <= st.MaxUs && st.MaxUs < 1e6) {
				t.Errorf("%s %s: percentiles not sane: %+v", r.Contender, kind, st)
			}
		}
		if r.Server == nil {
			t.Errorf("%s: no server report", r.Contender)
			continue
		}
		// The server echoed at least every request: warm-up and timed,
		// both kinds (gvisorxdp counts its echo apart from its HTTP).
		var counters any = r.Server
		if echo, ok := r.Server["echo"]; ok {
			counters = echo
		}
		if got, ok := findNumber(counters, "bytes_out"); !ok || got < float64(2*(o.Requests+o.Warmup)*o.Size) {
			t.Errorf("%s: server's bytes_out %v (found %v): %v", r.Contender, got, ok, r.Server)
		}
	}
	if len(rep.Summary) != len(bench.LatencyContenders()) {
		t.Fatalf("summary %+v", rep.Summary)
	}
	for _, s := range rep.Summary {
		if s.TCP.P50.Rounds != 1 || s.UDP.P999.Rounds != 1 || s.TCP.P50.Median <= 0 {
			t.Errorf("summary %+v", s)
		}
	}
	for _, tg := range rep.Targets {
		if tg.Value == nil || *tg.Value <= 0 {
			t.Errorf("target %s not measured", tg.Name())
		}
	}
	if len(rep.CDF) != 2*len(bench.LatencyContenders()) {
		t.Errorf("%d distributions, want one per contender and kind", len(rep.CDF))
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back bench.LatencyReport
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("decode the JSON report: %v", err)
	}
	if len(back.Summary) != len(rep.Summary) || len(back.CDF) != len(rep.CDF) || back.Rounds[0].Results[3].TCP != rep.Rounds[0].Results[3].TCP {
		t.Error("the decoded JSON report differs")
	}
	plot := filepath.Join(t.TempDir(), "latency.svg")
	if err := back.WritePlot(plot); err != nil {
		t.Fatalf("plot the decoded report: %v", err)
	}
	if st, err := os.Stat(plot); err != nil || st.Size() < 10000 {
		t.Errorf("plot %s: %v", plot, err)
	}
}
