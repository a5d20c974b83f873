package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLatencyStat(t *testing.T) {
	// 1000 samples 1..1000 µs, shuffled.
	var s []float64
	for i := 1000; i >= 1; i-- {
		s = append(s, float64(i))
	}
	st := latencyStat(s, 3, 2*time.Second)
	want := LatencyStat{Requests: 1000, Lost: 3, Seconds: 2, MinUs: 1, MeanUs: 500.5,
		P50Us: 500, P90Us: 900, P99Us: 990, P999Us: 999, MaxUs: 1000}
	if st != want {
		t.Errorf("latencyStat = %+v, want %+v", st, want)
	}
	if st := latencyStat(nil, 5, time.Second); st.Requests != 0 || st.Lost != 5 || st.P50Us != 0 {
		t.Errorf("no samples: %+v", st)
	}
	// Nearest rank on few samples: p99.9 of 10 is the largest.
	few := []float64{5, 1, 3, 2, 4, 9, 8, 7, 6, 10}
	if st := latencyStat(few, 0, time.Second); st.P50Us != 5 || st.P99Us != 10 || st.P999Us != 10 {
		t.Errorf("10 samples: %+v", st)
	}
}

func TestCDFPoints(t *testing.T) {
	var s []float64
	for i := range 10000 {
		s = append(s, float64(10000-i))
	}
	pts := cdfPoints(s)
	if len(pts) < 4*cdfSteps {
		t.Fatalf("%d points for 10000 samples, want at least %d", len(pts), 4*cdfSteps)
	}
	if pts[0].P != 0 || pts[0].Us != 1 {
		t.Errorf("first point %+v, want the minimum at 0", pts[0])
	}
	last := pts[len(pts)-1]
	if math.Abs(last.P-(1-1e-4)) > 1e-12 || last.Us != 9999 {
		t.Errorf("last point %+v, want p = 1-1/n at 9999 µs", last)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].P <= pts[i-1].P || pts[i].Us < pts[i-1].Us {
			t.Fatalf("points %d and %d not increasing: %+v %+v", i-1, i, pts[i-1], pts[i])
		}
	}
	if pts := cdfPoints([]float64{42}); len(pts) != 1 || pts[0] != (CDFPoint{Us: 42, P: 0}) {
		t.Errorf("one sample: %+v", pts)
	}
}

// fakeLatencyRounds: three rounds of every contender, scaled by f; the
// kernel's UDP fails in round 2.
func fakeLatencyRounds() []LatencyRound {
	res := func(name string, base, f float64) LatencyResult {
		st := func(m float64) LatencyStat {
			return LatencyStat{Requests: 100, P50Us: base * m * f, P99Us: 3 * base * m * f, P999Us: 9 * base * m * f}
		}
		return LatencyResult{Contender: name, TCP: st(1), UDP: st(0.5)}
	}
	var rounds []LatencyRound
	for i, f := range []float64{1, 3, 2} {
		rd := LatencyRound{Index: i + 1, Results: []LatencyResult{
			res(LatXnic, 40, f), res(LatXnicBusy, 30, f), res(LatGvisorXDP, 50, f), res(LatKernel, 20, f),
		}}
		rounds = append(rounds, rd)
	}
	rounds[1].Results[3].UDP = LatencyStat{Err: "all 100 requests lost", Lost: 100}
	return rounds
}

func TestSummarizeLatency(t *testing.T) {
	sums, targets := summarizeLatency(LatencyContenders(), fakeLatencyRounds())
	if len(sums) != 4 {
		t.Fatalf("%d summaries", len(sums))
	}
	x := sums[0]
	if x.Contender != LatXnic || x.TCP.P50.Median != 80 || x.TCP.P50.Min != 40 || x.TCP.P50.Max != 120 ||
		x.TCP.P99.Median != 240 || x.TCP.P999.Median != 720 || x.UDP.P50.Median != 40 || x.TCP.P50.Rounds != 3 {
		t.Errorf("xnic summary %+v", x)
	}
	k := sums[3]
	if k.UDP.P50.Rounds != 2 || k.UDP.P50.Failed != 1 || k.UDP.Lost != 100 || k.UDP.P50.Median != 15 || k.TCP.P50.Rounds != 3 {
		t.Errorf("kernel summary %+v", k)
	}
	want := map[string]float64{
		"tcp p50 xnic / gvisor-xdp": 0.8, "tcp p99 xnic / kernel": 2,
		"tcp p50 xnic-busy / gvisor-xdp": 0.6, "tcp p99 xnic-busy / kernel": 1.5,
	}
	if len(targets) != len(want) {
		t.Fatalf("targets %+v", targets)
	}
	for _, tg := range targets {
		w, ok := want[tg.Name()]
		if !ok || tg.Value == nil || math.Abs(*tg.Value-w) > 1e-9 || !tg.Met() {
			t.Errorf("target %s = %v, want %v and met", tg.Name(), tg.Value, w)
		}
	}
	// Without the kernel, its targets are not measured.
	_, targets = summarizeLatency([]string{LatXnic, LatGvisorXDP}, fakeLatencyRounds())
	for _, tg := range targets {
		if (tg.Den == LatKernel || tg.Num == LatXnicBusy) != (tg.Value == nil) {
			t.Errorf("target %s without the kernel and xnic-busy: %v", tg.Name(), tg.Value)
		}
	}
}

