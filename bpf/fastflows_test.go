package bpf

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/xnic/xnic/flows"
)

// fastKeyT is the fast form of a test flow from 198.18.0.<a> port sport.
func fastKeyT(t *testing.T, a byte, sport uint16) fastKey {
	t.Helper()
	fk, err := flowKeyOf(pkt{src: netip.AddrFrom4([4]byte{198, 18, 0, a}), dst: addr("198.18.1.1"),
		proto: flows.ProtoUDP, sport: sport, dport: 53}.key(t))
	if err != nil {
		t.Fatal(err)
	}
	f, ok := fastKeyOf(fk)
	if !ok {
		t.Fatalf("%+v: not a fast key", fk)
	}
	return f
}

// TestFastTableWays checks the writer's side on plain memory: one bucket
// of four ways, placement, targets, deletes and the quarantine of deleted
// ways until a grace period.
func TestFastTableWays(t *testing.T) {
	if !fastSupported {
		t.Skipf("the fast flow table is used on amd64 only, not %s", runtime.GOARCH)
	}
	tb := newFastTable(make([]uint64, fastWays*2), 1)
	graces := 0
	var graceErr error
	tb.grace = func() error { graces++; return graceErr }
	keys := make([]fastKey, fastWays+1)
	for i := range keys {
		keys[i] = fastKeyT(t, byte(i+1), uint16(1000+i))
	}
	put := func(f fastKey, g uint8) bool {
		t.Helper()
		return tb.put(f, steerFlowTarget{Guest: g, Class: g % 16}).in()
	}
	for i, f := range keys[:fastWays] {
		if !put(f, uint8(i)) {
			t.Fatalf("flow %d: no room in an empty bucket", i)
		}
	}
	if put(keys[fastWays], 9) {
		t.Fatal("a fifth flow fit in a bucket of four ways")
	}
	if tb.count() != fastWays {
		t.Fatalf("count = %d, want %d", tb.count(), fastWays)
	}
	// A flow already there takes its new target in place.
	if p := tb.put(keys[1], steerFlowTarget{Guest: 200, Class: 200 % 16}); p != fastRetarget {
		t.Fatalf("retarget = %v, want fastRetarget", p)
	}
	if tg, ok := tb.lookup(keys[1]); !ok || tg.Guest != 200 || tg.Class != 200%16 {
		t.Fatalf("lookup after retarget = %+v, %v", tg, ok)
	}
	// The words decode to what went in.
	got := map[fastKey]bool{}
	tb.walk(func(f fastKey, _ steerFlowTarget) bool { got[f] = true; return true })
	for i, f := range keys[:fastWays] {
		if !got[f] {
			t.Errorf("walk misses flow %d %+v: %v", i, f, got)
		}
	}

	// A deleted way is not reused before a grace period.
	if !tb.delete(keys[2]) || tb.delete(keys[2]) {
		t.Fatal("delete: want true once, then false")
	}
	if _, ok := tb.lookup(keys[2]); ok {
		t.Fatal("deleted flow still found")
	}
	graceErr = errors.New("no grace")
	if p := tb.put(keys[fastWays], steerFlowTarget{Guest: 9}); p != fastFull || tb.graceErr == nil {
		t.Fatalf("put into a quarantined way without a grace period = %v (grace error %v), want fastFull, for the LRU hash",
			p, tb.graceErr)
	}
	if _, ok := tb.lookup(keys[fastWays]); ok {
		t.Fatal("a flow went into a quarantined way")
	}
	graceErr = nil
	before := graces
	if !put(keys[fastWays], 9) {
		t.Fatal("no room after the grace period")
	}
	if graces != before+1 {
		t.Fatalf("grace periods = %d, want %d", graces, before+1)
	}
	if len(tb.quarantine) != 0 {
		t.Fatalf("quarantine after the grace period: %v", tb.quarantine)
	}
	// A free way out of quarantine needs no grace period.
	tb.delete(keys[0])
	if err := tb.endQuarantine(); err != nil {
		t.Fatal(err)
	}
	before = graces
	if !put(keys[2], 7) || graces != before {
		t.Fatalf("put into a free way: graces %d -> %d", before, graces)
	}
}

