package benchcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xnic/xnic/bench/offloadbench"
	"github.com/xnic/xnic/internal/cli"
)

// captureOutput runs f with os.Stdout and os.Stderr redirected into pipes
// and returns what it wrote to each.
func captureOutput(t *testing.T, f func() error) (stdout, stderr string, err error) {
	t.Helper()
	oldOut, oldErr := os.Stdout, os.Stderr
	outR, outW, perr := os.Pipe()
	if perr != nil {
		t.Fatal(perr)
	}
	errR, errW, perr := os.Pipe()
	if perr != nil {
		t.Fatal(perr)
	}
	read := func(r *os.File) <-chan string {
		c := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(r)
			r.Close()
			c <- string(b)
		}()
		return c
	}
	outC, errC := read(outR), read(errR)
	os.Stdout, os.Stderr = outW, errW
	err = f()
	os.Stdout, os.Stderr = oldOut, oldErr
	outW.Close()
	errW.Close()
	return <-outC, <-errC, err
}

// TestBenchOffloadNoRx runs the offload stages alone, as an unprivileged
// user would: a table of eight rows without ratios, and the JSON report.
func TestBenchOffloadNoRx(t *testing.T) {
	js := filepath.Join(t.TempDir(), "offload.json")
	stdout, stderr, err := captureOutput(t, func() error {
		return Run(context.Background(), []string{"offload", "--no-rx", "--rounds", "1", "--duration", "50ms", "--cpu", "-1", "-o", js})
	})
	if err != nil {
		t.Fatalf("bench offload: %v\n%s", err, stderr)
	}
	if !strings.HasPrefix(stdout, "xnic bench offload: ") || !strings.Contains(stdout, "Linux ") {
		t.Errorf("no date, machine and kernel line at the top:\n%s", stdout)
	}
	var names []string
	for _, l := range strings.Split(stdout, "\n") {
		if f := strings.Fields(l); len(f) == 7 && (f[0] == "gro" || f[0] == "gso") {
			names = append(names, strings.Join(f[:3], " "))
		}
	}
	if len(names) != 8 || names[0] != "gro ipv4 verify+full" || names[7] != "gso ipv6 partial" {
		t.Errorf("table rows %q:\n%s", names, stdout)
	}
	if strings.Contains(stdout, "x raw") || strings.Contains(stdout, "target") {
		t.Errorf("ratios without a raw rate:\n%s", stdout)
	}
	if n := strings.Count(stderr, "round 1/1 "); n != 8 {
		t.Errorf("%d progress lines, want 8:\n%s", n, stderr)
	}

	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Date    string               `json:"date"`
		Options offloadbench.Options `json:"options"`
		Receive json.RawMessage      `json:"receive"`
		Rows    []offloadbench.Row   `json:"rows"`
		Ratios  []offloadbench.Ratio `json:"ratios"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, b)
	}
	if len(rep.Rows) != 8 || rep.Options.Rounds != 1 || rep.Options.CPU != -1 || rep.Receive != nil || rep.Ratios != nil || rep.Date == "" {
		t.Fatalf("json report: %d rows, options %+v, receive %s, %d ratios", len(rep.Rows), rep.Options, rep.Receive, len(rep.Ratios))
	}
	for _, r := range rep.Rows {
		if !(r.MsegPerSec > 0) || r.Rounds != 1 {
			t.Errorf("%s: %+v", r.Name(), r)
		}
	}
}

// TestBenchOffloadBadFlags: a bad value is a usage error naming its flag,
// found before anything runs.
func TestBenchOffloadBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--rounds", "0"}, "--rounds"},
		{[]string{"--duration", "0s"}, "--duration"},
		{[]string{"--cpu", "-2"}, "--cpu"},
		{[]string{"--batch", "1000"}, "--batch"},
		{[]string{"--no-rx", "extra"}, "unexpected argument \"extra\""},
		// The receive benchmark's own limit: its window is at least 100ms.
		{[]string{"--duration", "50ms"}, "--duration"},
	} {
		_, stderr, err := captureOutput(t, func() error {
			return Run(context.Background(), append([]string{"offload"}, c.args...))
		})
		if os.Geteuid() != 0 && c.args[0] == "--duration" && c.args[1] == "50ms" {
			// Unprivileged, the root check comes first.
			if err == nil || !strings.Contains(err.Error(), "--no-rx") {
				t.Errorf("%v: %v, want the root error", c.args, err)
			}
			continue
		}
		if !errors.Is(err, cli.ErrUsage) || !strings.Contains(stderr+fmt.Sprint(err), c.flag+":") {
			t.Errorf("%v: %v, stderr %q; want a usage error naming %s", c.args, err, stderr, c.flag)
		}
	}
}
