package bpf

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The fast rule index (maps fast_rules_head and fast_rules) answers the
// rule lookup of an IP frame without walking the LPM trie, whenever the
// rules allow it: it holds the rule sets of the exact prefixes (IPv4 /32,
// IPv6 /128) and of the two /0 prefixes in 64-byte ways, and it counts the
// prefixes of other lengths. The program reads the way of the frame's
// destination and, when none of its rules matches and no such middle
// prefix exists, the /0 way of the frame's family. The trie stays the
// reference and holds every rule; the program walks it when no exact rule
// matched and a middle prefix exists, when a set does not fit a way, or
// while this process is changing the index.
//
// Where the ways are: the head (one array element) holds the two /0 ways
// and, while there are at most headExact exact prefixes, theirs; a frame
// of the common tables (catch-all rules, a rule or two per address) then
// costs one array lookup. With more, every exact prefix goes to
// fast_rules, an array of buckets of two ways, into one of its two
// candidate buckets (ruleBuckets); when all four ways are taken, a cuckoo
// walk moves other prefixes to their other bucket, and a prefix that still
// finds no room is kept only in the trie and counted (overflow): then a
// frame whose destination the index does not hold walks the trie too. The
// table has two ways per prefix of SteerOptions.Prefixes, rounded up to a
// power of two (128 bytes per prefix).
//
// Why: a trie lookup cost about 7 of the 26 ns of one run of the program
// with one /32 rule (`xnic bench steer-prog`), and a hash map lookup as
// much (jhash and a bucket walk), while the verifier inlines an array
// lookup to a bounds check and an address. In an experiment program (count,
// parse, look up the destination, redirect) a run took 8 ns without the
// lookup, 10 with an array, 14 with a one-entry trie and 15-16 with a
// hash map.
//
// Writes go through mmap inside a sequence lock (head.seq): seq is made
// odd, the ways and counts change, seq is made even. The program reads seq
// before and after it reads the index and walks the trie when seq was odd
// or changed, so it never acts on a half-written way, and ways can be
// rewritten or moved in place with no grace period. The trie is updated
// first, one prefix per update, so a frame sees a rule change whole. The
// stores must not be reordered with each other, nor the program's loads
// with each other: x86-64 (fastSupported); elsewhere the index stays off
// (head.on 0) and every frame walks the trie.
//
// A way holds up to fastWayRules rules, ARP rules left out (they never
// match an IP frame, and ARP frames walk the trie). A set with more IP
// rules gets a way that says "walk the trie" (XNIC_WAY_TRIE), and so would
// a set with rules of both families, which AddRule does not make (an IPv4
// prefix and the IPv6 prefix of its IPv4-mapped form would share a trie
// key, and IPv4-mapped prefixes are refused).

// fastWayRules is XNIC_FAST_RULES, the rules in a way.
const fastWayRules = len(steerFastWay{}.Rules)

// fastWayWords is the size of a way in 64-bit words.
const fastWayWords = int(unsafe.Sizeof(steerFastWay{})) / 8

// fastWaysPerBucket is the ways of a fast_rules bucket.
const fastWaysPerBucket = len(steerFastRuleBucket{}.Way)

// headExact is XNIC_HEAD_EXACT, the exact prefixes the head holds.
const headExact = len(steerRuleHead{}.Exact)

// fast_way.flags.
const (
	fastWayUsed = 0x1 // XNIC_WAY_USED
	fastWayTrie = 0x2 // XNIC_WAY_TRIE
)

// fastRuleKicks bounds the cuckoo walk of one insertion.
const fastRuleKicks = 64

// rulesBucketsFor is the number of fast_rules buckets for a rule table of
// prefixes prefixes: a power of two, at least 2, two ways per prefix.
func rulesBucketsFor(prefixes int) int {
	return 1 << max(1, bits.Len(uint(max(prefixes, 1)-1)))
}

// rulesShift is cfg_rules_shift for buckets buckets: 64 - log2(buckets).
func rulesShift(buckets int) int { return 64 - bits.TrailingZeros(uint(buckets)) }

