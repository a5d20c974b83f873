package conn

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/xnic/xnic/flows"
)

func TestTrackTCP(t *testing.T) {
	const (
		syn = flows.TCPFlagSYN
		ack = flows.TCPFlagACK
		fin = flows.TCPFlagFIN
	)
	var c Context
	steps := []struct {
		seq, ack uint32
		flags    uint8
		plen     uint32
		next     uint32
		lastAck  uint32
		ooo      uint32
	}{
		{1000, 0, syn, 0, 1001, 0, 0},                    // SYN takes one
		{1001, 500, ack, 100, 1101, 500, 0},              // in order
		{1101, 400, ack, 0, 1101, 500, 0},                // pure ACK, older ack: ignored
		{1301, 600, ack, 100, 1401, 600, 1},              // gap: 1101..1301 missing
		{1101, 600, ack, 200, 1401, 600, 2},              // the late segment: old data
		{1351, 600, ack, 100, 1451, 600, 3},              // overlaps the end: moves NextSeq
		{1451, 700, ack | fin, 0, 1452, 700, 3},          // FIN takes one
		{0xfffffff0, 0, syn, 0, 0xfffffff1, 700, 3},      // a new SYN resets tracking
		{0xfffffff1, 800, ack, 0x20, 0x11, 800, 3},       // in order across the wrap
		{0xfffffff9, 800, ack, 0x10, 0x11, 800, 4},       // old data across the wrap
		{0x11, 0xffffff00, ack, 0, 0x11, 800, 4},         // an ack "before" 800 mod 2^32: ignored
		{0x11, 0x80000300, ack, 10, 0x1b, 0x80000300, 4}, // just under half the space ahead: taken
	}
	for i, s := range steps {
		c.TrackTCP(s.seq, s.ack, uint16(i), s.flags, s.plen)
		if c.NextSeq != s.next || c.LastAck != s.lastAck || c.OutOfOrder != s.ooo {
			t.Fatalf("step %d: next %#x ack %#x ooo %d, want %#x %#x %d", i, c.NextSeq, c.LastAck, c.OutOfOrder, s.next, s.lastAck, s.ooo)
		}
	}
	if c.TCP != TCPSeqKnown|TCPAckKnown|TCPSawSYN|TCPSawFIN {
		t.Fatalf("TCP state %#x", c.TCP)
	}
}

// trafficItem is one packet of a generated stream.
type trafficItem struct {
	conn  int
	dir   Dir
	pkt   flows.Packet
	frame []byte
}

