package bench_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xnic/xnic/bench"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/engine/services"
)

func TestTCPOptionsValidate(t *testing.T) {
	valid := bench.DefaultTCPOptions()
	valid.Xnic, valid.GvisorXDP = "/x/xnic", "/x/gvisorxdp"
	if err := valid.Validate(); err != nil {
		t.Fatalf("defaults with binaries: %v", err)
	}
	for _, c := range []struct {
		field string
		mod   func(*bench.TCPOptions)
	}{
		{"rounds", func(o *bench.TCPOptions) { o.Rounds = 0 }},
		{"rounds", func(o *bench.TCPOptions) { o.Rounds = bench.MaxRounds + 1 }},
		{"duration", func(o *bench.TCPOptions) { o.Duration = bench.MinTCPDuration - 1 }},
		{"only", func(o *bench.TCPOptions) { o.Only = []string{"kernel", "bsd"} }},
		{"concurrency", func(o *bench.TCPOptions) { o.Concurrency = 0 }},
		{"concurrency", func(o *bench.TCPOptions) { o.Concurrency = bench.MaxConcurrency + 1 }},
		{"port", func(o *bench.TCPOptions) { o.Port = 0 }},
		{"port", func(o *bench.TCPOptions) { o.Port = 65536 }},
		{"client cpu", func(o *bench.TCPOptions) { o.ClientCPU = -2 }},
		{"server cpu", func(o *bench.TCPOptions) { o.ServerCPU = runtime.NumCPU() }},
		{"pause", func(o *bench.TCPOptions) { o.Pause = -time.Second }},
		{"xnic", func(o *bench.TCPOptions) { o.Xnic = "" }},
		{"xnic", func(o *bench.TCPOptions) { o.Xnic, o.Only = "", []string{bench.TCPKernel} }},
		{"gvisorxdp", func(o *bench.TCPOptions) { o.GvisorXDP = "" }},
		{"lab prefix", func(o *bench.TCPOptions) { o.LabPrefix = "toolong" }},
	} {
		o := valid
		c.mod(&o)
		err := o.Validate()
		var oe *bench.OptionError
		if !errors.As(err, &oe) || oe.Field != c.field || !errors.Is(err, bench.ErrInvalidOptions) {
			t.Errorf("%s: Validate() = %v, want an OptionError for %q", c.field, err, c.field)
		}
	}
	// What a contender does not need may be missing.
	o := valid
	o.Xnic, o.Only = "", []string{bench.TCPGvisorXDP}
	if err := o.Validate(); err != nil {
		t.Errorf("gvisor-xdp alone without xnic: %v", err)
	}
	o = valid
	o.GvisorXDP, o.Only = "", []string{bench.TCPKernel, bench.TCPXnicOff}
	if err := o.Validate(); err != nil {
		t.Errorf("kernel and xnic-off without gvisorxdp: %v", err)
	}
}

// buildTCPBinaries builds xnic and gvisorxdp into a temporary directory.
func buildTCPBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	for _, c := range []*exec.Cmd{
		exec.Command(goBin, "build", "-o", filepath.Join(dir, "xnic"), "../cmd/xnic"),
		exec.Command(goBin, "build", "-o", filepath.Join(dir, "gvisorxdp"), "./peers/gvisorxdp"),
	} {
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c.Args, " "), err, out)
		}
	}
	return dir
}

// TestRunTCP runs one short round of every contender and checks that each
// one moved data both ways with the right content, served requests, and
// that nothing is left behind.
func TestRunTCP(t *testing.T) {
	labtest.RequireRoot(t, "builds a veth lab, loads XDP programs and runs AF_XDP servers")
	dir := buildTCPBinaries(t)
	labtest.HoldSlot(t) // before the clock starts: see shortOptions
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := bench.DefaultTCPOptions()
	o.LabSlot = ""
	o.Rounds, o.Duration, o.Concurrency = 1, time.Second, 4
	o.Xnic, o.GvisorXDP = filepath.Join(dir, "xnic"), filepath.Join(dir, "gvisorxdp")
	o.Log = testLog{t}

	rep, err := bench.RunTCP(ctx, o)
	if rep != nil {
		var table bytes.Buffer
		rep.WriteTable(&table)
		t.Logf("\n%s", table.String())
	}
	if err != nil {
		t.Fatalf("RunTCP: %v", err)
	}
	checkGone(t, rep.Env.Lab, dir)
	if len(rep.Rounds) != 1 || len(rep.Rounds[0].Results) != len(bench.TCPContenders()) {
		t.Fatalf("rounds %+v, want one with every contender", rep.Rounds)
	}
	for i, r := range rep.Rounds[0].Results {
		if want := bench.TCPContenders()[i]; r.Contender != want {
			t.Errorf("result %d is %s, want %s", i, r.Contender, want)
		}
		if !r.OK() {
			t.Errorf("%s failed: %+v", r.Contender, r)
			continue
		}
		if r.Upload.Bytes <= 0 || r.Upload.SHA256 != services.PatternSHA256(r.Upload.Bytes) || r.Upload.Seconds < 1 {
			t.Errorf("%s: upload of %d bytes in %.3fs, server's sha256 %s", r.Contender, r.Upload.Bytes, r.Upload.Seconds, r.Upload.SHA256)
		}
		if r.Download.Bytes <= 0 || r.Download.BitsPerSec <= 0 || r.Download.Seconds < 1 {
			t.Errorf("%s: download of %d bytes in %.3fs", r.Contender, r.Download.Bytes, r.Download.Seconds)
		}
		if r.Requests.Requests <= 0 || r.Requests.PerSec <= 0 {
			t.Errorf("%s: %d requests", r.Contender, r.Requests.Requests)
		}
		// The server counted at least what the client did: every request,
		// the upload's bytes in and the download's bytes out.
		if r.Server == nil {
			t.Errorf("%s: no server report", r.Contender)
			continue
		}
		for key, min := range map[string]float64{
			"requests":  float64(r.Requests.Requests + 2),
			"bytes_in":  float64(r.Upload.Bytes),
			"bytes_out": float64(r.Download.Bytes),
		} {
			if got, ok := findNumber(r.Server, key); !ok || got < min {
				t.Errorf("%s: server report %s = %v (found %v), want at least %.0f: %v", r.Contender, key, got, ok, min, r.Server)
			}
		}
	}
	for _, s := range rep.Summary {
		if s.Upload.Rounds != 1 || s.Download.Rounds != 1 || s.Requests.Rounds != 1 {
			t.Errorf("summary %+v", s)
		}
	}
	for _, r := range rep.Ratios {
		if r.Value == nil || *r.Value <= 0 {
			t.Errorf("ratio %s not measured", r.Name())
		}
	}
}

// findNumber finds key anywhere in a decoded JSON object (xnic serve nests
// its counters per guest) and returns the first number under it.
func findNumber(v any, key string) (float64, bool) {
	switch x := v.(type) {
	case map[string]any:
		if n, ok := x[key].(float64); ok {
			return n, true
		}
		for _, e := range x {
			if n, ok := findNumber(e, key); ok {
				return n, true
			}
		}
	case []any:
		for _, e := range x {
			if n, ok := findNumber(e, key); ok {
				return n, true
			}
		}
	}
	return 0, false
}
