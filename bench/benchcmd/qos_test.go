package benchcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/internal/cli"
)

// TestBenchQoS runs `xnic bench qos --rounds 1` on a real lab: the table
// has every class, both contenders and every target, the early-drop row
// measured; the JSON report decodes with both contenders measured;
// HTB, the reference, gives each class its weight's share and the
// configured rate (within a margin wide enough for a busy machine), which
// shows the measurement itself is sound; and the lab and the qdisc are gone
// afterwards.
func TestBenchQoS(t *testing.T) {
	labtest.RequireRoot(t, "builds a lab, loads XDP programs, binds AF_XDP sockets and sets up HTB with tc")
	if _, err := exec.LookPath("tc"); err != nil {
		t.Fatalf("tc (iproute2) is needed for the HTB reference: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js := filepath.Join(t.TempDir(), "qos.json")
	stdout, stderr, err := captureOutput(t, func() error {
		return Run(ctx, []string{"qos", "--rounds", "1", "--duration", "1s", "--settle", "500ms", "--requests", "300", "--json-out", js})
	})
	if err != nil {
		t.Fatalf("bench qos: %v\n%s\n%s", err, stdout, stderr)
	}
	t.Logf("bench qos --rounds 1:\n%s", stdout)
	for _, want := range []string{"xnic bench qos: ", "Linux ", "bulk-a", "bulk-b", "bulk-c", "htb", "p99 loaded / alone",
		"xnic: shares within ±5% of the weights", "xnic: shaped rate within ±2% of the configured rate",
		"xnic: strict-priority p99 loaded <= 2x alone", "htb (reference): shares within ±5% of the weights",
		"XDP early drop vs user-space drop (CPU per frame) <= 0.3x"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	for _, line := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(line, "XDP early drop") && strings.HasSuffix(line, "not measured") {
			t.Errorf("the early-drop row was not measured: %q", line)
		}
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.QoSReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, b)
	}
	if len(rep.Rounds) != 1 || len(rep.Rounds[0].Results) != 2 || len(rep.Summary) != 2 || len(rep.Targets) != 6 {
		t.Fatalf("rounds %+v, summary %+v, targets %+v", rep.Rounds, rep.Summary, rep.Targets)
	}
	// The drop cost is measured (its ratio is for a quiet machine: here
	// other tests share the CPUs, so only its presence is checked).
	if d := rep.DropCost; d == nil || !(d.BaselineNsPerFrame > 0) || !(d.UserTotalNsPerFrame > 0) || !(d.EarlyTotalNsPerFrame > 0) || d.Method == "" {
		t.Errorf("drop cost %+v", rep.DropCost)
	}
	for _, res := range rep.Rounds[0].Results {
		if !res.OK() || len(res.Classes) != 3 || !(res.WireBitsPerSec > 0) || !(res.GoodputBitsPerSec > 0) ||
			res.GoodputBitsPerSec > res.WireBitsPerSec || res.Seconds < 1 {
			t.Errorf("%s: %+v", res.Contender, res)
		}
		for _, c := range res.Classes {
			if c.Bytes <= 0 {
				t.Errorf("%s %s: nothing read", res.Contender, c.Name)
			}
		}
		xnic := res.Contender == bench.QoSXnic
		if xnic != (res.Alone != nil && res.Loaded != nil) {
			t.Errorf("%s: ping-pong alone %v, loaded %v", res.Contender, res.Alone, res.Loaded)
		} else if xnic && (res.Alone.Requests != 300 || res.Loaded.Requests != 300 || !(res.Alone.P99Us > 0)) {
			t.Errorf("ping-pong alone %+v, loaded %+v", res.Alone, res.Loaded)
		}
	}
	// Both the engine's scheduler and HTB hold the weights and the rate
	// (with room for a loaded machine; the benchmark's targets are tighter).
	for _, s := range rep.Summary {
		if w := s.WorstShareErrPct(); w > 15 {
			t.Errorf("%s shares %+v: worst error %.1f%%, want the weights'", s.Contender, s.Classes, w)
		}
		if s.RateErrPct < -10 || s.RateErrPct > 5 {
			t.Errorf("%s rate %.1f Mbit/s: error %.1f%%", s.Contender, s.WireBitsPerSec/1e6, s.RateErrPct)
		}
	}
	for _, p := range []string{"/run/netns/" + rep.Env.Lab + "-peer", "/sys/class/net/" + rep.Env.Port} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
}

// TestBenchQoSBadFlags: a bad value is a usage error naming its flag,
// found before anything runs.
func TestBenchQoSBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--rounds", "0"}, "--rounds"},
		{[]string{"--duration", "1ms"}, "--duration"},
		{[]string{"--rate-mbit", "0"}, "--rate-mbit"},
		{[]string{"--weights", "6,x"}, "--weights"},
		{[]string{"--weights", "6"}, "--weights"},
		{[]string{"--requests", "0"}, "--requests"},
		{[]string{"extra"}, "unexpected argument \"extra\""},
	} {
		_, stderr, err := captureOutput(t, func() error {
			return Run(context.Background(), append([]string{"qos"}, c.args...))
		})
		if !errors.Is(err, cli.ErrUsage) || !strings.Contains(stderr+fmt.Sprint(err), c.flag+":") {
			t.Errorf("%v: %v, stderr %q; want a usage error naming %s", c.args, err, stderr, c.flag)
		}
	}
}