// genTraffic makes a random interleaving of the packets of nconn
// connections: TCP ones with handshakes, data, pure ACKs, retransmissions,
// reordering and FINs; UDP ones; and a sprinkling of packets with no
// connection. Each connection's own packets are in a fixed order that the
// TCP tracking is sensitive to. A packet goes rx or tx at random; tx packets
// carry the reversed key.
func genTraffic(rng *rand.Rand, nconn, maxPkts int) []trafficItem {
	var perConn [][]trafficItem
	for c := range nconn {
		tcp := rng.Intn(4) != 0
		proto := uint8(flows.ProtoUDP)
		if tcp {
			proto = flows.ProtoTCP
		}
		k := testKey(c, proto)
		n := 1 + rng.Intn(maxPkts)
		var items []trafficItem
		seq, ack := rng.Uint32(), rng.Uint32()
		var sent []tcpSeg
		for j := range n {
			dir := DirRX
			if rng.Intn(5) == 0 {
				dir = DirTX
			}
			pk := k
			if dir == DirTX {
				pk = k.Reverse()
			}
			if !tcp {
				items = append(items, trafficItem{conn: c, dir: dir, pkt: udpPacket(pk, rng.Intn(1400))})
				continue
			}
			var s tcpSeg
			switch r := rng.Intn(100); {
			case j == 0 && rng.Intn(2) == 0:
				s = tcpSeg{seq: seq, flags: flows.TCPFlagSYN, win: 65535}
				seq++
			case r < 10 && len(sent) > 0: // retransmission
				s = sent[rng.Intn(len(sent))]
			case r < 25: // pure ACK
				ack += uint32(rng.Intn(3000))
				s = tcpSeg{seq: seq, ack: ack, flags: flows.TCPFlagACK, win: uint16(rng.Intn(65536))}
			case r < 27:
				s = tcpSeg{seq: seq, ack: ack, flags: flows.TCPFlagACK | flows.TCPFlagFIN, win: 100}
				seq++
			default:
				s = tcpSeg{seq: seq, ack: ack, flags: flows.TCPFlagACK | flows.TCPFlagPSH,
					win: uint16(rng.Intn(65536)), plen: uint16(1 + rng.Intn(1460))}
				seq += uint32(s.plen)
				ack += uint32(rng.Intn(100))
			}
			sent = append(sent, s)
			p, f := tcpPacket(pk, s, make([]byte, 54))
			items = append(items, trafficItem{conn: c, dir: dir, pkt: p, frame: f})
		}
		// Reorder a few neighbours.
		for j := 0; j+1 < len(items); j++ {
			if rng.Intn(20) == 0 {
				items[j], items[j+1] = items[j+1], items[j]
			}
		}
		perConn = append(perConn, items)
	}
	counts := make([]int, nconn)
	for c, it := range perConn {
		counts[c] = len(it)
	}
	var out []trafficItem
	next := make([]int, nconn)
	for _, it := range interleave(rng, counts) {
		out = append(out, perConn[it.conn][next[it.conn]])
		next[it.conn]++
		if rng.Intn(50) == 0 { // no connection: ARP-like, or cut short
			junk := flows.Packet{Reason: flows.ReasonNonIP, EtherType: flows.EtherTypeARP}
			if rng.Intn(2) == 0 {
				junk = udpPacket(testKey(rng.Intn(nconn), flows.ProtoUDP), 0)
				junk.Reason = flows.ReasonTruncL4
			}
			out = append(out, trafficItem{conn: -1, pkt: junk})
		}
	}
	return out
}

func classifyTest(p *flows.Packet) (uint32, uint8) {
	return uint32(p.Key.SrcPort) ^ uint32(p.Key.DstPort)<<16, p.Key.Src[15] ^ p.Key.Dst[15]
}

// refModel applies a stream to a plain map, one packet at a time: what the
// table must hold when the lookahead and the cache do their job.
func refModel(items []trafficItem, batches []int) map[flows.Key]Context {
	ref := make(map[flows.Key]Context)
	i := 0
	for b, n := range batches {
		now := int64(1000 * (b + 1))
		for _, it := range items[i : i+n] {
			if !HasConnection(&it.pkt) {
				continue
			}
			k := it.pkt.Key
			if it.dir == DirTX {
				k = k.Reverse()
			}
			c, ok := ref[k]
			if !ok {
				c = Context{key: k, FirstSeen: now, LastSeen: now}
				c.Owner, c.Class = classifyTest(&it.pkt)
			}
			c.Apply(it.dir, &it.pkt, it.frame, now)
			ref[k] = c
		}
		i += n
	}
	return ref
}

// splitBatches cuts n items into runs of one direction, at most 300 long.
func splitBatches(rng *rand.Rand, items []trafficItem) []int {
	var batches []int
	for i := 0; i < len(items); {
		n := 1
		for n < 1+rng.Intn(300) && i+n < len(items) && items[i+n].dir == items[i].dir {
			n++
		}
		batches = append(batches, n)
		i += n
	}
	return batches
}

type runResult struct {
	ctx   map[flows.Key]Context
	cache CacheStats
	proc  [2]ProcessorStats
}

