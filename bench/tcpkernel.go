package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/xnic/xnic/engine/services"
)

// ServeKernel serves services.HTTPHandler on addr ("IP:PORT") with the host
// kernel's TCP until ctx is done: the kernel contender's server, which
// RunTCP runs as `xnic bench tcp --serve-kernel ADDR`. It prints a line
// starting with KernelServerReady on ready once it listens, and at the end
// its counters as one JSON object on report.
func ServeKernel(ctx context.Context, addr string, ready, report io.Writer) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("serve kernel: address: %w", err)
	}
	ln, err := net.Listen("tcp", ap.String())
	if err != nil {
		return fmt.Errorf("serve kernel: %w", err)
	}
	var c services.Counters
	srv := &http.Server{Handler: services.HTTPHandler("kernel", &c, nil), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(ready, "%s on %s\n", KernelServerReady, ap)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		serveErr = fmt.Errorf("serve kernel: %w", serveErr)
	}
	srv.Close()
	rep := map[string]any{
		"conns": c.Conns.Load(), "bytes_in": c.BytesIn.Load(), "bytes_out": c.BytesOut.Load(),
		"requests": c.Requests.Load(), "serve_errors": c.ServeErrors.Load(),
	}
	if msg, _ := c.LastError(); msg != "" {
		rep["last_error"] = msg
	}
	b, err := json.Marshal(rep)
	if err == nil {
		_, err = fmt.Fprintf(report, "%s\n", b)
	}
	return errors.Join(serveErr, err)
}

// offload is one ethtool feature: its name for `ethtool -K` and the name
// `ethtool -k` shows.
type offload struct {
	short, long string
	on          bool
}

// kernelOffloads are the host veth's features during the kernel contender:
// GRO on, which on a veth also turns on its NAPI receive path (GRO needs
// it; without an XDP program or GRO a veth hands frames to the stack one
// by one from the sender's context); TSO off, so that the kernel segments
// its sends in software (GSO) into MTU-sized frames, as xnic's engine does
// and as a wire would carry them; tx checksum off, so that those frames
// carry full checksums, as xnic's do, and the peer checks them.
var kernelOffloads = []offload{
	{short: "gro", long: "generic-receive-offload", on: true},
	{short: "tso", long: "tcp-segmentation-offload", on: false},
	{short: "tx", long: "tx-checksumming", on: false},
}

// readOffloads returns `ethtool -k iface` as feature name -> on.
func readOffloads(ctx context.Context, iface string) (map[string]bool, error) {
	out, err := exec.CommandContext(ctx, "ethtool", "-k", iface).Output()
	if err != nil {
		return nil, fmt.Errorf("ethtool -k %s: %w", iface, err)
	}
	return parseOffloads(string(out)), nil
}

// parseOffloads parses the "name: on|off [fixed]" lines of `ethtool -k`.
func parseOffloads(out string) map[string]bool {
	m := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		name, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		if f := strings.Fields(val); len(f) > 0 && (f[0] == "on" || f[0] == "off") {
			m[name] = f[0] == "on"
		}
	}
	return m
}

// setOffloads switches the features of iface with ethtool, checks that they
// took, and returns the function that puts back what was there.
func setOffloads(ctx context.Context, iface string, want []offload) (restore func() error, err error) {
	before, err := readOffloads(ctx, iface)
	if err != nil {
		return nil, err
	}
	var old []offload
	for _, o := range want {
		on, ok := before[o.long]
		if !ok {
			return nil, fmt.Errorf("ethtool -k %s: no feature %q", iface, o.long)
		}
		old = append(old, offload{short: o.short, long: o.long, on: on})
	}
	restore = func() error {
		// Not ctx: the features go back even after a cancellation.
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return applyOffloads(rctx, iface, old)
	}
	if err := applyOffloads(ctx, iface, want); err != nil {
		return nil, errors.Join(err, restore())
	}
	return restore, nil
}

// applyOffloads runs `ethtool -K iface name on|off ...` and reads back.
func applyOffloads(ctx context.Context, iface string, want []offload) error {
	args := []string{"-K", iface}
	for _, o := range want {
		args = append(args, o.short, onOff(o.on))
	}
	out, runErr := exec.CommandContext(ctx, "ethtool", args...).CombinedOutput()
	got, err := readOffloads(ctx, iface)
	if err != nil {
		return err
	}
	for _, o := range want {
		if got[o.long] != o.on {
			return fmt.Errorf("ethtool %s: %s is still %s (%v: %s)", strings.Join(args, " "), o.long,
				onOff(got[o.long]), runErr, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
