package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/xnic/xnic/engine/config"
	"github.com/xnic/xnic/engine/lab"
)

// The servers of the TCP and latency benchmarks. Each benchmark measures,
// one at a time, a server on the host end of a one-port lab's veth, on
// queue 0, from a client in the peer netns:
//
//   - `xnic serve` with one guest (TCPGuestIPv4, TCPGuestMAC) running the
//     benchmark's services on its own netstack on the engine;
//   - gvisorxdp: gVisor's netstack on gVisor's AF_XDP endpoint with the
//     same addresses (bench/peers/gvisorxdp);
//   - the host kernel on the host veth's own address, served by a hidden
//     `xnic bench ... --serve-kernel ADDR` child, with kernelOffloads.
//
// serverLab starts and stops them; the benchmarks say what runs.

// Ready lines of the servers, on stderr.
const (
	xnicServeReady = "xnic serve: ready"
	gvisorXDPReady = "gvisorxdp: ready"
	// KernelServerReady starts the line the kernel servers (ServeKernel,
	// ServeKernelEcho) print once they serve.
	KernelServerReady = "xnic bench: kernel server ready"
)

// serverLab is a lab with its one port, and a directory for the servers'
// configs.
type serverLab struct {
	lab  *lab.Lab
	port lab.Port
	dir  string
	// ctl is the control socket of the xnic contenders; "" serves none.
	ctl string
}

// guestService is a service of the xnic guest's config.
type guestService struct {
	kind string // engine/services kind
	port int
}

// xnicServe writes the config of an xnic contender, named name: the host
// veth, queue 0, one guest with the services, and the engine settings as
// YAML lines under engine: ("gro: true", "poll_ms: 0"), and classes, a
// YAML block of traffic classes ("" for none). It returns the spec that
// runs `xnic serve` on it, with its control socket at s.ctl.
func (s *serverLab) xnicServe(xnic, name string, engine []string, classes string, svcs []guestService) (receiverSpec, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# xnic bench: %s\nports:\n  - iface: %s\n    queues: [0]\n    attach: native\n", name, s.port.Host)
	if len(engine) > 0 {
		b.WriteString("engine:\n")
		for _, line := range engine {
			fmt.Fprintf(&b, "  %s\n", line)
		}
	}
	b.WriteString(classes)
	fmt.Fprintf(&b, "guests:\n  - name: bench\n    port: %s\n    mac: %s\n    ipv4: [%s]\n    ipv6: [%s]\n    services:\n",
		s.port.Host, TCPGuestMAC, TCPGuestIPv4, TCPGuestIPv6)
	for _, sv := range svcs {
		fmt.Fprintf(&b, "      - {kind: %s, port: %d}\n", sv.kind, sv.port)
	}
	path := filepath.Join(s.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return receiverSpec{}, fmt.Errorf("write serve config: %w", err)
	}
	return receiverSpec{
		path: xnic,
		args: []string{"serve", "--config", path, "--json", "--quiet", "--ctl", s.ctl},
		// serve logs it as a slog record: msg="xnic serve: ready" ...
		ready: func(line string) bool { return strings.Contains(line, `msg="`+xnicServeReady+`"`) },
	}, nil
}

// serveProcs says how many Ps the xnic serve contenders run with, as
// serve decides it for its one worker (config.GoMaxProcs, no
// engine.gomaxprocs) from the environment they inherit from this process.
func serveProcs() string {
	n, from := config.GoMaxProcs(0, 1, os.Getenv("GOMAXPROCS"))
	return fmt.Sprintf("GOMAXPROCS %d (%s)", n, from)
}

// gvisorXDP is the spec of gvisorxdp at path on the lab's host veth, queue
// 0, with the guest's addresses, HTTP on httpPort, and extra flags.
func (s *serverLab) gvisorXDP(path string, httpPort int, extra ...string) receiverSpec {
	args := []string{"--iface", s.port.Host, "--queue", "0", "--mac", TCPGuestMAC.String(),
		"--ipv4", TCPGuestIPv4.String(), "--ipv6", TCPGuestIPv6.String(),
		"--port", strconv.Itoa(httpPort), "--json"}
	return receiverSpec{
		path:  path,
		args:  append(args, extra...),
		ready: func(line string) bool { return strings.HasPrefix(line, gvisorXDPReady) },
	}
}

