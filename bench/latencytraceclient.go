package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// The trace's client runs as a process of its own, in the lab's peer
// netns, as `xnic bench latency --trace-client SPEC`: the process that
// holds the engine then runs with one P per worker, as `xnic serve` does,
// and the client's goroutines neither take that P nor add threads of
// their own to it. The client stamps its write, its kernel's receive of
// the answer and its read on the wall clock, which the engine's process
// shares (see traceRecorder).

// TraceClientSpec is what one client process runs: Warmup then Requests
// requests of Kind (KindTCP or KindUDP) of Size bytes to Addr, one in
// flight, each bounded by Timeout.
type TraceClientSpec struct {
	Kind     string        `json:"kind"`
	Addr     string        `json:"addr"`
	Size     int           `json:"size"`
	Warmup   int           `json:"warmup"`
	Requests int           `json:"requests"`
	Timeout  time.Duration `json:"timeout_ns"`
}

// validate checks a spec, its requests as LatencyTraceOptions.Validate
// checks them.
func (s TraceClientSpec) validate() error {
	if s.Kind != KindTCP && s.Kind != KindUDP {
		return optErr("kind", "must be %s or %s, got %q", KindTCP, KindUDP, s.Kind)
	}
	if _, err := net.ResolveUDPAddr("udp", s.Addr); err != nil || s.Addr == "" {
		return optErr("addr", "want IP:PORT, got %q", s.Addr)
	}
	return validateTraceRequests(s.Requests, s.Warmup, s.Size, s.Timeout)
}

// traceClientResult is the client process's report, one JSON object on
// its standard output.
type traceClientResult struct {
	Lost int `json:"lost"`
	// Stamps are, per request from sequence number 0: the client's write,
	// its kernel's receive of the answer and its read, as wall-clock ns
	// since 1970; 0: not seen.
	Stamps [][3]int64 `json:"stamps"`
	Err    string     `json:"error,omitempty"`
}

// RunTraceClient is the client process of the trace (`xnic bench latency
// --trace-client SPEC`, SPEC a TraceClientSpec as JSON): it dials from the
// network namespace it runs in, runs the requests and writes its stamps to
// out, also when a request failed.
func RunTraceClient(ctx context.Context, spec string, out io.Writer) error {
	var s TraceClientSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		return fmt.Errorf("trace client: spec: %w", err)
	}
	if err := s.validate(); err != nil {
		return fmt.Errorf("trace client: %w", err)
	}
	n := s.Warmup + s.Requests
	rec := newTraceRecorder(n, s.Size)
	var d net.Dialer
	c := &pingClient{dial: d.DialContext, addr: s.Addr, size: s.Size, warmup: s.Warmup, requests: s.Requests, timeout: s.Timeout}
	lost, err := c.traced(ctx, s.Kind, rec)
	res := traceClientResult{Lost: lost, Stamps: make([][3]int64, n)}
	for seq := range n {
		res.Stamps[seq] = [3]int64{rec.wall(seq, stClientWrite), rec.wall(seq, stClientKernelRx), rec.wall(seq, stClientRead)}
	}
	if err != nil {
		res.Err = err.Error()
	}
	if werr := json.NewEncoder(out).Encode(&res); werr != nil {
		return errors.Join(err, fmt.Errorf("trace client: write the stamps: %w", werr))
	}
	if err != nil {
		return fmt.Errorf("trace client: %w", err)
	}
	return nil
}

// runTraceClient runs spec's client as its own process in the lab's peer
// netns and moves its stamps into rec; it returns the UDP requests lost.
func runTraceClient(ctx context.Context, srv *serverLab, xnic string, spec TraceClientSpec, rec *traceRecorder) (lost int, err error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return 0, err
	}
	cmd := srv.lab.PeerCommand(ctx, xnic, "bench", "latency", "--trace-client", string(b))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res traceClientResult
	if jerr := json.Unmarshal(stdout.Bytes(), &res); jerr != nil {
		return 0, fmt.Errorf("the client's process wrote no report: %w; its stderr: %s",
			errors.Join(runErr, jerr), strings.TrimSpace(stderr.String()))
	}
	if len(res.Stamps) != spec.Warmup+spec.Requests {
		return res.Lost, fmt.Errorf("the client's process reported %d requests, not %d", len(res.Stamps), spec.Warmup+spec.Requests)
	}
	for seq, st := range res.Stamps {
		rec.markWall(uint64(seq), stClientWrite, st[0])
		rec.markWall(uint64(seq), stClientKernelRx, st[1])
		rec.markWall(uint64(seq), stClientRead, st[2])
	}
	if res.Err != "" {
		return res.Lost, errors.New(res.Err)
	}
	if runErr != nil {
		return res.Lost, fmt.Errorf("the client's process: %w; its stderr: %s", runErr, strings.TrimSpace(stderr.String()))
	}
	return res.Lost, nil
}
