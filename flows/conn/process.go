package conn

import "github.com/xnic/xnic/flows"

// Stage is what Process hands each group to: the packets of one
// connection in their original order (idx indexes the batch) with the
// connection's context, already updated for the group. ctx is nil for packets that have no connection (non-IP, malformed,
// non-first fragments) or whose connection could not be created (table
// full). A group with a context may still hold packets that share the key
// but have no connection (malformed): HasConnection tells them apart. ctx is
// valid only during the call, and only until the stage itself loads another
// context through the same cache (which may evict it).
type Stage func(ctx *Context, idx []int32)

// ProcessorOptions configure a Processor.
type ProcessorOptions struct {
	// Window is the lookahead window W: 1 is no lookahead. A window never
	// spans two batches, so a W larger than the batch acts as the
	// batch size.
	Window int
	// Dir is the direction of the packets: DirRX for received packets,
	// DirTX for guests' send work requests (keys reversed to the receive
	// direction, so both directions share one context).
	Dir Dir
	// Prefetch looks the whole window up in the cache first, then, while
	// processing the groups, touches the table memory of the misses a few
	// groups ahead, so that loads from a table larger than the CPU caches
	// overlap with work instead of stalling it. It needs W > 1.
	Prefetch bool
	// Classify gives a new connection its owner guest and class, from the
	// connection's first packet. Nil gives it the batch's Owner and Class.
	Classify func(p *flows.Packet) (owner uint32, class uint8)
}

// DefaultProcessorOptions: receive direction, W=64, prefetch on.
func DefaultProcessorOptions() ProcessorOptions {
	return ProcessorOptions{Window: 64, Dir: DirRX, Prefetch: true}
}

// ProcessorStats are a Processor's event counters.
type ProcessorStats struct {
	Packets uint64 // packets accounted to a context
	Groups  uint64 // groups handed on: one context lookup each
	NoConn  uint64 // packets with no connection: non-IP, malformed, non-first fragments
	Full    uint64 // packets of new connections the full table could not take
}

// Processor is the connection-processing stage of a pipeline: parsed
// packets → lookahead (Batcher) → context (Cache over Table) → accounting
// (Context.Apply) → back to the caller, one group at a time (Next). One Processor serves one direction; the RX
// and TX processors of a worker share its Cache.
type Processor struct {
	c        *Cache
	lb       *Batcher[flows.Packet]
	dir      Dir
	prefetch bool
	classify func(*flows.Packet) (uint32, uint8)

	// The batch between Begin and the end of Next, and the window being
	// handed out: its next group, and with a probe (probed) the misses,
	// the next one to pass, and whether the caller changed the cache since
	// the probe (stale).
	b             Batch
	start         int // the batch's next window
	g, groups     int
	probed, stale bool
	misses        []int32
	j             int

	probe probeScratch
	epoch uint64 // the cache's epoch after this processor's last change

	stats ProcessorStats
}

func rxKey(p *flows.Packet, _ *flows.Key) *flows.Key { return &p.Key }

func txKey(p *flows.Packet, k *flows.Key) *flows.Key {
	k.Src, k.Dst = p.Key.Dst, p.Key.Src
	k.SrcPort, k.DstPort = p.Key.DstPort, p.Key.SrcPort
	k.Proto, k.Family, k.VLAN = p.Key.Proto, p.Key.Family, p.Key.VLAN
	return k
}

// NewProcessor builds a processor over c.
func NewProcessor(c *Cache, opts ProcessorOptions) (*Processor, error) {
	if c == nil {
		return nil, optErr("processor cache", "must not be nil")
	}
	if opts.Dir != DirRX && opts.Dir != DirTX {
		return nil, optErr("processor direction", "must be DirRX or DirTX, got %d", opts.Dir)
	}
	key := rxKey
	if opts.Dir == DirTX {
		key = txKey
	}
	b, err := NewBatcher(opts.Window, key)
	if err != nil {
		return nil, err
	}
	return &Processor{
		c: c, lb: b, dir: opts.Dir, prefetch: opts.Prefetch && opts.Window > 1, classify: opts.Classify,
		probe: newProbeScratch(opts.Window),
	}, nil
}

// Cache is the processor's context cache.
func (p *Processor) Cache() *Cache { return p.c }

// Stats returns the processor's counters.
func (p *Processor) Stats() ProcessorStats { return p.stats }

// HasConnection reports whether a packet belongs to a connection: an IP packet
// parsed through its L4 header, or one whose L4 protocol the parser does not
// decode. Non-first fragments carry no ports and are left out.
func HasConnection(p *flows.Packet) bool {
	return p.Family != 0 && (p.Reason == flows.ReasonOK || p.Reason == flows.ReasonUnknownL4)
}

// Batch is what a Processor works on: parsed packets, their frames and
// the time they arrived.
type Batch struct {
	// Pkts are the parsed packets and Frames[i] the frame of Pkts[i], for
	// TCP sequence tracking; Frames may be nil.
	Pkts   []flows.Packet
	Frames [][]byte
	// Now is the batch's monotonic time in nanoseconds.
	Now int64
	// Owner and Class are given to the connections the batch creates
	// (the guest and class of the socket it came from), unless
	// ProcessorOptions.Classify is set.
	Owner uint32
	Class uint8
}

