package cli

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestParse: a positional argument is a usage error naming it, an unknown
// flag is printed with the command's name, -h is flag.ErrHelp, and an
// alias sets its flag's value.
func TestParse(t *testing.T) {
	mk := func() (*flag.FlagSet, *string, *bytes.Buffer) {
		fs := NewFlags("stats", "[--iface IFACE]")
		var out bytes.Buffer
		fs.SetOutput(&out)
		v := fs.String("iface", "", "a port")
		Alias(fs, "port", "iface")
		return fs, v, &out
	}
	fs, v, _ := mk()
	if err := Parse(fs, []string{"--port", "xnic1"}); err != nil || *v != "xnic1" {
		t.Errorf("--port xnic1: %v, iface %q", err, *v)
	}
	fs, _, _ = mk()
	err := Parse(fs, []string{"--iface", "a", "stray"})
	var ue *UsageError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUsage) || err.Error() != `unexpected argument "stray": flags only` {
		t.Errorf("stray argument: %v", err)
	}
	fs, _, out := mk()
	if err := Parse(fs, []string{"--bogus"}); err != ErrUsage || !strings.HasPrefix(out.String(), "xnic stats: flag provided but not defined: -bogus\nusage: xnic stats [--iface IFACE]") {
		t.Errorf("--bogus: %v, output %q", err, out)
	}
	fs, _, out = mk()
	if err := Parse(fs, []string{"-h"}); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "old spelling of --iface") {
		t.Errorf("-h: %v, output %q", err, out)
	}
	fs, _, _ = mk()
	if err := ParseArgs(fs, []string{"a", "b"}); err != nil || fs.NArg() != 2 {
		t.Errorf("ParseArgs: %v, %d args", err, fs.NArg())
	}
	if err := FlagError("iface", "want %s", "a name"); !errors.Is(err, ErrUsage) || err.Error() != "--iface: want a name" {
		t.Errorf("FlagError: %v", err)
	}
}
