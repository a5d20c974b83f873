package bpf

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/corpus"
)

// plainFastRules is a fast rule index over plain memory of buckets buckets.
func plainFastRules(buckets int) *fastRules {
	return newFastRules(new(steerRuleHead), make([]fastWayT, buckets*fastWaysPerBucket), buckets)
}

// checkFastRules checks the writer's invariants: the sequence is even,
// every exact prefix is where the counts say (the head while there are at
// most headExact, else fast_rules or overflow), nothing else is there, and
// the counts are published.
func checkFastRules(t *testing.T, f *fastRules, step string) {
	t.Helper()
	h := f.head
	if h.Seq&1 != 0 {
		t.Fatalf("%s: seq %d odd after a change", step, h.Seq)
	}
	if int(h.Middles) != len(f.middles) || int(h.Overflow) != len(f.overflow) {
		t.Fatalf("%s: head counts middles %d overflow %d, writer %d %d", step, h.Middles, h.Overflow, len(f.middles), len(f.overflow))
	}
	inHead := map[[16]byte]bool{}
	for i := range h.Exact {
		if v := loadWay(&h.Exact[i]); v.Flags&fastWayUsed != 0 {
			inHead[v.Addr] = true
			if v != f.exact[v.Addr] {
				t.Fatalf("%s: head way %d is %+v, writer has %+v", step, i, v, f.exact[v.Addr])
			}
		}
	}
	if int(h.InHead) != len(inHead) {
		t.Fatalf("%s: head says %d exact ways, holds %d", step, h.InHead, len(inHead))
	}
	if !f.isHashed() {
		if len(inHead) != len(f.exact) || h.Hashed != 0 || f.hashedCount() != 0 {
			t.Fatalf("%s: %d exact prefixes: %d in the head, hashed %d, %d ways in fast_rules", step, len(f.exact), len(inHead), h.Hashed, f.hashedCount())
		}
		return
	}
	if len(inHead) != 0 {
		t.Fatalf("%s: %d exact prefixes, %d still in the head", step, len(f.exact), len(inHead))
	}
	if n := f.hashedCount(); n != len(f.exact)-len(f.overflow) || int(h.Hashed) != n {
		t.Fatalf("%s: %d ways used in fast_rules, head says %d, want %d exact - %d overflow", step, n, h.Hashed, len(f.exact), len(f.overflow))
	}
	for a, v := range f.exact {
		p := f.findHashed(a)
		switch {
		case f.overflow[a] && p != nil:
			t.Fatalf("%s: %x in overflow and in fast_rules", step, a)
		case !f.overflow[a] && p == nil:
			t.Fatalf("%s: %x in neither fast_rules nor overflow", step, a)
		case p != nil && loadWay(p) != v:
			t.Fatalf("%s: %x way %+v, want %+v", step, a, loadWay(p), v)
		}
	}
}

func exactKey(i int) ruleKey {
	if i%3 == 2 {
		return ruleKeyOf(netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 14: byte(i >> 8), 15: byte(i)}), 128))
	}
	return ruleKeyOf(netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32))
}

