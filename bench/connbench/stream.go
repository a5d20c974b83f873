package connbench

import (
	"fmt"
	"math/rand"
	"slices"

	"github.com/xnic/xnic/flows"
)

// stream is the pre-built traffic of one N: parsed packets and, beside
// each, the index of its connection.
type stream struct {
	n     int
	pkts  []flows.Packet
	conns []uint32
}

// connKey is connection i's key: a UDP flow from a distinct (address, port)
// of 198.18.0.0/15 to one server address and port.
func connKey(i int) flows.Key {
	h := i & (1<<17 - 1) // 131072 addresses in the /15
	return flows.Key{
		Src:     flows.MapIPv4([4]byte{198, 18 + byte(h>>16), byte(h >> 8), byte(h)}),
		Dst:     flows.MapIPv4([4]byte{198, 19, 255, 254}),
		SrcPort: uint16(1024 + i>>17),
		DstPort: 5201,
		Proto:   flows.ProtoUDP,
		Family:  4,
	}
}

// udpPacket is what flows.Parse says of a 64-byte IPv4 UDP frame of k
// (18 bytes of payload).
func udpPacket(k flows.Key) flows.Packet {
	const payload = 18
	return flows.Packet{
		Reason: flows.ReasonOK, EtherType: flows.EtherTypeIPv4, Family: 4,
		L3Off: 14, L3Len: 20, IPLen: 28 + payload, TTL: 64,
		Proto: flows.ProtoUDP, L4Off: 34, L4Len: 8, PayloadOff: 42, PayloadLen: payload,
		Key: k,
	}
}

// cycler hands out the connections 0..n-1 in a random order, and a fresh
// random order once all n have had their turn.
type cycler struct {
	rng  *rand.Rand
	perm []uint32
	next int
}

func newCycler(rng *rand.Rand, n int) *cycler {
	c := &cycler{rng: rng, perm: make([]uint32, n)}
	for i := range c.perm {
		c.perm[i] = uint32(i)
	}
	c.next = n // shuffle before the first use
	return c
}

func (c *cycler) take() uint32 {
	if c.next == len(c.perm) {
		shuffle(c.rng, c.perm)
		c.next = 0
	}
	v := c.perm[c.next]
	c.next++
	return v
}

// takeUnmarked is take, but skips connections whose mark is stamp while
// there are others left in the current order, and marks the one it takes.
// A block in the making that straddles two orders so keeps its connections
// distinct: every connection it took from the current order is marked, so
// an unmarked one is left.
func (c *cycler) takeUnmarked(mark []uint32, stamp uint32) uint32 {
	if c.next == len(c.perm) {
		shuffle(c.rng, c.perm)
		c.next = 0
	}
	for j := c.next; j < len(c.perm); j++ {
		if mark[c.perm[j]] != stamp {
			c.perm[c.next], c.perm[j] = c.perm[j], c.perm[c.next]
			break
		}
	}
	v := c.take()
	mark[v] = stamp
	return v
}

func shuffle(rng *rand.Rand, s []uint32) {
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
}

// streamSeed gives each N its own, reproducible stream.
func streamSeed(seed int64, n int) int64 { return seed*1_000_003 + int64(n) }

// buildStream builds o.Packets packets of n connections with o's traffic
// model.
func buildStream(n int, o Options) (*stream, error) {
	rng := rand.New(rand.NewSource(streamSeed(o.Seed, n)))
	cy := newCycler(rng, n)
	var conns []uint32
	switch o.Model {
	case ModelBlocks:
		conns = blockOrder(rng, cy, o.Packets, o.Burst, o.Spread)
	case ModelOverlap:
		var err error
		if conns, err = overlapOrder(rng, cy, o.Packets, o.Burst, o.Spread); err != nil {
			return nil, err
		}
	default:
		return nil, optErr("model", "must be %q or %q, got %q", ModelBlocks, ModelOverlap, o.Model)
	}
	s := &stream{n: n, conns: conns, pkts: make([]flows.Packet, len(conns))}
	keys := make([]flows.Key, n)
	for i := range keys {
		keys[i] = connKey(i)
	}
	for i, c := range conns {
		s.pkts[i] = udpPacket(keys[c])
	}
	return s, nil
}

// blockOrder lays out packets connection by connection in blocks of spread
// packets, each the shuffled bursts of spread/burst connections, distinct
// when there are that many.
func blockOrder(rng *rand.Rand, cy *cycler, packets, burst, spread int) []uint32 {
	conns := make([]uint32, 0, packets+spread)
	distinct := len(cy.perm) >= spread/burst
	var mark []uint32 // the block (numbered from 1) a connection was last taken for
	if distinct {
		mark = make([]uint32, len(cy.perm))
	}
	for blk := uint32(1); len(conns) < packets; blk++ {
		block := conns[len(conns) : len(conns)+spread]
		for i := 0; i < spread; i += burst {
			var c uint32
			if distinct {
				c = cy.takeUnmarked(mark, blk)
			} else {
				c = cy.take() // fewer connections than a block holds: some repeat
			}
			for j := range burst {
				block[i+j] = c
			}
		}
		shuffle(rng, block)
		conns = conns[:len(conns)+spread]
	}
	return conns[:packets]
}

// overlapOrder starts a burst every burst packets and puts each of its
// packets at a random place among the spread packets from its start. The
// first spread packets (while the bursts ramp up) are dropped.
func overlapOrder(rng *rand.Rand, cy *cycler, packets, burst, spread int) ([]uint32, error) {
	type slot struct {
		pos  float64
		conn uint32
	}
	// Bursts up to position packets + 2 spread, and a margin for the
	// random count of packets that land in the part kept.
	bursts := (packets+2*spread+packets/64)/burst + 2
	slots := make([]slot, 0, bursts*burst)
	for k := range bursts {
		c := cy.take()
		for range burst {
			slots = append(slots, slot{pos: float64(k*burst) + rng.Float64()*float64(spread), conn: c})
		}
	}
	slices.SortFunc(slots, func(a, b slot) int {
		switch {
		case a.pos < b.pos:
			return -1
		case a.pos > b.pos:
			return 1
		}
		return 0
	})
	start, _ := slices.BinarySearchFunc(slots, float64(spread), func(s slot, p float64) int {
		if s.pos < p {
			return -1
		}
		if s.pos > p {
			return 1
		}
		return 0
	})
	if len(slots)-start < packets {
		return nil, fmt.Errorf("build overlap stream: %d packets past the ramp-up, want %d", len(slots)-start, packets)
	}
	conns := make([]uint32, packets)
	for i := range conns {
		conns[i] = slots[start+i].conn
	}
	return conns, nil
}

// expectedLoads is the loads per packet that lookahead alone gives, with no
// context kept from one window to the next: the connections of each window
// (of w packets, in batches of batch) over the packets. seen is scratch of
// at least n entries.
func (s *stream) expectedLoads(w, batch int, seen []uint32) float64 {
	clear(seen[:s.n])
	stamp := uint32(0)
	distinct := 0
	for off := 0; off < len(s.conns); off += batch {
		end := min(off+batch, len(s.conns))
		for ws := off; ws < end; ws += w {
			stamp++
			for _, c := range s.conns[ws:min(ws+w, end)] {
				if seen[c] != stamp {
					seen[c] = stamp
					distinct++
				}
			}
		}
	}
	return float64(distinct) / float64(len(s.conns))
}
