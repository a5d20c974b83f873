package engine

import (
	"fmt"
	"sync"
	"time"
)

// The engine logs its drops as events, not per packet: once when a kind
// of drop starts, at most once a minute while it goes on (with the count
// since the last line), and once when it has stopped for a while (with the
// total). The counters themselves are in Stats, xnic stats and the metrics.

// dropKinds are the drops the engine watches, by name, read from Stats.
var dropKinds = []struct {
	name string
	get  func(*Stats) uint64
}{
	{"frames lost in a socket's rx ring (full, or no frame to fill)", func(s *Stats) uint64 { return s.Drops() }},
	{"malformed frames dropped by the steering program", func(s *Stats) uint64 { return s.Steer.DroppedMalformed }},
	{"frames dropped early by the steering program (a class over its rx threshold)", func(s *Stats) uint64 { return s.Steer.EarlyDrops }},
	{"frames dropped for a bad checksum", func(s *Stats) uint64 { return s.Pipeline.CsumBad }},
	{"guests' sends dropped for want of a free frame", func(s *Stats) uint64 { return s.Tx.NoFrames }},
	{"guests' sends refused by a full send queue", func(s *Stats) uint64 { return s.Tx.SendQueueFull }},
	{"guests' frames dropped by their class queues (tail, RED, policer)", func(s *Stats) uint64 { return s.Tx.QueueDrops }},
	{"guests' sends dropped on a port without link", func(s *Stats) uint64 { return s.Tx.LinkDown }},
	{"guests' sends refused by spoof checks", func(s *Stats) uint64 { return s.TxSpoofed }},
	{"frames steered to a guest but addressed to another MAC", func(s *Stats) uint64 { return s.RxWrongMAC }},
}

// dropLogEvery is the least time between two lines of one ongoing kind;
// dropQuiet is how long a kind must stay at zero to count as stopped.
const (
	dropLogEvery = time.Minute
	dropQuiet    = 10 * time.Second
)

// dropWatch turns successive Stats into log lines. Its state belongs to
// the one goroutine that calls observe.
type dropWatch struct {
	kinds []dropState // by dropKinds; nil until the first observation
}

// dropState is one kind of drop's watch.
type dropState struct {
	last   uint64    // the count at the previous observation
	active bool      // drops since started, not stopped yet
	since  uint64    // drops since the kind's last line
	total  uint64    // drops since the kind started
	logged time.Time // the kind's last line
	moved  time.Time // the kind's last increase
}

// observe takes the counters at now and returns the lines to log.
func (d *dropWatch) observe(now time.Time, st *Stats) []string {
	first := d.kinds == nil
	if first {
		d.kinds = make([]dropState, len(dropKinds))
	}
	var lines []string
	for i, k := range dropKinds {
		ks := &d.kinds[i]
		cur := k.get(st)
		if first || cur < ks.last {
			ks.last = cur // the first look, or a counter that went back (a port gone): a new base
			continue
		}
		n := cur - ks.last
		ks.last = cur
		switch {
		case n > 0 && !ks.active:
			ks.active, ks.since, ks.total = true, 0, n
			ks.logged, ks.moved = now, now
			lines = append(lines, fmt.Sprintf("drops started: %s: %d", k.name, n))
		case n > 0:
			ks.since += n
			ks.total += n
			ks.moved = now
			if now.Sub(ks.logged) >= dropLogEvery {
				lines = append(lines, fmt.Sprintf("drops go on: %s: %d in the last %s", k.name, ks.since, now.Sub(ks.logged).Round(time.Second)))
				ks.logged, ks.since = now, 0
			}
		case ks.active && now.Sub(ks.moved) >= dropQuiet:
			ks.active = false
			lines = append(lines, fmt.Sprintf("drops stopped: %s: %d in all", k.name, ks.total))
		}
	}
	return lines
}

// dropBase is a watch whose base is the counters now: what came before
// is not news. Start takes it before the workers run, so that no drop
// after Start can fall before the base.
func (e *Engine) dropBase() *dropWatch {
	d := &dropWatch{}
	if st, err := e.Stats(); err == nil {
		d.observe(time.Now(), &st)
	}
	return d
}

// watchDrops logs the drop events every second until stop is closed.
func (e *Engine) watchDrops(d *dropWatch, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			st, err := e.Stats()
			if err != nil {
				continue // a port going away; the link watcher reports it
			}
			for _, line := range d.observe(now, &st) {
				e.logWarn(line)
			}
		}
	}
}