// ruleBuckets is the twin of rule_buckets in steer.bpf.c: the two
// candidate buckets of an exact address, over the address as the program
// loads it (two little-endian words). They may be the same.
func ruleBuckets(a [16]byte, shift int) [2]uint32 {
	a0 := binary.LittleEndian.Uint64(a[:8])
	a1 := binary.LittleEndian.Uint64(a[8:])
	x := a1 + a0*0xc2b2ae3d27d4eb4f
	return [2]uint32{uint32((x * 0x9e3779b97f4a7c15) >> shift), uint32((x * 0x165667b19e3779f9) >> shift)}
}

// zeroV4Key is the trie key of 0.0.0.0/0: ::ffff:0.0.0.0/96.
var zeroV4Key = ruleKey{Prefixlen: 96, Addr: [16]byte{10: 0xff, 11: 0xff}}

// fastWayT is a way as the program reads it.
type fastWayT = steerFastWay

// fastRules is the mmap'ed fast rule index and its writer's state. The
// Steer's mu serializes every call.
type fastRules struct {
	mem, headMem []byte         // the mappings; nil over plain memory (tests)
	head         *steerRuleHead // fast_rules_head[0]
	ways         []fastWayT     // fast_rules: way w of bucket b at b*fastWaysPerBucket+w
	shift        int            // cfg_rules_shift
	// The writer's view: every exact prefix's way by address (in the head,
	// in fast_rules or in overflow), the addresses in overflow, the
	// middle prefixes and the prefixes whose way says XNIC_WAY_TRIE.
	exact    map[[16]byte]fastWayT
	overflow map[[16]byte]bool
	middles  map[ruleKey]bool
	trieWays map[ruleKey]bool
	rng      uint64 // picks cuckoo victims
}

// mapFastRules mmaps the fast_rules_head map and the fast_rules map of
// buckets buckets, read and write.
func mapFastRules(headFD, fd, buckets int) (*fastRules, error) {
	page := unix.Getpagesize()
	headMem, err := unix.Mmap(headFD, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap fast rule index head: %w", err)
	}
	size := buckets * int(unsafe.Sizeof(steerFastRuleBucket{}))
	mem, err := unix.Mmap(fd, 0, (size+page-1)/page*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Munmap(headMem)
		return nil, fmt.Errorf("mmap fast rule index: %w", err)
	}
	f := newFastRules((*steerRuleHead)(unsafe.Pointer(&headMem[0])),
		unsafe.Slice((*fastWayT)(unsafe.Pointer(&mem[0])), buckets*fastWaysPerBucket), buckets)
	f.mem, f.headMem = mem, headMem
	return f, nil
}

// newFastRules is an index over head and the ways of buckets buckets (a
// power of two).
func newFastRules(head *steerRuleHead, ways []fastWayT, buckets int) *fastRules {
	return &fastRules{head: head, ways: ways, shift: rulesShift(buckets),
		exact: map[[16]byte]fastWayT{}, overflow: map[[16]byte]bool{},
		middles: map[ruleKey]bool{}, trieWays: map[ruleKey]bool{}, rng: 0x9e3779b97f4a7c15}
}

func (f *fastRules) close() error {
	if f == nil || f.mem == nil {
		return nil
	}
	err := unix.Munmap(f.mem)
	if e := unix.Munmap(f.headMem); err == nil {
		err = e
	}
	f.mem, f.headMem, f.ways, f.head = nil, nil, nil, nil
	return err
}

// begin makes seq odd: from now on the program walks the trie.
func (f *fastRules) begin() {
	if s := atomic.LoadUint32(&f.head.Seq); s&1 == 0 {
		atomic.StoreUint32(&f.head.Seq, s+1)
	}
}

// end publishes the counts and makes seq even again.
func (f *fastRules) end() {
	hashed := 0
	if f.isHashed() {
		hashed = len(f.exact) - len(f.overflow)
	}
	atomic.StoreUint32(&f.head.Middles, uint32(len(f.middles)))
	atomic.StoreUint32(&f.head.Overflow, uint32(len(f.overflow)))
	atomic.StoreUint32(&f.head.Hashed, uint32(hashed))
	atomic.StoreUint32(&f.head.Seq, atomic.LoadUint32(&f.head.Seq)+1)
}

// isHashed says whether the exact prefixes belong in fast_rules rather
// than in the head.
func (f *fastRules) isHashed() bool { return len(f.exact) > headExact }

