package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/internal/safedir"
)

// pinSnapshot is what a port's pin directory holds: the map files, the
// kernel id of each map, and the rules in its rule map.
type pinSnapshot struct {
	ids   map[string]uint32
	rules []bpf.Rule
}

func snapshotPins(t *testing.T, st *bpf.Steer, dir string) pinSnapshot {
	t.Helper()
	s := pinSnapshot{ids: map[string]uint32{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read pins: %v", err)
	}
	for _, e := range ents {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			t.Fatalf("open pin %s: %v", e.Name(), err)
		}
		info, _ := m.Info()
		id, _ := info.ID()
		s.ids[e.Name()] = uint32(id)
		m.Close()
	}
	if s.rules, err = st.Rules(); err != nil {
		t.Fatal(err)
	}
	return s
}

func (a pinSnapshot) equal(b pinSnapshot) bool {
	if len(a.ids) != len(b.ids) || len(a.rules) != len(b.rules) {
		return false
	}
	for k, v := range a.ids {
		if b.ids[k] != v {
			return false
		}
	}
	return slices.Equal(a.rules, b.rules)
}

// TestSecondEngineOnPort: a second engine on a port, through the Go API
// and through `xnic rx`, fails at once naming the first one's pid, and the
// first keeps its pins, its rules and its XSKMAP slot: it goes on
// receiving.
func TestSecondEngineOnPort(t *testing.T) {
	l := labtest.New(t, labOptions(2))
	p := l.Ports[0]
	r := newReceived(2)
	first := startEngine(t, l, []int{0}, r)
	dir := filepath.Join(engine.DefaultPinDir, p.Host)
	before := snapshotPins(t, first.Ports()[0].Steer(), dir)
	if len(before.ids) < 9 || len(before.rules) != 4 {
		t.Fatalf("the first engine pinned %d maps with %d rules; want the steering maps and the 4 catch-all rules", len(before.ids), len(before.rules))
	}
	send := newPeerSender(t, l, 0)
	received := rxPackets(first.Workers()[0])
	burst := func(from uint32) {
		var frames [][]byte
		for i := range uint32(500) {
			frames = append(frames, taggedFrame(t, p, 0, from+i, 128))
		}
		sendPaced(t, send, frames, 64, received)
	}
	burst(0)
	if received() == 0 {
		t.Fatal("the first engine received nothing")
	}

	want := fmt.Sprintf("port %s is in use by %s (pid %d)", p.Host, filepath.Base(os.Args[0]), os.Getpid())
	o := engine.DefaultOptions()
	o.Ifaces = []string{p.Host}
	if e2, err := engine.New(o, nil); !errors.Is(err, engine.ErrPortInUse) || !strings.Contains(err.Error(), want) {
		if e2 != nil {
			e2.Close()
		}
		t.Fatalf("second engine.New: %v; want ErrPortInUse saying %q", err, want)
	}
	o.KeepPins = true
	if _, err := engine.New(o, nil); !errors.Is(err, engine.ErrPortInUse) {
		t.Fatalf("second engine.New with KeepPins: %v; want ErrPortInUse", err)
	}
	// With a free port first: its lock is released again and it gets no
	// pins.
	o.Ifaces = []string{l.Ports[1].Host, p.Host}
	if _, err := engine.New(o, nil); !errors.Is(err, engine.ErrPortInUse) {
		t.Fatalf("engine.New on a free and a busy port: %v; want ErrPortInUse", err)
	}
	if state, _, err := engine.EngineState("", l.Ports[1].Host); err != nil || state != "gone" {
		t.Fatalf("the free port's lock after the failed start: %q, %v; want released", state, err)
	}
	if _, err := os.Lstat(filepath.Join(engine.DefaultPinDir, l.Ports[1].Host)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the failed start made a pin dir for the free port: %v", err)
	}
	rx := runXnic(t, 30*time.Second, "rx", "--iface", p.Host, "--duration", "1s", "--quiet")
	if rx.code == 0 || !strings.Contains(rx.stderr, want) {
		t.Fatalf("a second xnic rx: exit %d, stderr %q; want it to fail saying %q", rx.code, rx.stderr, want)
	}
	if after := snapshotPins(t, first.Ports()[0].Steer(), dir); !after.equal(before) {
		t.Fatalf("the failed second engines changed the first's pins or rules:\nbefore %v %v\nafter  %v %v",
			before.ids, before.rules, after.ids, after.rules)
	}
	got := received()
	burst(1000)
	if n := received() - got; n < 500 {
		t.Fatalf("the first engine received %d of 500 frames after the second failed: its slot or rules were damaged", n)
	}
	if st := runXnic(t, 20*time.Second, "stats", "--port", p.Host, "--json"); !strings.Contains(st.stdout, `"engine":"running"`) ||
		!strings.Contains(st.stdout, `"pid":`+strconv.Itoa(os.Getpid())) {
		t.Fatalf("stats of a running engine: %s %s", st.stdout, st.stderr)
	}
}