// Process runs a batch of parsed packets through lookahead and the context
// cache and hands every group to next (if not nil): Begin, then Next until
// it reports the end. frames[i] is the frame of pkts[i]; frames may be nil.
// now is the batch's monotonic time in nanoseconds. Process allocates
// nothing.
func (p *Processor) Process(pkts []flows.Packet, frames [][]byte, now int64, next Stage) {
	p.Begin(Batch{Pkts: pkts, Frames: frames, Now: now})
	for {
		ctx, idx, ok := p.Next()
		if !ok {
			return
		}
		if next != nil {
			next(ctx, idx)
		}
	}
}

// Begin starts a batch; Next then hands out its groups. The batch's
// slices must stay as they are until Next has reported the end.
func (p *Processor) Begin(b Batch) {
	p.b = b
	p.start = 0
	p.g, p.groups = 0, 0
}

// Next processes the batch's next group, window by window: each
// connection's context is loaded (or created) once per window and every
// packet of the group is applied to it in order (Context.Apply). It returns
// the context, nil without one (see Stage for when), and the indices of
// the group's packets in the batch, in their original order; ok is false
// once the batch is done. ctx and idx are valid until the next call, and
// ctx only until the caller loads another context through the same cache.
func (p *Processor) Next() (ctx *Context, idx []int32, ok bool) {
	if p.g == p.groups && !p.plan() {
		return nil, nil, false
	}
	g := p.g
	p.g++
	key, hash, idx := p.lb.Group(g)
	gr := group{key: key, hash: hash, way: waySearch, idx: idx}
	if p.probed {
		gr.way = p.probe.ways[g]
		if gr.way == wayMissed {
			// Touch the table memory of the misses ahead of this one.
			misses, hashes := p.misses, p.lb.gHash
			if x := p.j + 2*prefetchDist; x < len(misses) {
				p.c.touchIndex(hashes[misses[x]])
			}
			if x := p.j + prefetchDist; x < len(misses) {
				p.c.touchContext(hashes[misses[x]])
			}
			p.j++
		}
		if p.stale = p.stale || p.c.epoch != p.epoch; p.stale {
			gr.way = waySearch // the caller changed the cache: the probe may be wrong
		}
	}
	return p.group(&gr), idx, true
}

// plan groups the batch's next window; with prefetch it then looks the
// window's connections up in the cache and touches the table memory of the
// first misses: a software pipeline that Next keeps filling. It reports
// false when the batch is done.
func (p *Processor) plan() bool {
	if p.start >= len(p.b.Pkts) {
		p.b = Batch{} // keep no references to the caller's packets and frames
		return false
	}
	p.start = p.lb.Plan(p.b.Pkts, p.start)
	p.g, p.groups = 0, p.lb.groups
	p.probed = p.prefetch && p.groups >= 2
	if !p.probed {
		return true
	}
	keys, hashes := p.lb.groupKeys()
	p.misses = p.probe.misses[:p.c.probe(keys, hashes, &p.probe)]
	p.epoch = p.c.epoch
	p.j, p.stale = 0, false
	for j := range min(len(p.misses), 2*prefetchDist) {
		p.c.touchIndex(hashes[p.misses[j]])
	}
	for j := range min(len(p.misses), prefetchDist) {
		p.c.touchContext(hashes[p.misses[j]])
	}
	return true
}

// prefetchDist is how many misses ahead Next touches contexts. A window
// of 64 packets with a few packets per connection has 10 to 20 misses.
const prefetchDist = 8

// Ways a group's context is looked for in: a way of the cache from the
// window's probe, or one of these.
const (
	wayMissed int32 = -1 // the probe found the key in no way: load it from the table
	waySearch int32 = -2 // no probe, or a stale one: search the cache
)

// group is one connection's packets in a planned window.
type group struct {
	key  *flows.Key
	hash uint64
	way  int32   // from the probe, or wayMissed or waySearch
	idx  []int32 // the packets, indices into the batch, in order
}

// group loads gr's context and applies its packets to it. It returns the
// context, or nil for a group without a connection or one the full table
// could not take.
func (p *Processor) group(gr *group) *Context {
	pkts, frames := p.b.Pkts, p.b.Frames
	first := int32(-1)
	for _, i := range gr.idx {
		if HasConnection(&pkts[i]) {
			first = i
			break
		}
	}
	if first < 0 {
		p.stats.NoConn += uint64(len(gr.idx))
		return nil
	}
	p.stats.Groups++
	var ctx *Context
	var res Result
	if gr.way == waySearch {
		ctx, res = p.c.load(gr.key, gr.hash, true, p.b.Now)
	} else {
		ctx, res = p.c.loadWay(gr.key, gr.hash, gr.way, p.b.Now)
	}
	p.epoch = p.c.epoch // our own change, before the caller makes any
	if ctx == nil {
		for _, i := range gr.idx {
			if HasConnection(&pkts[i]) {
				p.stats.Full++
			} else {
				p.stats.NoConn++
			}
		}
		return nil
	}
	if res == Created {
		if p.classify != nil {
			ctx.Owner, ctx.Class = p.classify(&pkts[first])
		} else {
			ctx.Owner, ctx.Class = p.b.Owner, p.b.Class
		}
	}
	for _, i := range gr.idx {
		pk := &pkts[i]
		if !HasConnection(pk) {
			p.stats.NoConn++
			continue
		}
		var frame []byte
		if int(i) < len(frames) {
			frame = frames[i]
		}
		ctx.Apply(p.dir, pk, frame, p.b.Now)
		p.stats.Packets++
	}
	return ctx
}
