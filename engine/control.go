package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DefaultControlPath is where a running engine answers `xnic stats --conns`.
const DefaultControlPath = "/run/xnic/engine.sock"

// ControlRequest is one request on the control socket, a JSON line.
type ControlRequest struct {
	// Op is "stats" (Stats), "conns" (TopConns), "guests" (GuestStats) or
	// "migrate" (MigrateGuest).
	Op string `json:"op"`
	// N is how many connections "conns" returns.
	N int `json:"n,omitempty"`
	// Guest and To name the guest "migrate" moves and its new port.
	Guest string `json:"guest,omitempty"`
	To    string `json:"to,omitempty"`
}

// ControlReply is the answer, a JSON line.
type ControlReply struct {
	Error string     `json:"error,omitempty"`
	Stats *Stats     `json:"stats,omitempty"`
	Conns []ConnStat `json:"conns,omitempty"`
	// Guests answers "guests"; Migration answers "migrate".
	Guests    []GuestStats `json:"guests,omitempty"`
	Migration *Migration   `json:"migration,omitempty"`
}

// MaxTopConns bounds ControlRequest.N.
const MaxTopConns = 1 << 20

// ControlServer serves an engine's counters on a unix socket, one request
// per connection, so that other processes (xnic stats) can read what lives
// only in the engine's memory: the connection contexts.
type ControlServer struct {
	e    *Engine
	ln   net.Listener
	path string
	wg   sync.WaitGroup
}

// ServeControl listens on path. A socket file left by an engine that died
// is replaced; one that answers is an error.
func (e *Engine) ServeControl(path string) (*ControlServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("engine: control socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("engine: control socket %s: another engine is serving there", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("engine: control socket: %w", err)
	}
	s := &ControlServer{e: e, ln: ln, path: path}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *ControlServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			var req ControlRequest
			var rep ControlReply
			line, err := bufio.NewReader(c).ReadBytes('\n')
			if err == nil {
				err = json.Unmarshal(line, &req)
			}
			switch {
			case err != nil:
				rep.Error = fmt.Sprintf("read request: %s", err)
			default:
				rep = s.answer(req)
			}
			json.NewEncoder(c).Encode(&rep)
		}()
	}
}

func (s *ControlServer) answer(req ControlRequest) ControlReply {
	switch req.Op {
	case "stats":
		st, err := s.e.Stats()
		if err != nil {
			return ControlReply{Error: err.Error()}
		}
		return ControlReply{Stats: &st}
	case "conns":
		if req.N < 1 || req.N > MaxTopConns {
			return ControlReply{Error: fmt.Sprintf("n: want 1..%d, got %d", MaxTopConns, req.N)}
		}
		if !s.e.PipelineOn() {
			return ControlReply{Error: "this engine runs no pipeline, so it keeps no connections"}
		}
		return ControlReply{Conns: s.e.TopConns(req.N)}
	case "guests":
		return ControlReply{Guests: s.e.GuestStats()}
	case "migrate":
		if req.Guest == "" || req.To == "" {
			return ControlReply{Error: "migrate: guest and to are required"}
		}
		m, err := s.e.MigrateGuest(req.Guest, req.To)
		if err != nil {
			// QueryControl says "engine: " once for the whole reply.
			return ControlReply{Error: strings.TrimPrefix(err.Error(), "engine: ")}
		}
		return ControlReply{Migration: &m}
	default:
		return ControlReply{Error: fmt.Sprintf("op: unknown %q (want stats, conns, guests or migrate)", req.Op)}
	}
}

// Close stops serving and removes the socket file.
func (s *ControlServer) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	os.Remove(s.path)
	return err
}

// ErrNoEngine: nothing answers on the control socket.
var ErrNoEngine = errors.New("no engine answers on the control socket")

// QueryControl sends req to the engine serving at path and returns its
// reply; a reply that carries an error is returned as one.
func QueryControl(ctx context.Context, path string, req ControlRequest) (*ControlReply, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w %s (is xnic run or xnic serve running?): %w", ErrNoEngine, path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("send control request: %w", err)
	}
	var rep ControlReply
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		return nil, fmt.Errorf("read control reply: %w", err)
	}
	if rep.Error != "" {
		return nil, fmt.Errorf("engine: %s", rep.Error)
	}
	return &rep, nil
}

// PipelineOn reports whether the workers run the receive pipeline.
func (e *Engine) PipelineOn() bool { return e.opts.Pipeline != nil }
