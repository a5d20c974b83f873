package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xnic/xnic/internal/cli"
)

func configOut(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = configCmd(args, &o, &e)
	return o.String(), e.String(), err
}

// TestConfigCheckExamples: `xnic config check` passes every example, with
// a summary naming its ports, guests and classes, as text and as JSON.
func TestConfigCheckExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("examples: %v %v", files, err)
	}
	want := map[string]string{
		"one-port.yaml": "1 port (xnic0) on queues 0, 1 guest (web), 0 classes",
		"failover.yaml": "2 ports (xnic0, xnic1) on queues 0, 1 guest (web), 0 classes, 1 service",
		"classes.yaml":  "1 port (xnic0) on queues 0, 1 guest (web), 3 classes (interactive, storage, bulk)",
		"serve.yaml":    "1 port (xnic0) on queues 0, 2 guests (web, sink), 0 classes, 4 services",
	}
	for _, f := range files {
		out, errOut, err := configOut("check", f)
		if err != nil || errOut != "" {
			t.Errorf("config check %s: %v\n%s", f, err, errOut)
			continue
		}
		line := f + ": ok: " + want[filepath.Base(f)] + "\n"
		if w, ok := want[filepath.Base(f)]; ok && out != line || !strings.HasPrefix(out, f+": ok: ") {
			t.Errorf("config check %s: %q, want %q", f, out, f+": ok: "+w)
		}
	}
	// Several files, --json after them: one object per file on stdout.
	out, _, err := configOut(append(append([]string{"check"}, files...), "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(files) {
		t.Fatalf("--json: %d lines for %d files:\n%s", len(lines), len(files), out)
	}
	for i, l := range lines {
		var c configCheck
		if err := json.Unmarshal([]byte(l), &c); err != nil || !c.OK || c.File != files[i] || len(c.Ports) == 0 || len(c.Guests) == 0 || c.Classes == nil {
			t.Errorf("--json line %d: %v %+v", i, err, c)
		}
	}
}

// TestConfigCheckErrors: a bad file fails with its error as
// file:line: path: message, in text and JSON; usage mistakes exit 2.
func TestConfigCheckErrors(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile("../../examples/one-port.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, bytes.Replace(good, []byte("queues: [0]"), []byte("queues: {first: 0}"), 1), 0o644)
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, bytes.Replace(good, []byte("ipv6:"), []byte("ip6:"), 1), 0o644)

	out, errOut, err := configOut("check", bad)
	if !errors.Is(err, cli.ErrReported) || out != "" || errOut != bad+":7: ports[0].queues: want a list, got a mapping\n" {
		t.Errorf("bad file: %v, stdout %q, stderr %q", err, out, errOut)
	}
	_, errOut, err = configOut("check", typo)
	if !errors.Is(err, cli.ErrReported) || !strings.HasPrefix(errOut, typo+":12: guests[0].ip6: unknown field (known: name, port, ports,") {
		t.Errorf("misspelt key: %v, stderr %q", err, errOut)
	}
	out, _, err = configOut("check", "--json", bad, "../../examples/one-port.yaml")
	if !errors.Is(err, cli.ErrReported) {
		t.Errorf("--json with a bad file: %v", err)
	}
	var res []configCheck
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var c configCheck
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("--json: %v: %q", err, l)
		}
		res = append(res, c)
	}
	if len(res) != 2 || res[0].OK || res[0].Line != 7 || res[0].Field != "ports[0].queues" || res[0].Ports == nil || !res[1].OK {
		t.Errorf("--json: %+v", res)
	}
	for _, args := range [][]string{{}, {"lint", bad}, {"check"}, {"check", "--nope", bad}} {
		if _, _, err := configOut(args...); !errors.Is(err, cli.ErrUsage) {
			t.Errorf("config %q: %v, want a usage error", args, err)
		}
	}
}
