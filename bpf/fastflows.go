package bpf

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The fast flow table (map fast_flows) holds IPv4 flows in front of the
// LRU hash: an array of buckets, each one cache line of fastWays ways of
// 16 bytes. A flow has two candidate buckets, the two halves of fastHash;
// it goes to the first when that has a free way, else to the second, else
// to the LRU hash. A key lives in one place only. The fast table never
// evicts; the LRU hash takes the overflow and IPv6.
//
// Why: at 100k flows every frame looks up a flow that is not in the CPU's
// caches. The LRU hash walks a bucket list and then reads an entry
// elsewhere, two dependent misses in 14 MB; the fast table reads one
// cache line, for 13% of flows two, of 2 MB (for the default 131072
// flows). In the lab's steering benchmark that took 100k installed flows
// from 0.66 to 0.81 of the raw receive rate; the one miss left is the
// rest of the gap (README, Steering).
//
// The map is mmap'ed, and this process writes it with single 64-bit
// atomic stores in the order steer.bpf.c describes, so the program needs
// no lock:
//   - word 0 of a way is (src, dst), 0 when the way is empty; word 1 is
//     (sport, dport, proto, guest, vlan<<4|class);
//   - a flow enters an empty way word 1 first, then word 0;
//   - a new target for a flow already there is one store of word 1;
//   - a delete stores 0 in word 0, and the way waits in quarantine until an
//     RCU grace period has passed (membarrier(MEMBARRIER_CMD_GLOBAL), which
//     calls synchronize_rcu; the program runs inside an RCU read section),
//     so no reader that saw the old word 0 can read a new word 1.
//
// That needs loads and stores that are not reordered with others of their
// kind: x86-64. On other architectures the table stays empty and every
// flow goes to the LRU hash. Writes are serialized by Steer.flowMu, and
// one process writes a given set of pinned maps at a time.

// fastWays is XNIC_FAST_WAYS, the flows per bucket.
const fastWays = len(steerFastBucket{}.Way)

// fastSupported: the lock-free protocol holds on this architecture.
const fastSupported = runtime.GOARCH == "amd64"

// Word 1 without the target (guest and class), XNIC_FAST_KEY_MASK.
const fastKeyMask = 0xfff000ffffffffff

// fastBucketsFor is the number of fast buckets for an LRU table of flows
// entries: a power of two, with a way for each flow (64 bytes per bucket,
// 16 per flow). With two candidate buckets per flow, few overflow before
// the table is about 90% full.
func fastBucketsFor(flows int) int {
	n := max(1, (flows+fastWays-1)/fastWays)
	return 1 << bits.Len(uint(n-1))
}

// fastHash is the twin of fast_hash in steer.bpf.c: src and dst are the
// IPv4 addresses as the program loads them (little-endian words of the
// address bytes), ports sport|dport<<16, pv proto|vlan<<16.
func fastHash(src, dst, ports, pv uint32) uint64 {
	h := (uint64(src)<<32 | uint64(dst)) * 0x9e3779b97f4a7c15
	h ^= (uint64(ports)<<32 | uint64(pv)) * 0xc2b2ae3d27d4eb4f
	h ^= h >> 29
	h *= 0x165667b19e3779f9
	h ^= h >> 32
	return h
}

// fastKey is an IPv4 flow key as the fast table stores it.
type fastKey struct {
	src, dst     uint32
	sport, dport uint16
	vlan         uint16
	proto        uint8
}

// fastKeyOf returns fk in the fast table's form, and false when the fast
// table cannot hold it (not IPv4, both addresses 0.0.0.0, or a vlan beyond
// 12 bits): such flows go to the LRU hash.
func fastKeyOf(fk steerFlowKey) (fastKey, bool) {
	f := fastKey{
		src: binary.LittleEndian.Uint32(fk.Src[12:]), dst: binary.LittleEndian.Uint32(fk.Dst[12:]),
		sport: fk.Sport, dport: fk.Dport, vlan: fk.Vlan, proto: fk.Proto,
	}
	return f, fastSupported && fk.Family == 4 && f.word0() != 0 && f.vlan <= 0xfff
}

func (f fastKey) word0() uint64 { return uint64(f.src) | uint64(f.dst)<<32 }

// word1 is word 1 of a way holding f steered to t.
func (f fastKey) word1(t steerFlowTarget) uint64 {
	return uint64(f.sport) | uint64(f.dport)<<16 | uint64(f.proto)<<32 |
		uint64(t.Guest)<<40 | uint64(t.Class&0xf)<<48 | uint64(f.vlan)<<52
}

