package benchcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/internal/cli"
)

// TestBenchMigrate runs `xnic bench migrate --reps 2` on a real lab: the
// table has every event, bonding's reference line and the two targets; the
// JSON report decodes, with the goodput of both ports, two measured
// repetitions of each event that move the guest back and forth, stalls
// that are sane, no connection reset, and the lab gone afterwards.
func TestBenchMigrate(t *testing.T) {
	labtest.RequireRoot(t, "builds a bridged two-port lab, loads XDP programs and binds AF_XDP sockets")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js := filepath.Join(t.TempDir(), "migrate.json")
	start := time.Now()
	stdout, stderr, err := captureOutput(t, func() error {
		return Run(ctx, []string{"migrate", "--reps", "2", "--goodput", "500ms", "--json", js})
	})
	if err != nil {
		t.Fatalf("bench migrate: %v\n%s\n%s", err, stdout, stderr)
	}
	t.Logf("%s in %s:\n%s", "bench migrate --reps 2", time.Since(start).Round(time.Millisecond), stdout)
	for _, want := range []string{"xnic bench migrate: ", "Linux ", "steady", "command", "link-down",
		"miimon 100 ms", "not a measurement", "command: stall <= 20 ms median, no frame lost",
		"link-down: stall <= 250 ms median, 0 connections reset"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	if n := strings.Count(stderr, "rep "); n != 6 {
		t.Errorf("%d progress lines, want 6:\n%s", n, stderr)
	}

	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.MigrateReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, b)
	}
	ports := rep.Env.Ports
	if rep.Env.Reps != 2 || len(ports) != 2 || rep.Env.Date.IsZero() || rep.Reference.IntervalMs != 100 || len(rep.Targets) != 2 {
		t.Fatalf("env %+v, reference %+v, targets %+v", rep.Env, rep.Reference, rep.Targets)
	}
	if len(rep.Goodput) != 2 || rep.Goodput[0].Port != ports[0] || rep.Goodput[1].Port != ports[1] {
		t.Errorf("goodput %+v, want one per port", rep.Goodput)
	}
	for _, g := range rep.Goodput {
		if !(g.BitsPerSec > 0) || g.Seconds < 0.5 {
			t.Errorf("goodput %+v", g)
		}
	}
	if len(rep.Events) != 6 {
		t.Fatalf("%d events, want 6", len(rep.Events))
	}
	from := map[string][]string{}
	for _, ev := range rep.Events {
		if !ev.OK() {
			t.Errorf("rep %d %s: %s", ev.Rep, ev.Kind, ev.Err)
			continue
		}
		if !(ev.StallMs > 0) || ev.StallMs >= 5000 {
			t.Errorf("rep %d %s: stall %.3f ms, want in (0, 5 s)", ev.Rep, ev.Kind, ev.StallMs)
		}
		if ev.Resets != 0 {
			t.Errorf("rep %d %s: %d resets", ev.Rep, ev.Kind, ev.Resets)
		}
		moved := ev.Kind != bench.EventSteady
		if moved != (ev.From != ev.To) || !slices.Contains(ports, ev.From) || !slices.Contains(ports, ev.To) {
			t.Errorf("rep %d %s: from %s to %s", ev.Rep, ev.Kind, ev.From, ev.To)
		}
		if moved && (ev.Reason != ev.Kind || !(ev.EngineTookMs > 0)) {
			t.Errorf("rep %d %s: reason %q, engine took %.3f ms", ev.Rep, ev.Kind, ev.Reason, ev.EngineTookMs)
		}
		from[ev.Kind] = append(from[ev.Kind], ev.From)
	}
	// Each kind moves the guest one way in the first repetition and the
	// other way in the second.
	for _, kind := range []string{bench.EventCommand, bench.EventLinkDown} {
		if f := from[kind]; len(f) != 2 || f[0] == f[1] {
			t.Errorf("%s moved from %v, want each port once", kind, f)
		}
	}
	if len(rep.Summary) != 3 {
		t.Fatalf("summary %+v", rep.Summary)
	}
	for i, s := range rep.Summary {
		if s.Kind != bench.MigrateEvents()[i] || s.Reps != 2 || s.Resets != 0 || s.StallMaxMs < s.StallMedianMs {
			t.Errorf("summary %+v", s)
		}
	}
	for _, p := range []string{"/run/netns/" + rep.Env.Lab + "-peer", "/sys/class/net/" + ports[0], "/sys/class/net/" + ports[1]} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
}

// TestBenchMigrateBadFlags: a bad value is a usage error naming its flag,
// found before anything runs.
func TestBenchMigrateBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--reps", "0"}, "--reps"},
		{[]string{"--settle", "1ms"}, "--settle"},
		{[]string{"--goodput", "0s"}, "--goodput"},
		{[]string{"--poll-ms", "-1"}, "--poll-ms"},
		{[]string{"extra"}, "unexpected argument \"extra\""},
	} {
		_, stderr, err := captureOutput(t, func() error {
			return Run(context.Background(), append([]string{"migrate"}, c.args...))
		})
		if !errors.Is(err, cli.ErrUsage) || !strings.Contains(stderr+fmt.Sprint(err), c.flag+":") {
			t.Errorf("%v: %v, stderr %q; want a usage error naming %s", c.args, err, stderr, c.flag)
		}
	}
}
