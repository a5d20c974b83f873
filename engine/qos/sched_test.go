package qos

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func mustSched(t testing.TB, cfg Config) *Scheduler {
	t.Helper()
	s, err := NewScheduler(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randItem(r *rand.Rand, flow uint32) Item {
	return Item{Addr: r.Uint64() &^ 0xfff, Len: uint32(64 + r.IntN(1437)), Flow: flow}
}

// backlog fills every class's queue to capacity.
func backlog(t testing.TB, s *Scheduler, r *rand.Rand) {
	for c := range s.Classes() {
		for s.Enqueue(0, uint8(c), randItem(r, uint32(c)), false) == Queued {
		}
	}
}

// shares dequeues n descriptors from s, keeping every class backlogged,
// and returns the bytes each class sent.
func shares(t *testing.T, s *Scheduler, r *rand.Rand, n int) []float64 {
	t.Helper()
	backlog(t, s, r)
	bytes := make([]float64, s.Classes())
	for range n {
		c, it, ok := s.Dequeue(0)
		if !ok {
			t.Fatal("nothing to dequeue with every class backlogged")
		}
		if it.Flow != uint32(c) {
			t.Fatalf("class %d handed out class %d's descriptor", c, it.Flow)
		}
		bytes[c] += float64(it.Len)
		if v := s.Enqueue(0, c, randItem(r, uint32(c)), false); v != Queued {
			t.Fatalf("refill: %s", v)
		}
	}
	return bytes
}

// TestDRRShares: within a level, classes share bytes in proportion to their
// weights, within 1%, over 100k packets of random sizes 64..1500.
func TestDRRShares(t *testing.T) {
	for _, weights := range [][]uint32{{6, 3, 1}, {1, 1}, {1, 2, 5, 8}, {50, 30, 15, 5}, {1, 100}} {
		cfg := Config{}
		var sum float64
		for _, w := range weights {
			cfg.Classes = append(cfg.Classes, ClassConfig{Weight: w, QueueLen: 64})
			sum += float64(w)
		}
		s := mustSched(t, cfg)
		r := rand.New(rand.NewPCG(7, uint64(len(weights))))
		bytes := shares(t, s, r, 100_000)
		var total float64
		for _, b := range bytes {
			total += b
		}
		for i, w := range weights {
			want := float64(w) / sum
			got := bytes[i] / total
			if e := got/want - 1; math.Abs(e) > 0.01 {
				t.Errorf("weights %v: class %d share %.4f, want %.4f (%.2f%%)", weights, i, got, want, 100*e)
			}
		}
		for i := range weights {
			c := s.Counters(uint8(i))
			if c.SentBytes != uint64(bytes[i]) || c.Enqueued != c.Sent+c.Depth {
				t.Errorf("class %d counters %+v disagree with %v bytes sent", i, c, bytes[i])
			}
		}
	}
}

// TestStrictPriority: a level is served only when every higher level is
// empty or shaped, and the weights of a lower level do not matter.
func TestStrictPriority(t *testing.T) {
	s := mustSched(t, Config{Classes: []ClassConfig{
		{Priority: 2, Weight: 100, QueueLen: 16},
		{Priority: 0, Weight: 1, QueueLen: 16},
		{Priority: 1, Weight: 1, QueueLen: 16},
		{Priority: 1, Weight: 1, QueueLen: 16},
	}})
	r := rand.New(rand.NewPCG(8, 8))
	backlog(t, s, r)
	var order []uint8
	for {
		c, _, ok := s.Dequeue(0)
		if !ok {
			break
		}
		order = append(order, c)
	}
	if len(order) != 64 {
		t.Fatalf("dequeued %d of 64", len(order))
	}
	rank := map[uint8]int{1: 0, 2: 1, 3: 1, 0: 2}
	for i := 1; i < len(order); i++ {
		if rank[order[i]] < rank[order[i-1]] {
			t.Fatalf("class %d (level %d) served after class %d (level %d): %v",
				order[i], rank[order[i]], order[i-1], rank[order[i-1]], order)
		}
	}
	// A higher class that arrives is served next.
	backlog(t, s, r)
	s.Dequeue(0)
	for range 20 {
		s.Dequeue(0) // now serving level 1 or 2
	}
	s.Enqueue(0, 1, Item{Len: 100, Flow: 99}, false)
	if c, it, _ := s.Dequeue(0); c != 1 || it.Flow != 99 {
		t.Fatalf("new top-priority descriptor not served next: class %d", c)
	}
}

// TestStrictPriorityShaped: the top class is shaped at 1 Mbit/s; the lower
// class is served whenever the top one lacks tokens, and the top one still
// gets its rate.
func TestStrictPriorityShaped(t *testing.T) {
	const rate = 125_000
	s := mustSched(t, Config{Classes: []ClassConfig{
		{Priority: 0, Rate: rate, Burst: 1500, QueueLen: 64},
		{Priority: 1, QueueLen: 64},
	}})
	r := rand.New(rand.NewPCG(9, 9))
	backlog(t, s, r)
	var top, low uint64
	var now int64
	const step = 10_000 // a dequeue every 10 µs
	for i := range 1_000_000 {
		now = int64(i) * step
		c, it, ok := s.Dequeue(now)
		if !ok {
			t.Fatalf("at %d ns nothing dequeued, though the low class is backlogged", now)
		}
		if c == 0 {
			top += uint64(it.Len)
			// Whenever the top class is eligible, it must be the one
			// served: check that no low packet went while it was.
		} else {
			low += uint64(it.Len)
			if s.classes[0].bucket.Conform(now, s.classes[0].ring[s.classes[0].head&s.classes[0].mask].Len) {
				t.Fatalf("at %d ns the low class was served while the top one conformed", now)
			}
		}
		s.Enqueue(now, c, randItem(r, uint32(c)), false)
	}
	want := 1500 + float64(rate)*float64(now)/1e9
	if e := float64(top)/want - 1; math.Abs(e) > 0.01 {
		t.Fatalf("shaped top class sent %d bytes in %d ns, want %.0f (%.2f%%)", top, now, want, 100*e)
	}
	if low == 0 {
		t.Fatal("the low class was never served")
	}
}

// TestWorkConserving: one class shaped and one not, in one level. Every
// Dequeue returns a descriptor while the unshaped class is backlogged, and
// the shaped class gets its rate and no more.
func TestWorkConserving(t *testing.T) {
	const rate = 1_250_000 // 10 Mbit/s
	s := mustSched(t, Config{Classes: []ClassConfig{
		{Weight: 1, Rate: rate, Burst: 3000, QueueLen: 32},
		{Weight: 1, QueueLen: 32},
	}})
	r := rand.New(rand.NewPCG(10, 10))
	backlog(t, s, r)
	var shaped, free uint64
	var now int64
	for i := range 1_000_000 {
		now = int64(i) * 1000 // 1 µs per dequeue: ~1 GB/s offered capacity
		c, it, ok := s.Dequeue(now)
		if !ok {
			t.Fatalf("idle at %d ns with a backlogged unshaped class", now)
		}
		if c == 0 {
			shaped += uint64(it.Len)
		} else {
			free += uint64(it.Len)
		}
		s.Enqueue(now, c, randItem(r, uint32(c)), false)
	}
	want := 3000 + float64(rate)*float64(now)/1e9
	if e := float64(shaped)/want - 1; math.Abs(e) > 0.01 {
		t.Fatalf("shaped class sent %d bytes, want %.0f (%.2f%%)", shaped, want, 100*e)
	}
	if free < 50*shaped {
		t.Fatalf("unshaped class sent only %d bytes to the shaped one's %d", free, shaped)
	}
}

// TestAggregateRate: the guest's bucket holds all classes to its rate,
// and a worker that sleeps until NextEligible loses nothing.
func TestAggregateRate(t *testing.T) {
	for _, rate := range []uint64{125_000, 125_000_000, 12_500_000_000} {
		s := mustSched(t, Config{
			Rate: rate, Burst: 9000,
			Classes: []ClassConfig{{Weight: 3, QueueLen: 64}, {Weight: 1, QueueLen: 64}},
		})
		r := rand.New(rand.NewPCG(11, rate))
		backlog(t, s, r)
		var sent [2]uint64
		var now int64
		for n := 0; n < 100_000; {
			c, it, ok := s.Dequeue(now)
			if !ok {
				next := s.NextEligible(now)
				if next <= now || next == Never {
					t.Fatalf("NextEligible(%d) = %d with queues backlogged and nothing dequeued", now, next)
				}
				now = next
				continue
			}
			sent[c] += uint64(it.Len)
			n++
			s.Enqueue(now, c, randItem(r, uint32(c)), false)
		}
		total := float64(sent[0] + sent[1])
		want := 9000 + float64(rate)*float64(now)/1e9
		if e := total/want - 1; math.Abs(e) > 0.01 {
			t.Errorf("rate %d: sent %.0f bytes, want %.0f (%.2f%%)", rate, total, want, 100*e)
		}
		if e := float64(sent[0])/total*4/3 - 1; math.Abs(e) > 0.01 {
			t.Errorf("rate %d: 3:1 share off by %.2f%%", rate, 100*e)
		}
	}
}

func TestNextEligible(t *testing.T) {
	s := mustSched(t, Config{Classes: []ClassConfig{
		{Priority: 0, Rate: 1000, Burst: 1000, QueueLen: 4},
		{Priority: 1, Rate: 2000, Burst: 1000, QueueLen: 4},
	}})
	if got := s.NextEligible(5); got != Never {
		t.Fatalf("empty: %d, want Never", got)
	}
	s.Enqueue(0, 0, Item{Len: 1000}, false)
	s.Enqueue(0, 0, Item{Len: 500}, false)
	s.Enqueue(0, 1, Item{Len: 1000}, false)
	s.Enqueue(0, 1, Item{Len: 1000}, false)
	if got := s.NextEligible(0); got != 0 {
		t.Fatalf("full buckets: %d, want 0", got)
	}
	for range 2 {
		if _, _, ok := s.Dequeue(0); !ok {
			t.Fatal("full buckets, nothing dequeued")
		}
	}
	// Class 0 needs 500 bytes at 1000 B/s, class 1 1000 at 2000 B/s: both
	// at 0.5 s; nothing before.
	if got := s.NextEligible(0); got != 500_000_000 {
		t.Fatalf("NextEligible %d, want 0.5 s", got)
	}
	if _, _, ok := s.Dequeue(499_999_999); ok {
		t.Fatal("dequeued before NextEligible")
	}
	if c, _, ok := s.Dequeue(500_000_000); !ok || c != 0 {
		t.Fatalf("at NextEligible: class %d ok %v, want class 0", c, ok)
	}
	if c, _, ok := s.Dequeue(500_000_000); !ok || c != 1 {
		t.Fatalf("then class %d ok %v, want class 1", c, ok)
	}
}

func TestEnqueueVerdicts(t *testing.T) {
	s := mustSched(t, Config{Classes: []ClassConfig{
		{QueueLen: 4},
		{QueueLen: 1024, RED: WREDParams{MinTh: 4, MaxTh: 12, MaxP: 1, WqLog2: 1, ECN: true}},
		{QueueLen: 16, Police: PolicerParams{CIR: 1000, CBS: 1500, EBS: 1}},
	}})
	for i := range 4 {
		if v := s.Enqueue(0, 0, Item{Len: 100}, false); v != Queued {
			t.Fatalf("enqueue %d: %s", i, v)
		}
	}
	if v := s.Enqueue(0, 0, Item{Len: 100}, false); v != DroppedTail || !v.Dropped() {
		t.Fatalf("full queue: %s", v)
	}
	if v := s.Enqueue(0, 3, Item{Len: 100}, false); v != Rejected {
		t.Fatalf("no such class: %s", v)
	}
	if v := s.Enqueue(0, 0, Item{Len: MaxItemLen + 1}, false); v != Rejected {
		t.Fatalf("oversized: %s", v)
	}
	// Class 1 with a fast average: ECN-capable packets get marked, others
	// dropped early, and above max_th everything is dropped.
	var marked, red int
	for i := range 40 {
		switch v := s.Enqueue(0, 1, Item{Len: 100}, i%2 == 0); v {
		case Marked:
			marked++
			if i%2 != 0 {
				t.Fatal("marked a packet that is not ECN-capable")
			}
		case DroppedRED:
			red++
		}
	}
	c1 := s.Counters(1)
	if marked == 0 || red == 0 || c1.Marks != uint64(marked) || c1.DropRED != uint64(red) {
		t.Fatalf("marked %d red %d, counters %+v", marked, red, c1)
	}
	// Class 2's policer: 1500 green + 1 yellow byte at once, then red.
	for i, want := range []Verdict{Queued, Queued, Queued, DroppedPolicer} {
		if v := s.Enqueue(0, 2, Item{Len: 500}, false); v != want {
			t.Fatalf("policed %d: %s, want %s", i, v, want)
		}
	}
	if c := s.Counters(2); c.DropPolicer != 1 || c.Enqueued != 3 || c.Depth != 3 || c.MaxDepth != 3 {
		t.Fatalf("class 2 counters %+v", c)
	}
	// Depth and its high-water mark.
	for range 2 {
		s.Dequeue(0)
	}
	if c0 := s.Counters(0); c0.DropTail != 1 || c0.MaxDepth != 4 {
		t.Fatalf("class 0 counters %+v", c0)
	}
	s.ResetMaxDepth()
	for i := range 3 {
		if c := s.Counters(uint8(i)); c.MaxDepth != c.Depth {
			t.Fatalf("class %d after reset: %+v", i, c)
		}
	}
	if got := s.Counters(9); got != (Counters{}) {
		t.Fatalf("counters of no class: %+v", got)
	}
}

func TestDequeueBatch(t *testing.T) {
	s := mustSched(t, Config{Classes: []ClassConfig{{Weight: 2, QueueLen: 64}, {Weight: 1, QueueLen: 64}}})
	for i := range 40 {
		s.Enqueue(0, uint8(i%2), Item{Addr: uint64(i), Len: 1000, Flow: uint32(i % 2)}, false)
	}
	out := make([]Item, 32)
	cls := make([]uint8, 32)
	if n := s.DequeueBatch(0, out, cls); n != 32 {
		t.Fatalf("batch of %d, want 32", n)
	}
	for i := range 32 {
		if uint32(cls[i]) != out[i].Flow {
			t.Fatalf("item %d: class %d, descriptor of class %d", i, cls[i], out[i].Flow)
		}
	}
	if n := s.DequeueBatch(0, out, nil); n != 8 {
		t.Fatalf("second batch %d, want the 8 left", n)
	}
	if n := s.DequeueBatch(0, out, cls[:0]); n != 0 {
		t.Fatalf("batch with no room for classes: %d", n)
	}
}

func TestSchedulerConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		err error
	}{
		{Config{}, ErrClasses},
		{Config{Classes: make([]ClassConfig, 17)}, ErrClasses},
		{Config{Classes: []ClassConfig{{QueueLen: 3}}}, ErrQueueLen},
		{Config{Classes: []ClassConfig{{QueueLen: 1 << 17}}}, ErrQueueLen},
		{Config{Classes: []ClassConfig{{Weight: 1<<16 + 1}}}, ErrWeight},
		{Config{Classes: []ClassConfig{{Rate: 1}}}, ErrBurst},
		{Config{Rate: 1, Classes: []ClassConfig{{}}}, ErrBurst},
		{Config{Classes: []ClassConfig{{RED: WREDParams{MinTh: 5, MaxTh: 2}}}}, ErrThresholds},
		{Config{Classes: []ClassConfig{{Police: PolicerParams{CIR: 1}}}}, ErrBurst},
	} {
		if _, err := NewScheduler(c.cfg, 0); !errors.Is(err, c.err) {
			t.Errorf("%+v: %v, want %v", c.cfg, err, c.err)
		}
	}
}

