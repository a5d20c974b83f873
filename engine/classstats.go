package engine

import (
	"fmt"
	"slices"
	"time"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine/qos"
)

// ClassStats are one (port, guest, class)'s counters, as `xnic stats
// --classes` shows them: what the steering program classified to the
// class's socket on the port, and what the guest's class queue took, sent
// and dropped, by reason (summed over the workers; the send side lives on
// the guest's active port).
type ClassStats struct {
	Port    string `json:"port"`
	Guest   string `json:"guest"`
	GuestID int    `json:"guest_id"`
	Class   uint8  `json:"class"`
	Name    string `json:"name"`
	Active  bool   `json:"active"` // the guest sends from this port

	// Receive: the steering program's slot counters on this port.
	RxPackets      uint64 `json:"rx_packets"`
	RxBytes        uint64 `json:"rx_bytes"`
	RxRedirected   uint64 `json:"rx_redirected"`
	RxToClass0     uint64 `json:"rx_redirected_class0"` // no socket for the class: sent to class 0's
	RxPassNoSocket uint64 `json:"rx_pass_no_socket"`
	RxEarlyDrops   uint64 `json:"rx_early_drops"` // dropped by the steering program over the class's threshold
	RxECNMarked    uint64 `json:"rx_ecn_marked"`  // marked CE instead

	// Send: the class queue (descriptors) of the guest's scheduler.
	Enqueued      uint64  `json:"tx_enqueued"`
	EnqueuedBytes uint64  `json:"tx_enqueued_bytes"`
	Sent          uint64  `json:"tx_sent"`
	SentBytes     uint64  `json:"tx_sent_bytes"`
	DropTail      uint64  `json:"tx_drop_tail"`
	DropRED       uint64  `json:"tx_drop_red"`
	DropPolicer   uint64  `json:"tx_drop_policer"`
	ECNMarks      uint64  `json:"tx_ecn_marks"`
	Depth         uint64  `json:"tx_depth"`
	MaxDepth      uint64  `json:"tx_max_depth"`
	RateBps       float64 `json:"tx_rate_bps"` // bits per second sent since the previous ClassStats (0 the first time)
}

// classRate remembers the bytes a (guest, class) had sent at the previous
// ClassStats, for the rate now.
type classRate struct {
	at    time.Time
	bytes uint64
}

// ClassStats describes every class of every attached guest on each of its
// ports. It runs a function on each worker to read the schedulers (the
// workers own them), so it is for the control plane, not a hot loop.
func (e *Engine) ClassStats() ([]ClassStats, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	out := []ClassStats{}
	for _, g := range e.guests {
		if g == nil {
			continue
		}
		// The send side: the guest's schedulers, one per worker, summed.
		var tx [qos.MaxClasses]qos.Counters
		for wi, q := range g.txqs {
			if q.sched == nil {
				continue
			}
			e.workers[wi].Do(func() {
				for c := range q.sched.Classes() {
					add := q.sched.Counters(uint8(c))
					t := &tx[c]
					t.Enqueued += add.Enqueued
					t.EnqueuedBytes += add.EnqueuedBytes
					t.Sent += add.Sent
					t.SentBytes += add.SentBytes
					t.DropTail += add.DropTail
					t.DropRED += add.DropRED
					t.DropPolicer += add.DropPolicer
					t.Marks += add.Marks
					t.Depth += add.Depth
					t.MaxDepth += add.MaxDepth
				}
			})
		}
		// Its classes: those it receives in, and those it has sent in
		// (a DSCP or ports can select a class it has no socket for).
		classes := slices.Clone(g.classes)
		for c := range tx {
			if t := tx[c]; t.Enqueued+t.DropTail+t.DropRED+t.DropPolicer > 0 && !slices.Contains(classes, uint8(c)) {
				classes = append(classes, uint8(c))
			}
		}
		slices.Sort(classes)
		for pi, gp := range g.ports {
			for _, c := range classes {
				st := ClassStats{Port: gp.port.Name, Guest: g.Spec.Name, GuestID: g.ID, Class: c,
					Name: e.opts.class(c).Name, Active: pi == g.active}
				var rx bpf.SlotStats
				if !gp.port.gone.Load() {
					var err error
					if rx, err = gp.port.steer.SlotStats(g.ID, int(c)); err != nil {
						return nil, fmt.Errorf("engine: class stats: port %s: %w", gp.port.Name, err)
					}
				}
				st.RxPackets, st.RxBytes, st.RxRedirected = rx.Packets, rx.Bytes, rx.Redirected
				st.RxToClass0, st.RxPassNoSocket = rx.RedirectedClass0, rx.PassNoSocket
				st.RxEarlyDrops, st.RxECNMarked = rx.EarlyDrops, rx.EcnMarked
				if st.Active {
					t := tx[c]
					st.Enqueued, st.EnqueuedBytes, st.Sent, st.SentBytes = t.Enqueued, t.EnqueuedBytes, t.Sent, t.SentBytes
					st.DropTail, st.DropRED, st.DropPolicer, st.ECNMarks = t.DropTail, t.DropRED, t.DropPolicer, t.Marks
					st.Depth, st.MaxDepth = t.Depth, t.MaxDepth
					key := [2]int{g.ID, int(c)}
					if e.rates == nil {
						e.rates = map[[2]int]classRate{}
					}
					if prev, ok := e.rates[key]; ok && now.After(prev.at) && t.SentBytes >= prev.bytes {
						st.RateBps = float64(t.SentBytes-prev.bytes) * 8 / now.Sub(prev.at).Seconds()
					}
					e.rates[key] = classRate{at: now, bytes: t.SentBytes}
				}
				out = append(out, st)
			}
		}
	}
	return out, nil
}
