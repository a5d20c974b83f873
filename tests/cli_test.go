package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/engine/services"
)

var (
	buildOnce sync.Once
	xnicBin   string
	buildErr  error
	buildDir  string
)

// xnic builds the CLI once per test binary.
func xnic(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := mkdirTemp()
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		xnicBin = filepath.Join(dir, "xnic")
		out, err := exec.Command("go", "build", "-o", xnicBin, "../cmd/xnic").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("build xnic: %v", buildErr)
	}
	return xnicBin
}

type run struct {
	stdout, stderr string
	code           int
}

func runXnic(t *testing.T, timeout time.Duration, args ...string) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, xnic(t), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	r := run{stdout: o.String(), stderr: e.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("xnic %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// TestCLIBadInput: bad flags exit 2 with a message naming the flag, and
// change nothing.
func TestCLIBadInput(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"rx"}, "--iface"},
		{[]string{"rx", "--iface", "lo", "--ring", "1000"}, "--ring"},
		{[]string{"rx", "--iface", "lo", "--mode", "fast"}, "--bind-mode"},
		{[]string{"rx", "--iface", "lo", "--duration", "-1s"}, "--duration"},
		{[]string{"rx", "--iface", "lo", "--bogus"}, "bogus"},
		{[]string{"rx", "--iface", "lo", "--rules", "-1"}, "--rules"},
		{[]string{"run"}, "--config"},
		{[]string{"run", "--config", "/nonexistent.yaml"}, "nonexistent.yaml"},
		{[]string{"gen", "--iface", "x", "--mode", "pcap"}, "--mode"},
		{[]string{"gen", "--lab", "nosuchlab0"}, "nosuchlab0"},
		{[]string{"lab", "up", "--ports", "0"}, "ports"},
		{[]string{"lab", "sideways"}, "up|down|status"},
		{[]string{"nosuchcommand"}, "unknown command"},
		{[]string{"rx", "--iface", "lo", "--pipeline", "--window", "0"}, "--window"},
		{[]string{"rx", "--iface", "lo", "--pipeline", "--cache", "100"}, "--cache"},
		{[]string{"stats", "--top", "-3"}, "--top"},
		{[]string{"stats", "--conns", "-3"}, "--top"}, // the old spelling, kept for one release
		{[]string{"bench", "--pipe-cache", "3"}, "--pipe-cache"},
		{[]string{"bench", "conns", "--cache", "500"}, "--cache"},
		{[]string{"bench", "conns", "--model", "zipf"}, "--model"},
		{[]string{"bench", "tcp", "--concurrency", "0"}, "--concurrency"},
		{[]string{"bench", "tcp", "--only", "nginx"}, "--only"},
		{[]string{"serve", "--config", "x.yaml", "--gro", "maybe"}, "--gro"},
		{[]string{"replay", "--in", "a", "--out", "b", "--stage", "tso"}, "--stage"},
	}
	for _, c := range cases {
		r := runXnic(t, 20*time.Second, c.args...)
		if r.code == 0 {
			t.Errorf("xnic %s: exit 0, want an error", strings.Join(c.args, " "))
			continue
		}
		if !strings.Contains(r.stderr, c.want) {
			t.Errorf("xnic %s: stderr does not name %q:\n%s", strings.Join(c.args, " "), c.want, r.stderr)
		}
	}
	// A lab that failed validation left nothing behind.
	if _, err := lab.Open("xnic"); !errors.Is(err, lab.ErrNotFound) {
		t.Errorf("a rejected lab up left a lab: %v", err)
	}
}