// buckets are f's first and second bucket (they may be the same).
func (f fastKey) buckets(mask uint32) [2]uint32 {
	h := fastHash(f.src, f.dst, uint32(f.sport)|uint32(f.dport)<<16, uint32(f.proto)|uint32(f.vlan)<<16)
	return [2]uint32{uint32(h) & mask, uint32(h>>32) & mask}
}

// fastWayKey decodes a way's words.
func fastWayKey(w0, w1 uint64) (fastKey, steerFlowTarget) {
	return fastKey{
			src: uint32(w0), dst: uint32(w0 >> 32),
			sport: uint16(w1), dport: uint16(w1 >> 16), proto: uint8(w1 >> 32), vlan: uint16(w1 >> 52),
		},
		steerFlowTarget{Guest: uint8(w1 >> 40), Class: uint8(w1>>48) & 0xf}
}

func (f fastKey) steerKey() steerFlowKey {
	k := steerFlowKey{Sport: f.sport, Dport: f.dport, Proto: f.proto, Family: 4, Vlan: f.vlan}
	k.Src[10], k.Src[11], k.Dst[10], k.Dst[11] = 0xff, 0xff, 0xff, 0xff
	binary.LittleEndian.PutUint32(k.Src[12:], f.src)
	binary.LittleEndian.PutUint32(k.Dst[12:], f.dst)
	return k
}

// fastTable is the mmap'ed fast_flows map and the writer's state.
type fastTable struct {
	mem   []byte   // the mapping
	words []uint64 // mem as words: way w of bucket b at (b*fastWays+w)*2
	mask  uint32   // buckets - 1
	// quarantine holds, per bucket, the ways deleted since the last
	// grace period: empty, but not to be reused before the next one.
	quarantine map[uint32]uint8
	// grace waits for an RCU grace period (membarrier); a test hook.
	grace func() error
	// graceErr is the last failure of grace, nil once one succeeds.
	graceErr error
}

// mapFast mmaps the fast_flows map of buckets buckets, read-only unless
// writable.
func mapFast(fd, buckets int, writable bool) (*fastTable, error) {
	size := buckets * int(unsafe.Sizeof(steerFastBucket{}))
	page := unix.Getpagesize()
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	mem, err := unix.Mmap(fd, 0, (size+page-1)/page*page, prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap fast flow table: %w", err)
	}
	t := newFastTable(unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), size/8), buckets)
	t.mem = mem
	return t, nil
}

// newFastTable is a table of buckets buckets (a power of two) over words.
func newFastTable(words []uint64, buckets int) *fastTable {
	return &fastTable{words: words, mask: uint32(buckets - 1), quarantine: map[uint32]uint8{}, grace: rcuGrace}
}

func (t *fastTable) close() error {
	if t == nil {
		return nil
	}
	if t.mem == nil {
		t.words = nil
		return nil
	}
	err := unix.Munmap(t.mem)
	t.mem, t.words = nil, nil
	return err
}

// rcuGrace waits until every program run that started before it has
// ended: membarrier(MEMBARRIER_CMD_GLOBAL) calls synchronize_rcu.
func rcuGrace() error {
	const cmdGlobal = 1 // MEMBARRIER_CMD_GLOBAL
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, cmdGlobal, 0, 0); errno != 0 {
		return fmt.Errorf("membarrier(MEMBARRIER_CMD_GLOBAL): %w", errno)
	}
	return nil
}

// way returns the two words of way w of bucket b.
func (t *fastTable) way(b uint32, w int) (w0, w1 *uint64) {
	i := (int(b)*fastWays + w) * 2
	return &t.words[i], &t.words[i+1]
}

// find returns the bucket and way that hold f, or way -1.
func (t *fastTable) find(f fastKey) (uint32, int) {
	want0 := f.word0()
	want1 := f.word1(steerFlowTarget{})
	for _, b := range f.buckets(t.mask) {
		for w := range fastWays {
			p0, p1 := t.way(b, w)
			if atomic.LoadUint64(p0) == want0 && atomic.LoadUint64(p1)&fastKeyMask == want1 {
				return b, w
			}
		}
	}
	return 0, -1
}

// free returns a way of f's buckets, the first one first, that is empty
// and out of quarantine, or way -1 and whether some way there is in
// quarantine.
func (t *fastTable) free(f fastKey) (uint32, int, bool) {
	waiting := false
	for _, b := range f.buckets(t.mask) {
		q := t.quarantine[b]
		waiting = waiting || q != 0
		for w := range fastWays {
			p0, _ := t.way(b, w)
			if atomic.LoadUint64(p0) == 0 && q&(1<<w) == 0 {
				return b, w, false
			}
		}
	}
	return 0, -1, waiting
}

// placement is what a put did with a flow.
type placement int

