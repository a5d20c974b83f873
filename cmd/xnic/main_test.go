package main

import (
	"context"
	"io"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// xnicRun runs xnicMain on args and returns what it printed and its exit
// status.
func xnicRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return xnicRunCtx(t, context.Background(), args...)
}

// xnicRunCtx is xnicRun with a context: its end is Ctrl-C.
func xnicRunCtx(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	grab := func(f **os.File) func() string {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		old := *f
		*f = w
		done := make(chan string)
		go func() {
			b, _ := io.ReadAll(r)
			done <- string(b)
		}()
		return func() string {
			*f = old
			w.Close()
			s := <-done
			r.Close()
			return s
		}
	}
	outDone, errDone := grab(&os.Stdout), grab(&os.Stderr)
	code = xnicMain(ctx, args)
	return outDone(), errDone(), code
}

// Every command, as the user types it before its flags.
var allCommands = [][]string{
	{"run"}, {"serve"}, {"rx"}, {"gen"}, {"demo"}, {"maps"}, {"stats"}, {"migrate"},
	{"replay"}, {"status"}, {"clean"}, {"version"}, {"lab", "up"}, {"lab", "down"}, {"lab", "status"},
	{"bench"}, {"bench", "conns"}, {"bench", "tcp"}, {"bench", "latency"}, {"bench", "steer-prog"},
	{"bench", "migrate"}, {"bench", "soak"}, {"bench", "qos"}, {"bench", "offload"},
}

// TestCLIStrayArgument: a positional argument a command does not take is a
// usage error (exit 2) that names the command and the argument, found
// before the command does anything.
func TestCLIStrayArgument(t *testing.T) {
	for _, cmd := range allCommands {
		_, stderr, code := xnicRun(t, append(append([]string{}, cmd...), "stray")...)
		want := "xnic " + strings.Join(cmd, " ") + `: unexpected argument "stray"`
		if code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("xnic %s stray: exit %d, stderr %q; want 2 and %q", strings.Join(cmd, " "), code, stderr, want)
		}
	}
}

// argName is a flag line of PrintDefaults whose argument name is taken from
// backquotes in the usage: "-ctl xnic".
var argName = regexp.MustCompile(`(?m)^  -[a-z-]+ xnic`)

// TestCLIHelp: -h exits 0 and prints the command's usage everywhere, and
// `xnic help CMD` prints the same; no usage renders a backquoted word as
// the flag's argument name.
func TestCLIHelp(t *testing.T) {
	for _, cmd := range append(allCommands, []string{"lab"}, []string{"config"}, []string{"config", "check"}) {
		_, stderr, code := xnicRun(t, append(append([]string{}, cmd...), "-h")...)
		if code != 0 || !strings.Contains(stderr, "usage: xnic "+cmd[0]) {
			t.Errorf("xnic %s -h: exit %d, stderr %q; want 0 and the usage", strings.Join(cmd, " "), code, stderr)
		}
		if m := argName.FindString(stderr); m != "" {
			t.Errorf("xnic %s -h: a usage string's backquotes became an argument name: %q", strings.Join(cmd, " "), m)
		}
	}
	_, stderr, code := xnicRun(t, "help", "run")
	if code != 0 || !strings.Contains(stderr, "usage: xnic run --config") || !strings.Contains(stderr, "-log-format") {
		t.Errorf("xnic help run: exit %d, stderr %q; want run's usage", code, stderr)
	}
	if _, stderr, code := xnicRun(t, "help"); code != 0 || !strings.Contains(stderr, "commands:") || !strings.Contains(stderr, "status") {
		t.Errorf("xnic help: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code := xnicRun(t, "help", "nosuch"); code != 2 || !strings.Contains(stderr, `unknown command "nosuch"`) {
		t.Errorf("xnic help nosuch: exit %d, stderr %q", code, stderr)
	}
	if _, _, code := xnicRun(t); code != 2 {
		t.Errorf("xnic: exit %d, want 2", code)
	}
}

// TestCLIErrorsNameCommand: a missing or bad flag value and an unknown flag
// are usage errors printed after the command's name.
func TestCLIErrorsNameCommand(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run"}, "xnic run: --config: required\n"},
		{[]string{"serve", "--config", "x.yaml", "--log-level", "loud"}, "xnic serve: --log-level: want debug, info, warn or error"},
		{[]string{"rx", "--iface", "lo", "--log-format", "xml"}, "xnic rx: --log-format: want text or json"},
		{[]string{"rx", "--bogus"}, "xnic rx: flag provided but not defined: -bogus"},
		{[]string{"config", "check"}, "xnic config: check: no FILE given"},
		{[]string{"bench", "migrate", "--reps", "0"}, "xnic bench: --reps:"},
	} {
		_, stderr, code := xnicRun(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("xnic %s: exit %d, stderr %q; want 2 and %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
}

// TestCLIVersion: `xnic version` and `xnic --version` print the module
// version, the VCS revision ("unknown" without VCS stamping) and the Go
// version the binary was built with.
func TestCLIVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		stdout, stderr, code := xnicRun(t, args...)
		lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
		if code != 0 || stderr != "" || len(lines) != 3 {
			t.Fatalf("xnic %s: exit %d, stdout %q, stderr %q", args[0], code, stdout, stderr)
		}
		if !regexp.MustCompile(`^xnic version \S+$`).MatchString(lines[0]) ||
			!regexp.MustCompile(`^revision ([0-9a-f]{40}(-dirty)?|unknown)$`).MatchString(lines[1]) ||
			lines[2] != "go "+runtime.Version() {
			t.Errorf("xnic %s: %q", args[0], stdout)
		}
	}
}