// TestCLIBenchConns runs a small connection-processing curve and checks its
// JSON and its SVG: loads per packet fall to 1/(packets per connection in
// the window) with lookahead.
func TestCLIBenchConns(t *testing.T) {
	dir := t.TempDir()
	r := runXnic(t, 60*time.Second, "bench", "conns", "--conns", "16,1000", "--cache", "64", "--window", "1,64",
		"--packets", "65536", "--rounds", "1", "--json", dir+"/c.json", "--svg", dir+"/c.svg", "--quiet")
	if r.code != 0 {
		t.Fatalf("bench conns: exit %d\n%s", r.code, r.stderr)
	}
	var out struct {
		Rows []struct {
			Conns          int     `json:"conns"`
			Window         int     `json:"window"`
			LoadsPerPacket float64 `json:"loads_per_packet"`
			ExpectedLoads  float64 `json:"expected_loads_per_packet"`
			Mpps           float64 `json:"mpps"`
		} `json:"rows"`
	}
	b, err := os.ReadFile(dir + "/c.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.Rows) != 4 {
		t.Fatalf("bench conns json: %v, %d rows\n%s", err, len(out.Rows), b)
	}
	for _, row := range out.Rows {
		if row.Mpps <= 0 {
			t.Errorf("row %+v: no rate", row)
		}
		if row.Conns == 1000 && row.Window == 64 && (row.LoadsPerPacket > row.ExpectedLoads*1.01 || row.LoadsPerPacket < row.ExpectedLoads*0.8) {
			t.Errorf("N=1000 W=64: %.3f loads per packet, expected about %.3f", row.LoadsPerPacket, row.ExpectedLoads)
		}
	}
	svg, err := os.ReadFile(dir + "/c.svg")
	if err != nil || !strings.Contains(string(svg), "<svg") {
		t.Fatalf("bench conns svg: %v", err)
	}
}

// upLab brings up a lab (lab up --name NAME args...) in the lab slot and
// takes it down when the test ends, with the maps an engine pinned for its
// ports: an xnic rx killed by a failing test cannot remove them itself.
func upLab(t *testing.T, args ...string) string {
	t.Helper()
	labtest.HoldSlot(t)
	name := lab.RandomName(labtest.Prefix)
	if r := runXnic(t, 30*time.Second, append([]string{"lab", "up", "--name", name}, args...)...); r.code != 0 {
		t.Fatalf("lab up: %s", r.stderr)
	}
	t.Cleanup(func() {
		if l, err := lab.Open(name); err == nil {
			l.Down()
		}
		pins, _ := filepath.Glob(filepath.Join("/sys/fs/bpf/xnic", name+"*"))
		for _, dir := range pins {
			if err := os.RemoveAll(dir); err != nil {
				t.Errorf("remove pins %s: %v", dir, err)
			}
		}
	})
	return name
}

// rxReport is the summary object xnic rx --json ends with.
type rxReport struct {
	Type    string  `json:"type"`
	PPS     float64 `json:"pps"`
	Packets uint64  `json:"packets"`
	Steer   struct {
		Redirected uint64 `json:"redirected"`
		FlowHits   uint64 `json:"flow_hits"`
		RuleHits   uint64 `json:"rule_hits"`
	} `json:"steer"`
	XSK struct {
		RxDropped  uint64 `json:"rx_dropped"`
		RxRingFull uint64 `json:"rx_ring_full"`
	} `json:"xsk"`
}

func parseRxReport(t *testing.T, out string) rxReport {
	t.Helper()
	var res rxReport
	lines := jsonLines(t, "rx --json", out)
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil || res.Type != "summary" {
		t.Fatalf("rx --json: last line is not the summary object: %v\n%s", err, out)
	}
	return res
}

// jsonLines checks the JSON contract of a command's stdout: one JSON
// object per line and nothing else, the intervals first and the summary
// last. It returns the lines.
func jsonLines(t *testing.T, what, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i, l := range lines {
		var obj struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal([]byte(l), &obj); err != nil {
			t.Fatalf("%s: stdout line %d is not a JSON object: %v\n%s", what, i+1, err, out)
		}
		if want := map[bool]string{true: "summary", false: "interval"}[i == len(lines)-1]; obj.Type != want {
			t.Fatalf("%s: stdout line %d has type %q, want %q\n%s", what, i+1, obj.Type, want, out)
		}
	}
	return lines
}

// logLines checks the stderr of a command run with --log-format json:
// every line is one slog JSON record (time, level, msg), and the messages
// want are among them. It returns the records.
func logLines(t *testing.T, what, stderr string, want ...string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	msgs := map[string]bool{}
	for i, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("%s: stderr line %d is not JSON: %v\n%s", what, i+1, err, stderr)
		}
		msg, _ := rec["msg"].(string)
		if _, ok := rec["time"]; !ok || rec["level"] == nil || msg == "" {
			t.Fatalf("%s: stderr line %d is not a log record (time, level, msg):\n%s", what, i+1, l)
		}
		msgs[msg] = true
		recs = append(recs, rec)
	}
	for _, m := range want {
		if !msgs[m] {
			t.Errorf("%s: no log record %q on stderr:\n%s", what, m, stderr)
		}
	}
	return recs
}