// portStats is one port of `xnic stats --json`.
type portStats struct {
	Port   string `json:"port"`
	Engine string `json:"engine"`
	PID    int    `json:"pid"`
	Total  struct {
		RxPackets     uint64 `json:"rx_packets"`
		PassUnmatched uint64 `json:"pass_unmatched"`
	} `json:"total"`
	Slots map[string]struct{ Packets uint64 } `json:"slots"`
}

func statsOf(t *testing.T, port string) portStats {
	t.Helper()
	r := runXnic(t, 20*time.Second, "stats", "--port", port, "--json")
	var ps []portStats
	if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil || len(ps) != 1 {
		t.Fatalf("stats --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	return ps[0]
}

// guestPackets is what the steering program sent to guest id g's slots.
func (ps portStats) guestPackets(g int) uint64 {
	var n uint64
	classes := bpf.DefaultSteerOptions().Classes
	for k, s := range ps.Slots {
		if i, _ := strconv.Atoi(k); i/classes == g {
			n += s.Packets
		}
	}
	return n
}

// startServe starts xnic serve and waits for it to be ready.
func startServe(t *testing.T, ctx context.Context, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.CommandContext(ctx, xnic(t), append([]string{"serve", "--quiet"}, args...)...)
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(stderr.String(), "xnic serve: ready"); {
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("serve never got ready:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cmd, stderr
}

// ctlPath is a control socket path of the test's own under /run/xnic.
func ctlPath(t *testing.T) string {
	dir := filepath.Join(engine.DefaultRunDir, lab.RandomName("ctl"))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "engine.sock")
}

// TestKilledServeLeftovers: after kill -9 of xnic serve, stats and maps
// say the engine is gone; a new serve (and engine.New) without
// --reuse-pins refuses the port, naming it, the dead pid, the pin
// directory and both ways out, and leaves the pins alone; with
// --reuse-pins a new serve with another guest removes the leftovers (or,
// with pin: true, reuses the maps without the dead guest's rules), says
// so, and datagrams to the dead guest's address reach no guest, while the
// new guest's own do.
func TestKilledServeLeftovers(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	dir := t.TempDir()
	pinDir := filepath.Join(engine.DefaultPinDir, p.Host)
	t.Cleanup(func() { removePinDir(pinDir) })
	for _, pin := range []bool{false, true} {
		t.Run(fmt.Sprintf("pin=%t", pin), func(t *testing.T) {
			cfg := func(name, addr string) string {
				f := filepath.Join(dir, name+".yaml")
				c := fmt.Sprintf("ports:\n  - iface: %s\nengine: {pin: %t}\nguests:\n  - name: %s\n    ipv4: [%s/24]\n    services:\n      - {kind: udp-echo}\n",
					p.Host, pin, name, addr)
				os.WriteFile(f, []byte(c), 0o644)
				return f
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			ctl := ctlPath(t)
			dead, _ := startServe(t, ctx, "--config", cfg("web", "198.18.0.10"), "--ctl", ctl)
			gen := func(dst string) {
				t.Helper()
				if g := runXnic(t, 30*time.Second, "gen", "--lab", l.Name, "--count", "1000", "--dst-ip", dst, "--duration", "0"); g.code != 0 {
					t.Fatalf("gen: %s", g.stderr)
				}
				time.Sleep(300 * time.Millisecond)
			}
			gen("198.18.0.10")
			if st := statsOf(t, p.Host); st.guestPackets(1) < 1000 || st.Engine != "running" || st.PID != dead.Process.Pid {
				t.Fatalf("stats of the first serve: %+v; want guest 1 to have its 1000 datagrams, engine running as pid %d", st, dead.Process.Pid)
			}
			dead.Process.Signal(syscall.SIGKILL)
			dead.Wait()
			if st := statsOf(t, p.Host); st.Engine != "gone" || st.PID != dead.Process.Pid {
				t.Fatalf("stats after kill -9: engine %q pid %d, want gone, pid %d", st.Engine, st.PID, dead.Process.Pid)
			}
			if m := runXnic(t, 20*time.Second, "maps"); !strings.Contains(m.stdout, "gone, was pid "+strconv.Itoa(dead.Process.Pid)) ||
				!strings.Contains(m.stdout, "no longer runs") {
				t.Fatalf("maps after kill -9:\n%s%s", m.stdout, m.stderr)
			}
			if _, err := os.Lstat(ctl); err != nil {
				t.Fatalf("kill -9 left no control socket to find: %v", err)
			}

			// Every map the dead engine pinned is named in the start's log.
			pins, err := os.ReadDir(pinDir)
			if err != nil || len(pins) == 0 {
				t.Fatalf("kill -9 left no pins in %s to find: %v", pinDir, err)
			}
			refuseStalePins(t, p.Host, pinDir, pins, dead.Process.Pid, pin, "serve", "--config", cfg("other", "198.18.0.20"), "--ctl", ctl, "--duration", "2s", "--quiet")
			next, stderr := startServe(t, ctx, "--config", cfg("other", "198.18.0.20"), "--ctl", ctl, "--reuse-pins")
			log := stderr.String()
			wantLog := fmt.Sprintf("removed %d maps pinned in %s by xnic (pid %d), which no longer runs", len(pins), pinDir, dead.Process.Pid)
			if pin {
				wantLog = fmt.Sprintf("reused %d maps pinned by xnic (pid %d), which no longer runs; removed ", len(pins), dead.Process.Pid)
			}
			if !strings.Contains(log, wantLog) || !strings.Contains(log, "removed the control socket "+ctl) {
				t.Fatalf("the new serve did not say it cleared the dead engine's leftovers (want %q):\n%s", wantLog, log)
			}
			if pin && (strings.Contains(log, wantLog+"0 rules") || !strings.Contains(log, "rules and")) {
				t.Fatalf("the new serve reused the maps but removed none of the dead guest's rules:\n%s", log)
			}
			before := statsOf(t, p.Host)
			if before.Engine != "running" || before.PID != next.Process.Pid {
				t.Fatalf("stats of the new serve: engine %q pid %d, want running, pid %d", before.Engine, before.PID, next.Process.Pid)
			}
			gen("198.18.0.10")
			after := statsOf(t, p.Host)
			if n := after.guestPackets(1) - before.guestPackets(1); n != 0 {
				t.Fatalf("%d of 1000 datagrams to the dead guest's address were steered to the new guest (id 1)", n)
			}
			if n := after.Total.PassUnmatched - before.Total.PassUnmatched; n < 1000 {
				t.Fatalf("only %d of 1000 datagrams to the dead guest's address went unmatched to the kernel", n)
			}
			gen("198.18.0.20")
			if n := statsOf(t, p.Host).guestPackets(1) - after.guestPackets(1); n < 1000 {
				t.Fatalf("the new guest got %d of its own 1000 datagrams", n)
			}
			next.Process.Signal(syscall.SIGTERM)
			if err := next.Wait(); err != nil {
				t.Fatalf("serve exit: %v\n%s", err, stderr.String())
			}
		})
	}
}

// refuseStalePins checks that a port whose pin directory holds the pins of
// the dead engine pid is refused: by `xnic args...` with exit 1 and an
// error naming the port, the pid, the directory, `xnic clean --iface` and
// --reuse-pins, and by engine.New without ReusePins with a StalePinsError;
// the pins stay as they were, no XDP program is left on the port, and the
// lock file still names pid for the next engine.
func refuseStalePins(t *testing.T, port, pinDir string, pins []os.DirEntry, pid int, keep bool, args ...string) {
	t.Helper()
	want := fmt.Sprintf("port %s: %d maps pinned in %s by xnic (pid %d), which no longer runs: refusing", port, len(pins), pinDir, pid)
	r := runXnic(t, 30*time.Second, args...)
	if r.code != 1 || !strings.Contains(r.stderr, "xnic "+args[0]+": ") || !strings.Contains(r.stderr, want) ||
		!strings.Contains(r.stderr, "xnic clean --iface "+port) || !strings.Contains(r.stderr, "--reuse-pins") {
		t.Fatalf("xnic %s on a dead engine's pins: exit %d, want 1 and %q with both ways out:\n%s%s", args[0], r.code, want, r.stdout, r.stderr)
	}
	o := engine.DefaultOptions()
	o.Ifaces, o.KeepPins = []string{port}, keep
	e, err := engine.New(o, nil)
	var se *engine.StalePinsError
	if !errors.Is(err, engine.ErrStalePins) || !errors.As(err, &se) || se.Port != port || se.PID != pid || se.PinDir != pinDir || se.Pins != len(pins) {
		if e != nil {
			e.Close()
		}
		t.Fatalf("engine.New on a dead engine's pins: %v (%+v); want a StalePinsError for %s, pid %d, %s", err, se, port, pid, pinDir)
	}
	after, err := os.ReadDir(pinDir)
	if err != nil || len(after) != len(pins) {
		t.Fatalf("the refused starts changed the pins: %d, was %d (%v)", len(after), len(pins), err)
	}
	for i := range after {
		if after[i].Name() != pins[i].Name() {
			t.Fatalf("the refused starts changed the pins: %s, was %s", after[i].Name(), pins[i].Name())
		}
	}
	if out, _ := exec.Command("ip", "-o", "link", "show", port).CombinedOutput(); strings.Contains(string(out), "xdp") {
		t.Fatalf("a refused start left an XDP program on %s", port)
	}
	if state, last, err := engine.EngineState("", port); err != nil || state != "gone" || last != pid {
		t.Fatalf("the port's owner after the refused starts: %q, pid %d, %v; want gone, pid %d", state, last, err, pid)
	}
}

// TestSquattedPinDir: a port's pin directory made beforehand by another
// user, as a symlink or as their own directory, makes the start refuse
// with the path and the reason, and leaves it and the interface alone.
func TestSquattedPinDir(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	if err := safedir.Ensure(engine.DefaultPinDir); err != nil {
		t.Fatal(err)
	}
	squat := filepath.Join(engine.DefaultPinDir, p.Host)
	t.Cleanup(func() { removePinDir(squat) })
	target := t.TempDir()
	os.Chown(target, 65534, 65534)
	cases := []struct {
		name string
		make func() error
		why  string
	}{
		{"symlink", func() error {
			if err := os.Symlink(target, squat); err != nil {
				return err
			}
			return os.Lchown(squat, 65534, 65534)
		}, squat + ": is a symlink (to " + target + ")"},
		{"dir of nobody", func() error {
			if err := os.Mkdir(squat, 0o777); err != nil {
				return err
			}
			return os.Chown(squat, 65534, 65534)
		}, squat + ": owned by uid 65534, not uid 0"},
	}
	o := engine.DefaultOptions()
	o.Ifaces = []string{p.Host}
	for _, c := range cases {
		os.RemoveAll(squat)
		if err := c.make(); err != nil {
			t.Fatal(err)
		}
		before, _ := os.Lstat(squat)
		if e, err := engine.New(o, nil); err == nil || !strings.Contains(err.Error(), c.why) {
			if e != nil {
				e.Close()
			}
			t.Fatalf("%s: engine.New = %v; want a refusal saying %q", c.name, err, c.why)
		}
		rx := runXnic(t, 30*time.Second, "rx", "--iface", p.Host, "--duration", "1s", "--quiet")
		if rx.code == 0 || !strings.Contains(rx.stderr, c.why) {
			t.Fatalf("%s: xnic rx: exit %d, %q; want a refusal saying %q", c.name, rx.code, rx.stderr, c.why)
		}
		after, err := os.Lstat(squat)
		if err != nil || after.Mode() != before.Mode() {
			t.Fatalf("%s: the squatted path changed: %v, %v", c.name, after, err)
		}
		if ents, _ := os.ReadDir(target); len(ents) != 0 {
			t.Fatalf("%s: pins landed in the squatter's directory: %v", c.name, ents)
		}
		if out, _ := exec.Command("ip", "-o", "link", "show", p.Host).CombinedOutput(); strings.Contains(string(out), "xdp") {
			t.Fatalf("%s: a refused start left an XDP program on %s", c.name, p.Host)
		}
	}
}

// TestControlSocketPrivate: under umask 000 the control socket is 0600 and
// /run/xnic and its directories 0700; a user who is not root is told the
// socket is root's, not that no engine answers.
func TestControlSocketPrivate(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	dir := t.TempDir()
	cfg := filepath.Join(dir, "run.yaml")
	os.WriteFile(cfg, []byte("ports:\n  - iface: "+l.Ports[0].Host+"\nguests:\n  - name: web\n    ipv4: [198.18.0.10]\n    rules:\n      - {proto: udp, ports: 9}\n"), 0o644)
	// A /run/xnic left looser by an older version is tightened.
	if err := os.MkdirAll(engine.DefaultRunDir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(engine.DefaultRunDir, 0o755)
	ctl := ctlPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, "sh", "-c", "umask 000; exec \"$0\" \"$@\"", xnic(t), "run", "--config", cfg, "--ctl", ctl, "--duration", "30s", "--quiet")
	var stderr bytes.Buffer
	run.Stderr = &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		run.Process.Signal(syscall.SIGTERM)
		run.Wait()
	}()
	waitFor(t, "the control socket", func() bool { _, err := os.Lstat(ctl); return err == nil })
	for path, want := range map[string]os.FileMode{
		engine.DefaultRunDir:  os.ModeDir | 0o700,
		engine.DefaultLockDir: os.ModeDir | 0o700,
		filepath.Dir(ctl):     os.ModeDir | 0o700,
		ctl:                   os.ModeSocket | 0o600,
	} {
		if fi, err := os.Lstat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s under umask 000: %v, %v; want %v", path, fi.Mode(), err, want)
		}
	}
	// The client as nobody: the binary copied where nobody can run it.
	pub, err := os.MkdirTemp("", "xnic-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(pub)
	os.Chmod(pub, 0o755)
	bin, _ := os.ReadFile(xnic(t))
	if err := os.WriteFile(filepath.Join(pub, "xnic"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"stats", "--top", "5", "--ctl", ctl}, {"migrate", "--guest", "web", "--to", "x", "--ctl", ctl}} {
		c := exec.CommandContext(ctx, filepath.Join(pub, "xnic"), args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := c.CombinedOutput()
		want := "control socket " + ctl + ": permission denied (run as root)"
		if err == nil || !strings.Contains(string(out), want) || strings.Contains(string(out), "no engine answers") {
			t.Errorf("xnic %s as nobody: %v, %q; want %q", args[0], err, out, want)
		}
	}
	if run.ProcessState != nil {
		t.Fatalf("run exited early: %s", stderr.String())
	}
}

// TestServeExitsWhenLastPortGone: deleting the only port of xnic serve
// makes it exit non-zero, naming the port.
func TestServeExitsWhenLastPortGone(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	dir := t.TempDir()
	cfg := filepath.Join(dir, "serve.yaml")
	os.WriteFile(cfg, []byte("ports:\n  - iface: "+p.Host+"\nguests:\n  - name: web\n    ipv4: [198.18.0.10/24]\n"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, stderr := startServe(t, ctx, "--config", cfg, "--ctl", ctlPath(t))
	if err := l.DeletePort(0); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("serve exit after its last port went: %v, want non-zero\n%s", err, stderr.String())
		}
		if want := "port " + p.Host + " was deleted and no port is left"; !strings.Contains(stderr.String(), want) {
			t.Fatalf("serve's error does not say %q:\n%s", want, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("serve still runs 20 s after its only port was deleted:\n%s", stderr.String())
	}
}
