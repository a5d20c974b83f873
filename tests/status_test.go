package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/lab/labtest"
)

// statusPort is one port of `xnic status --json`.
type statusPort struct {
	Iface string `json:"iface"`
	XDP   *struct {
		ProgID    uint32 `json:"prog_id"`
		Mode      string `json:"mode"`
		Name      string `json:"name"`
		XnicSteer bool   `json:"xnic_steer"`
	} `json:"xdp"`
	Engine struct {
		State string `json:"state"`
		PID   int    `json:"pid"`
	} `json:"engine"`
	Pins int `json:"pins"`
}

// statusOf runs `xnic status --json` and returns its control socket's state
// and the entry of port, nil if status does not list it.
func statusOf(t *testing.T, ctl, port string) (string, *statusPort) {
	t.Helper()
	r := runXnic(t, 20*time.Second, "status", "--json", "--ctl", ctl)
	var rep struct {
		Ports   []statusPort `json:"ports"`
		Control struct {
			Path  string `json:"path"`
			State string `json:"state"`
		} `json:"control"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || rep.Ports == nil || rep.Control.Path != ctl {
		t.Fatalf("status --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	for i := range rep.Ports {
		if rep.Ports[i].Iface == port {
			return rep.Control.State, &rep.Ports[i]
		}
	}
	return rep.Control.State, nil
}

// TestStatusCleanAfterKill: xnic status shows a port of a running serve as
// owned by its pid with xnic_steer attached and pins; clean refuses that
// port. After kill -9, status shows the engine gone, the pins and a stale
// control socket; a new serve without --reuse-pins refuses the port and
// leaves all that in place; with a xnic_steer left attached (as an engine attaching
// through netlink leaves it), clean detaches it, removes the pins and the
// socket, and status then shows nothing of the port.
func TestStatusCleanAfterKill(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	pinDir := filepath.Join(engine.DefaultPinDir, p.Host)
	t.Cleanup(func() { removePinDir(pinDir) })
	cfg := filepath.Join(t.TempDir(), "serve.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("ports:\n  - iface: %s\nguests:\n  - name: web\n    ipv4: [198.18.0.10/24]\n    services:\n      - {kind: udp-echo}\n", p.Host)), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctl := ctlPath(t)
	dead, _ := startServe(t, ctx, "--config", cfg, "--ctl", ctl)
	pid := dead.Process.Pid

	state, ps := statusOf(t, ctl, p.Host)
	if state != "serving" || ps == nil || ps.Engine.State != "running" || ps.Engine.PID != pid || ps.Pins == 0 ||
		ps.XDP == nil || !ps.XDP.XnicSteer || ps.XDP.Name != "xnic_steer" || ps.XDP.ProgID == 0 {
		t.Fatalf("status of a running serve (pid %d): control %q, port %+v", pid, state, ps)
	}
	pins := ps.Pins
	r := runXnic(t, 20*time.Second, "clean", "--iface", p.Host, "--ctl", ctl)
	if want := fmt.Sprintf("port %s is in use by xnic (pid %d)", p.Host, pid); r.code != 1 || !strings.Contains(r.stderr, "xnic clean: ") || !strings.Contains(r.stderr, want) {
		t.Fatalf("clean of a running engine's port: exit %d, want 1 and %q:\n%s%s", r.code, want, r.stdout, r.stderr)
	}
	if ents, _ := os.ReadDir(pinDir); len(ents) != pins {
		t.Fatalf("a refused clean changed the pins: %d, was %d", len(ents), pins)
	}

	dead.Process.Signal(syscall.SIGKILL)
	dead.Wait()
	state, ps = statusOf(t, ctl, p.Host)
	if state != "stale" || ps == nil || ps.Engine.State != "gone" || ps.Engine.PID != pid || ps.Pins != pins {
		t.Fatalf("status after kill -9 of pid %d: control %q, port %+v; want stale, gone, %d pins", pid, state, ps, pins)
	}
	// The engine's bpf_link died with it. Attach xnic_steer the way that
	// outlives its process, through netlink, as a leftover for clean.
	if ps.XDP != nil {
		t.Fatalf("xdp after kill -9: %+v; the engine's bpf_link should have gone with it", ps.XDP)
	}
	ents, err := os.ReadDir(pinDir)
	if err != nil {
		t.Fatal(err)
	}
	refuseStalePins(t, p.Host, pinDir, ents, pid, false, "serve", "--config", cfg, "--ctl", ctl, "--duration", "2s", "--quiet")
	if state, ps = statusOf(t, ctl, p.Host); state != "stale" || ps == nil || ps.Engine.State != "gone" || ps.Engine.PID != pid || ps.Pins != pins {
		t.Fatalf("status after a refused serve: control %q, port %+v; want what kill -9 left", state, ps)
	}
	link, err := netlink.LinkByName(p.Host)
	if err != nil {
		t.Fatal(err)
	}
	st, err := bpf.LoadSteer(bpf.DefaultSteerOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetXdpFdWithFlags(link, st.Program().FD(), nl.XDP_FLAGS_SKB_MODE); err != nil {
		st.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkSetXdpFdWithFlags(link, -1, nl.XDP_FLAGS_SKB_MODE) })
	st.Close()
	_, ps = statusOf(t, ctl, p.Host)
	if ps == nil || ps.XDP == nil || !ps.XDP.XnicSteer || ps.XDP.Mode != "generic" {
		t.Fatalf("status with xnic_steer left attached: %+v", ps)
	}
	progID := ps.XDP.ProgID
	if r := runXnic(t, 20*time.Second, "status", "--ctl", ctl); !strings.Contains(r.stdout, "gone, was pid "+strconv.Itoa(pid)) ||
		!strings.Contains(r.stdout, "xnic clean --iface "+p.Host) || !strings.Contains(r.stdout, "control socket "+ctl+": stale") {
		t.Fatalf("status text after kill -9:\n%s%s", r.stdout, r.stderr)
	}

	r = runXnic(t, 20*time.Second, "clean", "--iface", p.Host, "--ctl", ctl, "--json")
	var rep struct {
		Ports []struct {
			Iface       string `json:"iface"`
			DetachedXDP uint32 `json:"detached_xdp"`
			PinsRemoved int    `json:"pins_removed"`
			Skipped     string `json:"skipped"`
		} `json:"ports"`
		ControlRemoved bool `json:"control_removed"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || len(rep.Ports) != 1 ||
		rep.Ports[0].Iface != p.Host || rep.Ports[0].DetachedXDP != progID || rep.Ports[0].PinsRemoved != pins ||
		rep.Ports[0].Skipped != "" || !rep.ControlRemoved {
		t.Fatalf("clean --json: exit %d, %v, %+v; want prog %d detached, %d pins removed, the socket removed\n%s%s",
			r.code, err, rep, progID, pins, r.stdout, r.stderr)
	}
	if l, err := netlink.LinkByName(p.Host); err != nil || l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached {
		t.Fatalf("xdp still attached to %s after clean (%v)", p.Host, err)
	}
	if _, err := os.Lstat(pinDir); !os.IsNotExist(err) {
		t.Fatalf("%s still there after clean: %v", pinDir, err)
	}
	// The shared root goes with the last port's directory (other
	// packages' engines may hold pins there meanwhile: then it stays).
	if ents, err := os.ReadDir(engine.DefaultPinDir); err == nil && len(ents) == 0 {
		t.Fatalf("clean left %s behind, empty", engine.DefaultPinDir)
	}
	if _, err := os.Lstat(ctl); !os.IsNotExist(err) {
		t.Fatalf("control socket %s still there after clean: %v", ctl, err)
	}
	if state, ps := statusOf(t, ctl, p.Host); state != "absent" || ps != nil {
		t.Fatalf("status after clean: control %q, port %+v; want absent and no port", state, ps)
	}
	if r := runXnic(t, 20*time.Second, "clean", "--iface", p.Host, "--ctl", ctl); r.code != 0 || !strings.Contains(r.stdout, p.Host+": removed 0 pins") {
		t.Fatalf("second clean: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