// TestFastRulesWriter adds and deletes exact prefixes in random order over
// a table too small for them (so the cuckoo walk and overflow are used),
// crossing the head's limit both ways, and checks the invariants after
// every change; then empties it.
func TestFastRulesWriter(t *testing.T) {
	f := plainFastRules(4) // 8 ways
	f.rebuild(nil)
	if f.head.On != 1 || f.head.Seq&1 != 0 {
		t.Fatalf("after rebuild: on %d seq %d", f.head.On, f.head.Seq)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	in := map[int]bool{}
	for step := range 3000 {
		i := rng.IntN(12)
		k := exactKey(i)
		p := prefixOf(k, map[bool]uint8{true: 6, false: 4}[i%3 == 2])
		if in[i] && rng.IntN(2) == 0 {
			f.set(k, nil)
			delete(in, i)
		} else {
			f.set(k, []Rule{{ID: RuleID(step + 1), Prefix: p, Proto: ProtoUDP, PortLo: uint16(step), PortHi: 0xffff, Guest: i % 8}})
			in[i] = true
		}
		checkFastRules(t, f, fmt.Sprintf("step %d (%d prefixes)", step, len(in)))
		if len(f.exact) != len(in) {
			t.Fatalf("step %d: writer has %d exact prefixes, want %d", step, len(f.exact), len(in))
		}
	}
	if len(f.overflow) != 0 {
		t.Logf("%d of %d prefixes in overflow at the end", len(f.overflow), len(in))
	}
	for i := range in {
		f.set(exactKey(i), nil)
	}
	checkFastRules(t, f, "emptied")
	if len(f.exact) != 0 || f.head.Hashed != 0 {
		t.Fatalf("emptied index: %d exact, hashed %d", len(f.exact), f.head.Hashed)
	}
}

// TestFastRulesWays checks what a prefix's rules become: ARP rules left
// out, more than fastWayRules rules or both families send the frame to the
// trie, /0 ways, and middle prefixes counted.
func TestFastRulesWays(t *testing.T) {
	f := plainFastRules(4)
	f.rebuild(nil)
	k32 := ruleKeyOf(pfx("198.18.1.1/32"))
	udp := Rule{ID: 1, Prefix: pfx("198.18.1.1/32"), Proto: ProtoUDP, PortLo: 5, PortHi: 6, Guest: 2, Class: 1}
	arp := Rule{ID: 2, Prefix: pfx("198.18.1.1/32"), Proto: ProtoARP, PortHi: 0xffff, Guest: 3}
	f.set(k32, []Rule{arp, udp})
	w := f.exact[k32.Addr]
	if w.Count != 1 || w.Family != 4 || w.Flags != fastWayUsed || w.Rules[0].Proto != uint8(ProtoUDP) ||
		w.Rules[0].PortLo != 5 || w.Rules[0].PortHi != 6 || w.Rules[0].Guest != 2 || w.Rules[0].Class != 1 {
		t.Errorf("way of arp+udp: %+v", w)
	}
	f.set(k32, []Rule{arp})
	if _, ok := f.exact[k32.Addr]; ok || loadWay(&f.head.Exact[0]).Flags != 0 {
		t.Errorf("an ARP-only prefix has a way: %+v", f.exact[k32.Addr])
	}
	var six []Rule
	for i := range fastWayRules + 1 {
		six = append(six, Rule{ID: RuleID(10 + i), Prefix: udp.Prefix, Proto: ProtoTCP, PortLo: uint16(i), PortHi: uint16(i)})
	}
	f.set(k32, six)
	if w := f.exact[k32.Addr]; w.Flags != fastWayUsed|fastWayTrie || w.Count != 0 {
		t.Errorf("way of %d rules: %+v, want a trie way", len(six), w)
	}
	if f.answersAlone() {
		t.Error("answersAlone with a trie way")
	}
	mixed := []Rule{udp, {ID: 20, Prefix: pfx("::ffff:198.18.1.1/128"), Proto: ProtoTCP, PortHi: 0xffff}}
	f.set(k32, mixed)
	if w := f.exact[k32.Addr]; w.Flags&fastWayTrie == 0 {
		t.Errorf("way of both families: %+v, want a trie way", w)
	}
	f.set(k32, nil)
	if !f.answersAlone() {
		t.Error("not answersAlone with an empty index")
	}

	any4 := Rule{ID: 30, Prefix: pfx("0.0.0.0/0"), Proto: ProtoTCP, PortHi: 0xffff}
	f.set(zeroV4Key, []Rule{any4})
	if w := loadWay(&f.head.Any[0]); w.Count != 1 || w.Family != 4 {
		t.Errorf("0.0.0.0/0 way: %+v", w)
	}
	// An IPv6 rule on ::ffff:0:0/96 shares the key: a middle prefix then.
	f.set(zeroV4Key, []Rule{any4, {ID: 31, Prefix: pfx("::ffff:0.0.0.0/96"), PortHi: 0xffff}})
	if w := loadWay(&f.head.Any[0]); w.Flags != 0 || f.head.Middles != 1 {
		t.Errorf("0.0.0.0/0 with an IPv6 rule: way %+v, middles %d", w, f.head.Middles)
	}
	f.set(zeroV4Key, []Rule{any4})
	if f.head.Middles != 0 || loadWay(&f.head.Any[0]).Count != 1 {
		t.Errorf("back to IPv4 only: middles %d", f.head.Middles)
	}
	k6 := ruleKeyOf(pfx("::/0"))
	f.set(k6, []Rule{{ID: 32, Prefix: pfx("::/0"), Proto: ProtoUDP, PortHi: 0xffff, Guest: 4}})
	if w := loadWay(&f.head.Any[1]); w.Count != 1 || w.Family != 6 || w.Rules[0].Guest != 4 {
		t.Errorf("::/0 way: %+v", w)
	}
	k24 := ruleKeyOf(pfx("198.18.1.0/24"))
	f.set(k24, []Rule{{ID: 33, Prefix: pfx("198.18.1.0/24"), PortHi: 0xffff}})
	if f.head.Middles != 1 || f.answersAlone() {
		t.Errorf("a /24: middles %d", f.head.Middles)
	}
	f.set(k24, nil)
	if f.head.Middles != 0 {
		t.Errorf("the /24 deleted: middles %d", f.head.Middles)
	}
}

// outcome is what one frame did: the verdict and every counter that moved.
type outcome struct {
	verdict uint32
	total   SteerStats
	slots   map[Slot]SlotStats
}

func runOutcome(t *testing.T, s *Steer, frame []byte) outcome {
	t.Helper()
	before := snap(t, s)
	v := runProg(t, s.Program(), frame)
	after := snap(t, s)
	o := outcome{verdict: v, total: subStats(after.total, before.total), slots: map[Slot]SlotStats{}}
	for sl, st := range after.slots {
		if d := subStats(st, before.slots[sl]); d != (SlotStats{}) {
			o.slots[sl] = d
		}
	}
	return o
}

func (o outcome) equal(p outcome) bool {
	if o.verdict != p.verdict || o.total != p.total || len(o.slots) != len(p.slots) {
		return false
	}
	for sl, st := range o.slots {
		if p.slots[sl] != st {
			return false
		}
	}
	return true
}

// randomRules is a random rule table over a small address space, so that
// frames meet exact prefixes, /0, middle prefixes, nested prefixes, port
// ranges, protocols, ARP rules, IPv4-mapped IPv6 prefixes and, with many,
// prefixes with more rules than a way holds. middles false keeps to exact
// and /0 prefixes, which the fast index answers alone.
func randomRules(rng *rand.Rand, n int, middles bool) []Rule {
	var out []Rule
	for range n {
		var p netip.Prefix
		a4 := netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(2)), byte(rng.IntN(4))})
		a6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: byte(rng.IntN(4))})
		lens4, lens6 := []int{0, 32, 32}, []int{0, 128, 128}
		if middles {
			lens4, lens6 = []int{0, 8, 16, 24, 31, 32}, []int{0, 32, 64, 126, 128}
		}
		switch rng.IntN(5) {
		case 0, 1:
			p = netip.PrefixFrom(a4, lens4[rng.IntN(len(lens4))]).Masked()
		case 2, 3:
			p = netip.PrefixFrom(a6, lens6[rng.IntN(len(lens6))]).Masked()
		default:
			// IPv6 prefixes that hold the IPv4-mapped addresses (the API
			// refuses IPv4-mapped prefixes themselves), else a /0.
			if middles {
				p = netip.PrefixFrom(netip.IPv6Unspecified(), []int{64, 80}[rng.IntN(2)])
			} else {
				p = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
		}
		r := Rule{Prefix: p, Guest: rng.IntN(4), Class: rng.IntN(4), Priority: uint16(rng.IntN(3))}
		switch rng.IntN(6) {
		case 0:
			r.Proto = ProtoAny
		case 1, 2:
			r.Proto = ProtoUDP
		case 3:
			r.Proto = ProtoTCP
		case 4:
			r.Proto = ProtoICMP
		default:
			if p.Addr().Is4() {
				r.Proto = ProtoARP
			} else {
				r.Proto = ProtoICMPv6
			}
		}
		if (r.Proto == ProtoTCP || r.Proto == ProtoUDP) && rng.IntN(2) == 0 {
			r.PortLo = uint16(rng.IntN(8))
			r.PortHi = r.PortLo + uint16(rng.IntN(4))
		}
		if rng.IntN(5) == 0 {
			r.Class, r.ClassFromDSCP = 0, true
		}
		out = append(out, r)
	}
	return out
}

