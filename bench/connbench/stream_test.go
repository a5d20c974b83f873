package connbench

import (
	"testing"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/conn"
)

func smallOptions() Options {
	o := DefaultOptions()
	o.Packets = 1 << 14
	o.Rounds = 2
	return o
}

// TestConnKeysDistinct: connection keys are distinct across the address
// wrap-around (131072 addresses, then the next source port).
func TestConnKeysDistinct(t *testing.T) {
	seen := make(map[flows.Key]int)
	for _, i := range []int{0, 1, 255, 256, 1<<17 - 1, 1 << 17, 1<<17 + 1, 1 << 18, 1_000_000, MaxConns - 1} {
		k := connKey(i)
		if j, ok := seen[k]; ok {
			t.Fatalf("connections %d and %d share key %v", j, i, k)
		}
		seen[k] = i
		p := udpPacket(k)
		if !conn.HasConnection(&p) {
			t.Fatalf("connection %d: packet has no connection", i)
		}
	}
	for i := range 1<<17 + 4096 {
		k := connKey(i)
		if j, ok := seen[k]; ok && j != i {
			t.Fatalf("connections %d and %d share key %v", j, i, k)
		}
		seen[k] = i
	}
}

// TestBlockStream: in the blocks model every aligned window of Spread
// packets holds Spread/Burst connections with Burst packets each, the stream
// has Packets packets, and connections take turns fairly.
func TestBlockStream(t *testing.T) {
	o := smallOptions()
	for _, n := range []int{16, 1000} {
		s, err := buildStream(n, o)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.pkts) != o.Packets || len(s.conns) != o.Packets {
			t.Fatalf("N=%d: %d packets, %d connection indices, want %d", n, len(s.pkts), len(s.conns), o.Packets)
		}
		for off := 0; off < len(s.conns); off += o.Spread {
			count := map[uint32]int{}
			for _, c := range s.conns[off : off+o.Spread] {
				count[c]++
			}
			if len(count) != o.Spread/o.Burst {
				t.Fatalf("N=%d block at %d: %d connections, want %d", n, off, len(count), o.Spread/o.Burst)
			}
			for c, k := range count {
				if k != o.Burst {
					t.Fatalf("N=%d block at %d: connection %d has %d packets, want %d", n, off, c, k, o.Burst)
				}
			}
		}
		per := make([]int, n)
		for i, c := range s.conns {
			if s.pkts[i].Key != connKey(int(c)) {
				t.Fatalf("N=%d packet %d: key of the wrong connection", n, i)
			}
			per[c]++
		}
		lo, hi := per[0], per[0]
		for _, k := range per {
			lo, hi = min(lo, k), max(hi, k)
		}
		if hi-lo > o.Burst {
			t.Errorf("N=%d: connections got %d..%d packets, want within one burst", n, lo, hi)
		}
		if got := s.expectedLoads(o.Spread, o.Batch, make([]uint32, n)); got != 1/float64(o.Burst) {
			t.Errorf("N=%d: expected loads with W=%d: %v, want %v", n, o.Spread, got, 1/float64(o.Burst))
		}
		if got := s.expectedLoads(1, o.Batch, make([]uint32, n)); got != 1 {
			t.Errorf("N=%d: expected loads with W=1: %v, want 1", n, got)
		}
	}
}

// TestOverlapStream: in the overlap model the packets of a burst stay
// within about Spread of each other, and windows are not aligned with
// bursts, so a window holds fewer than Burst packets per connection.
func TestOverlapStream(t *testing.T) {
	o := smallOptions()
	o.Model = ModelOverlap
	// More connections than bursts in the stream: each sends one burst.
	n := 4 * o.Packets / o.Burst
	s, err := buildStream(n, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.conns) != o.Packets {
		t.Fatalf("%d packets, want %d", len(s.conns), o.Packets)
	}
	first := make(map[uint32]int)
	count := make(map[uint32]int)
	for i, c := range s.conns {
		if _, ok := first[c]; !ok {
			first[c] = i
		}
		if i-first[c] > 2*o.Spread {
			t.Fatalf("packet %d of connection %d: %d packets after its first", i, c, i-first[c])
		}
		if count[c]++; count[c] > o.Burst {
			t.Fatalf("connection %d: more than a burst of packets", c)
		}
	}
	got := s.expectedLoads(64, 64, make([]uint32, n))
	if got <= 1/float64(o.Burst) || got >= 1 {
		t.Errorf("expected loads with W=64: %v, want between 1/burst and 1", got)
	}
}
