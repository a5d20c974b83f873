package engine

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

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
	// Guest isolation: frames steered to a guest but addressed to another
	// unicast MAC, not delivered; guests' sends refused by spoof checking.
	// Engine.GuestStats has them by guest (and reason).
	RxWrongMAC uint64 `json:"rx_wrong_mac"`
	TxSpoofed  uint64 `json:"tx_spoofed"`
	// The send path's counters: guests' work requests, the frames they
	// became, and the requests dropped (by reason).
	Tx TxStats `json:"tx"`
	// The receive pipeline's counters (zero without Options.Pipeline).
	Pipeline PipelineStats `json:"pipeline"`
}

// PipelineStats are the receive pipeline's counters: one worker's, or the
// sum over workers. Every field is a uint64 or an array of them (see
// WorkerStats).
type PipelineStats struct {
	Packets     uint64      `json:"packets"`            // frames through the pipeline
	Malformed   uint64      `json:"malformed"`          // frames the parser rejected: counted and dropped
	Groups      uint64      `json:"groups"`             // connection groups: one context load each
	NoConn      uint64      `json:"no_conn"`            // frames without a connection (non-IP, fragments)
	TableFull   uint64      `json:"table_full"`         // frames of new connections a full table refused
	CacheHits   uint64      `json:"cache_hits"`         // contexts found in the cache
	CacheLoads  uint64      `json:"cache_loads"`        // misses and creations: contexts loaded from the table
	Evictions   uint64      `json:"evictions"`          // contexts written back to make room
	Conns       uint64      `json:"conns"`              // live connections in the table
	AgedOut     uint64      `json:"aged_out"`           // connections idle past IdleTimeout, taken out
	Aggregates  uint64      `json:"aggregates"`         // deliveries to guests and the raw sink
	GROSegments uint64      `json:"gro_segments"`       // TCP segments through the merge rules
	GROMerged   uint64      `json:"gro_merged"`         // segments merged into a held aggregate
	GROAcks     uint64      `json:"gro_acks_coalesced"` // pure ACKs folded into a later one (GROOptions.CoalesceAcks)
	CsumBad     uint64      `json:"csum_bad"`           // frames dropped for a bad checksum
	GROFlush    FlushCounts `json:"gro_flush"`          // aggregates by flush reason
	SegsHist    [9]uint64   `json:"segs_hist"`          // TCP aggregates of [1], [2,3], [4,7] ... frames
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

// FlushCounts count GRO's aggregates by offload.FlushReason. In JSON they
// are an object of the counts that are not zero, by reason name (null when
// all are zero); names a reader does not know are skipped.
type FlushCounts [offload.NumFlushReasons]uint64

// MarshalJSON writes the counts that are not zero, by reason name.
func (c FlushCounts) MarshalJSON() ([]byte, error) {
	m := map[string]uint64{}
	for r, n := range c {
		if n > 0 {
			m[offload.FlushReason(r).String()] = n
		}
	}
	if len(m) == 0 {
		return []byte("null"), nil
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *FlushCounts) UnmarshalJSON(b []byte) error {
	var m map[string]uint64
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("gro flush counts: %w", err)
	}
	*c = FlushCounts{}
	for r := range offload.FlushReason(offload.NumFlushReasons) {
		c[r] = m[r.String()]
	}
	return nil
}

// WorkerStats are one worker's counters. The worker counts in a copy of
// its own, with plain stores, fills in the pipeline's from their owners,
// and publishes the whole once per pass (Worker.Stats reads it). Every
// field is a uint64 or an array or struct of them, so that publishing,
// reading and summing go word by word over one list of fields: this one.
type WorkerStats struct {
	RxPackets    uint64
	RxBytes      uint64
	EmptyPasses  uint64 // passes that found no packet on any socket
	RxWakeups    uint64 // kicks sent because the fill ring needed a wakeup
	RefillFailed uint64 // batches whose frames could not go straight back to the fill ring
	Sleeps       uint64 // times an idle worker slept in poll(2) (Options.PollMs)
	RxWrongMAC   uint64 // guests' frames addressed to another unicast MAC, not delivered
	// The receive pipeline's counters (zero without Options.Pipeline).
	Pipeline PipelineStats
}

// statsWords is the size of WorkerStats in 64-bit words.
const statsWords = int(unsafe.Sizeof(WorkerStats{}) / 8)

// The size is a whole number of words (TestWorkerStatsWords checks that
// every field is a uint64).
var _ [0]struct{} = [unsafe.Sizeof(WorkerStats{}) % 8]struct{}{}

// words is s as an array of words.
func (s *WorkerStats) words() *[statsWords]uint64 {
	return (*[statsWords]uint64)(unsafe.Pointer(s))
}

// add adds o to s, counter by counter.
func (s *WorkerStats) add(o *WorkerStats) {
	a, b := s.words(), o.words()
	for i := range a {
		a[i] += b[i]
	}
}

// statsBoard is where a worker publishes its WorkerStats: a seqlock with
// one writer, the worker, and any number of readers. The writer makes seq
// odd, stores the words that changed, and makes seq even again; a reader
// copies the words between two loads of an even seq and tries again if seq
// moved. Every access is atomic, so a reader never sees a word half
// written, and a copy is never a mix of two publishes.
type statsBoard struct {
	seq   atomic.Uint64 // only the writer stores it
	words [statsWords]atomic.Uint64
	// last is what words hold, for the writer alone: it stores only the
	// words that changed.
	last [statsWords]uint64
}

// publish makes s what readers load. Only the worker calls it.
func (b *statsBoard) publish(s *WorkerStats) {
	w := s.words()
	seq := b.seq.Load()
	open := false
	for i := range w {
		if w[i] == b.last[i] {
			continue
		}
		if !open {
			b.seq.Store(seq + 1)
			open = true
		}
		b.words[i].Store(w[i])
		b.last[i] = w[i]
	}
	if open {
		b.seq.Store(seq + 2)
	}
}

// load returns the last WorkerStats published. Any thread may call it.
func (b *statsBoard) load() WorkerStats {
	var s WorkerStats
	w := s.words()
	for {
		seq := b.seq.Load()
		if seq&1 == 0 {
			for i := range w {
				w[i] = b.words[i].Load()
			}
			if b.seq.Load() == seq {
				return s
			}
		}
		runtime.Gosched() // the worker is between its two stores of seq
	}
}

// Drops are the frames the kernel steered to a socket but could not deliver:
// the rx ring was full or there was no frame to copy into.
func (s Stats) Drops() uint64 { return s.XSK.RxDropped + s.XSK.RxRingFull }

// Stats reads every counter. It is safe to call while the workers run.
func (e *Engine) Stats() (Stats, error) {
	var st Stats
	var sum WorkerStats
	for _, w := range e.workers {
		ws := w.Stats()
		sum.add(&ws)
		st.Tx.add(&w.Tx)
		for _, ep := range w.PolledEndpoints() {
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
	st.RxPackets, st.RxBytes = sum.RxPackets, sum.RxBytes
	st.RxWakeups, st.EmptyPasses, st.Sleeps = sum.RxWakeups, sum.EmptyPasses, sum.Sleeps
	st.RxWrongMAC, st.TxSpoofed = sum.RxWrongMAC, st.Tx.Spoofed
	for _, g := range e.Guests() {
		g.addSendCounters(&st.Tx)
	}
	st.Pipeline = sum.Pipeline
	for _, p := range e.ports {
		t, err := p.steer.TotalStats()
		if err != nil {
			return st, fmt.Errorf("engine: port %s: %w", p.Name, err)
		}
		st.Steer = st.Steer.Add(t)
	}
	return st, nil
}