// TestFastKeyForms: which keys the fast table takes, and the word layout
// (the program's XNIC_FAST_KEY_MASK).
func TestFastKeyForms(t *testing.T) {
	if !fastSupported {
		t.Skipf("the fast flow table is used on amd64 only, not %s", runtime.GOARCH)
	}
	v4 := pkt{dst: addr("198.18.1.1"), proto: flows.ProtoTCP, sport: 1, dport: 80}
	cases := []struct {
		name string
		k    flows.Key
		want bool
	}{
		{"ipv4", v4.key(t), true},
		{"ipv4 vlan", pkt{dst: addr("198.18.1.1"), proto: flows.ProtoTCP, sport: 1, dport: 80, vlan: 4095}.key(t), true},
		{"ipv6", pkt{dst: addr("2001:2::1"), proto: flows.ProtoTCP, sport: 1, dport: 80}.key(t), false},
		{"zero addresses", flows.Key{Src: flows.MapIPv4([4]byte{}), Dst: flows.MapIPv4([4]byte{}), Proto: flows.ProtoUDP, Family: 4}, false},
	}
	for _, c := range cases {
		fk, err := flowKeyOf(c.k)
		if err != nil {
			t.Fatal(err)
		}
		f, ok := fastKeyOf(fk)
		if ok != c.want {
			t.Errorf("%s: fast = %v, want %v", c.name, ok, c.want)
		}
		if !ok {
			continue
		}
		if back := keyOfFlow(f.steerKey()); back != c.k {
			t.Errorf("%s: round trip %v, want %v", c.name, back, c.k)
		}
		tg := steerFlowTarget{Guest: 255, Class: 15}
		w1 := f.word1(tg)
		if w1&fastKeyMask != f.word1(steerFlowTarget{}) {
			t.Errorf("%s: the key mask keeps target bits: %#x", c.name, w1)
		}
		if g, gt := fastWayKey(f.word0(), w1); g != f || gt != tg {
			t.Errorf("%s: decode = %+v %+v, want %+v %+v", c.name, g, gt, f, tg)
		}
	}
}

