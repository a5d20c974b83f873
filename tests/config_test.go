package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCLIConfigCheck: the binary's exit codes for xnic config check: 0 for
// the examples, 1 with the error as file:line: path: message for a bad
// file, 2 for a usage mistake.
func TestCLIConfigCheck(t *testing.T) {
	examples, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(examples) < 4 {
		t.Fatalf("examples: %v %v", examples, err)
	}
	r := runXnic(t, 20*time.Second, append([]string{"config", "check"}, examples...)...)
	if r.code != 0 || strings.Count(r.stdout, ": ok: ") != len(examples) {
		t.Errorf("config check examples: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("ports:\n  - iface: [xnic0]\n"), 0o644)
	r = runXnic(t, 20*time.Second, "config", "check", bad)
	if r.code != 1 || r.stderr != bad+":2: ports[0].iface: want a single value, got a list\n" {
		t.Errorf("config check bad.yaml: exit %d, stderr %q", r.code, r.stderr)
	}
	if r = runXnic(t, 20*time.Second, "config", "check"); r.code != 2 {
		t.Errorf("config check with no file: exit %d", r.code)
	}
	if r = runXnic(t, 20*time.Second, "config", "check", "-h"); r.code != 0 {
		t.Errorf("config check -h: exit %d", r.code)
	}
}

// TestCLIRunWarnsIgnoredKeys: xnic run warns (a WARN log record) of the
// keys only xnic serve uses, naming their lines, before it starts
// anything (here it then fails on an interface that does not exist).
func TestCLIRunWarnsIgnoredKeys(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "run.yaml")
	os.WriteFile(cfg, []byte(`ports:
  - iface: xnicnosuch0
engine: {tso: false}
guests:
  - name: web
    ipv4: [198.18.0.10/24]
    services: [{kind: http}]
`), 0o644)
	r := runXnic(t, 20*time.Second, "run", "--config", cfg, "--duration", "1s", "--ctl", "")
	for _, want := range []string{
		`level=WARN msg="xnic run: ` + cfg + ":3: engine.tso: ignored by xnic run",
		`level=WARN msg="xnic run: ` + cfg + ":7: guests[0].services: ignored by xnic run: only xnic serve runs services",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("xnic run: stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if r.code == 0 {
		t.Errorf("xnic run on a missing interface: exit 0")
	}
}
