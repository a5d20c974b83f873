package umem

import "testing"

const benchBatch = 64

// benchSocket is an in-memory socket with need_wakeup on and the kernel
// asking to be woken, so every kick takes the wakeup path.
func benchSocket(tb testing.TB) (*Socket, *SimKernel) {
	tb.Helper()
	u, err := NewInMemory(Options{NumFrames: 8192, FrameSize: 2048})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { u.Close() })
	s, k, err := NewSimSocket(u, DefaultSocketOptions())
	if err != nil {
		tb.Fatal(err)
	}
	k.SetNeedWakeup(true)
	return s, k
}

// rxRound is one receive pass: the kernel delivers a batch, the worker
// takes it off the rx ring, refills the fill ring and kicks.
func rxRound(s *Socket, k *SimKernel, pkt []byte, descs []Desc) {
	k.DeliverSame(pkt, len(descs))
	n := s.Receive(descs)
	s.RefillDescs(descs[:n])
	s.KickRx()
}

// txRound is one transmit pass: the worker posts a batch and kicks, the
// kernel sends it, the worker takes the frames back off the completion ring.
func txRound(s *Socket, k *SimKernel, descs []Desc, addrs []uint64) {
	s.Transmit(descs)
	k.Send(nil)
	n := s.Complete(addrs)
	for i := 0; i < n; i++ {
		descs[i].Addr = addrs[i]
	}
}

func txSetup(tb testing.TB, s *Socket) ([]Desc, []uint64) {
	u := s.UMEM()
	addrs := make([]uint64, benchBatch)
	if u.AllocN(addrs) != benchBatch {
		tb.Fatal("alloc a batch")
	}
	descs := make([]Desc, benchBatch)
	for i, a := range addrs {
		descs[i] = Desc{Addr: a, Len: 64}
	}
	return descs, addrs
}

func TestBatchLoopsDoNotAllocate(t *testing.T) {
	s, k := benchSocket(t)
	s.FillFromFree(int(s.Fill.Size()))
	pkt := make([]byte, 64)
	descs := make([]Desc, benchBatch)
	if a := testing.AllocsPerRun(200, func() { rxRound(s, k, pkt, descs) }); a != 0 {
		t.Errorf("rx pass: %v allocations, want 0", a)
	}
	tdescs, addrs := txSetup(t, s)
	if a := testing.AllocsPerRun(200, func() { txRound(s, k, tdescs, addrs) }); a != 0 {
		t.Errorf("tx pass: %v allocations, want 0", a)
	}
	if k.Wakeups() == 0 {
		t.Error("no wakeups reached the simulated kernel")
	}
}

func BenchmarkRxBatch(b *testing.B) {
	s, k := benchSocket(b)
	s.FillFromFree(int(s.Fill.Size()))
	pkt := make([]byte, 64)
	descs := make([]Desc, benchBatch)
	b.ReportAllocs()
	b.SetBytes(benchBatch * int64(len(pkt)))
	for b.Loop() {
		rxRound(s, k, pkt, descs)
	}
}

func BenchmarkTxBatch(b *testing.B) {
	s, k := benchSocket(b)
	descs, addrs := txSetup(b, s)
	b.ReportAllocs()
	b.SetBytes(benchBatch * 64)
	for b.Loop() {
		txRound(s, k, descs, addrs)
	}
}