// randomFrame is a frame to the address space of randomRules.
func randomFrame(rng *rand.Rand) []byte {
	p := pkt{sport: uint16(rng.IntN(8)), dport: uint16(rng.IntN(12)), tos: []uint8{0, 23 << 2, 46 << 2, 1}[rng.IntN(4)]}
	switch rng.IntN(4) {
	case 0, 1:
		p.dst = netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(3)), byte(rng.IntN(5))})
	case 2:
		p.dst = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: byte(rng.IntN(5))})
	default:
		p.dst = netip.AddrFrom16(netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(2)), byte(rng.IntN(4))}).As16())
	}
	p.proto = []uint8{flows.ProtoUDP, flows.ProtoUDP, flows.ProtoTCP, flows.ProtoICMP, flows.ProtoICMPv6, 47}[rng.IntN(6)]
	if rng.IntN(4) == 0 {
		p.vlan = uint16(1 + rng.IntN(4094))
	}
	if p.dst.Is4() && rng.IntN(8) == 0 {
		p.fragOff = uint16(1 + rng.IntN(100))
	}
	if rng.IntN(10) == 0 {
		return arpFrame(netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(2)), byte(rng.IntN(4))}), p.vlan)
	}
	return p.frame()
}

// TestFastRulesAgreeWithTrie: for random rule tables, random frames, the
// corpus and mutated corpus frames, the program with the fast rule index
// on (the common path and the index) and off (the full parser and a trie
// walk for every frame) gives the same verdict and moves the same
// counters, slot counters included.
func TestFastRulesAgreeWithTrie(t *testing.T) {
	if !fastSupported {
		t.Skipf("the fast rule index is used on amd64 only, not %s", runtime.GOARCH)
	}
	o := smallSteerOptions()
	o.RuleCache = 0
	o.Prefixes = 8 // 16 ways: some prefixes overflow
	rng := rand.New(rand.NewPCG(5, 6))
	corpus := corpus.Frames()
	// Sockets in some slots, the same ones for every table: the others
	// count as pass_no_socket or go to class 0, which is compared too.
	lab := newVethLabQueues(t, 3)
	socketSlots := []Slot{{0, 0}, {1, 0}, {2, 3}}
	var fds []int
	for i := range socketSlots {
		fds = append(fds, newTestXSK(t, lab.hostIndex, i))
	}
	tables := 0
	seen := map[string]bool{}
	for _, middles := range []bool{false, true} {
		for _, n := range []int{1, 2, 3, 8, 40} {
			s := loadSteerOptsT(t, o)
			for i, sl := range socketSlots {
				if err := s.RegisterSlot(0, sl.Guest, sl.Class, fds[i]); err != nil {
					t.Fatal(err)
				}
			}
			tables++
			if err := s.SetDSCPClass(23, 2); err != nil {
				t.Fatal(err)
			}
			added := 0
			for _, r := range randomRules(rng, n, middles) {
				if _, err := s.AddRule(r); err == nil {
					added++
				} else if !errors.Is(err, ErrRuleExists) && !errors.Is(err, ErrTableFull) {
					t.Fatal(err)
				}
			}
			if !middles && !s.fastRules.answersAlone() && len(s.fastRules.overflow) == 0 && len(s.fastRules.trieWays) == 0 {
				t.Fatalf("exact and /0 rules only, and the index does not answer alone")
			}
			frames := make([][]byte, 0, 400)
			for range 250 {
				frames = append(frames, randomFrame(rng))
			}
			for range 100 {
				frames = append(frames, mutate(rng, corpus[rng.IntN(len(corpus))].Frame))
			}
			for _, cf := range corpus {
				frames = append(frames, cf.Frame)
			}
			compare := func(what string) {
				diffs := 0
				for i, f := range frames {
					if len(f) < flows.EthernetLen {
						continue
					}
					s.fastRules.head.On = 1
					fast := runOutcome(t, s, f)
					s.fastRules.head.On = 0
					walk := runOutcome(t, s, f)
					s.fastRules.head.On = 1
					if !fast.equal(walk) && diffs < 5 {
						diffs++
						t.Errorf("table %d (%d rules, middles %t, %s), frame %d %x:\nindex: %+v\ntrie:  %+v",
							tables, added, middles, what, i, f, fast, walk)
					}
				}
			}
			f := s.fastRules
			seen["hashed"] = seen["hashed"] || f.isHashed()
			seen["head"] = seen["head"] || (!f.isHashed() && len(f.exact) > 0)
			seen["middles"] = seen["middles"] || len(f.middles) > 0
			seen["trie ways"] = seen["trie ways"] || len(f.trieWays) > 0
			compare(fmt.Sprintf("%d exact, %d overflow", len(f.exact), len(f.overflow)))
			if f.isHashed() {
				// Prefixes that found no way: the program must walk the
				// trie for them, and for every other miss.
				f.begin()
				for a := range f.exact {
					if p := f.findHashed(a); p != nil && rng.IntN(2) == 0 {
						storeWay(p, fastWayT{})
						f.overflow[a] = true
					}
				}
				f.end()
				seen["overflow"] = seen["overflow"] || len(f.overflow) > 0
				compare(fmt.Sprintf("%d exact, %d forced to overflow", len(f.exact), len(f.overflow)))
			}
			s.Close()
		}
	}
	for _, what := range []string{"head", "hashed", "middles", "trie ways", "overflow"} {
		if !seen[what] {
			t.Errorf("no table had %s", what)
		}
	}
}

