package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xnic/xnic/engine/qos"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
	"github.com/xnic/xnic/umem"
)

// newTxWorker is a sim worker with a pipeline and one guest endpoint whose
// socket has a tx ring.
func newTxWorker(t testing.TB) (*Worker, *Guest, *umem.UMEM, *umem.SimKernel) {
	return newTxWorkerPoll(t, 0)
}

// newTxWorkerPoll is newTxWorker with Options.PollMs.
func newTxWorkerPoll(t testing.TB, pollMs int) (*Worker, *Guest, *umem.UMEM, *umem.SimKernel) {
	t.Helper()
	u, err := umem.NewInMemory(umem.Options{NumFrames: 4096, FrameSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	s, k, err := umem.NewSimSocket(u, umem.SocketOptions{RxSize: 2048, TxSize: 2048, FillSize: 4096, CompletionSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	// The guest owns the source addresses of tcpFrame and udpFrame.
	g := &Guest{ID: 1, Spec: GuestSpec{Name: "g", MAC: testGuestMAC,
		Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}}}
	g.guard = newGuard(g.Spec) // as AttachGuest does: sends are spoof-checked
	ep := &Endpoint{Sock: s, Guest: 1, Owner: g, tx: newTxQueue(u, nil, nil), hw: [6]byte(testGuestMAC)}
	g.ports = []*guestPort{{eps: []*Endpoint{ep}}}
	g.txqs = []*txQueue{ep.tx}
	g.sendQs.Store(&g.txqs)
	w := NewWorker(u, []*Endpoint{ep}, 64, pollMs, nil)
	ep.tx.wake = w.idle
	po := DefaultPipelineOptions()
	if w.pipe, err = newRxPipeline(u, 64, po, nil); err != nil {
		t.Fatal(err)
	}
	if w.txp, err = newTxPath(u, 64, w.pipe.proc.Cache(), &w.Tx); err != nil {
		t.Fatal(err)
	}
	w.txReserve = 1024
	w.Prime()
	ep.tx.refill(u) // as the worker's first pass does
	return w, g, u, k
}

// TestSendSegmentsAndChecksums: a 64 KB TCP send with a partial checksum
// leaves as MSS-sized frames with full, valid checksums, sequence numbers
// advancing and the payload intact; a small UDP send with a partial
// checksum leaves completed; the connection counts what was sent; every
// frame comes back after completion.
func TestSendSegmentsAndChecksums(t *testing.T) {
	w, g, u, k := newTxWorker(t)
	defer u.Close()
	const mss = 1448
	payload := pattern(65000, 7)
	big := tcpFrame(5201, 1000, flows.TCPFlagPSH, payload, 100)
	// As a stack with checksum offload leaves it: pseudo-header sum only.
	var p flows.Packet
	flows.Parse(big, &p)
	offload.SetL4Partial(big, &p)
	if err := g.Send(&WorkRequest{Head: big[:54], Payload: [][]byte{big[54:]}, GSOSize: mss, CsumPartial: true}); err != nil {
		t.Fatal(err)
	}
	small := udpFrame(7, 200)
	flows.Parse(small, &p)
	offload.SetL4Partial(small, &p)
	if err := g.Send(&WorkRequest{Head: small, CsumPartial: true}); err != nil {
		t.Fatal(err)
	}
	for w.Poll() > 0 {
	}
	var got []byte
	var segs, udp int
	nextSeq := uint32(1000)
	k.Send(func(f []byte) {
		var q flows.Packet
		flows.Parse(f, &q)
		if q.Reason != flows.ReasonOK {
			t.Fatalf("sent frame does not parse: %v", q.Reason)
		}
		if !offload.VerifyL4(f, &q) || (q.Family == 4 && !offload.VerifyIPv4Header(f[q.L3Off:q.L4Off])) {
			t.Fatalf("sent frame %d has a bad checksum", segs+udp)
		}
		if q.Proto == flows.ProtoUDP {
			udp++
			return
		}
		segs++
		if s := binary.BigEndian.Uint32(f[q.L4Off+4:]); s != nextSeq {
			t.Fatalf("segment %d: seq %d, want %d", segs, s, nextSeq)
		}
		if int(q.PayloadLen) > mss {
			t.Fatalf("segment of %d bytes, MSS %d", q.PayloadLen, mss)
		}
		nextSeq += uint32(q.PayloadLen)
		got = append(got, f[q.PayloadOff:int(q.PayloadOff)+int(q.PayloadLen)]...)
	})
	if want := (len(payload) + mss - 1) / mss; segs != want || udp != 1 {
		t.Fatalf("sent %d TCP segments and %d UDP frames, want %d and 1", segs, udp, want)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("the segments' payload differs from what was sent")
	}
	for w.Poll() > 0 { // take the completions back
	}
	if c := w.Tx.Requests.Load(); c != 2 || w.Tx.GSORequests.Load() != 1 {
		t.Fatalf("tx counters: %d requests, %d segmented", c, w.Tx.GSORequests.Load())
	}
	e := &Engine{workers: []*Worker{w}, opts: Options{Pipeline: &PipelineOptions{}}}
	var out uint64
	for _, c := range e.TopConns(10) {
		out += c.PacketsOut
	}
	if out != 2 {
		t.Fatalf("connections counted %d packets out, want 2 (one per request)", out)
	}
	r, err := u.Audit()
	if err != nil {
		t.Fatal(err)
	}
	// The engine holds only the free frames of the guest's send pool.
	if pooled := g.txqs[0].pooled(); r.Engine != pooled || r.TxQ != 0 || r.CompQ != 0 {
		t.Fatalf("frames not back after completion: %s; %d in the send pool", r, pooled)
	}
}

// TestSendTooBigAndFull: oversized requests are refused by name; a queue
// the worker does not drain fills and reports it.
func TestSendTooBigAndFull(t *testing.T) {
	_, g, u, _ := newTxWorker(t)
	defer u.Close()
	if err := g.Send(&WorkRequest{Head: make([]byte, MaxWorkRequest+1)}); !errors.Is(err, ErrTxTooBig) {
		t.Fatalf("oversized: %v", err)
	}
	f := udpFrame(7, 100)
	var err error
	for range txSlots + 1 {
		if err = g.Send(&WorkRequest{Head: f}); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrTxFull) {
		t.Fatalf("undrained queue: %v, want ErrTxFull", err)
	}
	if n := g.SendQueueFull(); n != 1 {
		t.Fatalf("SendQueueFull %d, want the one refused send", n)
	}
}

// TestSendWaitsForRoom: a send to a full queue blocks (without spinning on
// the clock) until the worker frees a slot, then goes through.
func TestSendWaitsForRoom(t *testing.T) {
	w, g, u, k := newTxWorker(t)
	defer u.Close()
	f := udpFrame(7, 100)
	for range txSlots {
		if err := g.Send(&WorkRequest{Head: f}); err != nil {
			t.Fatal(err)
		}
	}
	g.txqs[0].maxWait = time.Minute // so that only the worker's signal ends the wait in time
	done := make(chan error, 1)
	go func() { done <- g.Send(&WorkRequest{Head: f}) }()
	for g.txqs[0].waiters.Load() == 0 {
		time.Sleep(100 * time.Microsecond)
	}
	select {
	case err := <-done:
		t.Fatalf("a send to a full queue returned at once: %v", err)
	default:
	}
	w.Poll() // frees slots: the waiting send must go through
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("send after room was made: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting send was not woken when the worker freed slots")
	}
	for w.Poll() > 0 {
		k.Send(nil)
	}
	if got := w.Tx.Requests.Load(); got != txSlots+1 {
		t.Fatalf("%d requests sent, want %d", got, txSlots+1)
	}
}

// TestSendPathAllocs: sending through the queue, lookahead, GSO and the tx
// ring allocates nothing.
func TestSendPathAllocs(t *testing.T) {
	w, g, u, k := newTxWorker(t)
	defer u.Close()
	big := tcpFrame(5201, 1, 0, make([]byte, 14480), 1)
	wr := &WorkRequest{Head: big[:54], Payload: [][]byte{big[54:]}, GSOSize: 1448}
	allocs := testing.AllocsPerRun(200, func() {
		if err := g.Send(wr); err != nil {
			t.Fatal(err)
		}
		w.Poll()
		k.Send(nil)
		w.Poll()
	})
	if allocs != 0 {
		t.Fatalf("send path: %.1f allocations per request, want 0", allocs)
	}
}

func BenchmarkSendGSO(b *testing.B) {
	w, g, u, k := newTxWorker(b)
	defer u.Close()
	big := tcpFrame(5201, 1, 0, make([]byte, 65000), 1)
	wr := &WorkRequest{Head: big[:54], Payload: [][]byte{big[54:]}, GSOSize: 1448}
	b.ReportAllocs()
	b.SetBytes(65000)
	for range b.N {
		g.Send(wr)
		w.Poll()
		k.Send(nil)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*45), "ns/seg")
}

// BenchmarkSendGSOClasses is BenchmarkSendGSO with three classes (one
// strict-priority, two weighted, one with WRED and ECN) and the guest's
// rate unlimited: the cost the class scheduler adds per segment.
func BenchmarkSendGSOClasses(b *testing.B) {
	w, g, u, k := newTxWorker(b)
	defer u.Close()
	o := DefaultOptions()
	o.Classes = []ClassSpec{
		{Name: "interactive", ID: 1, Priority: 0, DSCP: []uint8{46}},
		{Name: "storage", ID: 2, Priority: 1, Weight: 3, Ports: []PortRange{{4420, 4420}}},
		{Name: "bulk", ID: 3, Priority: 1, Weight: 1, Ports: []PortRange{{5201, 5201}}, ECN: true, RED: &REDSpec{Min: 256, Max: 512, MaxP: 0.1}},
	}
	cfg, _ := o.schedConfig(g.Spec)
	var err error
	if g.txqs[0].sched, err = qos.NewScheduler(cfg, monotime()); err != nil {
		b.Fatal(err)
	}
	w.txp.classes = newTxClassifier(o)
	big := tcpFrame(5201, 1, 0, make([]byte, 65000), 1)
	wr := &WorkRequest{Head: big[:54], Payload: [][]byte{big[54:]}, GSOSize: 1448}
	b.ReportAllocs()
	b.SetBytes(65000)
	for range b.N {
		g.Send(wr)
		w.Poll()
		k.Send(nil)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*45), "ns/seg")
	if c := g.txqs[0].sched.Counters(3); c.Sent == 0 {
		b.Fatalf("the bulk class sent nothing: %+v", c)
	}
}

