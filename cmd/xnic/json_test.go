package main

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/engine/stack"
	"github.com/xnic/xnic/flows/replay"
)

// snakeKey is the form of every key in xnic's JSON output.
var snakeKey = regexp.MustCompile(`^[a-z0-9_]+$`)

var (
	marshalerType     = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	textMarshalerType = reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem()
)

// checkJSONType reports every key encoding/json would write for a value of
// type t that is not snake_case, with the path to it. Types with their own
// MarshalJSON are checked by encoding a zero value (and must produce
// snake_case keys themselves).
func checkJSONType(t *testing.T, typ reflect.Type, path string, seen map[reflect.Type]bool) {
	t.Helper()
	if seen[typ] {
		return
	}
	seen[typ] = true
	if typ.Implements(marshalerType) || reflect.PointerTo(typ).Implements(marshalerType) {
		b, err := json.Marshal(reflect.New(typ).Interface())
		if err != nil {
			t.Errorf("%s: marshal %s: %v", path, typ, err)
			return
		}
		checkKeys(t, path, b)
		return
	}
	if typ.Implements(textMarshalerType) || reflect.PointerTo(typ).Implements(textMarshalerType) {
		return // a string
	}
	switch typ.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		checkJSONType(t, typ.Elem(), path+"[]", seen)
	case reflect.Map:
		checkJSONType(t, typ.Elem(), path+"{}", seen)
	case reflect.Struct:
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" || (!f.IsExported() && !f.Anonymous) {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					checkJSONType(t, ft, path, seen)
					continue
				}
			}
			if name == "" {
				name = f.Name
			}
			if !snakeKey.MatchString(name) {
				t.Errorf("%s.%s: key %q is not snake_case (%s.%s)", path, name, name, typ, f.Name)
			}
			checkJSONType(t, f.Type, path+"."+name, seen)
		}
	}
}

// checkKeys reports every object key in the JSON document b that is not
// snake_case.
func checkKeys(t *testing.T, path string, b []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Errorf("%s: %v in %s", path, err, b)
		return
	}
	walkKeys(t, path, v)
}

func walkKeys(t *testing.T, path string, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if !snakeKey.MatchString(k) {
				t.Errorf("%s: key %q is not snake_case", path, k)
			}
			walkKeys(t, path+"."+k, x)
		}
	case []any:
		for _, x := range v {
			walkKeys(t, path+"[]", x)
		}
	}
}

// decodeAll reads every JSON value on stdout: anything else there fails.
// It returns the values.
func decodeAll(t *testing.T, what, stdout string) []any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	var vals []any
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: stdout is not a stream of JSON values: %v\n%s", what, err, stdout)
		}
		vals = append(vals, v)
	}
	// One compact value per line.
	for _, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		if stdout != "" && !json.Valid([]byte(line)) {
			t.Errorf("%s: stdout line %q is not one JSON value", what, line)
		}
	}
	if len(bytes.TrimSpace([]byte(stdout))) > 0 && len(vals) == 0 {
		t.Fatalf("%s: no JSON on stdout: %q", what, stdout)
	}
	for _, v := range vals {
		walkKeys(t, what, v)
	}
	return vals
}

// TestJSONTypesSnakeCase checks the types every --json output is made of,
// including those only a running engine or a lab fills in: every key is
// snake_case.
func TestJSONTypesSnakeCase(t *testing.T) {
	for name, v := range map[string]any{
		"maps":             []pinnedMap{},
		"stats":            pinnedStats{},
		"stats.xsk":        statsJSON{},
		"stats --interval": statsLive{},
		"stats --top":      connsJSON{},
		"stats --classes":  []engine.ClassStats{},
		"stats --guests":   []engine.GuestStats{},
		"migrate":          engine.Migration{},
		"rx":               rxResult{},
		"rx interval":      rxTick{},
		"gen":              genResult{},
		"gen interval":     genTick{},
		"run":              runReport{},
		"run interval":     runTick{},
		"serve":            serveReport{},
		"serve interval":   serveTick{},
		"status":           statusReport{},
		"clean":            cleanReport{},
		"config check":     configCheck{},
		"lab status":       lab.Status{},
		"lab down":         labDown{},
		"steer counters":   bpf.SteerStats{},
		"slot counters":    bpf.SlotStats{},
		"guest stack":      stack.Stats{},
		"pinned":           bpf.PinnedStats{},
		"control reply":    engine.ControlReply{},
		"replay":           replay.Report{},
		"version":          versionJSON{},
	} {
		checkJSONType(t, reflect.TypeOf(v), name, map[reflect.Type]bool{})
	}
}

