package engine

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/conn"
	"github.com/xnic/xnic/flows/offload"
	"github.com/xnic/xnic/umem"
)

// PipelineOptions configure the receive pipeline every worker runs on its
// batches when Options.Pipeline is on: parse → lookahead → connection
// context → GRO → delivery to the guest (or the raw sink).
type PipelineOptions struct {
	// Window is the lookahead window W: how many packets the batcher scans
	// to group by connection. 1 is no lookahead.
	Window int
	// Table is each worker's connection table ("host memory").
	Table conn.TableOptions
	// Cache is each worker's context cache ("on chip").
	Cache conn.CacheOptions
	// GRO merges TCP segments; off, every frame is delivered alone.
	GRO bool
	// GROOptions configure the merge table when GRO is on. Its
	// FlushTimeout must be zero: the engine flushes at the end of every
	// receive batch.
	GROOptions offload.GROOptions
	// IdleTimeout ages out connections not seen for this long (0: never).
	IdleTimeout time.Duration
}

// DefaultPipelineOptions: W=64, 256k connections per worker (32 MB), the
// default 512-entry 8-way cache, GRO on with Linux's rules plus ACK
// coalescing, 5-minute idle timeout.
func DefaultPipelineOptions() PipelineOptions {
	gro := offload.DefaultGROOptions()
	// Unlike Linux's GRO, the engine folds runs of pure ACKs: its guests'
	// stacks handle one ACK per run instead of one per frame.
	gro.CoalesceAcks = true
	return PipelineOptions{
		Window:      64,
		Table:       conn.TableOptions{Capacity: 1 << 18},
		Cache:       conn.DefaultCacheOptions(),
		GRO:         true,
		GROOptions:  gro,
		IdleTimeout: 5 * time.Minute,
	}
}

// Validate checks the options and names the field at fault.
func (o PipelineOptions) Validate() error {
	if o.Window < 1 || o.Window > 4096 {
		return fmt.Errorf("engine: pipeline window: must be 1..4096, got %d", o.Window)
	}
	if o.GRO && o.GROOptions.FlushTimeout != 0 {
		return fmt.Errorf("engine: pipeline gro flush timeout: the engine flushes per batch; must be 0, got %v", o.GROOptions.FlushTimeout)
	}
	if o.IdleTimeout < 0 {
		return fmt.Errorf("engine: pipeline idle timeout: must not be negative, got %v", o.IdleTimeout)
	}
	// The constructors name their own fields.
	t, err := conn.NewTable(conn.TableOptions{Capacity: 1})
	if err != nil {
		return fmt.Errorf("engine: pipeline: %w", err)
	}
	if _, err := conn.NewCache(t, o.Cache); err != nil {
		return fmt.Errorf("engine: pipeline: %w", err)
	}
	if o.Table.Capacity < 1 || o.Table.Capacity > 1<<30 || o.Table.Capacity&(o.Table.Capacity-1) != 0 {
		return fmt.Errorf("engine: pipeline table capacity: must be a power of two up to 1<<30, got %d", o.Table.Capacity)
	}
	if o.GRO {
		if _, err := offload.NewGRO(o.GROOptions); err != nil {
			return fmt.Errorf("engine: pipeline: %w", err)
		}
	}
	return nil
}

// Sink takes what the receive pipeline delivers: a GRO aggregate (one or
// more TCP segments of a connection) or a single frame passed through
// (Flags has offload.AggPassThrough; Head is the whole frame). The
// aggregate and the frames under it are valid only during the call: they
// go back to the fill ring when the batch is done.
type Sink func(ep *Endpoint, a *offload.Aggregate)

// PipelineCounters are a worker's pipeline counters, published once per
// batch; anyone may load them.
type PipelineCounters struct {
	Packets     atomic.Uint64 // frames through the pipeline
	Malformed   atomic.Uint64 // frames the parser rejected: counted and dropped
	Groups      atomic.Uint64 // connection groups: one context load each
	NoConn      atomic.Uint64 // frames without a connection (non-IP, fragments)
	TableFull   atomic.Uint64 // frames of new connections a full table refused
	CacheHits   atomic.Uint64
	CacheLoads  atomic.Uint64 // misses and creations: contexts loaded from the table
	Evictions   atomic.Uint64 // contexts written back to make room
	Conns       atomic.Uint64 // live connections in the table
	AgedOut     atomic.Uint64
	Aggregates  atomic.Uint64 // deliveries to guests and the raw sink
	GROSegments atomic.Uint64 // TCP segments through the merge rules
	GROMerged   atomic.Uint64
	GROAcks     atomic.Uint64 // pure ACKs coalesced into a later one (GROOptions.CoalesceAcks)
	CsumBad     atomic.Uint64 // frames dropped for a bad checksum
	GROFlush    [offload.NumFlushReasons]atomic.Uint64
	// SegsHist counts TCP aggregates by frame count: [1], [2,3], [4,7], ...
	SegsHist [9]atomic.Uint64
}

// rxPipeline is one worker's receive pipeline. Everything in it belongs to
// the worker's goroutine except the published counters.
type rxPipeline struct {
	u    *umem.UMEM
	proc *conn.Processor
	gro  *offload.GRO // nil with GRO off
	raw  Sink         // guestless traffic

	// Per batch.
	pkts   []flows.Packet
	frames [][]byte
	ep     *Endpoint
	single offload.Aggregate // a frame delivered alone (GRO off)

	idle      int64
	aged      uint64
	malformed uint64
	aggs      uint64
	csumBad   uint64
	counters  *PipelineCounters
}

