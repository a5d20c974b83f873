// Package peer holds what the Go benchmark peers share: their common flags,
// the measurement window, the pinned-XSKMAP registration and the report
// (a human summary, then optionally one JSON object as the last line).
package peer

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
)

// ReadyLine is what a peer prints on stderr when its measurement window
// starts: its socket is registered and counting has begun.
const ReadyLine = "ready"

// Flags are the flags every peer takes.
type Flags struct {
	Iface    string
	Queue    int
	Duration time.Duration
	JSON     bool
	XSKMap   string // only for AF_XDP peers
}

// Register adds the common flags to fs. withXSKMap adds -xskmap.
func (f *Flags) Register(fs *flag.FlagSet, withXSKMap bool) {
	fs.StringVar(&f.Iface, "iface", "", "interface to receive on (required)")
	fs.IntVar(&f.Queue, "queue", 0, "receive queue id")
	fs.DurationVar(&f.Duration, "duration", 5*time.Second, "length of the measurement window")
	fs.BoolVar(&f.JSON, "json", false, "print a JSON object as the last line")
	if withXSKMap {
		fs.StringVar(&f.XSKMap, "xskmap", "", "pinned BPF_MAP_TYPE_XSKMAP to insert the socket into at key=queue (required)")
	}
}

// Validate checks the parsed flags.
func (f *Flags) Validate(withXSKMap bool) error {
	switch {
	case f.Iface == "":
		return errors.New("validate flags: -iface is required")
	case f.Queue < 0:
		return fmt.Errorf("validate flags: -queue %d is negative", f.Queue)
	case f.Duration <= 0:
		return fmt.Errorf("validate flags: -duration %s is not positive", f.Duration)
	case withXSKMap && f.XSKMap == "":
		return errors.New("validate flags: -xskmap is required")
	}
	return nil
}

// Window is the measurement window. Stopped turns true when the duration
// has passed or on SIGINT/SIGTERM; the receive loop polls it.
type Window struct {
	start   time.Time
	stopped atomic.Bool
	timer   *time.Timer
	sigs    chan os.Signal
}

// Start opens the window now and announces it with ReadyLine on stderr.
func Start(d time.Duration) *Window {
	w := &Window{sigs: make(chan os.Signal, 1)}
	signal.Notify(w.sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		if _, ok := <-w.sigs; ok {
			w.stopped.Store(true)
		}
	}()
	w.start = time.Now()
	w.timer = time.AfterFunc(d, func() { w.stopped.Store(true) })
	fmt.Fprintln(os.Stderr, ReadyLine)
	return w
}

// Stopped reports whether the window has closed.
func (w *Window) Stopped() bool { return w.stopped.Load() }

// Close ends the window and returns its length.
func (w *Window) Close() time.Duration {
	elapsed := time.Since(w.start)
	w.timer.Stop()
	w.stopped.Store(true)
	signal.Stop(w.sigs)
	close(w.sigs)
	return elapsed
}

// XSKMapEntry is a socket inserted into a pinned XSKMAP.
type XSKMapEntry struct {
	m   *ebpf.Map
	key uint32
}

// InsertXSK opens the XSKMAP pinned at path and stores fd at key=queue.
func InsertXSK(path string, queue int, fd int) (*XSKMapEntry, error) {
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return nil, fmt.Errorf("open pinned xskmap %s: %w", path, err)
	}
	if m.Type() != ebpf.XSKMap {
		m.Close()
		return nil, fmt.Errorf("open pinned xskmap %s: map type is %s, not XSKMap", path, m.Type())
	}
	key := uint32(queue)
	if err := m.Put(key, uint32(fd)); err != nil {
		m.Close()
		return nil, fmt.Errorf("insert xsk into %s at key %d: %w", path, key, err)
	}
	return &XSKMapEntry{m: m, key: key}, nil
}

// Remove deletes the entry and closes the map. The kernel also drops the
// entry when the socket closes; this makes it explicit.
func (e *XSKMapEntry) Remove() error {
	defer e.m.Close()
	if err := e.m.Delete(e.key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove xsk from xskmap at key %d: %w", e.key, err)
	}
	return nil
}

// Result is what a peer measured. Stats holds kernel (and loop) counters,
// reported as top-level JSON fields next to the common ones.
type Result struct {
	Name    string
	Iface   string
	Queue   int
	Packets uint64
	Elapsed time.Duration
	Stats   map[string]uint64
	Info    map[string]any // non-counter facts: mode, sizes
}

// PPS is packets per second over the window.
func (r *Result) PPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Packets) / r.Elapsed.Seconds()
}

// Write prints the human summary and, if asJSON, a last line with one JSON
// object: name, iface, queue, packets, seconds, pps, then Info and Stats.
func (r *Result) Write(w io.Writer, asJSON bool) error {
	if _, err := fmt.Fprintf(w, "%s: %s queue %d: %d packets in %.3f s = %.0f pps\n",
		r.Name, r.Iface, r.Queue, r.Packets, r.Elapsed.Seconds(), r.PPS()); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	if len(r.Info) > 0 {
		fmt.Fprintf(w, "  info:")
		for _, k := range sortedKeys(r.Info) {
			fmt.Fprintf(w, " %s=%v", k, r.Info[k])
		}
		fmt.Fprintln(w)
	}
	if len(r.Stats) > 0 {
		fmt.Fprintf(w, "  stats:")
		for _, k := range sortedKeys(r.Stats) {
			fmt.Fprintf(w, " %s=%d", k, r.Stats[k])
		}
		fmt.Fprintln(w)
	}
	if !asJSON {
		return nil
	}
	obj := make(map[string]any, 6+len(r.Stats)+len(r.Info))
	for k, v := range r.Info {
		obj[k] = v
	}
	for k, v := range r.Stats {
		obj[k] = v
	}
	obj["name"] = r.Name
	obj["iface"] = r.Iface
	obj["queue"] = r.Queue
	obj["packets"] = r.Packets
	obj["seconds"] = r.Elapsed.Seconds()
	obj["pps"] = r.PPS()
	line, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
