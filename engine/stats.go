package engine

import (
	"fmt"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/flows/offload"
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
	Sleeps      uint64 `json:"sleeps"` // idle workers' sleeps in poll(2) (Options.PollMs)
	// The receive pipeline's counters (zero without Options.Pipeline).
	Pipeline PipelineStats `json:"pipeline"`
}

// PipelineStats is a snapshot of PipelineCounters, summed over workers.
type PipelineStats struct {
	Packets     uint64            `json:"packets"`
	Malformed   uint64            `json:"malformed"`
	Groups      uint64            `json:"groups"`
	NoConn      uint64            `json:"no_conn"`
	TableFull   uint64            `json:"table_full"`
	CacheHits   uint64            `json:"cache_hits"`
	CacheLoads  uint64            `json:"cache_loads"`
	Evictions   uint64            `json:"evictions"`
	Conns       uint64            `json:"conns"`
	AgedOut     uint64            `json:"aged_out"`
	Aggregates  uint64            `json:"aggregates"`
	GROSegments uint64            `json:"gro_segments"`
	GROMerged   uint64            `json:"gro_merged"`
	GROAcks     uint64            `json:"gro_acks_coalesced"`
	CsumBad     uint64            `json:"csum_bad"`
	GROFlush    map[string]uint64 `json:"gro_flush"` // by reason, non-zero only
	SegsHist    [9]uint64         `json:"segs_hist"` // aggregates of [1], [2,3], [4,7] ... frames
}

// LoadsPerPacket is context loads per packet through the cache.
func (s PipelineStats) LoadsPerPacket() float64 {
	if s.Packets == 0 {
		return 0
	}
	return float64(s.CacheLoads) / float64(s.Packets)
}

// GRORatio is TCP segments per TCP aggregate.
func (s PipelineStats) GRORatio() float64 {
	var aggs uint64
	for _, n := range s.SegsHist {
		aggs += n
	}
	if aggs == 0 {
		return 0
	}
	return float64(s.GROSegments) / float64(aggs)
}

func (s *PipelineStats) add(c *PipelineCounters) {
	s.Packets += c.Packets.Load()
	s.Malformed += c.Malformed.Load()
	s.Groups += c.Groups.Load()
	s.NoConn += c.NoConn.Load()
	s.TableFull += c.TableFull.Load()
	s.CacheHits += c.CacheHits.Load()
	s.CacheLoads += c.CacheLoads.Load()
	s.Evictions += c.Evictions.Load()
	s.Conns += c.Conns.Load()
	s.AgedOut += c.AgedOut.Load()
	s.Aggregates += c.Aggregates.Load()
	s.GROSegments += c.GROSegments.Load()
	s.GROMerged += c.GROMerged.Load()
	s.GROAcks += c.GROAcks.Load()
	s.CsumBad += c.CsumBad.Load()
	for i := range c.GROFlush {
		if n := c.GROFlush[i].Load(); n > 0 {
			if s.GROFlush == nil {
				s.GROFlush = map[string]uint64{}
			}
			s.GROFlush[offload.FlushReason(i).String()] += n
		}
	}
	for i := range c.SegsHist {
		s.SegsHist[i] += c.SegsHist[i].Load()
	}
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
		st.Sleeps += w.Counters.Sleeps.Load()
		if w.pipe != nil {
			st.Pipeline.add(&w.Pipeline)
		}
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