// hotLoop is the worker's round: a batch of 64 descriptors spread over 3
// classes in, a batch out.
func hotLoop(s *Scheduler, now int64, in []Item, out []Item, cls []uint8) int {
	for i := range in {
		s.Enqueue(now, uint8(i%3), in[i], i&1 == 0)
	}
	return s.DequeueBatch(now, out, cls)
}

func benchSched(t testing.TB) (*Scheduler, []Item, []Item, []uint8) {
	s := mustSched(t, Config{
		Rate: 12_500_000_000, Burst: 1 << 20,
		Classes: []ClassConfig{
			{Priority: 0, Rate: 1_250_000_000, Burst: 1 << 16, QueueLen: 256},
			{Priority: 1, Weight: 3, QueueLen: 256, RED: WREDParams{MinTh: 64, MaxTh: 192, MaxP: 0.1, ECN: true}},
			{Priority: 1, Weight: 1, QueueLen: 256},
		},
	})
	r := rand.New(rand.NewPCG(12, 12))
	in := make([]Item, 64)
	for i := range in {
		in[i] = randItem(r, uint32(i))
	}
	return s, in, make([]Item, 64), make([]uint8, 64)
}

func TestHotPathAllocs(t *testing.T) {
	s, in, out, cls := benchSched(t)
	var now int64
	allocs := testing.AllocsPerRun(1000, func() {
		now += 10_000
		if hotLoop(s, now, in, out, cls) == 0 {
			t.Fatal("nothing dequeued")
		}
		s.NextEligible(now)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
}

func BenchmarkEnqueueDequeue64(b *testing.B) {
	s, in, out, cls := benchSched(b)
	b.ReportAllocs()
	var now int64
	var n int
	for b.Loop() {
		now += 10_000 // 64 frames of ~780 B per 10 µs: under the 100 Gbit/s aggregate
		n += hotLoop(s, now, in, out, cls)
	}
	b.ReportMetric(float64(n)/float64(b.N), "pkts/op")
}

// TestFlushAndBacklog: Backlog counts what is queued over the classes;
// Flush hands every descriptor back, once, and leaves the queues empty and
// the buckets untouched.
func TestFlushAndBacklog(t *testing.T) {
	s, err := NewScheduler(Config{Classes: []ClassConfig{{}, {Rate: 1000, Burst: 1500}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		s.Enqueue(0, uint8(i%2), Item{Addr: uint64(i), Len: 100}, false)
	}
	if b := s.Backlog(); b != 10 {
		t.Fatalf("backlog %d, want 10", b)
	}
	seen := map[uint64]bool{}
	if n := s.Flush(func(it Item) { seen[it.Addr] = true }); n != 10 || len(seen) != 10 {
		t.Fatalf("flushed %d (%d distinct), want 10", n, len(seen))
	}
	if s.Backlog() != 0 || s.NextEligible(0) != Never {
		t.Fatal("queues not empty after Flush")
	}
	if c := s.Counters(1); c.Sent != 0 || c.Depth != 0 {
		t.Fatalf("class 1 after flush: %+v", c)
	}
	// The shaped class's bucket is still full: a frame goes at once.
	s.Enqueue(0, 1, Item{Len: 1500}, false)
	if _, _, ok := s.Dequeue(0); !ok {
		t.Fatal("the bucket was charged by Flush")
	}
}
