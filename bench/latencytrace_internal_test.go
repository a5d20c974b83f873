package bench

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/flows"
	goffload "github.com/xnic/xnic/flows/offload"
)

// sampleWith is a complete request whose stamps (ns) start at t0 and then
// advance by the given gaps, one per stamp after the first.
func sampleWith(t0 int64, gaps [numStamps - 1]int64) traceSample {
	var s traceSample
	s[0] = t0
	for i, g := range gaps {
		s[i+1] = s[i] + g
	}
	return s
}

func TestTraceStages(t *testing.T) {
	// Stamp order: client write, worker rx, to netstack, netstack
	// returned, server read, server write, engine send, send returned,
	// write returned, client kernel rx, client read. Request i's worker
	// wake-up takes 10+i µs; everything else is fixed.
	var samples []traceSample
	for i := range 100 {
		samples = append(samples, sampleWith(1_000_000*int64(i+1), [numStamps - 1]int64{
			int64(10_000 + 1000*i), // client write → worker rx
			1000,                   // → to netstack
			2000,                   // → netstack returned
			30_000,                 // → server read
			500,                    // → server write
			4000,                   // → engine send
			300,                    // → send returned (inside)
			200,                    // → write returned (inside)
			15_000,                 // → client kernel rx
			5_500,                  // → client read
		}))
	}
	// Incomplete: the worker never saw it (a stamp of the chain missing);
	// left out.
	bad := samples[0]
	bad[stWorkerRx] = 0
	// A side stamp missing: complete, but absent from that side measure.
	side := samples[50]
	side[stServerWritten] = 0
	samples = append(samples, bad, side)

	stages, total, complete := traceStages(samples)
	if complete != 101 {
		t.Fatalf("complete = %d, want 101 (one sample lacks a chain stamp)", complete)
	}
	byName := map[string]TraceStage{}
	for _, s := range stages {
		byName[s.From+" → "+s.To] = s
	}
	check := func(name string, samples int, p50, p99 float64) {
		t.Helper()
		s, ok := byName[name]
		if !ok {
			t.Fatalf("no stage %q in %v", name, stages)
		}
		if s.Samples != samples || math.Abs(s.P50Us-p50) > 1e-9 || math.Abs(s.P99Us-p99) > 1e-9 {
			t.Errorf("%s: %d samples p50 %v p99 %v; want %d, %v, %v", name, s.Samples, s.P50Us, s.P99Us, samples, p50, p99)
		}
	}
	// 101 values 10..109 µs with 60 twice (sample 50, copied): nearest
	// rank 51 is 60 (the second 60), rank 100 is 108.
	check("client write → worker rx", 101, 60, 108)
	check("worker rx → to netstack", 101, 1, 1)
	check("netstack returned → server read", 101, 30, 30)
	// Send returned is not a link: engine send → client kernel rx spans it.
	check("engine send → client kernel rx", 101, 15.5, 15.5)
	check("client kernel rx → client read", 101, 5.5, 5.5)
	check("engine send → send returned", 101, 0.3, 0.3)
	check("server write → write returned", 100, 4.5, 4.5)
	// The slowest 1%: round trips are 68.5+i µs (118.5 twice), p99 by
	// nearest rank is 166.5, so requests 98 and 99 (worker wake-ups 108
	// and 109 µs);
	// in the fixed stages they are like the others.
	tail := func(name string, want float64) {
		t.Helper()
		s := byName[name]
		if name == "client write → client read" {
			s = total
		}
		if math.Abs(s.TailMeanUs-want) > 1e-9 {
			t.Errorf("%s: slowest 1%% mean %v, want %v", name, s.TailMeanUs, want)
		}
	}
	tail("client write → worker rx", 108.5)
	tail("netstack returned → server read", 30)
	tail("engine send → client kernel rx", 15.5)
	tail("client kernel rx → client read", 5.5)
	tail("client write → client read", 167)

	// The round trip is the sum of the links.
	var sumMeans, shares float64
	for _, s := range stages {
		if s.Chain {
			sumMeans += s.MeanUs
			shares += s.Share
		} else if s.Share != 0 {
			t.Errorf("%s → %s overlaps the chain but has a share %v", s.From, s.To, s.Share)
		}
	}
	if total.From != "client write" || total.To != "client read" || math.Abs(total.MeanUs-sumMeans) > 1e-6 {
		t.Errorf("total %+v; the links' means add up to %v", total, sumMeans)
	}
	if math.Abs(shares-1) > 1e-9 {
		t.Errorf("shares add up to %v, want 1", shares)
	}
	if n := len(stages) + 1; n != len(traceStageDefs) {
		t.Errorf("%d stages and the total, want %d", n, len(traceStageDefs))
	}

	// No complete request: every stage empty, no shares, no panic.
	stages, total, complete = traceStages([]traceSample{bad})
	if complete != 0 || total.Samples != 0 || stages[0].Samples != 0 {
		t.Errorf("nothing complete: %d, %+v, %+v", complete, total, stages[0])
	}
}

