package conn

import (
	"errors"
	"math/rand"
	"testing"

	"github.com/xnic/xnic/flows"
)

type seqItem struct {
	key  flows.Key
	conn int
	seq  int // position within its connection
}

func seqItemKey(it *seqItem, _ *flows.Key) *flows.Key { return &it.key }

// seqItemKeyCopy computes the key into scratch, as send-direction items do.
func seqItemKeyCopy(it *seqItem, k *flows.Key) *flows.Key {
	k.Src, k.Dst = it.key.Src, it.key.Dst
	k.SrcPort, k.DstPort = it.key.SrcPort, it.key.DstPort
	k.Proto, k.Family, k.VLAN = it.key.Proto, it.key.Family, it.key.VLAN
	return k
}

// interleave returns a random interleaving of n connections with counts[c]
// items each, every connection's items in seq order.
func interleave(rng *rand.Rand, counts []int) []seqItem {
	var pool []int
	for c, n := range counts {
		for range n {
			pool = append(pool, c)
		}
	}
	rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	next := make([]int, len(counts))
	items := make([]seqItem, len(pool))
	for i, c := range pool {
		items[i] = seqItem{key: testKey(c, flows.ProtoTCP), conn: c, seq: next[c]}
		next[c]++
	}
	return items
}

func TestBatcherOptions(t *testing.T) {
	for _, w := range []int{0, -1, MaxWindow + 1} {
		if _, err := NewBatcher(w, seqItemKey); !errors.Is(err, ErrOptions) {
			t.Errorf("window %d: err = %v, want ErrOptions", w, err)
		}
	}
	if _, err := NewBatcher[seqItem](4, nil); !errors.Is(err, ErrOptions) {
		t.Errorf("nil key: err = %v, want ErrOptions", err)
	}
}

// TestBatcherOrderProperty: for random interleavings, every W keeps each
// connection's order, emits every item exactly once, keeps groups inside
// their window, and groups maximally (one group per connection per window).
func TestBatcherOrderProperty(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for n, w := range []int{1, 2, 7, 64, 256, 1, 7, 64} {
		key := seqItemKey
		if n >= 5 {
			key = seqItemKeyCopy
		}
		b, err := NewBatcher(w, key)
		if err != nil {
			t.Fatal(err)
		}
		for iter := range 300 {
			nconn := 1 + rng.Intn(100)
			counts := make([]int, nconn)
			for c := range counts {
				counts[c] = rng.Intn(30)
			}
			items := interleave(rng, counts)
			seen := make([]bool, len(items))
			next := make([]int, nconn)
			groupsInWindow := make(map[[2]int]bool) // (window, conn)
			b.Run(items, func(key *flows.Key, hash uint64, idx []int32) {
				if len(idx) == 0 {
					t.Fatalf("W=%d iter %d: empty group", w, iter)
				}
				if hash != key.Hash() {
					t.Fatalf("W=%d iter %d: group hash %x, key hash %x", w, iter, hash, key.Hash())
				}
				win := int(idx[0]) / w
				c := items[idx[0]].conn
				if groupsInWindow[[2]int{win, c}] {
					t.Fatalf("W=%d iter %d: connection %d has two groups in window %d", w, iter, c, win)
				}
				groupsInWindow[[2]int{win, c}] = true
				for _, i := range idx {
					it := items[i]
					if int(i)/w != win {
						t.Fatalf("W=%d iter %d: group spans windows %d and %d", w, iter, win, int(i)/w)
					}
					if it.key != *key {
						t.Fatalf("W=%d iter %d: item %d of connection %d in group of %v", w, iter, i, it.conn, *key)
					}
					if seen[i] {
						t.Fatalf("W=%d iter %d: item %d emitted twice", w, iter, i)
					}
					seen[i] = true
					if it.seq != next[it.conn] {
						t.Fatalf("W=%d iter %d: connection %d item %d came before item %d", w, iter, it.conn, it.seq, next[it.conn])
					}
					next[it.conn]++
				}
			})
			for c := range counts {
				if next[c] != counts[c] {
					t.Fatalf("W=%d iter %d: connection %d emitted %d of %d items", w, iter, c, next[c], counts[c])
				}
			}
		}
	}
}

func TestBatcherPlanPartial(t *testing.T) {
	b, err := NewBatcher(4, seqItemKey)
	if err != nil {
		t.Fatal(err)
	}
	items := interleave(rand.New(rand.NewSource(4)), []int{3, 3})
	if end := b.Plan(items, 0); end != 4 {
		t.Fatalf("Plan(0) = %d, want 4", end)
	}
	if end := b.Plan(items, 4); end != 6 || b.Groups() < 1 {
		t.Fatalf("Plan(4) = %d with %d groups, want 6", end, b.Groups())
	}
	if end := b.Plan(items, 6); end != 6 || b.Groups() != 0 {
		t.Fatalf("Plan at the end = %d with %d groups", end, b.Groups())
	}
}

// TestBatcherHashCollisions: keys whose hashes collide (all of them, in
// the extreme) are still told apart by key.
func TestBatcherHashCollisions(t *testing.T) {
	rng := rand.New(rand.NewSource(10))
	for _, classes := range []uint64{1, 3} {
		b, err := NewBatcher(64, seqItemKey)
		if err != nil {
			t.Fatal(err)
		}
		b.hashOf = func(k *flows.Key) uint64 { return uint64(k.SrcPort) % classes * 0x9e3779b97f4a7c15 }
		counts := make([]int, 20)
		for c := range counts {
			counts[c] = 1 + rng.Intn(10)
		}
		items := interleave(rng, counts)
		next := make([]int, len(counts))
		for start := 0; start < len(items); {
			end := b.Plan(items, start)
			seen := make(map[int]bool)
			for g := range b.Groups() {
				key, _, idx := b.Group(g)
				c := items[idx[0]].conn
				if seen[c] {
					t.Fatalf("classes %d: connection %d in two groups of one window", classes, c)
				}
				seen[c] = true
				for _, i := range idx {
					if it := items[i]; it.key != *key || it.seq != next[it.conn] {
						t.Fatalf("classes %d: item %d (connection %d seq %d) misgrouped or out of order", classes, i, it.conn, it.seq)
					}
					next[items[i].conn]++
				}
			}
			start = end
		}
	}
}
