package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/engine/config"
	"github.com/xnic/xnic/engine/lab/labtest"
)

// TestRunLatencyTrace traces a few hundred requests of each kind with both
// idle modes, the client a process of its own, and checks that every
// request was stamped at every stage of the chain, that the stages add up
// to the round trip, that a spinning worker never slept, that the engine
// ran with one P (one worker) and the process got its GOMAXPROCS back, and
// that nothing is left behind.
func TestRunLatencyTrace(t *testing.T) {
	xnic := buildXnic(t)
	ctx, o := traceOptions(t)
	procs := runtime.GOMAXPROCS(0)
	wantProcs, _ := config.GoMaxProcs(0, 1, os.Getenv("GOMAXPROCS")) // as serve's, for one worker
	o.Requests, o.Warmup = 200, 50
	o.Xnic = xnic
	rep, err := bench.RunLatencyTrace(ctx, o)
	if rep != nil {
		var b bytes.Buffer
		rep.WriteTable(&b)
		t.Logf("\n%s", b.String())
	}
	if err != nil {
		t.Fatalf("RunLatencyTrace: %v", err)
	}
	checkGone(t, rep.Env.Lab, filepath.Dir(xnic)) // the client processes have exited
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS is %d after the trace, was %d", got, procs)
	}
	if len(rep.Runs) != 4 {
		t.Fatalf("%d runs, want 2 idle modes × 2 kinds", len(rep.Runs))
	}
	for _, r := range rep.Runs {
		name := fmt.Sprintf("%s poll_ms %d", r.Kind, r.PollMs)
		if r.Procs != wantProcs {
			t.Errorf("%s: the engine's process ran with GOMAXPROCS %d, want %d (xnic serve's, one worker)", name, r.Procs, wantProcs)
		}
		// A lost datagram is possible but rare on a veth; TCP loses none.
		if r.Requests != o.Requests || r.Complete+r.Lost < o.Requests-o.Requests/100 || (r.Kind == bench.KindTCP && r.Complete != o.Requests) {
			t.Errorf("%s: %d of %d complete, %d lost", name, r.Complete, r.Requests, r.Lost)
		}
		if r.PollMs == 0 && r.SleepsPerRequest != 0 {
			t.Errorf("%s: a spinning worker slept %.2f times per request", name, r.SleepsPerRequest)
		}
		if r.SendErrors != 0 {
			t.Errorf("%s: %d sends refused", name, r.SendErrors)
		}
		sum := 0.0
		for _, s := range r.Stages {
			if s.Chain {
				sum += s.MeanUs
				// TailMeanUs > 0 too: the client's kernel receive
				// timestamp is on another clock, moved onto the trace's.
				if s.Samples != r.Complete || s.P50Us < 0 || s.P50Us > s.P99Us || s.P99Us > s.MaxUs || s.TailMeanUs <= 0 {
					t.Errorf("%s: stage %s → %s: %+v", name, s.From, s.To, s)
				}
			}
		}
		if r.Total.Samples != r.Complete || r.Total.P50Us < 1 || math.Abs(sum-r.Total.MeanUs) > 1e-6*r.Total.MeanUs {
			t.Errorf("%s: round trip %+v; the stages' means add up to %v", name, r.Total, sum)
		}
	}
}

// TestRunLatencyBreakdown runs the engine echoes alone and checks that they
// answered every datagram, ran no TCP, and gave the breakdown's hand-off
// step.
func TestRunLatencyBreakdown(t *testing.T) {
	labtest.RequireRoot(t, "builds a veth lab, loads XDP programs and runs engines")
	labtest.HoldSlot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := bench.DefaultLatencyOptions()
	o.LabSlot = ""
	o.Rounds, o.Requests, o.Warmup, o.Pause = 1, 300, 50, 50*time.Millisecond
	o.Only = []string{bench.LatEngineEcho, bench.LatEngineHandoff, bench.LatEngineHandoffBusy}
	o.Breakdown = true
	o.Log = testLog{t}
	rep, err := bench.RunLatency(ctx, o)
	if rep != nil {
		var b bytes.Buffer
		rep.WriteTable(&b)
		t.Logf("\n%s", b.String())
	}
	if err != nil {
		t.Fatalf("RunLatency: %v", err)
	}
	checkGone(t, rep.Env.Lab, t.TempDir()) // no child processes: all in this one
	if len(rep.Rounds) != 1 || len(rep.Rounds[0].Results) != 3 {
		t.Fatalf("rounds %+v", rep.Rounds)
	}
	for _, r := range rep.Rounds[0].Results {
		if !r.OK() || !r.TCP.NotRun || r.UDP.Requests+r.UDP.Lost != o.Requests || r.UDP.Lost > o.Requests/100 {
			t.Errorf("%s: %+v", r.Contender, r)
		}
		if got, _ := r.Server["echoed"].(uint64); got < uint64(o.Requests+o.Warmup) {
			t.Errorf("%s: echoed %v, want at least %d", r.Contender, r.Server["echoed"], o.Requests+o.Warmup)
		}
		if r.UDP.MinUs < 1 || r.UDP.P50Us > r.UDP.P99Us {
			t.Errorf("%s: percentiles not sane: %+v", r.Contender, r.UDP)
		}
	}
	var handoff *bench.BreakdownStep
	for i, s := range rep.Breakdown {
		if s.From == "engine-echo udp" && s.To == "engine-handoff udp" {
			handoff = &rep.Breakdown[i]
		} else if s.P50Us != nil {
			t.Errorf("step %s → %s measured without both sides", s.From, s.To)
		}
	}
	if handoff == nil || handoff.P50Us == nil || *handoff.ToP50Us <= 0 {
		t.Errorf("no hand-off step in %+v", rep.Breakdown)
	}
}

// traceOptions holds the lab slot and returns a minute's context and the
// trace's defaults for a test, logging to it; Xnic is still to be set.
func traceOptions(t *testing.T) (context.Context, bench.LatencyTraceOptions) {
	t.Helper()
	labtest.RequireRoot(t, "builds a veth lab, loads XDP programs and runs an engine")
	labtest.HoldSlot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	o := bench.DefaultLatencyTraceOptions()
	o.LabSlot = ""
	o.Log = testLog{t}
	return ctx, o
}

// TestRunLatencyTraceClientFails: a client process that writes no report
// fails the run with that said, and the lab and the engine go away.
func TestRunLatencyTraceClientFails(t *testing.T) {
	ctx, o := traceOptions(t)
	o.Requests, o.Warmup, o.PollMs = 10, 0, []int{0}
	o.Xnic = "/bin/false" // exits 1 and writes nothing
	rep, err := bench.RunLatencyTrace(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "the client's process wrote no report") {
		t.Fatalf("RunLatencyTrace with a failing client: %v", err)
	}
	t.Logf("the error: %v", err)
	if rep == nil {
		t.Fatal("no report")
	}
	checkGone(t, rep.Env.Lab, t.TempDir())
}