// BenchmarkSendSmall: one 128-byte UDP request at a time, no GSO: the
// per-request cost of the send path (parse, lookahead, checks, one copy).
func BenchmarkSendSmall(b *testing.B) {
	w, g, u, k := newTxWorker(b)
	defer u.Close()
	wr := &WorkRequest{Head: udpFrame(7, 128)}
	b.ReportAllocs()
	for range b.N {
		g.Send(wr)
		w.Poll()
		k.Send(nil)
	}
}

// TestSendAfterDetach: a guest being detached refuses sends by name.
func TestSendAfterDetach(t *testing.T) {
	_, g, u, _ := newTxWorker(t)
	defer u.Close()
	g.sendQs.Store(nil) // what detachLocked does first
	if err := g.Send(&WorkRequest{Head: udpFrame(7, 100)}); !errors.Is(err, ErrTxDetached) {
		t.Fatalf("send after detach: %v, want ErrTxDetached", err)
	}
}

// TestIdleWorkerWakes: a worker that sleeps in poll(2) when idle (PollMs)
// wakes at once, not at its timeout, for a Do, a guest's send and Stop.
func TestIdleWorkerWakes(t *testing.T) {
	const pollMs = 2000
	w, g, u, _ := newTxWorkerPoll(t, pollMs)
	defer u.Close()
	defer w.Close()
	ran := make(chan struct{})
	go func() { w.Run(); close(ran) }()
	asleep := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !w.idle.sleeping.Load() {
			if time.Now().After(deadline) {
				t.Fatal("the idle worker never went to sleep")
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(5 * time.Millisecond) // well inside poll(2) by now
	}
	const prompt = pollMs * time.Millisecond / 4

	asleep()
	t0 := time.Now()
	w.Do(func() {})
	if d := time.Since(t0); d > prompt {
		t.Errorf("Do took %v on a sleeping worker (poll timeout %d ms)", d, pollMs)
	}

	asleep()
	t0 = time.Now()
	if err := g.Send(&WorkRequest{Head: udpFrame(7, 200)}); err != nil {
		t.Fatal(err)
	}
	for w.Tx.Requests.Load() == 0 {
		if time.Since(t0) > pollMs*time.Millisecond {
			t.Fatal("the send was not taken before the poll timeout")
		}
		time.Sleep(100 * time.Microsecond)
	}
	if d := time.Since(t0); d > prompt {
		t.Errorf("a send waited %v for a sleeping worker", d)
	}
	if w.Stats().Sleeps == 0 {
		t.Error("Sleeps did not count")
	}

	t0 = time.Now()
	w.Stop()
	<-ran
	if d := time.Since(t0); d > prompt {
		t.Errorf("Stop took %v", d)
	}
}

// TestSendLinkDown: a port without link takes nothing: a send to it is
// dropped and counted (its frame stays free), and frames already in its
// tx ring are not work that keeps an idle worker awake until the link is
// back.
func TestSendLinkDown(t *testing.T) {
	w, g, u, k := newTxWorker(t)
	defer u.Close()
	var link atomic.Bool
	ep := g.ports[0].eps[0]
	ep.link = &link
	free := freeFrames(u, g)
	if err := g.Send(&WorkRequest{Head: udpFrame(7, 200)}); err != nil {
		t.Fatal(err)
	}
	for w.Poll() > 0 {
	}
	if d, n := w.Tx.LinkDown.Load(), w.Tx.Dropped.Load(); d != 1 || n != 1 {
		t.Fatalf("link down: %d dropped for the link, %d in all; want 1 and 1", d, n)
	}
	if ep.Sock.TxPending() || freeFrames(u, g) != free {
		t.Fatalf("link down: tx ring pending %v, %d frames free, want none pending and %d free", ep.Sock.TxPending(), freeFrames(u, g), free)
	}
	link.Store(true)
	if err := g.Send(&WorkRequest{Head: udpFrame(7, 200)}); err != nil {
		t.Fatal(err)
	}
	w.Poll()
	if !ep.Sock.TxPending() || !w.hasWork() {
		t.Fatal("link up: the frame should wait in the tx ring, as work")
	}
	link.Store(false)
	if w.hasWork() {
		t.Fatal("link down: frames stuck in its tx ring keep the worker awake")
	}
	link.Store(true)
	sent := 0
	k.Send(func([]byte) { sent++ })
	if sent != 1 {
		t.Fatalf("link back: %d frames left, want 1", sent)
	}
}

// TestSendClassScheduler: with classes, a guest's frames wait in its
// scheduler as descriptors: a strict-priority class (by port) leaves
// first, the guest's rate holds the rest until its bucket refills, an
// idle worker is told when, and flushed frames go back to the free list.
func TestSendClassScheduler(t *testing.T) {
	w, g, u, k := newTxWorker(t)
	defer u.Close()
	o := DefaultOptions()
	o.Classes = []ClassSpec{
		{Name: "default", ID: 0, Priority: 1},
		{Name: "storage", ID: 1, Priority: 0, Ports: []PortRange{{9000, 9000}}},
	}
	g.Spec.Rate, g.Spec.Burst = 100_000, 3000 // 1000-byte frames: 3 at once, then one per 10 ms
	cfg, ok := o.schedConfig(g.Spec)
	if !ok {
		t.Fatal("classes configured, but no scheduler")
	}
	q := g.txqs[0]
	var err error
	if q.sched, err = qos.NewScheduler(cfg, monotime()); err != nil {
		t.Fatal(err)
	}
	w.txp.classes = newTxClassifier(o)
	free := freeFrames(u, g)
	for range 6 {
		if err := g.Send(&WorkRequest{Head: udpFrame(7, 1000)}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if err := g.Send(&WorkRequest{Head: udpFrame(9000, 1000)}); err != nil {
			t.Fatal(err)
		}
	}
	w.Poll()
	sports := func() []uint16 {
		var got []uint16
		k.Send(func(f []byte) {
			var p flows.Packet
			flows.Parse(f, &p)
			got = append(got, p.Key.SrcPort)
		})
		return got
	}
	if got := sports(); !slices.Equal(got, []uint16{9000, 9000, 9000}) {
		t.Fatalf("first burst left with source ports %v, want the storage class's three", got)
	}
	if q.sched.Backlog() != 6 || w.hasWork() {
		t.Fatalf("backlog %d, has work %v: want 6 shaped frames and nothing to do yet", q.sched.Backlog(), w.hasWork())
	}
	if d := w.shapedWait(); d <= 0 || d > int64(11*time.Millisecond) {
		t.Fatalf("shaped wait %v, want up to 10 ms", time.Duration(d))
	}
	time.Sleep(25 * time.Millisecond)
	w.Poll()
	if got := sports(); len(got) < 2 || len(got) > 3 || got[0] != 7 {
		t.Fatalf("after 25 ms at 100 kB/s: %v, want two or three default-class frames", got)
	}
	if c := q.sched.Counters(1); c.Sent != 3 {
		t.Fatalf("storage class counters %+v", c)
	}
	q.sched.Flush(func(it qos.Item) { u.Release(it.Addr) })
	for w.Poll() > 0 {
	}
	if freeFrames(u, g) != free {
		t.Fatalf("%d frames free after the flush and completions, want %d", freeFrames(u, g), free)
	}
}

// pattern is n payload bytes that differ from their neighbours: byte i is
// i*step.
func pattern(n int, step int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * step)
	}
	return b
}