func TestTraceRecorder(t *testing.T) {
	r := newTraceRecorder(4, 16)
	msg := make([]byte, 16)
	message(msg, 2)
	r.markPayload(stWorkerRx, msg[:3], msg[3:10], nil, msg[10:]) // split anywhere
	first := r.stamps[2*numStamps+stWorkerRx].Load()
	if first == 0 {
		t.Fatal("a split payload was not stamped")
	}
	time.Sleep(time.Millisecond)
	r.markPayload(stWorkerRx, msg) // a retransmission: the first stamp stays
	if got := r.stamps[2*numStamps+stWorkerRx].Load(); got != first {
		t.Errorf("stamp moved from %d to %d", first, got)
	}
	r.markPayload(stNetstackIn, msg[:15]) // not a request's size
	r.markPayload(stNetstackIn, append(msg, 0))
	message(msg, 4) // beyond the recorder
	r.markPayload(stNetstackIn, msg)
	for i := range r.stamps {
		if v := r.stamps[i].Load(); v != 0 && i != 2*numStamps+stWorkerRx {
			t.Errorf("stamp %d (request %d, stage %d) set", i, i/numStamps, i%numStamps)
		}
	}
	r.mark(1, stClientWrite)
	s := r.samples(1, 3)
	if len(s) != 2 || s[0][stClientWrite] == 0 || s[1][stWorkerRx] != first || s[0][stWorkerRx] != 0 {
		t.Errorf("samples(1, 3) = %v", s)
	}
}

func TestSwapUDP(t *testing.T) {
	mac1, mac2 := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	for _, ips := range [][2]string{{"198.18.0.2", "198.18.0.10"}, {"2001:2::2", "2001:2::10"}} {
		src, dst := netip.MustParseAddr(ips[0]), netip.MustParseAddr(ips[1])
		f, err := gen.BuildUDP(gen.FrameOptions{Size: 128, SrcMAC: mac1, DstMAC: mac2, SrcIP: src, DstIP: dst,
			SrcPort: 40000, DstPort: 7, Payload: []byte("ping")})
		if err != nil {
			t.Fatal(err)
		}
		orig := slices.Clone(f)
		if !swapUDP(f) {
			t.Fatalf("%s: not swapped", ips)
		}
		var p flows.Packet
		flows.Parse(f, &p)
		k := p.Key
		wantSrc := k.SrcAddr()
		if !bytes.Equal(f[0:6], mac1) || !bytes.Equal(f[6:12], mac2) || wantSrc != dst || k.SrcPort != 7 || k.DstPort != 40000 {
			t.Errorf("%s: swapped frame: macs %x %x, key %+v", ips, f[0:6], f[6:12], k)
		}
		var cs goffload.CsumStats
		if !cs.Verify(f, &p) {
			t.Errorf("%s: the echo's checksums are wrong", ips)
		}
		if !bytes.Equal(f[p.PayloadOff:p.PayloadOff+4], []byte("ping")) {
			t.Errorf("%s: payload changed", ips)
		}
		swapUDP(f)
		if !bytes.Equal(f, orig) {
			t.Errorf("%s: swapping twice is not the original", ips)
		}
	}
	// Not UDP: left alone.
	f, _ := gen.BuildUDP(gen.FrameOptions{Size: 64, SrcMAC: mac1, DstMAC: mac2,
		SrcIP: netip.MustParseAddr("198.18.0.2"), DstIP: netip.MustParseAddr("198.18.0.10"), SrcPort: 1, DstPort: 2})
	tcp := slices.Clone(f)
	tcp[14+9] = flows.ProtoTCP
	for name, frame := range map[string][]byte{
		"tcp": tcp, "truncated": slices.Clone(f[:30]), "arp": engineARP(mac1), "empty": nil,
	} {
		before := slices.Clone(frame)
		if swapUDP(frame) || !bytes.Equal(frame, before) {
			t.Errorf("%s: swapped or changed", name)
		}
	}
}

