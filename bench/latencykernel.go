package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/xnic/xnic/engine/services"
)

// ServeKernelEcho serves TCP echo and UDP echo (engine/services) on addr
// ("IP:PORT") with the host kernel's sockets until ctx is done: the kernel
// contender's server of the latency benchmark, which RunLatency runs as
// `xnic bench latency --serve-kernel ADDR`. It prints a line starting with
// KernelServerReady on ready once both listen, and at the end its counters
// as one JSON object on report.
func ServeKernelEcho(ctx context.Context, addr string, ready, report io.Writer) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("serve kernel echo: address: %w", err)
	}
	ln, err := net.Listen("tcp", ap.String())
	if err != nil {
		return fmt.Errorf("serve kernel echo: %w", err)
	}
	pc, err := net.ListenPacket("udp", ap.String())
	if err != nil {
		ln.Close()
		return fmt.Errorf("serve kernel echo: %w", err)
	}
	var c services.Counters
	failed := make(chan error, 2)
	go func() { failed <- services.ServeEcho(ln, &c) }()
	go func() { failed <- services.ServeUDPEcho(pc, &c) }()
	fmt.Fprintf(ready, "%s: tcp and udp echo on %s\n", KernelServerReady, ap)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-failed:
		if serveErr == nil {
			serveErr = errors.New("a listener closed")
		}
		serveErr = fmt.Errorf("serve kernel echo: %w", serveErr)
	}
	ln.Close()
	pc.Close()
	rep := map[string]any{
		"conns": c.Conns.Load(), "bytes_in": c.BytesIn.Load(), "bytes_out": c.BytesOut.Load(),
		"datagrams": c.Datagrams.Load(), "serve_errors": c.ServeErrors.Load(),
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
