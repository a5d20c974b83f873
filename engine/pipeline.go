package engine

import (
	"fmt"
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

// rxPipeline is one worker's receive pipeline. Everything in it belongs to
// the worker's goroutine; the worker publishes its counters (fill).
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

	idle int64

	// The counters the pipeline owns; the processor, the cache and GRO
	// keep their own.
	aged      uint64
	malformed uint64
	aggs      uint64
	csumBad   uint64
}

func newRxPipeline(u *umem.UMEM, batch int, o PipelineOptions, raw Sink) (*rxPipeline, error) {
	t, err := conn.NewTable(o.Table)
	if err != nil {
		return nil, fmt.Errorf("engine: pipeline: %w", err)
	}
	cache, err := conn.NewCache(t, o.Cache)
	if err != nil {
		return nil, fmt.Errorf("engine: pipeline: %w", err)
	}
	p := &rxPipeline{
		u: u, raw: raw,
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

// fill copies the pipeline's counters from their owners (the processor,
// the cache and its table, GRO, the pipeline itself) into s, the worker's
// stats, which the worker then publishes.
func (p *rxPipeline) fill(s *PipelineStats) {
	ps := p.proc.Stats()
	c := p.proc.Cache()
	cs := c.Stats()
	s.Packets = ps.Packets + ps.NoConn + ps.Full
	s.Malformed = p.malformed
	s.Groups = ps.Groups
	s.NoConn = ps.NoConn
	s.TableFull = ps.Full
	s.CacheHits = cs.Hits
	s.CacheLoads = cs.Loads()
	s.Evictions = cs.Evictions
	s.Conns = uint64(c.Table().Len())
	s.AgedOut = p.aged
	s.Aggregates = p.aggs
	s.CsumBad = p.csumBad
	if g := p.gro; g != nil {
		s.GROSegments = g.Stats.Segments
		s.GROMerged = g.Stats.Merged
		s.GROAcks = g.Stats.AcksCoalesced
		s.GROFlush = g.Stats.Flush
		s.SegsHist = g.Stats.SegsHist
	}
}
