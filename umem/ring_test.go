package umem

import (
	"errors"
	"math"
	"testing"
)

// startFillAt moves both indices of a fresh in-memory fill ring to v, as
// if v entries had already passed through.
func startFillAt(r *FillRing, m *memRing, v uint32) {
	m.producer.Store(v)
	m.consumer.Store(v)
	r.init(m.words(), r.size)
}

func TestRingWrapsAt32Bits(t *testing.T) {
	const size = 8
	m := new(memRing)
	prod := newMemFill(m, size)
	start := uint32(math.MaxUint32 - 5)
	startFillAt(prod, m, start)
	// The consumer side of the same ring, viewed as the kernel would (its
	// word types name the application's roles, not the test's).
	cons := &consumerRing{}
	cons.init(m.words(), size)

	var next uint64
	var got []uint64
	for round := 0; round < 10; round++ {
		idx, ok := prod.Reserve(5)
		if !ok {
			t.Fatalf("round %d: reserve 5 of 8 on an empty ring failed", round)
		}
		for i := uint32(0); i < 5; i++ {
			prod.Set(idx+i, next)
			next++
		}
		prod.Submit(5)
		n, cidx := cons.Peek(8)
		if n != 5 {
			t.Fatalf("round %d: peeked %d, want 5", round, n)
		}
		for i := uint32(0); i < n; i++ {
			got = append(got, prod.descs[(cidx+i)&prod.mask])
		}
		cons.Release(n)
	}
	p, c := m.producer.Load(), m.consumer.Load()
	if p >= start {
		t.Fatalf("producer index %d did not wrap past 2^32 from %d", p, start)
	}
	if want := uint32(start + 50); p != want || c != want {
		t.Fatalf("indices after 50 entries: producer %d consumer %d, want %d", p, c, want)
	}
	for i, v := range got {
		if v != uint64(i) {
			t.Fatalf("entry %d = %d: order lost across the wrap", i, v)
		}
	}
	if occ := prod.Occupancy(); occ != 0 {
		t.Fatalf("occupancy %d after draining", occ)
	}
}

func TestReserveIsAllOrNothing(t *testing.T) {
	m := new(memRing)
	r := newMemFill(m, 8)
	startFillAt(r, m, math.MaxUint32-2)
	if _, ok := r.Reserve(6); !ok {
		t.Fatal("reserve 6 of 8 failed")
	}
	before := r.cachedProd
	if _, ok := r.Reserve(3); ok {
		t.Fatal("reserve 3 with 2 free succeeded")
	}
	if r.cachedProd != before {
		t.Fatalf("a failed reserve moved the producer from %d to %d", before, r.cachedProd)
	}
	if idx, ok := r.Reserve(2); !ok || idx != before {
		t.Fatalf("reserve 2 with 2 free: idx %d ok %t, want %d true", idx, ok, before)
	}
	r.Submit(8)
	if _, ok := r.Reserve(1); ok {
		t.Fatal("reserve on a full ring succeeded")
	}
	// The consumer frees 4: exactly 4 can be reserved again, not 5.
	m.consumer.Add(4)
	if _, ok := r.Reserve(5); ok {
		t.Fatal("reserve 5 with 4 free succeeded")
	}
	if _, ok := r.Reserve(4); !ok {
		t.Fatal("reserve 4 with 4 free failed after the consumer moved")
	}
}

func TestConsumerCancel(t *testing.T) {
	m := new(memRing)
	r := newMemRx(m, 4)
	for i := 0; i < 3; i++ {
		r.descs[i] = Desc{Addr: uint64(i)}
	}
	m.producer.Store(3)
	n, idx := r.Peek(2)
	if n != 2 || idx != 0 {
		t.Fatalf("peek: %d at %d", n, idx)
	}
	r.Cancel(1)
	n, idx = r.Peek(4)
	if n != 2 || idx != 1 || r.Get(idx).Addr != 1 {
		t.Fatalf("after cancel, peek: %d at %d (addr %d), want 2 at 1", n, idx, r.Get(idx).Addr)
	}
}

func TestRingSizeValidation(t *testing.T) {
	for _, n := range []uint32{0, 3, 1000} {
		err := checkRingSize("rx", n)
		if !errors.Is(err, ErrRingSize) {
			t.Errorf("size %d: err %v, want ErrRingSize", n, err)
		}
	}
	o := DefaultSocketOptions()
	o.FillSize = 1000
	if err := o.validate(); err == nil || !errors.Is(err, ErrRingSize) {
		t.Errorf("fill 1000: %v", err)
	}
}