// checkNoLoss: nothing redirected to the socket is lost silently: it was
// received, or the kernel counted it as dropped (ring full under overload).
func (res rxReport) checkNoLoss(t *testing.T) {
	t.Helper()
	if got := res.Packets + res.XSK.RxDropped + res.XSK.RxRingFull; got != res.Steer.Redirected {
		t.Fatalf("rx got %d and the kernel dropped %d+%d of the %d frames redirected to its socket",
			res.Packets, res.XSK.RxDropped, res.XSK.RxRingFull, res.Steer.Redirected)
	}
}

// TestCLILabRxFlows steers live frames on a lab through the exact flow
// table: xnic rx installs 10k rules and 20k flows (the fast table takes
// them), xnic gen sends those 20k flows, and every frame redirected to the
// socket must be a flow hit, none a rule hit.
func TestCLILabRxFlows(t *testing.T) {
	name := upLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rx := exec.CommandContext(ctx, xnic(t), "rx", "--iface", name+"0", "--duration", "4s", "--json", "--quiet",
		"--rules", "10000", "--flows", "20000")
	var rxOut bytes.Buffer
	rx.Stdout = &rxOut
	rxErr, err := rx.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := rx.Start(); err != nil {
		t.Fatal(err)
	}
	// Start the traffic when rx's window opens, after its set-up.
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(rxErr)
		var all strings.Builder
		sent := false
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if !sent && strings.HasPrefix(sc.Text(), "xnic rx: "+name+"0") {
				ready <- ""
				sent = true
			}
		}
		if !sent {
			ready <- all.String()
		}
	}()
	if msg := <-ready; msg != "" {
		rx.Wait()
		t.Fatalf("rx never opened its window:\n%s", msg)
	}
	maps := runXnic(t, 20*time.Second, "maps")
	if !strings.Contains(maps.stdout, "fast_flows") {
		t.Errorf("xnic maps during rx lacks fast_flows:\n%s%s", maps.stdout, maps.stderr)
	}
	// xnic stats counts the installed flows in both maps.
	stats := runXnic(t, 20*time.Second, "stats", "--port", name+"0", "--json")
	var ps []struct {
		Flows struct {
			Fast     int `json:"fast"`
			FastWays int `json:"fast_ways"`
			LRU      int `json:"lru"`
			LRUSize  int `json:"lru_size"`
		} `json:"flows"`
	}
	if err := json.Unmarshal([]byte(stats.stdout), &ps); err != nil || len(ps) != 1 {
		t.Fatalf("xnic stats --json: %v (exit %d)\n%s%s", err, stats.code, stats.stdout, stats.stderr)
	}
	if f := ps[0].Flows; f.Fast+f.LRU != 20000 || f.Fast < 19000 || f.FastWays != 131072 || f.LRUSize != 131072 {
		t.Errorf("xnic stats flows = %+v, want 20000 in all, nearly all in the fast table", f)
	}
	if human := runXnic(t, 20*time.Second, "stats", "--port", name+"0"); !strings.Contains(human.stdout, "exact flows") {
		t.Errorf("xnic stats lacks the exact flows line:\n%s", human.stdout)
	}
	g := runXnic(t, 20*time.Second, "gen", "--lab", name, "--duration", "2s", "--flows", "20000", "--json")
	if g.code != 0 {
		t.Fatalf("gen: %s", g.stderr)
	}
	if err := rx.Wait(); err != nil {
		t.Fatalf("rx: %v", err)
	}
	res := parseRxReport(t, rxOut.String())
	t.Logf("rx: %+v", res)
	if res.Steer.Redirected < 20000 {
		t.Fatalf("only %d frames redirected, fewer than the 20000 flows: %+v", res.Steer.Redirected, res)
	}
	if res.Steer.FlowHits != res.Steer.Redirected || res.Steer.RuleHits != 0 {
		t.Errorf("of %d frames redirected, %d were flow hits and %d rule hits; want all flow hits",
			res.Steer.Redirected, res.Steer.FlowHits, res.Steer.RuleHits)
	}
	res.checkNoLoss(t)
}