// TestJSONContract runs every command whose --json needs no engine and no
// lab, as xnic does: stdout must be JSON values and nothing else, with
// snake_case keys, and an empty result [] or {}. A failing command prints
// its error as text on stderr, nothing on stdout, and exits non-zero.
// (rx, gen, run, serve, lab, migrate and stats of a running engine are run
// by the lab tests in tests/; their types are checked above.)
func TestJSONContract(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "pins") // no engine ever pinned here
	ctl := filepath.Join(dir, "engine.sock")
	pcap := filepath.Join(dir, "train.pcap")
	bulkTrain(t, pcap, 8, 1448)
	for _, c := range []struct {
		args []string
		// check looks at the decoded values.
		check func(t *testing.T, vals []any)
	}{
		{[]string{"maps", "--pin-dir", empty, "--json"}, func(t *testing.T, vals []any) {
			if l, ok := vals[0].([]any); len(vals) != 1 || !ok || len(l) != 0 {
				t.Errorf("nothing pinned: want one [], got %v", vals)
			}
		}},
		{[]string{"version", "--json"}, func(t *testing.T, vals []any) {
			if m, ok := vals[0].(map[string]any); len(vals) != 1 || !ok || m["go"] != runtime.Version() {
				t.Errorf("want one object with go %q, got %v", runtime.Version(), vals)
			}
		}},
		{[]string{"status", "--pin-dir", empty, "--ctl", ctl, "--json"}, func(t *testing.T, vals []any) {
			m, ok := vals[0].(map[string]any)
			if len(vals) != 1 || !ok {
				t.Fatalf("want one object, got %v", vals)
			}
			if _, ok := m["ports"].([]any); !ok {
				t.Errorf("ports is %v, want a list", m["ports"])
			}
		}},
		{[]string{"config", "check", "--json", "../../examples/one-port.yaml", "../../examples/serve.yaml"}, func(t *testing.T, vals []any) {
			if len(vals) != 2 {
				t.Fatalf("two files: want two objects, got %v", vals)
			}
			for _, v := range vals {
				if m, ok := v.(map[string]any); !ok || m["ok"] != true {
					t.Errorf("want ok: true, got %v", v)
				}
			}
		}},
		{[]string{"replay", "--in", pcap, "--out", filepath.Join(dir, "out.pcap"), "--stage", "gro", "--json"}, func(t *testing.T, vals []any) {
			if m, ok := vals[0].(map[string]any); len(vals) != 1 || !ok || m["frames_in"] != 8.0 {
				t.Errorf("want one object with frames_in 8, got %v", vals)
			}
		}},
	} {
		what := strings.Join(c.args, " ")
		stdout, stderr, code := xnicRun(t, c.args...)
		if code != 0 {
			t.Errorf("xnic %s: exit %d\n%s", what, code, stderr)
			continue
		}
		vals := decodeAll(t, what, stdout)
		if len(vals) == 0 {
			t.Errorf("xnic %s: nothing on stdout", what)
			continue
		}
		c.check(t, vals)
	}

	// Errors are text on stderr, with nothing on stdout.
	for _, args := range [][]string{
		{"stats", "--pin-dir", empty, "--ctl", ctl, "--json"},
		{"stats", "--classes", "--ctl", ctl, "--json"},
		{"config", "check", "--json"},
		{"lab", "status", "--name", "xnicnosuchlab", "--json"},
	} {
		what := strings.Join(args, " ")
		stdout, stderr, code := xnicRun(t, args...)
		if code == 0 || stdout != "" || !strings.HasPrefix(stderr, "xnic ") && !strings.HasPrefix(stderr, "usage: xnic ") {
			t.Errorf("xnic %s: exit %d, stdout %q, stderr %q; want an error on stderr only", what, code, stdout, stderr)
		}
	}
}

