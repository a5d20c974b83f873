package metrics

import (
	"errors"
	"fmt"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/stack"
	"github.com/xnic/xnic/umem"
)

// Source is what a Collector reads at scrape time. FromEngine makes one of
// an *engine.Engine; tests give their own.
type Source interface {
	// Stats are the engine-wide counters (Engine.Stats).
	Stats() (engine.Stats, error)
	// GuestStats describe every attached guest (Engine.GuestStats).
	GuestStats() []engine.GuestStats
	// ClassStats are the (port, guest, class) counters (Engine.ClassStats).
	ClassStats() ([]engine.ClassStats, error)
	// QueueStats are the steering and XSK counters of every (port, queue)
	// the engine serves.
	QueueStats() ([]QueueStats, error)
}

// QueueStats are one (port, rx queue)'s counters: the steering program's,
// and the kernel's XSK statistics summed over the sockets bound there (the
// raw socket and each guest's class sockets).
type QueueStats struct {
	Port  string
	Queue int
	Steer bpf.SteerStats
	XSK   umem.Statistics
}

// StackSource is a guest's user-space TCP/IP stack (*stack.Guest).
type StackSource interface {
	Stats() stack.Stats
}

// GuestStack names the guest a stack belongs to.
type GuestStack struct {
	Guest string
	Stack StackSource
}

// engineSource is an *engine.Engine with QueueStats.
type engineSource struct{ *engine.Engine }

// FromEngine makes e a Source.
func FromEngine(e *engine.Engine) Source { return engineSource{e} }

var _ Source = engineSource{}

// QueueStats reads each port's steering counters for the queues the engine
// serves, and sums the XSK statistics of the sockets on each (port, queue),
// as Engine.Stats sums them over all. Errors of one port or socket do not
// hide the others: they come back joined with what could be read.
func (s engineSource) QueueStats() ([]QueueStats, error) {
	ports := s.Ports()
	queues := s.Options().Queues
	out := make([]QueueStats, 0, len(ports)*len(queues))
	at := map[[2]int]int{} // (port index, queue) -> index in out
	var errs []error
	for pi, p := range ports {
		st, err := p.Steer().Stats()
		if err != nil {
			errs = append(errs, fmt.Errorf("port %s: %w", p.Name, err))
		}
		for _, q := range queues {
			qs := QueueStats{Port: p.Name, Queue: q}
			if q >= 0 && q < len(st) {
				qs.Steer = st[q]
			}
			at[[2]int{pi, q}] = len(out)
			out = append(out, qs)
		}
	}
	for _, w := range s.Workers() {
		for _, ep := range w.PolledEndpoints() {
			i, ok := at[[2]int{ep.Port, ep.Sock.Queue()}]
			if !ok {
				continue
			}
			x, err := ep.Sock.Statistics()
			if err != nil {
				errs = append(errs, fmt.Errorf("port %s queue %d: %w", out[i].Port, out[i].Queue, err))
				continue
			}
			t := &out[i].XSK
			t.RxDropped += x.RxDropped
			t.RxInvalidDescs += x.RxInvalidDescs
			t.TxInvalidDescs += x.TxInvalidDescs
			t.RxRingFull += x.RxRingFull
			t.RxFillRingEmptyDescs += x.RxFillRingEmptyDescs
			t.TxRingEmptyDescs += x.TxRingEmptyDescs
		}
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("queue stats: %w", errors.Join(errs...))
	}
	return out, nil
}