// rebuild makes the index hold sets (every prefix of the trie, rules in
// trie order) and nothing else, and turns it on.
func (f *fastRules) rebuild(sets map[ruleKey][]Rule) {
	f.begin()
	for i := range f.ways {
		storeWay(&f.ways[i], fastWayT{})
	}
	for i := range f.head.Any {
		storeWay(&f.head.Any[i], fastWayT{})
	}
	for i := range f.head.Exact {
		storeWay(&f.head.Exact[i], fastWayT{})
	}
	atomic.StoreUint32(&f.head.InHead, 0)
	clear(f.exact)
	clear(f.overflow)
	clear(f.middles)
	clear(f.trieWays)
	for k, rules := range sets {
		f.apply(k, rules)
	}
	atomic.StoreUint32(&f.head.On, 1)
	f.end()
}

// set makes the index agree with the trie's new set for k (rules in trie
// order; none when k left the trie).
func (f *fastRules) set(k ruleKey, rules []Rule) {
	f.begin()
	f.apply(k, rules)
	f.end()
}

// apply is set inside the sequence lock.
func (f *fastRules) apply(k ruleKey, rules []Rule) {
	switch {
	case k.Prefixlen == 128:
		w, ok := wayOf(k, rules)
		f.setExact(k.Addr, w, ok)
		f.noteTrie(k, w)
	case k == zeroV4Key && !hasIPv6(rules), k.Prefixlen == 0:
		// A /0 way: IPv4 in any[0], IPv6 in any[1]. (::ffff:0:0/96 with
		// an IPv6 rule is an IPv6 middle prefix: IPv6 frames to
		// IPv4-mapped addresses meet it before ::/0.)
		delete(f.middles, k)
		w, _ := wayOf(k, rules)
		i := 1
		if k == zeroV4Key {
			i = 0
		}
		storeWay(&f.head.Any[i], w)
		f.noteTrie(k, w)
	default:
		if k == zeroV4Key {
			storeWay(&f.head.Any[0], fastWayT{})
			delete(f.trieWays, k)
		}
		if len(rules) > 0 {
			f.middles[k] = true
		} else {
			delete(f.middles, k)
		}
	}
}

// noteTrie remembers whether the way of k sends frames to the trie.
func (f *fastRules) noteTrie(k ruleKey, w fastWayT) {
	if w.Flags&fastWayTrie != 0 {
		f.trieWays[k] = true
	} else {
		delete(f.trieWays, k)
	}
}

// hasIPv6 says whether rules hold an IPv6 rule.
func hasIPv6(rules []Rule) bool {
	for _, r := range rules {
		if r.Prefix.Addr().Is6() {
			return true
		}
	}
	return false
}

// wayOf is the way of prefix k holding rules (in trie order), and false
// when none of them can match an IP frame (only ARP rules, or none).
func wayOf(k ruleKey, rules []Rule) (fastWayT, bool) {
	w := fastWayT{Addr: k.Addr, Flags: fastWayUsed}
	n := 0
	for _, r := range rules {
		if r.Proto == ProtoARP {
			continue
		}
		e := encodeRule(r)
		switch {
		case n == 0:
			w.Family = e.Family
		case e.Family != w.Family:
			w.Flags |= fastWayTrie
		}
		if n < fastWayRules {
			fr := &w.Rules[n]
			fr.PortLo, fr.PortHi, fr.Proto, fr.Guest, fr.Class, fr.Flags = e.PortLo, e.PortHi, e.Proto, e.Guest, e.Class, e.Flags
		} else {
			w.Flags |= fastWayTrie
		}
		n++
	}
	if n == 0 {
		return fastWayT{}, false
	}
	if w.Flags&fastWayTrie != 0 {
		w.Family = 0
		clear(w.Rules[:])
	} else {
		w.Count = uint8(n)
	}
	return w, true
}

// storeWay writes v over *dst with 64-bit stores.
func storeWay(dst *fastWayT, v fastWayT) {
	d := (*[fastWayWords]uint64)(unsafe.Pointer(dst))
	s := (*[fastWayWords]uint64)(unsafe.Pointer(&v))
	for i := range d {
		atomic.StoreUint64(&d[i], s[i])
	}
}

// loadWay reads *src with 64-bit loads.
func loadWay(src *fastWayT) fastWayT {
	var v fastWayT
	d := (*[fastWayWords]uint64)(unsafe.Pointer(&v))
	s := (*[fastWayWords]uint64)(unsafe.Pointer(src))
	for i := range d {
		d[i] = atomic.LoadUint64(&s[i])
	}
	return v
}