// TestFastRulesNoTornReads changes the rule table while the program runs:
// a writer adds and deletes other exact prefixes (moving every exact way
// between the head and fast_rules, and through the cuckoo walk), rewrites
// the set of a steady prefix around its steady rule, and adds and deletes
// a middle prefix. Rules that exist before and after every change must
// steer every frame: the steady prefixes' frames reach their own guests
// only, and the other frames the catch-all's guest.
func TestFastRulesNoTornReads(t *testing.T) {
	if !fastSupported {
		t.Skipf("the fast rule index is used on amd64 only, not %s", runtime.GOARCH)
	}
	o := smallSteerOptions()
	o.RuleCache = 0
	o.Prefixes = 16 // 32 ways for up to 66 exact prefixes: the cuckoo walk works hard
	s := loadSteerOptsT(t, o)
	if _, err := s.AddCatchAll(3, 0); err != nil {
		t.Fatal(err)
	}
	steadyA := Rule{Prefix: pfx("198.18.5.1/32"), Proto: ProtoUDP, Guest: 1}
	steadyB := Rule{Prefix: pfx("2001:2::5/128"), Proto: ProtoUDP, Guest: 2}
	for _, r := range []Rule{steadyA, steadyB} {
		if _, err := s.AddRule(r); err != nil {
			t.Fatal(err)
		}
	}
	frames := map[int][]byte{
		1: pkt{dst: addr("198.18.5.1"), proto: flows.ProtoUDP, sport: 1, dport: 9}.frame(),
		2: pkt{dst: addr("2001:2::5"), proto: flows.ProtoUDP, sport: 1, dport: 9}.frame(),
		3: pkt{dst: addr("198.18.6.1"), proto: flows.ProtoUDP, sport: 1, dport: 9}.frame(),
	}

	stop := make(chan struct{})
	var changes atomic.Int64
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(7, 8))
		var ids []RuleID
		for {
			select {
			case <-stop:
				return
			default:
			}
			var err error
			switch op := rng.IntN(4); {
			case op == 0 && len(ids) > 0:
				i := rng.IntN(len(ids))
				err = s.DeleteRule(ids[i])
				ids = append(ids[:i], ids[i+1:]...)
			case op == 1:
				// A rule in front of A's steady rule, for another port.
				var id RuleID
				if id, err = s.AddRule(Rule{Prefix: steadyA.Prefix, Proto: ProtoUDP, PortLo: 100, PortHi: 200, Guest: 4}); err == nil {
					ids = append(ids, id)
				}
			case op == 2:
				// A middle prefix that covers none of the frames.
				var id RuleID
				if id, err = s.AddRule(Rule{Prefix: pfx("198.18.7.0/24"), Guest: 4}); err == nil {
					ids = append(ids, id)
				}
			default:
				var id RuleID
				a := netip.AddrFrom4([4]byte{198, 18, 8, byte(rng.IntN(32))})
				if rng.IntN(2) == 0 {
					a = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 8, 15: byte(rng.IntN(32))})
				}
				if id, err = s.AddRule(Rule{Prefix: netip.PrefixFrom(a, a.BitLen()), Guest: 4}); err == nil {
					ids = append(ids, id)
				}
			}
			if err != nil && !errors.Is(err, ErrRuleExists) && !errors.Is(err, ErrTableFull) {
				werr = err
				return
			}
			changes.Add(1)
		}
	}()

	moved := map[int]map[Slot]uint64{1: {}, 2: {}, 3: {}}
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); {
		for g, f := range frames {
			before := snap(t, s)
			if _, err := s.Program().Run(&ebpf.RunOptions{Data: f, Repeat: 50}); err != nil {
				t.Fatal(err)
			}
			after := snap(t, s)
			for sl, st := range after.slots {
				if d := subStats(st, before.slots[sl]); d.Packets != 0 {
					moved[g][sl] += d.Packets
				}
			}
			// Every run matched a rule. (A test run interrupted by a
			// signal is retried whole by the library after the kernel
			// ran part of it: count the runs, not the repeat.)
			if d := subStats(after.total, before.total); d.RxPackets < 50 || d.RuleHits != d.RxPackets {
				t.Fatalf("frames of guest %d: %d of %d runs matched a rule", g, d.RuleHits, d.RxPackets)
			}
		}
	}
	close(stop)
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
	t.Logf("%d rule changes; frames by slot: %v", changes.Load(), moved)
	if changes.Load() < 100 {
		t.Fatalf("%d rule changes: the race was not exercised", changes.Load())
	}
	for g, bySlot := range moved {
		for sl, n := range bySlot {
			if sl != (Slot{g, 0}) {
				t.Errorf("frames of guest %d went %d times to %s", g, n, sl)
			}
		}
		if bySlot[Slot{g, 0}] == 0 {
			t.Errorf("frames of guest %d never reached it", g)
		}
	}
}
