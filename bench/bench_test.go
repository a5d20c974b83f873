package bench_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/engine/lab/labtest"
)

// buildBinaries builds xnic and the peers into a temporary directory, with
// the same Makefile line `make build` uses for the peers.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	for _, c := range []*exec.Cmd{
		exec.Command(goBin, "build", "-o", filepath.Join(dir, "xnic"), "../cmd/xnic"),
		exec.Command("make", "-s", "-C", "peers", "OUT="+dir, "GO="+goBin),
	} {
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c.Args, " "), err, out)
		}
	}
	return dir
}

// buildXnic builds the xnic binary alone into a temporary directory.
func buildXnic(t *testing.T) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	out := filepath.Join(t.TempDir(), "xnic")
	if b, err := exec.Command(goBin, "build", "-o", out, "../cmd/xnic").CombinedOutput(); err != nil {
		t.Fatalf("go build xnic: %v\n%s", err, b)
	}
	return out
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func shortOptions(t *testing.T, dir string) bench.Options {
	// Hold the lab slot before any clock starts: other test binaries, run
	// in parallel by go test ./..., may hold it for a while, and flock
	// waiters are not served in order.
	labtest.HoldSlot(t)
	o := bench.DefaultOptions()
	o.LabSlot = ""
	o.Rounds, o.Duration, o.Slack = 1, time.Second, 200*time.Millisecond
	o.Xnic, o.PeersDir = filepath.Join(dir, "xnic"), dir
	o.Log = testLog{t}
	if runtime.NumCPU() < 2 {
		o.GenCPU, o.RxCPU = -1, -1
	}
	return o
}

// checkGone fails if anything of lab name is left: its netns, its host
// veth, its pin directory, or a process running one of dir's binaries.
func checkGone(t *testing.T, name, dir string) {
	t.Helper()
	for _, p := range []string{
		"/run/netns/" + name + "-peer",
		"/sys/class/net/" + name + "0",
		"/sys/fs/bpf/xnic-bench-" + name,
	} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, p := range procs {
		if exe, err := os.Readlink(p); err == nil && strings.HasPrefix(exe, dir+"/") {
			t.Errorf("%s still runs (%s)", exe, filepath.Dir(p))
		}
	}
}

// TestRun runs a one-round, one-second benchmark of every contender and
// checks that each one received, that the table names them all and that
// nothing is left behind.
func TestRun(t *testing.T) {
	labtest.RequireRoot(t, "builds a veth lab, loads XDP programs and runs AF_XDP and AF_PACKET receivers")
	if want := filepath.Join(labtest.OwnerDir, "lock"); bench.DefaultLabSlot != want {
		t.Fatalf("DefaultLabSlot %s is not labtest's slot %s", bench.DefaultLabSlot, want)
	}
	dir := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	rep, err := bench.Run(ctx, shortOptions(t, dir))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkGone(t, rep.Env.Lab, dir)
	if len(rep.Rounds) != 1 || len(rep.Rounds[0].Results) != len(bench.Contenders()) {
		t.Fatalf("rounds %+v, want one with every contender", rep.Rounds)
	}
	for i, r := range rep.Rounds[0].Results {
		if r.Contender != bench.Contenders()[i] {
			t.Errorf("result %d is %s, want %s", i, r.Contender, bench.Contenders()[i])
		}
		if !r.OK() || r.PPS <= 0 || r.Packets == 0 || r.Seconds < 0.9 {
			t.Errorf("%s: pps %.0f, %d packets in %.3fs, err %q", r.Contender, r.PPS, r.Packets, r.Seconds, r.Err)
		}
		ownProgram := r.Contender == bench.LibXDPBare || r.Contender == bench.AsavieOwn
		switch {
		case r.Sent.Packets == 0 || r.Sent.Packets < r.Packets:
			t.Errorf("%s: sent %d, received %d: want sent > 0 and sent >= received", r.Contender, r.Sent.Packets, r.Packets)
		case ownProgram && r.XDPPackets != 0:
			// Its XDP program is its own: there is no counter of ours to read.
			t.Errorf("%s: XDP saw %d, want 0 (no counter on the peer's own program)", r.Contender, r.XDPPackets)
		case !ownProgram && r.XDPPackets < r.Packets:
			t.Errorf("%s: sent %d, XDP saw %d, received %d: want XDP >= received",
				r.Contender, r.Sent.Packets, r.XDPPackets, r.Packets)
		}
		wantCPUs := "1"
		switch {
		case r.Contender == bench.XDPDrop:
			wantCPUs = ""
		case runtime.NumCPU() < 2:
			wantCPUs = r.RxCPUs
		}
		if r.RxCPUs != wantCPUs {
			t.Errorf("%s: receiver on CPUs %q, want %q", r.Contender, r.RxCPUs, wantCPUs)
		}
		if r.Contender != bench.XDPDrop && r.Receiver["name"] == nil {
			t.Errorf("%s: receiver report %v has no name", r.Contender, r.Receiver)
		}
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	for _, name := range bench.Contenders() {
		if !strings.Contains(table.String(), name) {
			t.Errorf("table lacks %s", name)
		}
	}
	for _, s := range rep.Summary {
		if s.Rounds != 1 || s.Median <= 0 || s.OfDrop == nil {
			t.Errorf("summary %+v", s)
		}
	}
	for _, r := range rep.Ratios {
		if r.Value == nil || *r.Value <= 0 {
			t.Errorf("ratio %s not measured", r.Name())
		}
	}
}

// TestRunCancel cancels a run while a receiver runs and checks that Run
// returns soon, with the context's error and a clean system.
func TestRunCancel(t *testing.T) {
	labtest.RequireRoot(t, "builds a veth lab, loads XDP programs and runs AF_XDP receivers")
	dir := buildBinaries(t)
	o := shortOptions(t, dir)
	o.Only, o.Duration = []string{bench.LibXDPBare}, 20*time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(2*time.Second, cancel)
	start := time.Now()
	rep, err := bench.Run(ctx, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Run took %s to return after the cancel at 2s", took)
	}
	if rep == nil {
		t.Fatal("no report after cancel")
	}
	checkGone(t, rep.Env.Lab, dir)
	fmt.Fprint(testLog{t}, "cancelled cleanly\n")
}