// setExact gives address a the way w (ok), or takes its way away (!ok).
// Crossing headExact moves every exact way between the head and
// fast_rules.
func (f *fastRules) setExact(a [16]byte, w fastWayT, ok bool) {
	wasHashed := f.isHashed()
	if _, had := f.exact[a]; !had && !ok {
		return
	}
	if ok {
		f.exact[a] = w
	} else {
		delete(f.exact, a)
	}
	switch hashed := f.isHashed(); {
	case hashed && wasHashed:
		if ok {
			f.putHashed(w)
		} else {
			f.deleteHashed(a)
		}
	case hashed: // from the head to fast_rules
		for _, v := range f.exact {
			f.putHashed(v)
		}
		f.writeHead()
	case wasHashed: // from fast_rules to the head
		f.deleteHashed(a)
		for addr := range f.exact {
			f.deleteHashed(addr)
		}
		f.writeHead()
	default:
		f.writeHead()
	}
}

// writeHead writes the head's exact ways: the exact prefixes while they
// fit, else empty ways.
func (f *fastRules) writeHead() {
	i := 0
	if !f.isHashed() {
		for _, v := range f.exact {
			storeWay(&f.head.Exact[i], v)
			i++
		}
	}
	atomic.StoreUint32(&f.head.InHead, uint32(i))
	for ; i < headExact; i++ {
		storeWay(&f.head.Exact[i], fastWayT{})
	}
}

// way is way w of bucket b of fast_rules.
func (f *fastRules) way(b uint32, w int) *fastWayT {
	return &f.ways[int(b)*fastWaysPerBucket+w]
}

// findHashed returns the way in fast_rules that holds address a, or nil.
func (f *fastRules) findHashed(a [16]byte) *fastWayT {
	for _, b := range ruleBuckets(a, f.shift) {
		for w := range fastWaysPerBucket {
			p := f.way(b, w)
			if v := loadWay(p); v.Flags&fastWayUsed != 0 && v.Addr == a {
				return p
			}
		}
	}
	return nil
}

// placeFree puts v into a free way of its buckets, if one is free.
func (f *fastRules) placeFree(v fastWayT) bool {
	for _, b := range ruleBuckets(v.Addr, f.shift) {
		for w := range fastWaysPerBucket {
			if p := f.way(b, w); loadWay(p).Flags&fastWayUsed == 0 {
				storeWay(p, v)
				return true
			}
		}
	}
	return false
}

// putHashed stores the way of an exact prefix in fast_rules: over its old
// way, else in a free way, else after moving others (cuckoo), else in
// overflow.
func (f *fastRules) putHashed(v fastWayT) {
	if p := f.findHashed(v.Addr); p != nil {
		storeWay(p, v)
		return
	}
	if f.overflow[v.Addr] || f.placeFree(v) {
		return
	}
	cur := v
	for range fastRuleKicks {
		f.rng ^= f.rng << 13
		f.rng ^= f.rng >> 7
		f.rng ^= f.rng << 17
		p := f.way(ruleBuckets(cur.Addr, f.shift)[f.rng&1], int(f.rng>>1)%fastWaysPerBucket)
		victim := loadWay(p)
		storeWay(p, cur)
		cur = victim
		if f.placeFree(cur) {
			return
		}
	}
	f.overflow[cur.Addr] = true
}

// deleteHashed removes the way of address a from fast_rules, and gives
// the room to prefixes in overflow that can use it.
func (f *fastRules) deleteHashed(a [16]byte) {
	if f.overflow[a] {
		delete(f.overflow, a)
		return
	}
	p := f.findHashed(a)
	if p == nil {
		return
	}
	storeWay(p, fastWayT{})
	for addr := range f.overflow {
		if v, ok := f.exact[addr]; ok && f.placeFree(v) {
			delete(f.overflow, addr)
		}
	}
}

// hashedCount is the number of exact prefixes in fast_rules.
func (f *fastRules) hashedCount() int {
	n := 0
	for i := range f.ways {
		if loadWay(&f.ways[i]).Flags&fastWayUsed != 0 {
			n++
		}
	}
	return n
}

// answersAlone says whether the index answers every IP frame without a
// trie walk (the rule cache is then of no use).
func (f *fastRules) answersAlone() bool {
	return f != nil && len(f.middles) == 0 && len(f.overflow) == 0 && len(f.trieWays) == 0
}