// TestSteerFastFlows: flows spread over the fast table (first and second
// buckets) and the LRU hash all steer their frames, the C hash agreeing
// with the Go one; deletes, reinstalls and ClearFlows keep the two maps
// disjoint and the counts right.
func TestSteerFastFlows(t *testing.T) {
	if !fastSupported {
		t.Skipf("the fast flow table is used on amd64 only, not %s", runtime.GOARCH)
	}
	o := smallSteerOptions()
	o.Flows = 64 // 16 fast buckets of 4 ways; the rest overflows
	s := loadSteerOptsT(t, o)
	if s.FastFlowsMap().MaxEntries() != 16 {
		t.Fatalf("fast buckets = %d, want 16", s.FastFlowsMap().MaxEntries())
	}
	var keys []flows.Key
	var slots []Slot
	for i := range 100 {
		keys = append(keys, pkt{src: netip.AddrFrom4([4]byte{198, 18, 2, byte(i)}), dst: addr("198.18.1.1"),
			proto: flows.ProtoUDP, sport: uint16(2000 + i), dport: 53}.key(t))
		slots = append(slots, Slot{Guest: 1 + i%7, Class: i % 4})
	}
	for i := range 4 {
		keys = append(keys, pkt{src: addr("2001:2::9"), dst: addr("2001:2::1"), proto: flows.ProtoTCP, sport: uint16(3000 + i), dport: 80}.key(t))
		slots = append(slots, Slot{Guest: 2, Class: 3})
	}
	// Half one by one, half in bulk.
	for i := range 50 {
		if err := s.InstallFlow(keys[i], slots[i]); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.InstallFlows(keys[50:], slots[50:]); err != nil || n != len(keys)-50 {
		t.Fatalf("InstallFlows = %d, %v", n, err)
	}

	// Where did they go?
	mask := s.fast.mask
	var first, second, lru int
	for _, k := range keys {
		fk, _ := flowKeyOf(k)
		f, ok := fastKeyOf(fk)
		b, w := s.fast.find(f)
		switch {
		case !ok || w < 0:
			lru++
		case b == f.buckets(mask)[0]:
			first++
		default:
			second++
		}
	}
	t.Logf("first bucket %d, second bucket %d, LRU hash %d", first, second, lru)
	if first == 0 || second == 0 || lru <= 4 {
		t.Fatalf("want flows in all three places: %d %d %d", first, second, lru)
	}
	fast, err := s.FastFlowCount()
	if err != nil || fast != first+second || fast > 64 {
		t.Fatalf("FastFlowCount = %d, %v, want %d", fast, err, first+second)
	}
	if n := lruCount(t, s); n != lru {
		t.Fatalf("LRU hash holds %d, want %d (a key in both?)", n, lru)
	}

	checkFrames := func(want map[int]Slot) {
		t.Helper()
		for i, k := range keys {
			p := pkt{src: k.SrcAddr(), dst: k.DstAddr(), proto: k.Proto, sport: k.SrcPort, dport: k.DstPort}
			before := snap(t, s)
			runProg(t, s.Program(), p.frame())
			after := snap(t, s)
			d := subStats(after.total, before.total)
			sl, installed := want[i]
			if !installed {
				if d.FlowHits != 0 {
					t.Errorf("flow %d (%s): deleted, still a flow hit", i, k)
				}
				continue
			}
			if d.FlowHits != 1 {
				t.Errorf("flow %d (%s): not a flow hit: %+v", i, k, d)
			}
			if ds := subStats(after.slots[sl], before.slots[sl]); ds.Packets != 1 {
				t.Errorf("flow %d (%s): slot %v moved by %+v", i, k, sl, ds)
			}
		}
	}
	want := map[int]Slot{}
	for i := range keys {
		want[i] = slots[i]
	}
	checkFrames(want)

	// Delete every other flow, retarget the rest, install the deleted ones
	// again: they find room (after a grace period) where they were.
	for i := 0; i < len(keys); i += 2 {
		if err := s.DeleteFlow(keys[i]); err != nil {
			t.Fatal(err)
		}
		delete(want, i)
	}
	for i := 1; i < len(keys); i += 2 {
		want[i] = Slot{Guest: 7, Class: 1}
		if err := s.InstallFlow(keys[i], want[i]); err != nil {
			t.Fatal(err)
		}
	}
	checkFrames(want)
	if n, err := s.FlowCount(); err != nil || n != len(want) {
		t.Fatalf("FlowCount after deletes = %d, %v, want %d", n, err, len(want))
	}
	for i := 0; i < len(keys); i += 2 {
		want[i] = slots[i]
		if err := s.InstallFlow(keys[i], slots[i]); err != nil {
			t.Fatal(err)
		}
	}
	checkFrames(want)
	if n, err := s.FlowCount(); err != nil || n != len(keys) {
		t.Fatalf("FlowCount after reinstalls = %d, %v, want %d", n, err, len(keys))
	}
	if err := s.ClearFlows(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.FlowCount(); err != nil || n != 0 {
		t.Fatalf("FlowCount after ClearFlows = %d, %v", n, err)
	}
	checkFrames(map[int]Slot{})
	// An empty fast table is not read, and IPv6 flows do not make the
	// program read it.
	fastInUse := func() uint32 {
		t.Helper()
		var c steerSteerCtl
		if err := s.objs.Ctl.Lookup(uint32(0), &c); err != nil {
			t.Fatal(err)
		}
		return c.FastInUse
	}
	if got := fastInUse(); got != 0 {
		t.Errorf("fast_in_use after ClearFlows = %d, want 0", got)
	}
	if _, err := s.InstallFlows(keys[100:], slots[100:]); err != nil {
		t.Fatal(err)
	}
	if got := fastInUse(); got != 0 {
		t.Errorf("fast_in_use after installing IPv6 flows only = %d, want 0", got)
	}
	if err := s.InstallFlow(keys[0], slots[0]); err != nil || fastInUse() != 1 {
		t.Errorf("fast_in_use after an IPv4 flow = %d (%v), want 1", fastInUse(), err)
	}
}

// lruCount counts the entries of the LRU hash alone.
func lruCount(t *testing.T, s *Steer) int {
	t.Helper()
	n := 0
	var k steerFlowKey
	var v steerFlowTarget
	it := s.FlowsMap().Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSteerFastFlowsNoTornReads races the writer's protocol against the
// program, in a table of one bucket: two ways hold fillers, and each of
// the other two is shared by a pair of flows that take turns in it
// (delete A, install B into A's way after a grace period, delete B,
// install A, ...), so that one flow of the other pair is always there.
// Meanwhile the program classifies frames of the pairs and of crosses
// (A's addresses with B's ports, and so on): a reader that paired one
// flow's word 0 with the other's word 1 would steer a cross. No cross may
// ever be a flow hit, and the pairs' frames reach their own guests only.
func TestSteerFastFlowsNoTornReads(t *testing.T) {
	if !fastSupported {
		t.Skipf("the fast flow table is used on amd64 only, not %s", runtime.GOARCH)
	}
	o := smallSteerOptions()
	o.Flows = 4 // one bucket of 4 ways
	s := loadSteerOptsT(t, o)
	mk := func(src string, sport uint16) pkt {
		return pkt{src: addr(src), dst: addr("198.18.1.1"), proto: flows.ProtoUDP, sport: sport, dport: 53}
	}
	pairs := [2][2]pkt{
		{mk("198.18.0.10", 1111), mk("198.18.0.20", 2222)},
		{mk("198.18.0.30", 3333), mk("198.18.0.40", 4444)},
	}
	slotOf := map[pkt]Slot{pairs[0][0]: {1, 0}, pairs[0][1]: {2, 0}, pairs[1][0]: {3, 0}, pairs[1][1]: {4, 0}}
	var crosses [][]byte
	for _, p := range pairs {
		crosses = append(crosses, mk(p[0].src.String(), p[1].sport).frame(), mk(p[1].src.String(), p[0].sport).frame())
	}
	for i := range 2 {
		if err := s.InstallFlow(mk("198.18.0.50", uint16(5000+i)).key(t), Slot{5, 0}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pairs {
		if err := s.InstallFlow(p[0].key(t), slotOf[p[0]]); err != nil {
			t.Fatal(err)
		}
	}

	stop := make(chan struct{})
	var swaps atomic.Int64
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		in := [2]int{} // which flow of each pair is installed
		for {
			for p := range pairs {
				select {
				case <-stop:
					return
				default:
				}
				cur, next := pairs[p][in[p]], pairs[p][1-in[p]]
				if err := s.DeleteFlow(cur.key(t)); err != nil {
					werr = err
					return
				}
				if err := s.InstallFlow(next.key(t), slotOf[next]); err != nil {
					werr = err
					return
				}
				in[p] = 1 - in[p]
				swaps.Add(1)
			}
		}
	}()

	// The program runs only here, so the counters around a run of
	// crosses are the crosses'.
	// One run per call: a run holds an RCU read section, which a grace
	// period waits for, so long runs would keep the writer still.
	const repeat = 1
	first := snap(t, s)
	var crossRuns, crossHits, pairHits uint64
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); {
		s0 := snap(t, s)
		for _, f := range crosses {
			if _, err := s.Program().Run(&ebpf.RunOptions{Data: f, Repeat: repeat}); err != nil {
				t.Fatal(err)
			}
			crossRuns += repeat
		}
		s1 := snap(t, s)
		for _, p := range pairs {
			for _, f := range p {
				if _, err := s.Program().Run(&ebpf.RunOptions{Data: f.frame(), Repeat: repeat}); err != nil {
					t.Fatal(err)
				}
			}
		}
		s2 := snap(t, s)
		crossHits += subStats(s1.total, s0.total).FlowHits
		pairHits += subStats(s2.total, s1.total).FlowHits
	}
	close(stop)
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
	after := snap(t, s)
	t.Logf("%d swaps; crosses: %d frames, %d flow hits; pairs: %d flow hits", swaps.Load(), crossRuns, crossHits, pairHits)
	if crossHits != 0 {
		t.Errorf("crosses, never installed, were flow hits %d times: torn reads", crossHits)
	}
	if swaps.Load() < 40 || pairHits == 0 {
		t.Fatalf("%d swaps, %d pair hits: the race was not exercised", swaps.Load(), pairHits)
	}
	for sl, st := range after.slots {
		if ds := subStats(st, first.slots[sl]); ds.Packets != 0 && (sl.Guest < 1 || sl.Guest > 4) {
			t.Errorf("slot %v got %d frames; only the pairs' guests may", sl, ds.Packets)
		}
	}
}

// TestFastTableRelocates fills a table as InstallFlows does, with the keys
// of `xnic rx --flows 100000` in the default 32768 buckets: moving flows to
// their other bucket keeps nearly all of them out of the LRU hash, and
// every flow stays findable with its own target.
func TestFastTableRelocates(t *testing.T) {
	if !fastSupported {
		t.Skipf("the fast flow table is used on amd64 only, not %s", runtime.GOARCH)
	}
	buckets := fastBucketsFor(DefaultSteerOptions().Flows)
	tb := newFastTable(make([]uint64, buckets*fastWays*2), buckets)
	graces := 0
	tb.grace = func() error { graces++; return nil }
	const n = 100000
	keys := make([]fastKey, n)
	for i := range keys {
		src := [4]byte{198, 18, byte(i / 55536), 2}
		keys[i] = fastKey{src: binary.LittleEndian.Uint32(src[:]), dst: binary.LittleEndian.Uint32([]byte{198, 18, 0, 1}),
			sport: uint16(10000 + i%55536), dport: 9, proto: flows.ProtoUDP}
	}
	target := func(i int) steerFlowTarget { return steerFlowTarget{Guest: uint8(i), Class: uint8(i>>8) & 0xf} }
	var deferred, lru []int
	spilled := 0
	for i, f := range keys { // as InstallFlows does
		p := tb.tryPut(f, target(i))
		switch {
		case p.in():
		case tb.relocate(f) || p == fastWaiting:
			deferred = append(deferred, i)
		default:
			spilled++
			lru = append(lru, i)
		}
	}
	for _, i := range deferred {
		if !tb.put(keys[i], target(i)).in() {
			lru = append(lru, i)
		}
	}
	first := 0
	lost := map[int]bool{}
	for _, i := range lru {
		lost[i] = true
	}
	for i, f := range keys {
		b, w := tb.find(f)
		if lost[i] {
			if w >= 0 {
				t.Fatalf("flow %d is in the LRU list and the table", i)
			}
			continue
		}
		if w < 0 {
			t.Fatalf("flow %d is nowhere", i)
		}
		if tg, _ := tb.lookup(f); tg != target(i) {
			t.Fatalf("flow %d: target %+v, want %+v", i, tg, target(i))
		}
		if b == f.buckets(tb.mask)[0] {
			first++
		}
	}
	t.Logf("%d flows in %d ways: %d moved for, %d to the LRU hash (%d with no move possible), %d in their first bucket, %d grace periods",
		n, buckets*fastWays, len(deferred), len(lru), spilled, first, graces)
	if tb.count() != n-len(lru) {
		t.Fatalf("count = %d, want %d", tb.count(), n-len(lru))
	}
	if len(lru) > n/200 {
		t.Errorf("%d flows (more than 0.5%%) left for the LRU hash", len(lru))
	}
	if graces != 1 {
		t.Errorf("%d grace periods, want 1 for the whole fill", graces)
	}
}
