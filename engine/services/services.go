// Package services holds the built-in services `xnic serve` runs on a
// guest's stack: TCP discard, TCP echo, UDP echo and an HTTP server with a
// status page, a download endpoint and an upload endpoint. They take a
// net.Listener or net.PacketConn, so the same code serves on a guest's
// netstack, on gVisor's own endpoints or on the host kernel, which is what
// the TCP benchmark compares.
package services

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kinds of service, as named in a config file.
const (
	Discard = "discard" // TCP: read and drop everything (RFC 863)
	Echo    = "echo"    // TCP: send back what arrives (RFC 862)
	UDPEcho = "udp-echo"
	HTTP    = "http"
)

// Kinds lists every kind.
func Kinds() []string { return []string{Discard, Echo, UDPEcho, HTTP} }

// DefaultPort is a kind's well-known port.
func DefaultPort(kind string) int {
	switch kind {
	case Discard:
		return 9
	case Echo, UDPEcho:
		return 7
	case HTTP:
		return 80
	}
	return 0
}

// Counters count what the services did. Safe for concurrent use.
type Counters struct {
	Conns        atomic.Uint64 // TCP connections accepted
	BytesIn      atomic.Uint64 // bytes read from clients
	BytesOut     atomic.Uint64 // bytes written to clients
	Requests     atomic.Uint64 // HTTP requests served
	Datagrams    atomic.Uint64 // UDP datagrams echoed
	ActiveConns  atomic.Int64
	ServeErrors  atomic.Uint64 // connections that ended with an error other than EOF
	lastErrMu    sync.Mutex
	lastErr      string
	lastErrUnixT int64
}

func (c *Counters) fail(err error) {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return
	}
	c.ServeErrors.Add(1)
	c.lastErrMu.Lock()
	c.lastErr, c.lastErrUnixT = err.Error(), time.Now().Unix()
	c.lastErrMu.Unlock()
}

// LastError is the last connection error and when it happened.
func (c *Counters) LastError() (string, time.Time) {
	c.lastErrMu.Lock()
	defer c.lastErrMu.Unlock()
	return c.lastErr, time.Unix(c.lastErrUnixT, 0)
}

// ServeDiscard reads and drops everything from every connection of ln
// until ln is closed.
func ServeDiscard(ln net.Listener, c *Counters) error {
	return serveTCP(ln, c, func(conn net.Conn) error {
		n, err := io.Copy(io.Discard, conn)
		c.BytesIn.Add(uint64(n))
		return err
	})
}

// ServeEcho sends back everything that arrives on every connection of ln.
func ServeEcho(ln net.Listener, c *Counters) error {
	return serveTCP(ln, c, func(conn net.Conn) error {
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				c.BytesIn.Add(uint64(n))
				m, werr := conn.Write(buf[:n])
				c.BytesOut.Add(uint64(m))
				if werr != nil {
					return werr
				}
			}
			if err != nil {
				return err
			}
		}
	})
}

func serveTCP(ln net.Listener, c *Counters, fn func(net.Conn) error) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		c.Conns.Add(1)
		c.ActiveConns.Add(1)
		go func() {
			defer c.ActiveConns.Add(-1)
			defer conn.Close()
			c.fail(fn(conn))
		}()
	}
}

// ServeUDPEcho sends every datagram back to its sender until pc is closed.
func ServeUDPEcho(pc net.PacketConn, c *Counters) error {
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("udp echo: %w", err)
		}
		c.BytesIn.Add(uint64(n))
		if _, err := pc.WriteTo(buf[:n], from); err != nil {
			c.fail(err)
			continue
		}
		c.Datagrams.Add(1)
		c.BytesOut.Add(uint64(n))
	}
}

// MaxDownload bounds GET /bytes/N.
const MaxDownload = 1 << 40