func newRxPipeline(u *umem.UMEM, batch int, o PipelineOptions, raw Sink, c *PipelineCounters) (*rxPipeline, error) {
	t, err := conn.NewTable(o.Table)
	if err != nil {
		return nil, fmt.Errorf("engine: pipeline: %w", err)
	}
	cache, err := conn.NewCache(t, o.Cache)
	if err != nil {
		return nil, fmt.Errorf("engine: pipeline: %w", err)
	}
	p := &rxPipeline{
		u: u, raw: raw, counters: c,
		pkts: make([]flows.Packet, batch), frames: make([][]byte, batch),
		idle: int64(o.IdleTimeout),
	}
	po := conn.DefaultProcessorOptions()
	po.Window = o.Window
	po.Prefetch = o.Window > 1
	if p.proc, err = conn.NewProcessor(cache, po); err != nil {
		return nil, fmt.Errorf("engine: pipeline: %w", err)
	}
	p.single.Handles = make([]uint64, 0, 1)
	if o.GRO {
		if p.gro, err = offload.NewGRO(o.GROOptions); err != nil {
			return nil, fmt.Errorf("engine: pipeline: %w", err)
		}
	}
	return p, nil
}

// run takes one received batch of ep through the pipeline: parse, then
// connection by connection (lookahead and the context cache) into GRO, or
// to delivery frame by frame with GRO off. A new connection belongs to the
// guest and class of the socket its first packet arrived on. Every
// aggregate is delivered before run returns, so the frames may go back to
// the fill ring.
func (p *rxPipeline) run(ep *Endpoint, descs []umem.Desc, now int64) {
	n := len(descs)
	pkts, frames := p.pkts[:n], p.frames[:n]
	for i := range descs {
		f := p.u.Bytes(descs[i])
		frames[i] = f
		flows.Parse(f, &pkts[i])
	}
	p.ep = ep
	p.proc.Begin(conn.Batch{Pkts: pkts, Frames: frames, Now: now, Owner: uint32(ep.Guest), Class: uint8(ep.Class)})
	for {
		_, idx, ok := p.proc.Next()
		if !ok {
			break
		}
		p.receive(idx)
	}
	if g := p.gro; g != nil {
		g.Flush()
		for a := g.Next(); a != nil; a = g.Next() {
			p.deliver(a)
		}
	}
	clear(frames)
	p.ep = nil
}

// receive takes one connection's frames (idx indexes the batch), in order,
// into GRO, delivering what each one completes, or delivers each alone
// with GRO off. Malformed frames are counted and dropped.
func (p *rxPipeline) receive(idx []int32) {
	for _, i := range idx {
		pk := &p.pkts[i]
		if pk.Reason.Malformed() {
			p.malformed++
			continue
		}
		if g := p.gro; g != nil {
			g.Receive(p.frames[i], uint64(i), pk)
			for a := g.Next(); a != nil; a = g.Next() {
				p.deliver(a)
			}
			continue
		}
		a := &p.single
		a.Head = p.frames[i]
		a.Handles = append(a.Handles[:0], uint64(i))
		a.Pkt = *pk
		a.Flags = offload.AggPassThrough
		a.Reason = offload.DeliverPassThrough
		p.deliver(a)
	}
}

// deliver hands an aggregate to the endpoint's guest or the raw sink: the
// guest boundary. Aggregates with a bad checksum are counted and dropped.
func (p *rxPipeline) deliver(a *offload.Aggregate) {
	if a.Flags&offload.AggCsumBad != 0 {
		p.csumBad++
		return
	}
	p.aggs++
	ep := p.ep
	if g := ep.Owner; g != nil {
		if g.sink != nil {
			g.sink(ep, a)
		}
		return
	}
	if p.raw != nil {
		p.raw(ep, a)
	}
}

// maintain ages out a slice of the idle connections; the worker calls it
// at most every maintainEvery.
func (p *rxPipeline) maintain(now int64) {
	if p.idle <= 0 {
		return
	}
	c := p.proc.Cache()
	p.aged += uint64(c.AgeOut(now, p.idle, 256))
}

// publish stores the pipeline's counters for readers on other threads.
func (p *rxPipeline) publish() {
	c := p.counters
	ps := p.proc.Stats()
	cs := p.proc.Cache().Stats()
	c.Packets.Store(ps.Packets + ps.NoConn + ps.Full)
	c.Malformed.Store(p.malformed)
	c.Groups.Store(ps.Groups)
	c.NoConn.Store(ps.NoConn)
	c.TableFull.Store(ps.Full)
	c.CacheHits.Store(cs.Hits)
	c.CacheLoads.Store(cs.Loads())
	c.Evictions.Store(cs.Evictions)
	c.Conns.Store(uint64(p.proc.Cache().Table().Len()))
	c.AgedOut.Store(p.aged)
	c.Aggregates.Store(p.aggs)
	c.CsumBad.Store(p.csumBad)
	if g := p.gro; g != nil {
		s := &g.Stats
		c.GROSegments.Store(s.Segments)
		c.GROMerged.Store(s.Merged)
		c.GROAcks.Store(s.AcksCoalesced)
		for i := range s.Flush {
			c.GROFlush[i].Store(s.Flush[i])
		}
		for i := range s.SegsHist {
			c.SegsHist[i].Store(s.SegsHist[i])
		}
	}
}
