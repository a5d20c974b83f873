package engine

import (
	"fmt"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/umem"
)

// Stats is a snapshot of the engine's counters, summed over ports and queues.
type Stats struct {
	RxPackets uint64 `json:"rx_packets"` // received by the workers
	RxBytes   uint64 `json:"rx_bytes"`
	// The kernel's XSK statistics, summed over every socket.
	XSK umem.Statistics `json:"xsk"`
	// The steering programs' counters, summed over ports and queues.
	Steer bpf.SteerStats `json:"steer"`
	// Wakeups the workers sent because the kernel asked for them.
	RxWakeups   uint64 `json:"rx_wakeups"`
	EmptyPasses uint64 `json:"empty_passes"`
}

// Drops are the frames the kernel steered to a socket but could not deliver:
// the rx ring was full or there was no frame to copy into.
func (s Stats) Drops() uint64 { return s.XSK.RxDropped + s.XSK.RxRingFull }

// Stats reads every counter. It is safe to call while the workers run.
func (e *Engine) Stats() (Stats, error) {
	var st Stats
	for _, w := range e.workers {
		st.RxPackets += w.Counters.RxPackets.Load()
		st.RxBytes += w.Counters.RxBytes.Load()
		st.RxWakeups += w.Counters.RxWakeups.Load()
		st.EmptyPasses += w.Counters.EmptyPasses.Load()
		for _, ep := range w.eps {
			x, err := ep.Sock.Statistics()
			if err != nil {
				return st, fmt.Errorf("engine: %w", err)
			}
			st.XSK.RxDropped += x.RxDropped
			st.XSK.RxInvalidDescs += x.RxInvalidDescs
			st.XSK.TxInvalidDescs += x.TxInvalidDescs
			st.XSK.RxRingFull += x.RxRingFull
			st.XSK.RxFillRingEmptyDescs += x.RxFillRingEmptyDescs
			st.XSK.TxRingEmptyDescs += x.TxRingEmptyDescs
		}
	}
	for _, p := range e.ports {
		t, err := p.steer.TotalStats()
		if err != nil {
			return st, fmt.Errorf("engine: port %s: %w", p.Name, err)
		}
		st.Steer = st.Steer.Add(t)
	}
	return st, nil
}