// freeFrames is the frames free for sending: on u's free list or in the
// guest's send pools.
func freeFrames(u *umem.UMEM, g *Guest) int {
	n := u.Free()
	for _, q := range g.txqs {
		n += q.pooled()
	}
	return n
}

// TestSendCopiesOnce: Send segments a GSO request straight into UMEM
// frames before it returns (the worker copies nothing): the queue's frame
// ring holds the segments, with their payload, before any worker pass;
// what the guest does to its buffers afterwards changes nothing sent.
func TestSendCopiesOnce(t *testing.T) {
	w, g, u, k := newTxWorker(t)
	defer u.Close()
	const mss = 1448
	payload := pattern(65000, 13)
	want := slices.Clone(payload)
	big := tcpFrame(5201, 1, flows.TCPFlagPSH|flows.TCPFlagFIN, payload, 1)
	head, pay := big[:54], big[54:]
	if err := g.Send(&WorkRequest{Head: head, Payload: [][]byte{pay}, GSOSize: mss}); err != nil {
		t.Fatal(err)
	}
	q := g.txqs[0]
	nseg := (len(payload) + mss - 1) / mss
	if got := int(q.fTail - q.fHead.Load()); got != nseg {
		t.Fatalf("%d frames in the queue before the worker ran, want the %d segments", got, nseg)
	}
	for j := range nseg {
		f := (q.fHead.Load() + uint64(j)) % txFrames
		seg := u.Frame(q.fAddr[f])[u.DataOffset():][:q.fLen[f]]
		lo, hi := j*mss, min((j+1)*mss, len(payload))
		if !bytes.Equal(seg[54:], want[lo:hi]) {
			t.Fatalf("segment %d in UMEM does not hold payload bytes %d-%d", j, lo, hi)
		}
	}
	// The guest reuses its buffers at once: headers and payload.
	for i := range big {
		big[i] ^= 0xff
	}
	for w.Poll() > 0 {
	}
	var got []byte
	var flags uint8
	k.Send(func(f []byte) {
		var p flows.Packet
		flows.Parse(f, &p)
		if p.Reason != flows.ReasonOK || p.Key.SrcPort != 5201 {
			t.Fatalf("sent frame: reason %v, source port %d", p.Reason, p.Key.SrcPort)
		}
		got = append(got, f[p.PayloadOff:int(p.PayloadOff)+int(p.PayloadLen)]...)
		flags = p.TCPFlags
	})
	if !bytes.Equal(got, want) {
		t.Fatal("what left differs from what was sent")
	}
	if flags&flows.TCPFlagFIN == 0 {
		t.Fatal("the last segment lost the request's FIN")
	}
	// The connection counts the request whole: one packet out, its IP
	// length, and the FIN its last segment carried.
	e := &Engine{workers: []*Worker{w}, opts: Options{Pipeline: &PipelineOptions{}}}
	cs := e.TopConns(1)
	if len(cs) != 1 || cs[0].PacketsOut != 1 || cs[0].BytesOut != uint64(len(big)) {
		t.Fatalf("connection: %+v, want 1 packet and %d bytes out", cs, len(big))
	}
}

