package engine

import (
	"testing"

	"github.com/xnic/xnic/umem"
)

func newSimWorker(t testing.TB, fn RxFunc) (*Worker, *umem.UMEM, *umem.SimKernel) {
	u, err := umem.NewInMemory(umem.Options{NumFrames: 4096, FrameSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	s, k, err := umem.NewSimSocket(u, umem.SocketOptions{RxSize: 2048, FillSize: 4096, CompletionSize: 2048, NeedWakeup: true})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWorker(u, []*Endpoint{{Sock: s}}, 64, 0, fn)
	w.Prime()
	return w, u, k
}

// TestWorkerReceivesEveryPacketAndKeepsFrames checks that every delivered
// packet reaches the stage intact, in order, and that the frames all go back.
func TestWorkerReceivesEveryPacketAndKeepsFrames(t *testing.T) {
	var got []byte
	var u *umem.UMEM
	w, u, k := newSimWorker(t, func(_ *Endpoint, descs []umem.Desc) {
		for _, d := range descs {
			got = append(got, u.Bytes(d)[0])
		}
	})
	defer u.Close()
	pkts := make([][]byte, 0, 100)
	for i := 0; i < 100; i++ {
		p := make([]byte, 64)
		p[0] = byte(i)
		pkts = append(pkts, p)
	}
	sent := 0
	for round := 0; round < 30; round++ { // 3000 packets: many trips around a 4096-frame umem
		sent += k.Deliver(pkts)
		for w.Poll() > 0 {
		}
	}
	if sent != 3000 || len(got) != 3000 {
		t.Fatalf("sent %d, stage saw %d, want 3000 each", sent, len(got))
	}
	for i, b := range got {
		if b != byte(i%100) {
			t.Fatalf("packet %d carries %d: order or content lost", i, b)
		}
	}
	if st := w.Stats(); st.RxPackets != 3000 || st.RxBytes != 3000*64 {
		t.Fatalf("counted %d packets, %d bytes; want 3000, %d", st.RxPackets, st.RxBytes, 3000*64)
	}
	r, err := u.Audit()
	if err != nil {
		t.Fatal(err)
	}
	if r.FillQ != 4096 || r.Engine != 0 {
		t.Fatalf("after the run every frame should be back in the fill ring: %s", r)
	}
}

func TestWorkerKicksWhenKernelAsks(t *testing.T) {
	w, u, k := newSimWorker(t, nil)
	defer u.Close()
	w.Poll()
	if k.Wakeups() != 0 {
		t.Fatalf("kicked %d times without need_wakeup", k.Wakeups())
	}
	k.SetNeedWakeup(true)
	w.Poll()
	w.Poll()
	if k.Wakeups() != 2 {
		t.Fatalf("kicked %d times on 2 idle passes with need_wakeup set, want 2", k.Wakeups())
	}
}

// TestWorkerPublishesIdlePasses: idle passes are counted and published
// every idlePublishEvery of them, the sockets' wakeups with them; a pass
// with traffic publishes at once.
func TestWorkerPublishesIdlePasses(t *testing.T) {
	w, u, k := newSimWorker(t, nil)
	defer u.Close()
	k.SetNeedWakeup(true)
	for range idlePublishEvery - 1 {
		w.Poll()
	}
	if st := w.Stats(); st.EmptyPasses != 0 {
		t.Fatalf("%d idle passes published early", st.EmptyPasses)
	}
	w.Poll()
	if st := w.Stats(); st.EmptyPasses != idlePublishEvery || st.RxWakeups != idlePublishEvery {
		t.Fatalf("after %d idle passes: %+v", idlePublishEvery, st)
	}
	w.Poll()
	k.Deliver([][]byte{make([]byte, 60)})
	w.Poll()
	if st := w.Stats(); st.EmptyPasses != idlePublishEvery+1 || st.RxPackets != 1 || st.RxBytes != 60 {
		t.Fatalf("after a pass with traffic: %+v", st)
	}
}

// TestWorkerPollAllocs: the receive loop over in-memory rings allocates nothing.
func TestWorkerPollAllocs(t *testing.T) {
	w, u, k := newSimWorker(t, func(*Endpoint, []umem.Desc) {})
	defer u.Close()
	pkt := make([]byte, 64)
	allocs := testing.AllocsPerRun(1000, func() {
		k.DeliverSame(pkt, 64)
		w.Poll()
	})
	if allocs != 0 {
		t.Fatalf("receive loop: %.1f allocations per batch of 64, want 0", allocs)
	}
	if n := w.Stats().RxPackets; n < 64*1000 {
		t.Fatalf("only %d packets went through", n)
	}
}

func BenchmarkWorkerPollSim(b *testing.B) {
	w, u, k := newSimWorker(b, func(*Endpoint, []umem.Desc) {})
	defer u.Close()
	pkt := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 64 {
		k.DeliverSame(pkt, 64)
		w.Poll()
	}
}