// TestStatsIntervalJSON runs `xnic stats --interval D --json` on maps a
// steering program pinned (no engine, no traffic): one interval object per
// D while it runs, a summary object after Ctrl-C, with the counters under
// their BTF names.
func TestStatsIntervalJSON(t *testing.T) {
	labtest.RequireRoot(t, "load and pin the steering program")
	root, err := os.MkdirTemp("/sys/fs/bpf", "xnic-jsontest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	st, err := bpf.LoadSteer(bpf.DefaultSteerOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Pin(filepath.Join(root, "xjtest0")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 550*time.Millisecond)
	defer cancel()
	stdout, stderr, code := xnicRunCtx(t, ctx, "stats", "--pin-dir", root, "--ctl", filepath.Join(root, "no.sock"),
		"--interval", "200ms", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	vals := decodeAll(t, "stats --interval", stdout)
	if len(vals) < 2 || len(vals) > 3 {
		t.Fatalf("550ms at 200ms: want 1 or 2 intervals and a summary, got %d values:\n%s", len(vals), stdout)
	}
	for i, v := range vals {
		m, _ := v.(map[string]any)
		want := map[bool]string{true: "summary", false: "interval"}[i == len(vals)-1]
		if m["type"] != want {
			t.Errorf("line %d: type %v, want %s", i+1, m["type"], want)
		}
		ports, _ := m["ports"].([]any)
		if len(ports) != 1 {
			t.Fatalf("line %d: ports %v, want one", i+1, m["ports"])
		}
		p := ports[0].(map[string]any)
		total, _ := p["total"].(map[string]any)
		if p["port"] != "xjtest0" || total["rx_packets"] != 0.0 || total["pass_non_ip"] != 0.0 || total["redirected_class0"] != 0.0 {
			t.Errorf("line %d: port %v total %v; want xjtest0 with rx_packets, pass_non_ip, redirected_class0 0", i+1, p["port"], total)
		}
	}
}

// TestLabJSON: lab up, status and down with --json print one object each
// on stdout and their text, if any, on stderr.
func TestLabJSON(t *testing.T) {
	labtest.HoldSlot(t)
	name := lab.RandomName(labtest.Prefix)
	t.Cleanup(func() { (&lab.Lab{Name: name, Netns: lab.NetnsName(name)}).Down() })
	one := func(args ...string) map[string]any {
		t.Helper()
		what := strings.Join(args, " ")
		stdout, stderr, code := xnicRun(t, args...)
		if code != 0 {
			t.Fatalf("xnic %s: exit %d\n%s", what, code, stderr)
		}
		vals := decodeAll(t, what, stdout)
		m, ok := vals[0].(map[string]any)
		if len(vals) != 1 || !ok {
			t.Fatalf("xnic %s: want one object, got %s", what, stdout)
		}
		return m
	}
	for _, m := range []map[string]any{
		one("lab", "up", "--name", name, "--ports", "1", "--no-ipv6", "--json"),
		one("lab", "status", "--name", name, "--json"),
	} {
		ports, _ := m["ports"].([]any)
		if m["name"] != name || len(ports) != 1 {
			t.Fatalf("lab %s: want name %s and one port, got %v", name, name, m)
		}
		host, _ := ports[0].(map[string]any)["host"].(map[string]any)
		mac, _ := host["mac"].(string)
		if host["name"] != name+"0" || len(mac) != 17 {
			t.Errorf("port 0 host end: %v, want %s0 with a MAC as a string", host, name)
		}
		if _, ok := m["bridge"]; ok {
			t.Errorf("a lab without --peer-bridge has a bridge: %v", m)
		}
	}
	if m := one("lab", "down", "--name", name, "--json"); m["name"] != name || m["removed"] != true {
		t.Errorf("lab down: %v, want removed", m)
	}
	if m := one("lab", "down", "--name", name, "--json"); m["removed"] != false {
		t.Errorf("lab down of no lab: %v, want removed false", m)
	}
}