// HTTPHandler is the HTTP service:
//
//	GET  /              a one-line greeting naming the guest
//	GET  /status        the guest's status as JSON (status() plus the counters)
//	GET  /bytes/N       N bytes of a fixed pattern (download benchmark)
//	POST /upload        reads the body; answers {"bytes":N,"sha256":"..."}
func HTTPHandler(name string, c *Counters, status func() any) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		c.Requests.Add(1)
		fmt.Fprintf(w, "xnic guest %s\n", name)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		c.Requests.Add(1)
		st := map[string]any{
			"guest": name, "conns": c.Conns.Load(), "active_conns": c.ActiveConns.Load(),
			"bytes_in": c.BytesIn.Load(), "bytes_out": c.BytesOut.Load(), "requests": c.Requests.Load(),
			"datagrams": c.Datagrams.Load(), "serve_errors": c.ServeErrors.Load(),
		}
		if status != nil {
			st["stack"] = status()
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		c.Requests.Add(1)
		n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
		if err != nil || n < 0 || n > MaxDownload {
			http.Error(w, fmt.Sprintf("bytes: want 0..%d, got %q", int64(MaxDownload), r.PathValue("n")), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		m, err := io.Copy(w, io.LimitReader(Pattern(), n))
		c.BytesOut.Add(uint64(m))
		c.fail(err)
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		c.Requests.Add(1)
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		c.BytesIn.Add(uint64(n))
		if err != nil {
			c.fail(err)
			http.Error(w, "upload: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"bytes": n, "sha256": hex.EncodeToString(h.Sum(nil))})
	})
	return mux
}

// Pattern is the endless byte stream GET /bytes/N sends: bytes 0..250
// repeating (251 is prime, so the pattern does not line up with any buffer
// or segment size). PatternSHA256 gives the hash of its first n bytes.
func Pattern() io.Reader { return &pattern{} }

type pattern struct{ off int }

var patternBlock = func() []byte {
	b := make([]byte, 251*256)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

func (p *pattern) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m := copy(b[n:], patternBlock[p.off:])
		n += m
		p.off = (p.off + m) % 251
	}
	return n, nil
}

// PatternSHA256 is the hex sha256 of the first n bytes of Pattern.
func PatternSHA256(n int64) string {
	h := sha256.New()
	io.Copy(h, io.LimitReader(Pattern(), n))
	return hex.EncodeToString(h.Sum(nil))
}

// Service is one running service.
type Service struct {
	Kind    string
	Addr    string
	stop    func() error
	done    chan error
	closing atomic.Bool
}

// Stop closes the service's listener and waits for its loop to end.
// Connections already accepted finish on their own.
func (s *Service) Stop() error {
	s.closing.Store(true)
	err := s.stop()
	return errors.Join(err, <-s.done)
}

// finish reports how the service's loop ended: an error after Stop is the
// listener closing under it (each stack words that its own way), not a
// failure.
func (s *Service) finish(err error) {
	if s.closing.Load() {
		err = nil
	}
	s.done <- err
}

// Net is what a service needs from a network: a guest's stack, or the
// host's (HostNet).
type Net interface {
	Listen(network, address string) (net.Listener, error)
	ListenPacket(network, address string) (net.PacketConn, error)
}

// HostNet is the host kernel's network.
type HostNet struct{}

func (HostNet) Listen(network, address string) (net.Listener, error) {
	return net.Listen(network, address)
}

func (HostNet) ListenPacket(network, address string) (net.PacketConn, error) {
	return net.ListenPacket(network, address)
}

// Start runs a service of kind on port (0: DefaultPort) of n, on every
// address. name and status feed the HTTP status page.
func Start(n Net, kind string, port int, name string, c *Counters, status func() any) (*Service, error) {
	if port == 0 {
		port = DefaultPort(kind)
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("service %s: port: want 1..65535, got %d", kind, port)
	}
	addr := ":" + strconv.Itoa(port)
	s := &Service{Kind: kind, Addr: addr, done: make(chan error, 1)}
	switch kind {
	case UDPEcho:
		pc, err := n.ListenPacket("udp", addr)
		if err != nil {
			return nil, fmt.Errorf("service %s on %s: %w", kind, addr, err)
		}
		s.stop = pc.Close
		go func() { s.finish(ServeUDPEcho(pc, c)) }()
		return s, nil
	case Discard, Echo, HTTP:
	default:
		return nil, fmt.Errorf("service: kind: want one of %s, got %q", strings.Join(Kinds(), ", "), kind)
	}
	ln, err := n.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("service %s on %s: %w", kind, addr, err)
	}
	switch kind {
	case Discard:
		s.stop = ln.Close
		go func() { s.finish(ServeDiscard(ln, c)) }()
	case Echo:
		s.stop = ln.Close
		go func() { s.finish(ServeEcho(ln, c)) }()
	case HTTP:
		srv := &http.Server{Handler: HTTPHandler(name, c, status), ReadHeaderTimeout: 10 * time.Second}
		s.stop = func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				return srv.Close()
			}
			return nil
		}
		go func() {
			err := srv.Serve(ln)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			s.finish(err)
		}()
	}
	return s, nil
}