// TestSendMalformed: a request to segment whose headers GSO cannot use is
// refused by name at Send and counted as dropped; its frames stay free.
func TestSendMalformed(t *testing.T) {
	_, g, u, _ := newTxWorker(t)
	defer u.Close()
	free := freeFrames(u, g)
	big := tcpFrame(5201, 1, 0, make([]byte, 9000), 1)
	for _, wr := range []*WorkRequest{
		{Head: big[:60], Payload: [][]byte{big[60:]}, GSOSize: 1448}, // head runs into the payload
		{Head: big[:30], Payload: [][]byte{big[30:]}, GSOSize: 1448}, // head ends inside the IP header
		{Head: make([]byte, 300), Payload: [][]byte{big}, GSOSize: 1448},
	} {
		if err := g.Send(wr); !errors.Is(err, ErrTxMalformed) {
			t.Fatalf("head of %d bytes: %v, want ErrTxMalformed", len(wr.Head), err)
		}
	}
	var st TxStats
	g.addSendCounters(&st)
	if st.Dropped != 3 || freeFrames(u, g) != free {
		t.Fatalf("%d counted dropped, %d frames free; want 3 and %d", st.Dropped, freeFrames(u, g), free)
	}
	if err := g.Send(&WorkRequest{Head: make([]byte, 3000)}); !errors.Is(err, ErrTxTooBig) {
		t.Fatalf("3000 bytes without GSO: %v, want ErrTxTooBig", err)
	}
}

