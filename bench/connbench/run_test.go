package connbench

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
)

func runSmall(t *testing.T, o Options) []Row {
	t.Helper()
	var progress strings.Builder
	rows, err := Run(context.Background(), o, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(o.Conns) * len(o.CacheSizes) * len(o.Windows); len(rows) != want {
		t.Fatalf("%d rows, want %d", len(rows), want)
	}
	for _, r := range rows {
		t.Logf("N=%d cache=%d W=%d: %.4f loads/pkt, lookahead alone %.4f, %.1f ns/pkt",
			r.Conns, r.Cache, r.Window, r.LoadsPerPacket, r.ExpectedLoads, r.NsPerPacket)
	}
	if lines := strings.Count(progress.String(), "\n"); lines != len(o.Conns)+len(rows) {
		t.Errorf("progress has %d lines, want one per stream and row (%d):\n%s", lines, len(o.Conns)+len(rows), progress.String())
	}
	return rows
}

func find(t *testing.T, rows []Row, n, cache, w int) Row {
	t.Helper()
	for _, r := range rows {
		if r.Conns == n && r.Cache == cache && r.Window == w {
			return r
		}
	}
	t.Fatalf("no row N=%d cache=%d W=%d", n, cache, w)
	return Row{}
}

// checkRow holds for every row: lookahead never loads a context twice in
// a window, so the loads stay at or below the expectation; the figures are
// consistent with each other.
func checkRow(t *testing.T, r Row) {
	t.Helper()
	if r.LoadsPerPacket > r.ExpectedLoads+1e-9 {
		t.Errorf("N=%d cache=%d W=%d: %.4f loads/pkt, more than lookahead alone (%.4f)", r.Conns, r.Cache, r.Window, r.LoadsPerPacket, r.ExpectedLoads)
	}
	if !(r.NsPerPacket > 0) || r.NsMin > r.NsPerPacket || r.NsMax < r.NsPerPacket {
		t.Errorf("N=%d cache=%d W=%d: ns/pkt %v, min %v, max %v", r.Conns, r.Cache, r.Window, r.NsPerPacket, r.NsMin, r.NsMax)
	}
	if math.Abs(r.Mpps*r.NsPerPacket-1000) > 1e-6 {
		t.Errorf("N=%d cache=%d W=%d: %v Mpps at %v ns/pkt", r.Conns, r.Cache, r.Window, r.Mpps, r.NsPerPacket)
	}
	if math.Abs(r.PacketsPerConn*r.ExpectedLoads-1) > 1e-9 {
		t.Errorf("N=%d cache=%d W=%d: %v packets per connection, expected loads %v", r.Conns, r.Cache, r.Window, r.PacketsPerConn, r.ExpectedLoads)
	}
	if r.Window == r.Baseline && r.Speedup != 1 {
		t.Errorf("N=%d cache=%d W=%d: baseline speedup %v", r.Conns, r.Cache, r.Window, r.Speedup)
	}
}

// TestRunDefaultTraffic runs the default traffic (4 packets per connection
// in a 64-window) small: W=64 loads about 1/4 context per packet once the
// connections outnumber the cache, and none when the cache holds them all.
func TestRunDefaultTraffic(t *testing.T) {
	o := smallOptions()
	o.Conns = []int{16, 1000}
	o.CacheSizes = []int{64}
	o.Windows = []int{64, 1} // the baseline is the smallest, wherever it is
	rows := runSmall(t, o)
	for _, r := range rows {
		checkRow(t, r)
		if r.Baseline != 1 {
			t.Errorf("N=%d W=%d: baseline W=%d, want 1", r.Conns, r.Window, r.Baseline)
		}
		if r.Rounds != o.Rounds || r.Packets != o.Packets || r.Batch != max(o.Batch, r.Window) {
			t.Errorf("N=%d W=%d: %d rounds of %d packets in batches of %d", r.Conns, r.Window, r.Rounds, r.Packets, r.Batch)
		}
	}
	w64 := find(t, rows, 1000, 64, 64)
	if w64.ExpectedLoads != 0.25 {
		t.Errorf("N=1000 W=64: expected %v loads/pkt, want 1/4", w64.ExpectedLoads)
	}
	// A connection comes back only after the other 999: the 64-entry
	// cache keeps almost nothing from one window to the next.
	if w64.LoadsPerPacket < 0.85*w64.ExpectedLoads {
		t.Errorf("N=1000 W=64: %.4f loads/pkt, want about %.4f", w64.LoadsPerPacket, w64.ExpectedLoads)
	}
	if w64.WritebacksPerPacket < 0.85*w64.LoadsPerPacket {
		t.Errorf("N=1000 W=64: %.4f write-backs/pkt for %.4f loads", w64.WritebacksPerPacket, w64.LoadsPerPacket)
	}
	if w1 := find(t, rows, 1000, 64, 1); w1.ExpectedLoads != 1 {
		t.Errorf("N=1000 W=1: expected %v loads/pkt, want 1", w1.ExpectedLoads)
	}
	for _, w := range []int{1, 64} {
		if r := find(t, rows, 16, 64, w); r.LoadsPerPacket > 0.01 {
			t.Errorf("N=16 W=%d: %.4f loads/pkt with every context cached", w, r.LoadsPerPacket)
		}
	}
}

// TestRunWideSpread: with a burst spread over far more connections than the
// cache holds, W=1 loads a context for nearly every packet, and lookahead
// cannot group much either (its expectation is near 1 too).
func TestRunWideSpread(t *testing.T) {
	o := smallOptions()
	o.Conns = []int{4096}
	o.CacheSizes = []int{64}
	o.Windows = []int{1, 64}
	o.Spread = 8192 // 2048 bursts in flight against 64 cache entries
	rows := runSmall(t, o)
	for _, r := range rows {
		checkRow(t, r)
	}
	w1, w64 := find(t, rows, 4096, 64, 1), find(t, rows, 4096, 64, 64)
	if w1.LoadsPerPacket < 0.9 {
		t.Errorf("W=1: %.4f loads/pkt, want about 1", w1.LoadsPerPacket)
	}
	if w64.ExpectedLoads < 0.9 || w64.LoadsPerPacket < 0.85*w64.ExpectedLoads {
		t.Errorf("W=64: %.4f loads/pkt, expected %.4f; want both near 1", w64.LoadsPerPacket, w64.ExpectedLoads)
	}
}

// TestRunOverlap: overlapping bursts are grouped less well than aligned
// ones, and the measured loads follow the stream's expectation.
func TestRunOverlap(t *testing.T) {
	o := smallOptions()
	o.Model = ModelOverlap
	o.Conns = []int{1000}
	o.CacheSizes = []int{64}
	o.Windows = []int{1, 64}
	rows := runSmall(t, o)
	for _, r := range rows {
		checkRow(t, r)
	}
	r := find(t, rows, 1000, 64, 64)
	if r.ExpectedLoads <= 0.25 || r.ExpectedLoads >= 0.75 {
		t.Errorf("W=64: expected %.4f loads/pkt, want between 1/4 and 3/4", r.ExpectedLoads)
	}
}

func TestRunRejectsOptions(t *testing.T) {
	o := smallOptions()
	o.Rounds = 0
	if _, err := Run(context.Background(), o, nil); !errors.Is(err, ErrOptions) {
		t.Fatalf("Run with 0 rounds: %v", err)
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o := smallOptions()
	o.Conns = []int{16}
	rows, err := Run(ctx, o, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run canceled: %v", err)
	}
	if len(rows) != 0 {
		t.Errorf("%d rows from a canceled run", len(rows))
	}
}