// engineARP is an ARP request frame.
func engineARP(mac net.HardwareAddr) []byte {
	f := make([]byte, 42)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], 0x0806)
	return f
}

func TestLatencyBreakdown(t *testing.T) {
	kind := func(p50, p99 float64) LatencyKindSummary {
		return LatencyKindSummary{P50: Stat{Rounds: 3, Median: p50}, P99: Stat{Rounds: 3, Median: p99}}
	}
	notRun := LatencyKindSummary{}
	sums := []LatencySummary{
		{Contender: LatKernel, TCP: kind(25, 60), UDP: kind(30, 70)},
		{Contender: LatEngineEcho, TCP: notRun, UDP: kind(28, 90)},
		{Contender: LatEngineEchoBusy, TCP: notRun, UDP: kind(20, 40)},
		{Contender: LatEngineHandoff, TCP: notRun, UDP: kind(100, 200)},
		{Contender: LatXnic, TCP: kind(160, 400), UDP: kind(140, 300)},
		// No xnic-busy and no engine-handoff-busy.
	}
	steps := latencyBreakdown(sums)
	if len(steps) != 9 {
		t.Fatalf("%d steps, want 4 per idle mode and the kernel's", len(steps))
	}
	want := []struct {
		from, to string
		d50, d99 float64 // NaN: not measured
	}{
		{"kernel udp", "engine-echo udp", -2, 20},
		{"engine-echo udp", "engine-handoff udp", 72, 110},
		{"engine-handoff udp", "xnic udp", 40, 100},
		{"xnic udp", "xnic tcp", 20, 100},
		{"kernel udp", "engine-echo-busy udp", -10, -30},
		{"engine-echo-busy udp", "engine-handoff-busy udp", math.NaN(), 0},
		{"engine-handoff-busy udp", "xnic-busy udp", math.NaN(), 0},
		{"xnic-busy udp", "xnic-busy tcp", math.NaN(), 0},
		{"kernel udp", "kernel tcp", -5, -10},
	}
	for i, w := range want {
		s := steps[i]
		if s.From != w.from || s.To != w.to {
			t.Errorf("step %d: %s → %s, want %s → %s", i, s.From, s.To, w.from, w.to)
			continue
		}
		if math.IsNaN(w.d50) {
			if s.P50Us != nil || s.P99Us != nil || s.FromP50Us != nil {
				t.Errorf("step %d (%s → %s): measured without both sides: %+v", i, s.From, s.To, s)
			}
			continue
		}
		if s.P50Us == nil || *s.P50Us != w.d50 || *s.P99Us != w.d99 {
			t.Errorf("step %d (%s → %s): %+v, want Δp50 %v Δp99 %v", i, s.From, s.To, s, w.d50, w.d99)
		}
	}
	if steps[0].Mode != "poll_ms 10" || steps[4].Mode != "poll_ms 0" || steps[8].Mode != "" {
		t.Errorf("modes %q %q %q", steps[0].Mode, steps[4].Mode, steps[8].Mode)
	}
	// A failed side (no round) is not measured either.
	sums[1].UDP = LatencyKindSummary{P50: Stat{Failed: 3}}
	if s := latencyBreakdown(sums)[0]; s.P50Us != nil {
		t.Errorf("a failed side gave %v", *s.P50Us)
	}

	// The report shows the steps, with signs and "-".
	rep := &LatencyReport{Summary: sums, Breakdown: steps}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"breakdown by differences", "engine-echo udp", "+72.0", "-2.0", "+110"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, b.String())
		}
	}
	b.Reset()
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "| hand-off to a goroutine + worker wake-up | poll_ms 10 | engine-echo udp | engine-handoff udp | 28.0 | 100 | +72.0 | +110 |") {
		t.Errorf("markdown:\n%s", b.String())
	}
}

