package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Timeouts of a receiver subprocess.
const (
	readyTimeout = 20 * time.Second // peers retry a busy queue for 5 s
	exitGrace    = 15 * time.Second // beyond its window, to report and clean up
	killDelay    = 2 * time.Second  // from SIGTERM to SIGKILL
	tailLines    = 12
)

// lineWriter splits what a subprocess writes into lines, calls onLine for
// each and keeps the last tailLines for error messages. mu guards all.
type lineWriter struct {
	mu      sync.Mutex
	partial []byte
	tail    []string
	onLine  func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(w.partial[:i]), "\r")
		w.partial = w.partial[i+1:]
		if len(w.tail) == tailLines {
			w.tail = w.tail[1:]
		}
		w.tail = append(w.tail, line)
		if w.onLine != nil {
			w.onLine(line)
		}
	}
	return len(p), nil
}

// Tail returns the last lines written, the unfinished one included.
func (w *lineWriter) Tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := strings.Join(w.tail, "\n")
	if len(w.partial) > 0 {
		t += "\n" + string(w.partial)
	}
	return strings.TrimSpace(t)
}

// receiverSpec is a receiver subprocess.
type receiverSpec struct {
	path  string
	args  []string
	ready func(line string) bool // true on the line that opens its window
}

// receiver is a started receiver subprocess.
type receiver struct {
	spec    receiverSpec
	cmd     *exec.Cmd
	stdout  bytes.Buffer
	stderr  *lineWriter
	ready   chan struct{} // closed on the ready line
	exited  chan struct{} // closed when Wait returned; waitErr is then set
	waitErr error
}

// startReceiver starts spec on cpu in its own process group, so a terminal's
// Ctrl-C reaches only this process, which stops it by PID.
func startReceiver(spec receiverSpec, cpu int) (*receiver, error) {
	r := &receiver{spec: spec, ready: make(chan struct{}), exited: make(chan struct{})}
	var once sync.Once
	r.stderr = &lineWriter{onLine: func(line string) {
		if spec.ready(line) {
			once.Do(func() { close(r.ready) })
		}
	}}
	r.cmd = exec.Command(spec.path, spec.args...)
	r.cmd.Stdout = &r.stdout
	r.cmd.Stderr = r.stderr
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := startPinned(r.cmd, cpu); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.path, err)
	}
	go func() {
		r.waitErr = r.cmd.Wait()
		close(r.exited)
	}()
	return r, nil
}

// waitReady waits for the ready line. It stops the process on failure.
func (r *receiver) waitReady(ctx context.Context) error {
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-r.ready:
		return nil
	case <-r.exited:
		return fmt.Errorf("%s exited before it was ready (%s): %s", r.name(), r.exitStatus(), r.stderr.Tail())
	case <-t.C:
		r.stop()
		return fmt.Errorf("%s not ready after %s: %s", r.name(), readyTimeout, r.stderr.Tail())
	case <-ctx.Done():
		r.stop()
		return ctx.Err()
	}
}

// waitExit waits up to timeout for the process to end by itself, then stops
// it. fail, when it delivers, aborts the wait with its error.
func (r *receiver) waitExit(ctx context.Context, timeout time.Duration, fail <-chan error) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.exited:
		if r.waitErr != nil {
			return fmt.Errorf("%s failed (%s): %s", r.name(), r.exitStatus(), r.stderr.Tail())
		}
		return nil
	case <-t.C:
		r.stop()
		return fmt.Errorf("%s still running %s after it started: stopped", r.name(), timeout)
	case err := <-fail:
		r.stop()
		return err
	case <-ctx.Done():
		r.stop()
		return ctx.Err()
	}
}

// stop sends SIGTERM to the process, SIGKILL after killDelay, and waits for
// it to be gone.
func (r *receiver) stop() {
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(killDelay):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

func (r *receiver) name() string {
	n := r.spec.path
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		n = n[i+1:]
	}
	return n
}

func (r *receiver) exitStatus() string {
	if r.waitErr == nil {
		return "exit status 0"
	}
	return r.waitErr.Error()
}

// busyQueue reports whether the process failed because the queue was still
// held by the previous socket.
func (r *receiver) busyQueue() bool {
	t := strings.ToLower(r.stderr.Tail())
	return strings.Contains(t, "device or resource busy") || strings.Contains(t, "ebusy")
}

// report parses the JSON object on the last non-empty stdout line.
func (r *receiver) report() (map[string]any, error) {
	lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	var obj map[string]any
	if err := json.Unmarshal([]byte(last), &obj); err != nil {
		return nil, fmt.Errorf("parse %s report %q: %w", r.name(), last, err)
	}
	if _, ok := obj["pps"].(float64); !ok {
		return nil, fmt.Errorf("parse %s report: no number \"pps\" in %s", r.name(), last)
	}
	return obj, nil
}