// TestCLILabRxGen drives the CLI as a user would: lab up, rx with --json
// while gen sends live frames, lab status, lab down.
func TestCLILabRxGen(t *testing.T) {
	name := upLab(t, "--ports", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rx := exec.CommandContext(ctx, xnic(t), "rx", "--iface", name+"1", "--duration", "3s", "--json")
	var rxOut, rxErr bytes.Buffer
	rx.Stdout, rx.Stderr = &rxOut, &rxErr
	if err := rx.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	st := runXnic(t, 20*time.Second, "lab", "status", "--name", name, "--json")
	// While rx runs its maps are pinned for bpftool and xnic maps/stats.
	maps := runXnic(t, 20*time.Second, "maps")
	pinDir := "/sys/fs/bpf/xnic/" + name + "1"
	for _, m := range []string{"xsks", "stats", "rules", "flows", pinDir} {
		if !strings.Contains(maps.stdout, m) {
			t.Errorf("xnic maps during rx lacks %q:\n%s%s", m, maps.stdout, maps.stderr)
		}
	}
	dump, err := exec.CommandContext(ctx, "bpftool", "map", "dump", "pinned", pinDir+"/stats").CombinedOutput()
	if err != nil || !strings.Contains(string(dump), "redirected") || !strings.Contains(string(dump), "rx_packets") {
		t.Errorf("bpftool map dump of the stats map shows no field names (%v):\n%.400s", err, dump)
	}
	g := runXnic(t, 20*time.Second, "gen", "--lab", name, "--port", "1", "--duration", "1s", "--flows", "8", "--json")
	if g.code != 0 {
		t.Fatalf("gen: %s", g.stderr)
	}
	stats := runXnic(t, 20*time.Second, "stats", "--port", name+"1", "--json")
	var ps []struct {
		Total struct {
			Redirected uint64 `json:"redirected"`
		} `json:"total"`
	}
	if err := json.Unmarshal([]byte(stats.stdout), &ps); err != nil || len(ps) != 1 || ps[0].Total.Redirected == 0 {
		t.Errorf("xnic stats --json after gen: %v %+v\n%s%s", err, ps, stats.stdout, stats.stderr)
	}
	if err := rx.Wait(); err != nil {
		t.Fatalf("rx: %v\n%s", err, rxErr.String())
	}
	res := parseRxReport(t, rxOut.String())
	if res.Packets == 0 || res.PPS <= 0 {
		t.Fatalf("rx received nothing from gen: %+v", res)
	}
	res.checkNoLoss(t)
	var gres struct{ Packets uint64 }
	glines := jsonLines(t, "gen --json", g.stdout)
	if err := json.Unmarshal([]byte(glines[len(glines)-1]), &gres); err != nil || gres.Packets < res.Packets {
		t.Fatalf("gen reported %d sent (%v), rx got %d", gres.Packets, err, res.Packets)
	}
	// While rx ran, status showed the program on port 1 and not on port 0.
	var status lab.Status
	if err := json.Unmarshal([]byte(st.stdout), &status); err != nil {
		t.Fatalf("lab status --json: %v\n%s", err, st.stdout)
	}
	if len(status.Ports) != 2 || status.Ports[0].Host.XDP.Attached || !status.Ports[1].Host.XDP.Attached {
		t.Fatalf("status during rx: want XDP on port 1 only: %+v", status.Ports)
	}
	if r := runXnic(t, 30*time.Second, "lab", "down", "--name", name); r.code != 0 {
		t.Fatalf("lab down: %s", r.stderr)
	}
	if _, err := lab.Open(name); !errors.Is(err, lab.ErrNotFound) {
		t.Fatalf("lab still there after down: %v", err)
	}
	// After rx exited without --pin, its pins are gone.
	if _, err := os.Stat(pinDir); !os.IsNotExist(err) {
		t.Errorf("rx left its pins at %s: %v", pinDir, err)
	}
}

// TestCLIPinKeepsRules: rx --pin leaves the maps pinned and a second run
// reuses them.
func TestCLIPinKeepsRules(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	dir := "/sys/fs/bpf/xnic/" + l.Ports[0].Host
	t.Cleanup(func() {
		os.RemoveAll(dir)
		os.Remove("/sys/fs/bpf/xnic") // only if empty: another engine may be running
	})
	for i := 0; i < 2; i++ {
		r := runXnic(t, 30*time.Second, "rx", "--iface", l.Ports[0].Host, "--duration", "300ms", "--pin", "--quiet")
		if r.code != 0 {
			t.Fatalf("rx --pin run %d: %s", i, r.stderr)
		}
		if _, err := os.Stat(dir + "/rules"); err != nil {
			t.Fatalf("rx --pin run %d left no pinned rules: %v", i, err)
		}
		if reused := strings.Contains(r.stderr, "reused"); reused != (i == 1) {
			t.Fatalf("rx --pin run %d: reused pinned maps %t, want %t:\n%s", i, reused, i == 1, r.stderr)
		}
	}
	st := runXnic(t, 20*time.Second, "stats", "--port", l.Ports[0].Host)
	if st.code != 0 || !strings.Contains(st.stdout, "port "+l.Ports[0].Host) {
		t.Fatalf("stats on kept pins: %s %s", st.stdout, st.stderr)
	}
}

// TestCLIDemo runs the demo briefly: it must receive traffic, audit clean
// and remove its lab.
func TestCLIDemo(t *testing.T) {
	labtest.HoldSlot(t)
	r := runXnic(t, 60*time.Second, "demo", "--duration", "2s")
	if r.code != 0 {
		t.Fatalf("demo failed: %s\n%s", r.stderr, r.stdout)
	}
	for _, want := range []string{"rx Mpps", "engine received", "frame audit: clean", "lab xnicdemo removed"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "engine received 0 ") {
		t.Errorf("demo received nothing:\n%s", r.stdout)
	}
	if _, err := lab.Open("xnicdemo"); !errors.Is(err, lab.ErrNotFound) {
		t.Fatalf("demo left its lab: %v", err)
	}
}

// TestCLIRunConfig: a bad config is refused with its line and field before
// anything is loaded; a good one runs a guest that receives its traffic.
func TestCLIRunConfig(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	dir := t.TempDir()
	good := "ports:\n  - iface: " + p.Host + "\nguests:\n  - name: web\n    ipv4: [198.18.0.10]\n    rules:\n      - {proto: udp, ports: 9}\n"
	bad := strings.Replace(good, "ports: 9", "ports: 9-1", 1)
	os.WriteFile(dir+"/good.yaml", []byte(good), 0o644)
	os.WriteFile(dir+"/bad.yaml", []byte(bad), 0o644)

	r := runXnic(t, 20*time.Second, "run", "--config", dir+"/bad.yaml", "--duration", "1s")
	if r.code == 0 || !strings.Contains(r.stderr, "bad.yaml:7: guests[0].rules[0].ports") {
		t.Fatalf("bad config: exit %d, stderr %q; want line 7 and the field named", r.code, r.stderr)
	}
	if out, _ := exec.Command("ip", "-o", "link", "show", p.Host).CombinedOutput(); strings.Contains(string(out), "xdp") {
		t.Fatalf("a refused config left an XDP program on %s", p.Host)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sock := dir + "/ctl.sock"
	// With --log-format json, stderr holds only log records; stdout only
	// the interval and summary objects.
	run := exec.CommandContext(ctx, xnic(t), "run", "--config", dir+"/good.yaml", "--duration", "4s", "--json", "--log-format", "json", "--ctl", sock)
	var out, errb bytes.Buffer
	run.Stdout, run.Stderr = &out, &errb
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	g := runXnic(t, 20*time.Second, "gen", "--lab", l.Name, "--count", "1000", "--dst-ip", "198.18.0.10", "--duration", "0")
	if g.code != 0 {
		t.Fatalf("gen: %s", g.stderr)
	}
	// The connection the engine tracked, from its control socket.
	cs := runXnic(t, 20*time.Second, "stats", "--top", "5", "--ctl", sock, "--json")
	var conns struct {
		Conns []struct {
			Flow      string `json:"flow"`
			Guest     uint32 `json:"guest"`
			PacketsIn uint64 `json:"packets_in"`
		} `json:"conns"`
		Pipeline struct {
			Packets uint64 `json:"packets"`
		} `json:"pipeline"`
		XSK map[string]uint64 `json:"xsk"` // issue 15: ring-full drops must show
	}
	if err := json.Unmarshal([]byte(cs.stdout), &conns); err != nil || cs.code != 0 {
		t.Fatalf("stats --top: exit %d, %v\n%s%s", cs.code, err, cs.stdout, cs.stderr)
	}
	if _, ok := conns.XSK["rx_ring_full"]; !ok {
		t.Fatalf("stats --top --json has no xsk rx_ring_full:\n%s", cs.stdout)
	}
	// --conns, the old spelling of --top, still works for one release.
	human := runXnic(t, 20*time.Second, "stats", "--conns", "5", "--ctl", sock)
	if !strings.Contains(human.stdout, "198.18.0.10:9") || !strings.Contains(human.stdout, "loads") ||
		!strings.Contains(human.stdout, "rx ring full") {
		t.Fatalf("stats --conns (human) lacks the flow, the pipeline line or the XSK drops:\n%s", human.stdout)
	}
	if err := run.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	lines := jsonLines(t, "run --json", out.String())
	if len(lines) < 2 {
		t.Fatalf("run --json for 4s printed no interval line:\n%s", out.String())
	}
	for _, rec := range logLines(t, "run --log-format json", errb.String(), "guest attached", "xnic run: running", "guest summary") {
		if rec["msg"] == "guest attached" && (rec["guest"] != "web" || rec["port"] != p.Host) {
			t.Fatalf("run: guest attached record %v; want guest web on %s", rec, p.Host)
		}
	}
	var rep struct {
		Guests []struct {
			Name      string `json:"name"`
			RxPackets uint64 `json:"rx_packets"`
		} `json:"guests"`
	}
	err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep)
	gs := rep.Guests
	if err != nil || len(gs) != 1 {
		t.Fatalf("run --json: %v\n%s", err, out.String())
	}
	if gs[0].Name != "web" || gs[0].RxPackets == 0 || gs[0].RxPackets > 1000 {
		t.Fatalf("guest web received %d of 1000 frames sent to it", gs[0].RxPackets)
	}
	if len(conns.Conns) != 1 || conns.Conns[0].PacketsIn != gs[0].RxPackets || conns.Conns[0].Guest == 0 ||
		!strings.Contains(conns.Conns[0].Flow, "198.18.0.10:9") {
		t.Fatalf("stats --top: %+v; want the one flow to the guest with the %d packets it received", conns.Conns, gs[0].RxPackets)
	}
	if r := runXnic(t, 20*time.Second, "stats", "--top", "5", "--ctl", sock); r.code == 0 || !strings.Contains(r.stderr, "no engine answers") {
		t.Fatalf("stats --top with no engine: exit %d, %q", r.code, r.stderr)
	}
}

// TestCLIServe runs `xnic serve` with one guest and its services on a lab:
// curl gets the HTTP page and a download with the right sha256, the echo
// service echoes, ping answers, a bad config names its field, and the run
// ends cleanly (frame audit included) on SIGTERM.
func TestCLIServe(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	dir := t.TempDir()
	cfg := "ports:\n  - iface: " + p.Host + "\nguests:\n  - name: web\n    mac: 02:00:00:00:00:10\n" +
		"    ipv4: [198.18.0.10/24]\n    ipv6: [2001:2::10/64]\n    services:\n" +
		"      - {kind: http}\n      - {kind: echo}\n      - {kind: discard}\n      - {kind: udp-echo}\n"
	os.WriteFile(dir+"/serve.yaml", []byte(cfg), 0o644)
	os.WriteFile(dir+"/bad.yaml", []byte(strings.Replace(cfg, "kind: echo", "kind: chargen", 1)), 0o644)
	if r := runXnic(t, 20*time.Second, "serve", "--config", dir+"/bad.yaml"); r.code == 0 || !strings.Contains(r.stderr, "bad.yaml:10: guests[0].services[1].kind") {
		t.Fatalf("bad service kind: exit %d, %q", r.code, r.stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sock := dir + "/ctl.sock"
	capFile := dir + "/deliveries.pcap"
	srv := exec.CommandContext(ctx, xnic(t), "serve", "--config", dir+"/serve.yaml", "--ctl", sock, "--json", "--quiet", "--capture", capFile, "--log-format", "json")
	srv.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GOMAXPROCS=") })
	var out bytes.Buffer
	stderr := &syncBuffer{}
	srv.Stdout, srv.Stderr = &out, stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(stderr.String(), "xnic serve: ready"); {
		if time.Now().After(deadline) {
			t.Fatalf("serve never got ready:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	peer := func(args ...string) string {
		t.Helper()
		o, err := l.PeerCommand(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s\nserve: %s", strings.Join(args, " "), err, o, stderr.String())
		}
		return string(o)
	}
	if got := peer("curl", "-sS", "--max-time", "10", "http://198.18.0.10/"); got != "xnic guest web\n" {
		t.Fatalf("curl /: %q", got)
	}
	sum := peer("sh", "-c", "curl -sS --max-time 30 http://[2001:2::10]/bytes/5000000 | sha256sum")
	if !strings.HasPrefix(sum, services.PatternSHA256(5000000)) {
		t.Fatalf("download sha256 %q, want %s", sum, services.PatternSHA256(5000000))
	}
	up := peer("sh", "-c", "head -c 3000000 /dev/zero | curl -sS --max-time 30 --data-binary @- http://198.18.0.10/upload")
	if !strings.Contains(up, `"bytes":3000000`) {
		t.Fatalf("upload: %q", up)
	}
	peer("ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.0.10")
	peer("ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "2001:2::10")
	c, err := l.PeerDial(ctx, "tcp", "198.18.0.10:7")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("hello, echo"))
	buf := make([]byte, 11)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello, echo" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	c.Close()
	uc, err := l.PeerDial(ctx, "udp", "[2001:2::10]:7")
	if err != nil {
		t.Fatal(err)
	}
	uc.SetDeadline(time.Now().Add(10 * time.Second))
	uc.Write([]byte("udp ping"))
	n, err := uc.Read(buf)
	if err != nil || string(buf[:n]) != "udp ping" {
		t.Fatalf("udp echo: %q %v", buf[:n], err)
	}
	uc.Close()
	cs := runXnic(t, 20*time.Second, "stats", "--top", "10", "--ctl", sock)
	if cs.code != 0 || !strings.Contains(cs.stdout, "198.18.0.10:80") || !strings.Contains(cs.stdout, "[2001:2::10]:80") {
		t.Fatalf("stats --top:\n%s%s", cs.stdout, cs.stderr)
	}
	srv.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Fatalf("serve exit: %v\n%s", err, stderr.String())
	}
	lines := jsonLines(t, "serve --json", out.String())
	recs := logLines(t, "serve --log-format json", stderr.String(), "service started", "guest attached", "xnic serve: ready", "xnic serve: capture written", "guest summary", "gomaxprocs")
	// One port, one queue: one worker, and by default one P for it.
	for _, rec := range recs {
		if rec["msg"] == "gomaxprocs" && (rec["procs"] != 1.0 || rec["workers"] != 1.0 || rec["from"] != "auto: one per worker") {
			t.Errorf("serve's gomaxprocs record %v: want procs 1 for its 1 worker, from auto", rec)
		}
	}
	var srep struct {
		Guests []struct {
			Name     string `json:"name"`
			Requests uint64 `json:"requests"`
			BytesOut uint64 `json:"bytes_out"`
		} `json:"guests"`
	}
	err = json.Unmarshal([]byte(lines[len(lines)-1]), &srep)
	gs := srep.Guests
	if err != nil || len(gs) != 1 {
		t.Fatalf("serve --json: %v\n%s", err, out.String())
	}
	if gs[0].Name != "web" || gs[0].Requests < 2 || gs[0].BytesOut < 5000000 {
		t.Fatalf("serve counters %+v", gs[0])
	}
	// The capture holds what the engine delivered: the upload's GRO
	// aggregates, larger than any frame on the wire, with valid checksums.
	rp := runXnic(t, 30*time.Second, "replay", "--in", capFile, "--out", dir+"/checked.pcap", "--stage", "csum", "--json")
	var rep struct {
		FramesIn uint64 `json:"frames_in"`
		Csum     struct {
			Bad uint64 `json:"bad"`
		} `json:"csum"`
	}
	if err := json.Unmarshal([]byte(lastLine(rp.stdout)), &rep); err != nil || rp.code != 0 {
		t.Fatalf("replay of the capture: exit %d, %v\n%s%s", rp.code, err, rp.stdout, rp.stderr)
	}
	f, err := os.Open(capFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	big := 0
	for {
		data, _, err := pr.ReadPacketData()
		if err != nil {
			break
		}
		if len(data) > 1514 {
			big++
		}
	}
	if rep.FramesIn == 0 || rep.Csum.Bad != 0 || big == 0 {
		t.Fatalf("capture: %d packets, %d bad checksums, %d larger than 1514 bytes", rep.FramesIn, rep.Csum.Bad, big)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