// runProcessors feeds the stream through an rx and a tx Processor over one
// small cache, batch by batch, checking on the way that every stage call
// gets its connection's packets in order.
func runProcessors(t *testing.T, items []trafficItem, batches []int, w, entries, ways int, prefetch bool) runResult {
	t.Helper()
	tb := mustTable(t, 1<<12)
	c := mustCache(t, tb, entries, ways)
	var procs [2]*Processor
	for d := range procs {
		procs[d] = mustProcessor(t, c, ProcessorOptions{Window: w, Dir: Dir(d), Prefetch: prefetch, Classify: classifyTest})
	}
	pkts := make([]flows.Packet, 300)
	frames := make([][]byte, 300)
	lastPos := make(map[int]int) // connection → stream position of its last staged packet
	i := 0
	for b, n := range batches {
		now := int64(1000 * (b + 1))
		for j := range n {
			pkts[j], frames[j] = items[i+j].pkt, items[i+j].frame
		}
		base := i
		procs[items[i].dir].Process(pkts[:n], frames[:n], now, func(ctx *Context, idx []int32) {
			for _, x := range idx {
				it := items[base+int(x)]
				if ctx == nil {
					if HasConnection(&it.pkt) {
						t.Fatalf("packet %d of connection %d staged without a context", base+int(x), it.conn)
					}
					continue
				}
				if HasConnection(&it.pkt) {
					if p, ok := lastPos[it.conn]; ok && p > base+int(x) {
						t.Fatalf("connection %d: packet %d staged after %d", it.conn, base+int(x), p)
					}
					lastPos[it.conn] = base + int(x)
				}
			}
		})
		i += n
	}
	c.Flush()
	got := make(map[flows.Key]Context)
	for h := range tb.ctx {
		if ctx := tb.Get(Handle(h)); ctx != nil {
			got[ctx.Key()] = *ctx
		}
	}
	return runResult{ctx: got, cache: c.Stats(), proc: [2]ProcessorStats{procs[0].Stats(), procs[1].Stats()}}
}

// TestProcessEquivalence: whatever W, cache size and prefetch, the final
// contexts equal the reference model's, through a cache far smaller than
// the working set.
func TestProcessEquivalence(t *testing.T) {
	iters := 20
	if testing.Short() {
		iters = 4
	}
	for iter := range iters {
		rng := rand.New(rand.NewSource(int64(100 + iter)))
		items := genTraffic(rng, 50+rng.Intn(400), 60)
		batches := splitBatches(rng, items)
		ref := refModel(items, batches)
		var base runResult
		for _, cfg := range []struct {
			w, entries, ways int
			prefetch         bool
		}{{1, 8, 2, false}, {2, 8, 2, false}, {7, 16, 4, true}, {64, 8, 2, false}, {64, 64, 8, true}, {256, 16, 4, true}} {
			name := fmt.Sprintf("iter %d W=%d cache=%d/%d prefetch=%v", iter, cfg.w, cfg.entries, cfg.ways, cfg.prefetch)
			r := runProcessors(t, items, batches, cfg.w, cfg.entries, cfg.ways, cfg.prefetch)
			if len(r.ctx) != len(ref) {
				t.Fatalf("%s: %d contexts, reference %d", name, len(r.ctx), len(ref))
			}
			for k, want := range ref {
				got, ok := r.ctx[k]
				if !ok {
					t.Fatalf("%s: connection %v lost", name, k)
				}
				if state(got) != state(want) {
					t.Fatalf("%s: connection %v\n got %+v\nwant %+v", name, k, state(got), state(want))
				}
			}
			if r.cache.Evictions == 0 {
				t.Fatalf("%s: no evictions: the cache is not under pressure", name)
			}
			if cfg.w == 1 {
				base = r
			} else if l, l1 := r.cache.Loads(), base.cache.Loads(); l > l1 {
				t.Errorf("%s: %d loads, more than W=1's %d", name, l, l1)
			}
			groups := r.proc[0].Groups + r.proc[1].Groups
			if s := r.cache; s.Hits+s.Misses+s.Creates != groups {
				t.Fatalf("%s: hits+misses+creates %d != groups %d", name, s.Hits+s.Misses+s.Creates, groups)
			}
		}
	}
}