// kernelServer is the spec of a kernel server: xnic with args (ending in
// --serve-kernel ADDR), ready when it prints KernelServerReady.
func kernelServer(xnic string, args ...string) receiverSpec {
	return receiverSpec{
		path:  xnic,
		args:  args,
		ready: func(line string) bool { return strings.HasPrefix(line, KernelServerReady) },
	}
}

// serverRun is what a server did while it was measured.
type serverRun struct {
	// noise is what else ran from the server's start to its exit.
	noise Noise
	// cpus are the CPUs the server's threads were allowed on.
	cpus string
	// report is the server's own final JSON report, verbatim.
	report map[string]any
}

// withServer starts spec on cpu (after flushing the peer's neighbours: the
// previous server may have had another MAC), runs measure while it serves
// (with the server's PID, and a channel closed if it exits), and stops it. It fails when the server does not start, exits during the
// measurement or does not stop cleanly; what it measured is measure's.
// kernel switches the host veth's offloads to kernelOffloads meanwhile.
func (s *serverLab) withServer(ctx context.Context, spec receiverSpec, cpu int, kernel bool,
	measure func(ctx context.Context, pid int, exited <-chan struct{})) (run serverRun, err error) {
	if kernel {
		restore, err := setOffloads(ctx, s.port.Host, kernelOffloads)
		if err != nil {
			return run, err
		}
		defer func() {
			if rerr := restore(); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}()
	}
	if out, err := s.lab.PeerCommand(ctx, "ip", "neigh", "flush", "dev", s.port.Peer).CombinedOutput(); err != nil {
		return run, fmt.Errorf("flush the peer's neighbours: %w: %s", err, strings.TrimSpace(string(out)))
	}
	srv, err := startReady(ctx, spec, cpu)
	if err != nil {
		return run, err
	}
	run.cpus = processCPUs(srv.cmd.Process.Pid)
	s0 := sampleNoise()
	measure(ctx, srv.cmd.Process.Pid, srv.exited)
	var early error
	select {
	case <-srv.exited:
		early = fmt.Errorf("%s exited during the measurement (%s): %s", srv.name(), srv.exitStatus(), srv.stderr.Tail())
	default:
	}
	srv.stop()
	run.noise = noiseBetween(s0, sampleNoise())
	if early != nil {
		return run, early
	}
	if srv.waitErr != nil {
		return run, fmt.Errorf("%s did not stop cleanly on SIGTERM (%s): %s", srv.name(), srv.exitStatus(), srv.stderr.Tail())
	}
	run.report = lastJSONLine(srv.stdout.String())
	return run, ctx.Err()
}

// guestTarget is the xnic and gVisor guests' address on port; kernelTarget
// the host veth's.
func guestTarget(port int) netip.AddrPort {
	return netip.AddrPortFrom(TCPGuestIPv4.Addr(), uint16(port))
}

func (s *serverLab) kernelTarget(port int) netip.AddrPort {
	return netip.AddrPortFrom(s.port.HostIPv4, uint16(port))
}

// dial dials from the peer netns.
func (s *serverLab) dial(ctx context.Context, network, address string) (net.Conn, error) {
	return s.lab.PeerDial(ctx, network, address)
}

// lastJSONLine parses the last non-empty line of out as JSON: an object
// (xnic serve's {"type":"summary","guests":[...]}) as it is, an array (the
// form xnic serve printed before its summary object) as {"guests":
// [...]}; nil if it is neither.
func lastJSONLine(out string) map[string]any {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var v any
	if json.Unmarshal([]byte(strings.TrimSpace(lines[len(lines)-1])), &v) != nil {
		return nil
	}
	switch x := v.(type) {
	case map[string]any:
		return x
	case []any:
		return map[string]any{"guests": x}
	}
	return nil
}
