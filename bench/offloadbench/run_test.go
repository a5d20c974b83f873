package offloadbench

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func shortOptions() Options {
	o := DefaultOptions()
	o.Rounds, o.Duration = 3, 5*time.Millisecond
	return o
}

// TestRun: a short run gives the eight rows in order, with positive rates,
// consistent figures and the segments per aggregate the train must give.
func TestRun(t *testing.T) {
	o := shortOptions()
	var progress strings.Builder
	rows, err := Run(context.Background(), o, &progress)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"gro ipv4 verify+full", "gro ipv4 trust+validated", "gro ipv6 verify+full", "gro ipv6 trust+validated",
		"gso ipv4 full", "gso ipv4 partial", "gso ipv6 full", "gso ipv6 partial",
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, r := range rows {
		t.Logf("%s: %.2f Mseg/s (%.2f..%.2f), %.1f segs/agg", r.Name(), r.MsegPerSec, r.Min, r.Max, r.SegsPerAgg)
		if r.Name() != want[i] {
			t.Errorf("row %d is %q, want %q", i, r.Name(), want[i])
		}
		if !(r.MsegPerSec > 0) || r.Min > r.MsegPerSec || r.Max < r.MsegPerSec {
			t.Errorf("%s: %v Mseg/s, min %v, max %v", r.Name(), r.MsegPerSec, r.Min, r.Max)
		}
		if r.Rounds != o.Rounds || r.Duration != o.Duration || r.CPU != o.CPU || r.FrameLen != 1514 {
			t.Errorf("%s: %+v", r.Name(), r)
		}
		wantAgg, wantBatch := 45.0, SegsPerTSO
		if r.Stage == StageGRO {
			wantAgg, wantBatch = 32, 64 // 64-frame batches: 45 + 19
		}
		if r.SegsPerAgg != wantAgg || r.Batch != wantBatch {
			t.Errorf("%s: %.3f segs/agg in batches of %d, want %v in %d", r.Name(), r.SegsPerAgg, r.Batch, wantAgg, wantBatch)
		}
		if r.Target() != (r.Mode == ModeVerifyFull || r.Mode == ModeFull) {
			t.Errorf("%s: target %v", r.Name(), r.Target())
		}
	}
	if lines := strings.Count(progress.String(), "\n"); lines != len(rows)*o.Rounds {
		t.Errorf("%d progress lines, want one per measurement (%d):\n%s", lines, len(rows)*o.Rounds, progress.String())
	}
}

// TestRunBatch: the batch size reaches GRO, and the aggregates follow it.
func TestRunBatch(t *testing.T) {
	o := shortOptions()
	o.Rounds, o.Batch, o.CPU = 1, 30, -1
	rows, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Stage == StageGRO && (r.Batch != 30 || r.SegsPerAgg != 30) {
			t.Errorf("%s: batch %d, %.2f segs/agg; want 30, 30", r.Name(), r.Batch, r.SegsPerAgg)
		}
		if r.CPU != -1 {
			t.Errorf("%s: cpu %d", r.Name(), r.CPU)
		}
	}
}

func TestRunRejectsOptions(t *testing.T) {
	o := shortOptions()
	o.Rounds = 0
	if _, err := Run(context.Background(), o, nil); !errors.Is(err, ErrOptions) {
		t.Fatalf("Run with 0 rounds: %v", err)
	}
	// A CPU this process may not run on is an error of the cpu option.
	o = shortOptions()
	o.CPU = MaxCPU
	_, err := Run(context.Background(), o, nil)
	var oe *OptionError
	if !errors.As(err, &oe) || oe.Field != "cpu" {
		t.Fatalf("Run on CPU %d: %v", MaxCPU, err)
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rows, err := Run(ctx, shortOptions(), nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run canceled: %v", err)
	}
	if len(rows) != 0 {
		t.Errorf("%d rows from a canceled run", len(rows))
	}
}

func TestRender(t *testing.T) {
	rows := []Row{
		{Stage: StageGRO, Family: IPv4, Mode: ModeVerifyFull, Batch: 64, CPU: 1, Rounds: 3, Duration: time.Second,
			MsegPerSec: 12, Min: 11, Max: 13, SegsPerAgg: 32},
		{Stage: StageGRO, Family: IPv4, Mode: ModeTrustValidated, Batch: 64, CPU: 1, Rounds: 3, Duration: time.Second,
			MsegPerSec: 30, Min: 29, Max: 31, SegsPerAgg: 32},
		{Stage: StageGSO, Family: IPv4, Mode: ModeFull, Batch: 45, CPU: 1, Rounds: 3, Duration: time.Second,
			MsegPerSec: 8, Min: 7, Max: 9, SegsPerAgg: 45},
	}
	raw := &Raw{Name: "xnic-rx", Mpps: 2}
	rs := Ratios(rows, raw)
	if len(rs) != 3 || rs[0].Value != 6 || !rs[0].Met || rs[0].Target != TargetRatio ||
		rs[1].Target != 0 || rs[2].Value != 4 || rs[2].Met {
		t.Fatalf("ratios %+v", rs)
	}
	if Ratios(rows, nil) != nil || Ratios(rows, &Raw{Name: "x"}) != nil {
		t.Error("ratios without a raw rate")
	}

	var b strings.Builder
	if err := WriteTable(&b, rows, raw); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"x raw", "xnic-rx 2.000 Mpps", "6.00", "(target >= 5x: met)", "(target >= 5x: missed)", "GRO batches of 64"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	if strings.Count(out, "target >=") != 2 {
		t.Errorf("want a verdict for the two target rows only:\n%s", out)
	}
	b.Reset()
	if err := WriteTable(&b, rows, nil); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); strings.Contains(out, "x raw") || strings.Contains(out, "target") || !strings.Contains(out, "12.00") {
		t.Errorf("table without a raw rate:\n%s", out)
	}

	md := RenderMarkdown(rows, raw)
	if strings.Count(md, "\n| gro ") != 2 || !strings.Contains(md, "| 6.00 | met |") || !strings.Contains(md, "| 4.00 | missed |") {
		t.Errorf("markdown:\n%s", md)
	}
	if md := RenderMarkdown(rows, nil); strings.Contains(md, "target") {
		t.Errorf("markdown without a raw rate:\n%s", md)
	}
}