// TestSendWaitsForFrames: a producer whose pool is short waits for the
// worker to refill it (from frames that come back), and the pool grows;
// with no frame to be had it gives up after TxWait, counted as no_frames.
func TestSendWaitsForFrames(t *testing.T) {
	w, g, u, k := newTxWorker(t)
	defer u.Close()
	q := g.txqs[0]
	held := make([]uint64, u.Free())
	held = held[:u.AllocN(held)] // the free list is empty: only the pool's 64 frames are left
	payload := make([]byte, 45*1448)
	big := tcpFrame(5201, 1, 0, payload, 1)
	wr := &WorkRequest{Head: big[:54], Payload: [][]byte{big[54:]}, GSOSize: 1448}
	if err := g.Send(wr); err != nil {
		t.Fatal(err)
	}
	q.maxWait = time.Minute
	done := make(chan error, 1)
	go func() { done <- g.Send(wr) }() // needs 45, the pool has 19
	for q.waiters.Load() == 0 {
		time.Sleep(100 * time.Microsecond)
	}
	u.ReleaseN(held)
	w.Poll() // sends the first request and refills the pool
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the send waiting for frames was not woken by the refill")
	}
	if q.want.Load() <= poolMin {
		t.Fatalf("pool target %d after a shortfall, want more than %d", q.want.Load(), poolMin)
	}
	for w.Poll() > 0 {
	}
	sent := 0
	k.Send(func([]byte) { sent++ })
	if sent != 90 {
		t.Fatalf("%d segments left, want 90", sent)
	}
	// Nothing to refill from: the send gives up, counted.
	for w.Poll() > 0 {
	}
	held = make([]uint64, u.Free())
	held = held[:u.AllocN(held)]
	q.maxWait = 10 * time.Millisecond
	q.want.Store(0) // and no refill of what the pool holds
	for err := error(nil); err == nil; {
		err = g.Send(wr)
		if err != nil && !errors.Is(err, ErrTxFull) {
			t.Fatalf("send without frames: %v, want ErrTxFull", err)
		}
	}
	if n := q.noFrames.Load(); n != 1 {
		t.Fatalf("no_frames %d, want 1", n)
	}
	u.ReleaseN(held)
}
