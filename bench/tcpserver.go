package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Ready lines of the servers, on stderr.
const (
	xnicServeReady = "xnic serve: ready"
	gvisorXDPReady = "gvisorxdp: ready"
	// KernelServerReady starts the line ServeKernel prints once it serves.
	KernelServerReady = "xnic bench tcp: kernel server ready"
)

// measure measures one contender once: it starts its server, runs the
// three metrics against it and stops it. Errors go into the result.
func (b *tcpBencher) measure(ctx context.Context, name string) TCPResult {
	res := TCPResult{Contender: name}
	if err := b.measureServer(ctx, name, &res); err != nil {
		res.Err = err.Error()
	}
	return res
}

func (b *tcpBencher) measureServer(ctx context.Context, name string, res *TCPResult) (err error) {
	var spec receiverSpec
	target := netip.AddrPortFrom(TCPGuestIPv4.Addr(), uint16(b.opts.Port))
	switch name {
	case TCPXnicGROTSO, TCPXnicOff:
		on := name == TCPXnicGROTSO
		cfg, err := b.writeServeConfig(name, on, on)
		if err != nil {
			return err
		}
		spec = receiverSpec{
			path:  b.opts.Xnic,
			args:  []string{"serve", "--config", cfg, "--json", "--quiet", "--ctl", ""},
			ready: func(line string) bool { return strings.HasPrefix(line, xnicServeReady) },
		}
	case TCPGvisorXDP:
		spec = receiverSpec{
			path: b.opts.GvisorXDP,
			args: []string{"--iface", b.port.Host, "--queue", "0", "--mac", TCPGuestMAC.String(),
				"--ipv4", TCPGuestIPv4.String(), "--ipv6", TCPGuestIPv6.String(),
				"--port", strconv.Itoa(b.opts.Port), "--json"},
			ready: func(line string) bool { return strings.HasPrefix(line, gvisorXDPReady) },
		}
	case TCPKernel:
		target = netip.AddrPortFrom(b.port.HostIPv4, uint16(b.opts.Port))
		restore, err := setOffloads(ctx, b.port.Host, kernelOffloads)
		if err != nil {
			return err
		}
		defer func() {
			if rerr := restore(); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}()
		spec = receiverSpec{
			path:  b.opts.Xnic,
			args:  []string{"bench", "tcp", "--serve-kernel", target.String()},
			ready: func(line string) bool { return strings.HasPrefix(line, KernelServerReady) },
		}
	default:
		return fmt.Errorf("unknown contender %q", name)
	}
	// The previous server's neighbour entry may name another MAC.
	if out, err := b.lab.PeerCommand(ctx, "ip", "neigh", "flush", "dev", b.port.Peer).CombinedOutput(); err != nil {
		return fmt.Errorf("flush the peer's neighbours: %w: %s", err, strings.TrimSpace(string(out)))
	}

	srv, err := startReady(ctx, spec, b.opts.ServerCPU)
	if err != nil {
		return err
	}
	res.ServerCPUs = processCPUs(srv.cmd.Process.Pid)
	s0 := sampleNoise()
	c := &tcpClient{dial: b.lab.PeerDial, base: "http://" + target.String(), dur: b.opts.Duration,
		conc: b.opts.Concurrency, hash: b.hash}
	res.Upload = c.upload(ctx)
	res.Download = c.download(ctx)
	res.Requests = c.requests(ctx)
	var early error
	select {
	case <-srv.exited:
		early = fmt.Errorf("%s exited during the measurement (%s): %s", srv.name(), srv.exitStatus(), srv.stderr.Tail())
	default:
	}
	srv.stop()
	res.Noise = noiseBetween(s0, sampleNoise())
	if early != nil {
		return early
	}
	if srv.waitErr != nil {
		return fmt.Errorf("%s did not stop cleanly on SIGTERM (%s): %s", srv.name(), srv.exitStatus(), srv.stderr.Tail())
	}
	res.Server = lastJSONLine(srv.stdout.String())
	return ctx.Err()
}

// writeServeConfig writes the `xnic serve` config of an xnic contender:
// the host veth, queue 0, one guest serving http, GRO and TSO as given.
func (b *tcpBencher) writeServeConfig(name string, gro, tso bool) (string, error) {
	cfg := fmt.Sprintf(`# xnic bench tcp: %s
ports:
  - iface: %s
    queues: [0]
    attach: native
engine:
  gro: %t
  tso: %t
guests:
  - name: bench
    port: %s
    mac: %s
    ipv4: [%s]
    ipv6: [%s]
    services:
      - {kind: http, port: %d}
`, name, b.port.Host, gro, tso, b.port.Host, TCPGuestMAC, TCPGuestIPv4, TCPGuestIPv6, b.opts.Port)
	path := filepath.Join(b.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", fmt.Errorf("write serve config: %w", err)
	}
	return path, nil
}

// lastJSONLine parses the last non-empty line of out as JSON: an object
// as it is, an array (xnic serve's one object per guest) as {"guests":
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
