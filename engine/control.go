package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/xnic/xnic/internal/safedir"
)

// DefaultControlPath is where a running engine answers `xnic stats --top`.
const DefaultControlPath = "/run/xnic/engine.sock"

// ControlRequest is one request on the control socket, a JSON line.
type ControlRequest struct {
	// Op is "stats" (Stats), "conns" (TopConns), "guests" (GuestStats),
	// "classes" (ClassStats) or "migrate" (MigrateGuest).
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
	Classes   []ClassStats `json:"classes,omitempty"`
	Migration *Migration   `json:"migration,omitempty"`
}

// MaxTopConns bounds ControlRequest.N.
const MaxTopConns = 1 << 20

// Limits of the control socket: at most MaxControlConns connections are
// served at once (more are told so and closed), and a connection that sends
// no full request within ControlReadTimeout is closed, so idle clients
// cannot pile up.
const (
	MaxControlConns    = 16
	ControlReadTimeout = 2 * time.Second
)

// ControlServer serves an engine's counters on a unix socket, one request
// per connection, so that other processes (xnic stats) can read what lives
// only in the engine's memory: the connection contexts. The socket is mode
// 0600 in a directory of mode 0700 (safedir), whatever the umask: only
// root talks to the engine.
type ControlServer struct {
	e    *Engine
	ln   net.Listener
	path string
	wg   sync.WaitGroup
	sem  chan struct{} // one token per connection being served
}

// ControlState is what is at a control socket's path.
type ControlState string

// The states of a control socket's path.
const (
	ControlAbsent  ControlState = "absent"  // nothing there
	ControlServing ControlState = "serving" // an engine answers
	ControlStale   ControlState = "stale"   // a socket nobody answers: its engine is gone
)

// ProbeControl says what is at the control socket path: a file there that
// is not a socket is an error.
func ProbeControl(path string) (ControlState, error) {
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return ControlServing, nil
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return ControlAbsent, nil
	}
	if err != nil {
		return "", fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return "", fmt.Errorf("control socket %s: a %s is there, not a socket", path, fi.Mode().Type())
	}
	return ControlStale, nil
}

// RemoveStaleControl removes the control socket at path when no engine
// answers there, and says whether it did; one that answers is an error.
func RemoveStaleControl(path string) (removed bool, err error) {
	st, err := ProbeControl(path)
	switch {
	case err != nil:
		return false, err
	case st == ControlServing:
		return false, fmt.Errorf("control socket %s: another engine is serving there", path)
	case st == ControlAbsent:
		return false, nil
	}
	if err := os.Remove(path); err != nil {
		return false, fmt.Errorf("control socket: remove stale %s: %w", path, err)
	}
	return true, nil
}

// ServeControl listens on path. A socket file left by an engine that died
// is replaced, and the engine logs it; one that answers is an error.
func (e *Engine) ServeControl(path string) (*ControlServer, error) {
	if err := safedir.Ensure(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("engine: control socket: %w", err)
	}
	removed, err := RemoveStaleControl(path)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	if removed {
		e.logf("removed the control socket %s of an engine that no longer runs", path)
	}
	// Bind under a temporary name, make it 0600, then rename it into
	// place: the socket never appears at path with the umask's mode.
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("engine: control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // Close removes path itself
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("engine: control socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("engine: control socket: %w", err)
	}
	s := &ControlServer{e: e, ln: ln, path: path, sem: make(chan struct{}, MaxControlConns)}
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
		select {
		case s.sem <- struct{}{}:
		default:
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			json.NewEncoder(c).Encode(&ControlReply{Error: fmt.Sprintf("too many control connections (%d served at once): try again", MaxControlConns)})
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.sem }()
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(ControlReadTimeout))
			var req ControlRequest
			var rep ControlReply
			line, err := bufio.NewReader(io.LimitReader(c, 1<<16)).ReadBytes('\n')
			c.SetDeadline(time.Now().Add(10 * time.Second))
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
	case "classes":
		cs, err := s.e.ClassStats()
		if err != nil {
			return ControlReply{Error: strings.TrimPrefix(err.Error(), "engine: ")}
		}
		return ControlReply{Classes: cs}
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
		return ControlReply{Error: fmt.Sprintf("op: unknown %q (want stats, conns, guests, classes or migrate)", req.Op)}
	}
}

// Close stops serving and removes the socket file.
func (s *ControlServer) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	os.Remove(s.path)
	return err
}

// Errors of QueryControl.
var (
	// ErrNoEngine: nothing answers on the control socket.
	ErrNoEngine = errors.New("no engine answers on the control socket")
	// ErrControlPermission: the caller may not open the control socket
	// (it is root's).
	ErrControlPermission = errors.New("no permission on the control socket")
)

// QueryControl sends req to the engine serving at path and returns its
// reply; a reply that carries an error is returned as one.
func QueryControl(ctx context.Context, path string, req ControlRequest) (*ControlReply, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("control socket %s: permission denied (run as root): %w", path, ErrControlPermission)
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s (is xnic run or xnic serve running?): %w", ErrNoEngine, path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	b, _ := json.Marshal(req)
	// A server that refuses the connection (too many) answers and closes
	// before reading: its reply is read even when the send failed.
	_, werr := c.Write(append(b, '\n'))
	var rep ControlReply
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		if werr != nil {
			return nil, fmt.Errorf("send control request: %w", werr)
		}
		return nil, fmt.Errorf("read control reply: %w", err)
	}
	if rep.Error != "" {
		return nil, fmt.Errorf("engine: %s", rep.Error)
	}
	return &rep, nil
}

// PipelineOn reports whether the workers run the receive pipeline.
func (e *Engine) PipelineOn() bool { return e.opts.Pipeline != nil }