func TestLatencyBreakdownOptions(t *testing.T) {
	o := DefaultLatencyOptions()
	o.Xnic, o.GvisorXDP = "/x", "/g"
	if got := o.contenders(); !slices.Equal(got, LatencyContenders()) {
		t.Errorf("default contenders %v", got)
	}
	o.Breakdown = true
	if got := o.contenders(); !slices.Equal(got, AllLatencyContenders()) || len(got) != 8 {
		t.Errorf("breakdown contenders %v", got)
	}
	// The engine echoes need neither binary.
	o = DefaultLatencyOptions()
	o.Only = []string{LatEngineHandoffBusy, LatEngineEcho}
	if err := o.Validate(); err != nil {
		t.Errorf("engine echoes alone without binaries: %v", err)
	}
	if got := o.contenders(); !slices.Equal(got, []string{LatEngineEcho, LatEngineHandoffBusy}) {
		t.Errorf("only: %v, want run order", got)
	}
	if err := o.checkBinaries(); err != nil {
		t.Errorf("check binaries: %v", err)
	}
	o.Only = append(o.Only, LatKernel)
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "xnic") {
		t.Errorf("the kernel without the xnic binary: %v", err)
	}

	// A kind not run is neither a failure nor a figure.
	rounds := []LatencyRound{{Index: 1, Results: []LatencyResult{{Contender: LatEngineEcho,
		TCP: LatencyStat{NotRun: true}, UDP: latencyStat([]float64{10, 20, 30}, 0, time.Second)}}}}
	sums, _ := summarizeLatency([]string{LatEngineEcho}, rounds)
	s := sums[0]
	if s.TCP.P50.Rounds != 0 || s.TCP.P50.Failed != 0 || s.UDP.P50.Median != 20 {
		t.Errorf("summary %+v", s)
	}
	if c := pctCells(s.TCP); c[0] != "-" {
		t.Errorf("a kind not run shows %q", c[0])
	}
	if c := latRoundsCell(s); c != "1/1" {
		t.Errorf("rounds cell %q, want 1/1", c)
	}
	if !rounds[0].Results[0].OK() {
		t.Error("a result with a kind not run is not OK")
	}
}

func TestLatencyTraceReportWrites(t *testing.T) {
	var samples []traceSample
	for i := range 10 {
		samples = append(samples, sampleWith(int64(i+1)*1e6, [numStamps - 1]int64{20e3, 500, 2e3, 88e3, 100, 3e3, 400, 600, 12e3, 3e3}))
	}
	stages, total, complete := traceStages(samples)
	rep := &LatencyTraceReport{
		Env:  LatencyTraceEnv{Machine: Machine{Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), Cores: 2}, Requests: 10, Size: 64, Stamps: stampNames[:]},
		Runs: []TraceRun{{Kind: KindTCP, PollMs: 10, Procs: 1, Requests: 10, Complete: complete, SleepsPerRequest: 0.5, Stages: stages, Total: total}},
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"tcp, engine.poll_ms 10, GOMAXPROCS 1: 10 of 10 requests traced whole; 0.50 worker sleeps per request",
		"netstack returned → server read", "88.0", "client write → client read", "100%", "(inside)", "67.9%"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back LatencyTraceReport
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != 1 || !slices.Equal(back.Runs[0].Stages, stages) || back.Runs[0].Total != total || back.Runs[0].Procs != 1 || len(back.Env.Stamps) != numStamps {
		t.Errorf("decoded report differs: %+v", back)
	}
}

func TestLatencyTraceOptionsValidate(t *testing.T) {
	d := DefaultLatencyTraceOptions()
	d.Xnic = "/usr/local/bin/xnic"
	if err := d.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for field, mod := range map[string]func(*LatencyTraceOptions){
		"requests":   func(o *LatencyTraceOptions) { o.Requests = 0 },
		"size":       func(o *LatencyTraceOptions) { o.Size = 4 },
		"poll ms":    func(o *LatencyTraceOptions) { o.PollMs = []int{10, -1} },
		"port":       func(o *LatencyTraceOptions) { o.Port = 70000 },
		"timeout":    func(o *LatencyTraceOptions) { o.Timeout = 0 },
		"xnic":       func(o *LatencyTraceOptions) { o.Xnic = "" },
		"gomaxprocs": func(o *LatencyTraceOptions) { o.Procs = -1 },
	} {
		o := d
		mod(&o)
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}
