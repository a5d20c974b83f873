package conn

import "github.com/xnic/xnic/flows"

// Stage is the next pipeline stage after connection processing. It gets
// each group of packets of one connection in their original order (idx
// indexes the batch) with the connection's context, already updated for the
// group. ctx is nil for packets that have no connection (non-IP, malformed,
// non-first fragments) or whose connection could not be created (table
// full). A group with a context may still hold packets that share the key
// but have no connection (malformed): HasConnection tells them apart. ctx is
// valid only during the call, and only until the stage itself loads another
// context through the same cache (which may evict it).
type Stage func(ctx *Context, idx []int32)

// ProcessorOptions configure a Processor.
type ProcessorOptions struct {
	// Window is the lookahead window W: 1 is no lookahead. A window never
	// spans two Process calls, so a W larger than the batch acts as the
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
	// connection's first packet. Nil leaves both zero.
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
// (Context.Apply) → next Stage. One Processor serves one direction; the RX
// and TX processors of a worker share its Cache.
type Processor struct {
	c        *Cache
	b        *Batcher[flows.Packet]
	dir      Dir
	prefetch bool
	classify func(*flows.Packet) (uint32, uint8)

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
		c: c, b: b, dir: opts.Dir, prefetch: opts.Prefetch && opts.Window > 1, classify: opts.Classify,
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

// Process runs a batch of parsed packets through lookahead and the context
// cache, window by window: each connection's context is loaded (or created)
// once per window, every packet of the group is applied to it in order
// (Context.Apply), then next (if not nil) gets the group. frames[i] is the
// frame of pkts[i], for TCP sequence tracking; frames may be nil. now is
// the batch's monotonic time in nanoseconds. Process allocates nothing.
func (p *Processor) Process(pkts []flows.Packet, frames [][]byte, now int64, next Stage) {
	for start := 0; start < len(pkts); {
		start = p.b.Plan(pkts, start)
		if !p.prefetch || p.b.groups < 2 {
			for g := range p.b.groups {
				key, hash, idx := p.b.Group(g)
				p.group(key, hash, -2, idx, pkts, frames, now, next)
			}
			continue
		}
		// Lookahead with prefetch: find the window's misses first, then
		// process the groups while touching the table memory of the miss
		// prefetchDist misses ahead (its context) and 2*prefetchDist ahead
		// (its index slot): a software pipeline.
		keys, hashes := p.b.groupKeys()
		misses := p.probe.misses[:p.c.probe(keys, hashes, &p.probe)]
		p.epoch = p.c.epoch
		for j := range min(len(misses), 2*prefetchDist) {
			p.c.touchIndex(hashes[misses[j]])
		}
		for j := range min(len(misses), prefetchDist) {
			p.c.touchContext(hashes[misses[j]])
		}
		j := 0
		stale := false // a stage changed the cache: the probe's ways may be wrong
		for g := range p.b.groups {
			way := p.probe.ways[g]
			if way < 0 {
				if x := j + 2*prefetchDist; x < len(misses) {
					p.c.touchIndex(hashes[misses[x]])
				}
				if x := j + prefetchDist; x < len(misses) {
					p.c.touchContext(hashes[misses[x]])
				}
				j++
			}
			if stale = stale || p.c.epoch != p.epoch; stale {
				way = -2 // search the cache as without a probe
			}
			key, hash, idx := p.b.Group(g)
			p.group(key, hash, way, idx, pkts, frames, now, next)
		}
	}
}

// prefetchDist is how many misses ahead Process touches contexts. A window
// of 64 packets with a few packets per connection has 10 to 20 misses.
const prefetchDist = 8

func (p *Processor) group(key *flows.Key, hash uint64, way int32, idx []int32, pkts []flows.Packet, frames [][]byte, now int64, next Stage) {
	first := int32(-1)
	for _, i := range idx {
		if HasConnection(&pkts[i]) {
			first = i
			break
		}
	}
	if first < 0 {
		p.stats.NoConn += uint64(len(idx))
		if next != nil {
			next(nil, idx)
		}
		return
	}
	p.stats.Groups++
	var ctx *Context
	var res Result
	if way == -2 {
		ctx, res = p.c.load(key, hash, true, now)
	} else {
		ctx, res = p.c.loadWay(key, hash, way, now)
	}
	p.epoch = p.c.epoch // our own change, before the stage makes any
	if ctx == nil {
		for _, i := range idx {
			if HasConnection(&pkts[i]) {
				p.stats.Full++
			} else {
				p.stats.NoConn++
			}
		}
		if next != nil {
			next(nil, idx)
		}
		return
	}
	if res == Created && p.classify != nil {
		ctx.Owner, ctx.Class = p.classify(&pkts[first])
	}
	for _, i := range idx {
		pk := &pkts[i]
		if !HasConnection(pk) {
			p.stats.NoConn++
			continue
		}
		var frame []byte
		if int(i) < len(frames) {
			frame = frames[i]
		}
		ctx.Apply(p.dir, pk, frame, now)
		p.stats.Packets++
	}
	if next != nil {
		next(ctx, idx)
	}
}
