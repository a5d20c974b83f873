package conn

import (
	"math/bits"

	"github.com/xnic/xnic/flows"
)

// Batcher is the lookahead batcher. It looks at a window of up to W items
// (rx descriptors, parsed packets, send work requests), groups them by
// connection while keeping each connection's order, and hands out one group
// per connection, so the next stage loads each context once per window
// instead of once per item. W=1 is the no-lookahead baseline. A batch longer
// than W is processed as consecutive windows.
//
// Grouping is O(W): one pass through a small open-addressed scratch table
// of at least 4W slots gives every item a group, and a counting sort lays
// the groups out. It allocates nothing: all scratch is sized at
// construction. Groups come out in the order of their first item. A Batcher
// belongs to one worker.
type Batcher[T any] struct {
	w   int
	key KeyFunc[T]

	// Scratch of the current window, sized from W at construction.
	slots  []uint64     // scratch hash table: hash>>32<<32 | group+1, 0 = empty
	smask  uint64       // len(slots) - 1
	gid    []int32      // per item (window-relative): its group
	gKey   []*flows.Key // per group: its key, in an item or in gKeyBuf
	gHash  []uint64     // per group: its key's hash
	gStart []int32      // per group: start in order; gStart[groups] = items
	gPos   []int32      // per group: next free place in order while planning
	order  []int32      // items in group order (absolute indices)
	groups int

	gKeyBuf []flows.Key // per group: room for a key the KeyFunc computes

	hashOf func(*flows.Key) uint64 // tests only: replaces Key.Hash to force collisions
}

// KeyFunc returns an item's connection key: a pointer to the key inside the
// item when it holds one as is, or scratch filled in (a send-direction item
// reverses its key, say). The pointer must stay valid as long as the items
// do. Fill scratch field by field rather than by assigning a whole Key
// value returned from a function: that copy can defeat store forwarding
// and cost more than the hash.
type KeyFunc[T any] func(item *T, scratch *flows.Key) *flows.Key

// MaxWindow is the largest lookahead window.
const MaxWindow = 1 << 16

// NewBatcher builds a batcher of window w (1..MaxWindow). key gives an
// item's connection key; for send-direction items it gives the key
// reversed, so both directions share a context.
func NewBatcher[T any](w int, key KeyFunc[T]) (*Batcher[T], error) {
	if w < 1 || w > MaxWindow {
		return nil, optErr("lookahead window", "must be 1..%d, got %d", MaxWindow, w)
	}
	if key == nil {
		return nil, optErr("batcher key", "must not be nil")
	}
	ns := 1 << bits.Len(uint(4*w-1)) // power of two >= 4w: at most a quarter full
	return &Batcher[T]{
		w:       w,
		key:     key,
		slots:   make([]uint64, ns),
		smask:   uint64(ns - 1),
		gid:     make([]int32, w),
		gKey:    make([]*flows.Key, w),
		gKeyBuf: make([]flows.Key, w),
		gHash:   make([]uint64, w),
		gStart:  make([]int32, w+1),
		gPos:    make([]int32, w+1),
		order:   make([]int32, w),
	}, nil
}

// Window is W.
func (b *Batcher[T]) Window() int { return b.w }

// Plan groups the window items[start:end], end = min(start+W, len(items)),
// and returns end. The groups are then read with Groups and Group until the
// next Plan.
func (b *Batcher[T]) Plan(items []T, start int) int {
	n := min(b.w, len(items)-start)
	if n <= 0 {
		b.groups = 0
		return start
	}
	if b.w == 1 {
		b.gKey[0] = b.key(&items[start], &b.gKeyBuf[0])
		b.gHash[0] = b.gKey[0].Hash()
		b.order[0] = int32(start)
		b.gStart[0], b.gStart[1] = 0, 1
		b.groups = 1
		return start + 1
	}
	// Pass 1: a group id per item, and the size of every group.
	clear(b.slots)
	groups := 0
	for i := range n {
		k := b.key(&items[start+i], &b.gKeyBuf[groups])
		h := k.Hash()
		if b.hashOf != nil {
			h = b.hashOf(k)
		}
		tag := h >> 32 << 32
		for s := h & b.smask; ; s = (s + 1) & b.smask {
			v := b.slots[s]
			if v == 0 {
				b.slots[s] = tag | uint64(groups+1)
				b.gKey[groups] = k
				b.gHash[groups] = h
				b.gPos[groups] = 1
				b.gid[i] = int32(groups)
				groups++
				break
			}
			if v&^0xffffffff == tag {
				if g := int32(uint32(v)) - 1; keyEqual(b.gKey[g], k) {
					b.gid[i] = g
					b.gPos[g]++
					break
				}
			}
		}
	}
	// Pass 2: place the items group by group, in order (a counting sort).
	pos := int32(0)
	for g := range groups {
		b.gStart[g] = pos
		pos, b.gPos[g] = pos+b.gPos[g], pos
	}
	b.gStart[groups] = pos
	for i := range n {
		g := b.gid[i]
		b.order[b.gPos[g]] = int32(start + i)
		b.gPos[g]++
	}
	b.groups = groups
	return start + n
}

// Groups is the number of groups (connections) in the planned window.
func (b *Batcher[T]) Groups() int { return b.groups }

// Group returns group g of the planned window: the connection key, its
// hash, and the indices into items of its members in their original order.
// The slices are scratch, valid until the next Plan.
func (b *Batcher[T]) Group(g int) (key *flows.Key, hash uint64, idx []int32) {
	return b.gKey[g], b.gHash[g], b.order[b.gStart[g]:b.gStart[g+1]]
}

// keys and hashes of the planned window's groups (scratch).
func (b *Batcher[T]) groupKeys() ([]*flows.Key, []uint64) {
	return b.gKey[:b.groups], b.gHash[:b.groups]
}

// Run plans every window of items in turn and calls fn for each group.
func (b *Batcher[T]) Run(items []T, fn func(key *flows.Key, hash uint64, idx []int32)) {
	for start := 0; start < len(items); {
		start = b.Plan(items, start)
		for g := range b.groups {
			fn(b.Group(g))
		}
	}
}
