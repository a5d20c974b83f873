package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/xnic/xnic/internal/cli"
)

// TestLogFlags: --log-format json --log-level warn gives a default logger
// that drops info and writes warnings as one JSON object per line on
// stderr.
func TestLogFlags(t *testing.T) {
	old := slog.Default()
	t.Cleanup(func() { slog.SetDefault(old) })
	fs := cli.NewFlags("serve", "")
	lf := addLogFlags(fs)
	if err := cli.Parse(fs, []string{"--log-format", "json", "--log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	l, err := lf.logger()
	os.Stderr = stderr
	if err != nil {
		t.Fatal(err)
	}
	l.Info("not shown")
	slog.Warn("port down", "port", "xnic0")
	w.Close()
	b, _ := io.ReadAll(r)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var rec map[string]any
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &rec) != nil || rec["level"] != "WARN" || rec["msg"] != "port down" || rec["port"] != "xnic0" {
		t.Fatalf("log output %q; want one JSON warning", b)
	}
}