func TestProcessorOptions(t *testing.T) {
	tb := mustTable(t, 16)
	c := mustCache(t, tb, 4, 2)
	if _, err := NewProcessor(nil, DefaultProcessorOptions()); !errors.Is(err, ErrOptions) {
		t.Errorf("nil cache: %v", err)
	}
	o := DefaultProcessorOptions()
	o.Window = 0
	if _, err := NewProcessor(c, o); !errors.Is(err, ErrOptions) {
		t.Errorf("window 0: %v", err)
	}
	o = DefaultProcessorOptions()
	o.Dir = 7
	if _, err := NewProcessor(c, o); !errors.Is(err, ErrOptions) {
		t.Errorf("dir 7: %v", err)
	}
}

// TestProcessTableFull: packets of connections the table cannot take are
// counted and staged without a context; known connections carry on.
func TestProcessTableFull(t *testing.T) {
	tb := mustTable(t, 2)
	c := mustCache(t, tb, 2, 2)
	p := mustProcessor(t, c, DefaultProcessorOptions())
	pkts := []flows.Packet{
		udpPacket(testKey(0, flows.ProtoUDP), 10), udpPacket(testKey(1, flows.ProtoUDP), 10),
		udpPacket(testKey(2, flows.ProtoUDP), 10), udpPacket(testKey(0, flows.ProtoUDP), 10),
		udpPacket(testKey(2, flows.ProtoUDP), 10),
	}
	nilCtx := 0
	p.Process(pkts, nil, 1, func(ctx *Context, idx []int32) {
		if ctx == nil {
			nilCtx += len(idx)
		}
	})
	if s := p.Stats(); s.Full != 2 || s.Packets != 3 || nilCtx != 2 {
		t.Fatalf("stats %+v, %d staged without context", s, nilCtx)
	}
}

// TestProcessStageUsesCache: a stage that loads other connections through
// the same cache (as a reply path might) must not leave the processor
// working from a stale probe: no connection may end up in two ways, and
// no update may be lost.
func TestProcessStageUsesCache(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	const nconn = 40
	tb := mustTable(t, 256)
	c := mustCache(t, tb, 16, 4)
	p := mustProcessor(t, c, ProcessorOptions{Window: 64, Prefetch: true})
	wantIn := make(map[flows.Key]uint64)
	wantOut := make(map[flows.Key]uint64)
	pkts := make([]flows.Packet, 64)
	for round := range 2000 {
		for i := range pkts {
			k := testKey(rng.Intn(nconn), flows.ProtoUDP)
			pkts[i] = udpPacket(k, 10)
			wantIn[k]++
		}
		p.Process(pkts, nil, int64(round), func(ctx *Context, idx []int32) {
			// Touch the connection of a later packet of this window, and a
			// random one: both may be groups the probe saw as misses.
			for _, k := range []flows.Key{pkts[(int(idx[0])+7)%64].Key, testKey(rng.Intn(nconn), flows.ProtoUDP)} {
				o, _ := c.LoadOrCreate(&k, int64(round))
				o.PacketsOut++
				wantOut[k]++
			}
		})
		seen := make(map[flows.Key]bool)
		for w := range c.stamp {
			if c.stamp[w] == 0 {
				continue
			}
			if k := c.ctx[w].key; seen[k] {
				t.Fatalf("round %d: %v cached twice", round, k)
			} else {
				seen[k] = true
			}
		}
	}
	c.Flush()
	for k, n := range wantIn {
		h, ok := tb.Lookup(&k)
		if !ok {
			t.Fatalf("%v lost", k)
		}
		if got := tb.Get(h); got.PacketsIn != n || got.PacketsOut != wantOut[k] {
			t.Fatalf("%v: in %d out %d, want %d %d", k, got.PacketsIn, got.PacketsOut, n, wantOut[k])
		}
	}
}