func fakeLatencyReport() *LatencyReport {
	r := &LatencyReport{Env: LatencyEnv{Machine: ThisMachine(time.Now()), Rounds: 3, Requests: 100, Warmup: 10,
		Size: 64, Contenders: LatencyContenders(), ClientCPU: -1, ServerCPU: -1,
		Servers: map[string]string{LatXnic: "the guest"}}}
	r.Rounds = fakeLatencyRounds()
	r.Summary, r.Targets = summarizeLatency(LatencyContenders(), r.Rounds)
	for i, name := range LatencyContenders() {
		for j, kind := range LatencyKinds() {
			var s []float64
			for n := range 1000 {
				s = append(s, float64(20+10*i+5*j)+float64(n%97)+float64(n)/100)
			}
			r.CDF = append(r.CDF, LatencyCDF{Contender: name, Kind: kind, Samples: len(s), Points: cdfPoints(s)})
		}
	}
	return r
}

func TestLatencyReportWrites(t *testing.T) {
	r := fakeLatencyReport()
	var table, md, js bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{table.String(), md.String()} {
		for _, name := range LatencyContenders() {
			if !strings.Contains(out, name) {
				t.Errorf("%s missing from\n%s", name, out)
			}
		}
		if !strings.Contains(out, "round 2 kernel udp: all 100 requests lost") {
			t.Errorf("failure missing from\n%s", out)
		}
	}
	if !strings.Contains(table.String(), "tcp p50 xnic / gvisor-xdp         0.80  (target <= 1.00: met)") {
		t.Errorf("target line missing from\n%s", table.String())
	}
	var back LatencyReport
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("decode the JSON: %v", err)
	}
	if len(back.Rounds) != 3 || len(back.Summary) != 4 || len(back.CDF) != 8 || back.Summary[0].TCP.P50.Median != 80 {
		t.Errorf("decoded report differs: %d rounds, %d summaries, %d cdfs", len(back.Rounds), len(back.Summary), len(back.CDF))
	}
}

func TestLatencyWritePlot(t *testing.T) {
	r := fakeLatencyReport()
	dir := t.TempDir()
	svg, pngPath := filepath.Join(dir, "l.svg"), filepath.Join(dir, "l.PNG")
	for _, p := range []string{svg, pngPath} {
		if err := r.WritePlot(p); err != nil {
			t.Fatalf("WritePlot(%s): %v", p, err)
		}
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "TCP ping-pong", "UDP echo", "xnic-busy", "p99.9"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decode the PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 400 {
		t.Errorf("PNG of %v", b)
	}
	if err := r.WritePlot(filepath.Join(dir, "l.pdf")); err == nil {
		t.Error("a .pdf plot did not fail")
	}
	bad := fakeLatencyReport()
	bad.CDF[0].Points[3].Us = math.NaN()
	if err := bad.WritePlot(svg); err == nil || !strings.Contains(err.Error(), "cannot be drawn") {
		t.Errorf("NaN point: %v", err)
	}
	if err := (&LatencyReport{}).WritePlot(svg); err == nil {
		t.Error("an empty report plotted")
	}
}

// TestKernelEchoClient runs the kernel echo server on loopback and both
// client kinds against it: every request answered and checked, percentiles
// in order.
func TestKernelEchoClient(t *testing.T) {
	// A port free for TCP; UDP on the same number is free on loopback in
	// all likelihood, and the server says if not.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srvCtx, stop := context.WithCancel(ctx)
	readyR, readyW, _ := os.Pipe()
	var report bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- ServeKernelEcho(srvCtx, addr, readyW, &report); readyW.Close() }()
	line := make([]byte, 200)
	n, _ := readyR.Read(line)
	if !strings.HasPrefix(string(line[:n]), KernelServerReady) {
		stop()
		t.Fatalf("ready line %q, server: %v", line[:n], <-done)
	}
	var d net.Dialer
	c := &pingClient{dial: d.DialContext, addr: addr, size: 64, warmup: 20, requests: 500, timeout: time.Second}
	tcp, ts := c.pingPong(ctx)
	udp, us := c.echo(ctx)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("ServeKernelEcho: %v", err)
	}
	for _, k := range []struct {
		name string
		st   LatencyStat
		s    []float64
	}{{"tcp", tcp, ts}, {"udp", udp, us}} {
		st := k.st
		if !st.OK() || st.Requests+st.Lost != 500 || len(k.s) != st.Requests || st.Requests < 490 {
			t.Errorf("%s: %+v (%d samples)", k.name, st, len(k.s))
			continue
		}
		if !(st.MinUs > 0 && st.MinUs <= st.P50Us && st.P50Us <= st.P99Us && st.P99Us <= st.P999Us && st.P999Us <= st.MaxUs) {
			t.Errorf("%s: percentiles out of order: %+v", k.name, st)
		}
		if !slices.IsSorted(k.s) {
			t.Errorf("%s: samples not sorted by latencyStat", k.name)
		}
	}
	var rep map[string]float64
	if err := json.Unmarshal(report.Bytes(), &rep); err != nil {
		t.Fatalf("server report %q: %v", report.String(), err)
	}
	if rep["conns"] != 1 || rep["datagrams"] < 510 || rep["bytes_in"] < 64*(520+510) {
		t.Errorf("server report %v", rep)
	}
}