const (
	fastFull     placement = iota // no free way: the flow goes to the LRU hash
	fastWaiting                   // only quarantined ways free (tryPut)
	fastPlaced                    // into a free way: it may be in the LRU hash too
	fastRetarget                  // already here, given its new target
)

// in says whether the flow is in the fast table now.
func (p placement) in() bool { return p >= fastPlaced }

// put steers f to tg: in place when f is there, in a free way otherwise,
// after a grace period if only quarantined ways are free. It returns
// fastFull when both buckets are full, or hold only quarantined ways and
// no grace period can be had (membarrier refused, as with nohz_full).
func (t *fastTable) put(f fastKey, tg steerFlowTarget) placement {
	p := t.tryPut(f, tg)
	if p != fastWaiting {
		return p
	}
	if t.graceErr = t.endQuarantine(); t.graceErr != nil {
		return fastFull
	}
	if p = t.tryPut(f, tg); p == fastWaiting {
		return fastFull
	}
	return p
}

// tryPut is put without waiting: when the only free ways of f's buckets
// are quarantined it returns fastWaiting.
func (t *fastTable) tryPut(f fastKey, tg steerFlowTarget) placement {
	if b, w := t.find(f); w >= 0 {
		_, p1 := t.way(b, w)
		atomic.StoreUint64(p1, f.word1(tg))
		return fastRetarget
	}
	b, w, waiting := t.free(f)
	if w < 0 {
		if waiting {
			return fastWaiting
		}
		return fastFull
	}
	p0, p1 := t.way(b, w)
	atomic.StoreUint64(p1, f.word1(tg))
	atomic.StoreUint64(p0, f.word0())
	return fastPlaced
}

// relocate makes room for f, whose two buckets are full: it moves a flow
// of one of them to that flow's other bucket, when that has a free way.
// The flow is written there first and then deleted here, so a reader
// finds it in one place or both, with the same target; the way it leaves
// is quarantined, so f can have it after the next grace period. It says
// whether it moved a flow.
func (t *fastTable) relocate(f fastKey) bool {
	for _, b := range f.buckets(t.mask) {
		for w := range fastWays {
			p0, p1 := t.way(b, w)
			w0 := atomic.LoadUint64(p0)
			if w0 == 0 {
				continue
			}
			w1 := atomic.LoadUint64(p1)
			r, _ := fastWayKey(w0, w1)
			alt := r.buckets(t.mask)
			other := alt[0]
			if other == b {
				other = alt[1]
			}
			if other == b {
				continue // both of r's buckets are this one
			}
			q := t.quarantine[other]
			for v := range fastWays {
				a0, a1 := t.way(other, v)
				if atomic.LoadUint64(a0) != 0 || q&(1<<v) != 0 {
					continue
				}
				atomic.StoreUint64(a1, w1)
				atomic.StoreUint64(a0, w0)
				atomic.StoreUint64(p0, 0)
				t.quarantine[b] |= 1 << w
				return true
			}
		}
	}
	return false
}

// endQuarantine waits for a grace period and frees every quarantined way.
func (t *fastTable) endQuarantine() error {
	if len(t.quarantine) == 0 {
		return nil
	}
	if err := t.grace(); err != nil {
		return fmt.Errorf("free deleted fast flow ways: %w", err)
	}
	clear(t.quarantine)
	return nil
}

// delete removes f and says whether it was there.
func (t *fastTable) delete(f fastKey) bool {
	b, w := t.find(f)
	if w < 0 {
		return false
	}
	p0, _ := t.way(b, w)
	atomic.StoreUint64(p0, 0)
	t.quarantine[b] |= 1 << w
	return true
}

// lookup returns f's target, if f is there.
func (t *fastTable) lookup(f fastKey) (steerFlowTarget, bool) {
	if b, w := t.find(f); w >= 0 {
		_, p1 := t.way(b, w)
		_, tg := fastWayKey(0, atomic.LoadUint64(p1))
		return tg, true
	}
	return steerFlowTarget{}, false
}

// walk calls fn for every flow until fn returns false.
func (t *fastTable) walk(fn func(f fastKey, tg steerFlowTarget) bool) bool {
	for i := 0; i < len(t.words); i += 2 {
		w0 := atomic.LoadUint64(&t.words[i])
		if w0 == 0 {
			continue
		}
		f, tg := fastWayKey(w0, atomic.LoadUint64(&t.words[i+1]))
		if !fn(f, tg) {
			return false
		}
	}
	return true
}

// count is the number of flows in the table.
func (t *fastTable) count() int {
	n := 0
	for i := 0; i < len(t.words); i += 2 {
		if atomic.LoadUint64(&t.words[i]) != 0 {
			n++
		}
	}
	return n
}
