package tests

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/engine/stack"
	"github.com/xnic/xnic/umem"
)

// startClassEngine runs an engine on the lab port host with classes (and
// the receive pipeline with pipeline), changed by more if not nil; its
// Close, frame audit included, must succeed at the test's end.
func startClassEngine(t *testing.T, host string, pipeline bool, classes []engine.ClassSpec, more func(*engine.Options)) *engine.Engine {
	t.Helper()
	o := engine.DefaultOptions()
	o.Ifaces = []string{host}
	o.NoCatchAll = true
	o.Classes = classes
	if pipeline {
		po := engine.DefaultPipelineOptions()
		o.Pipeline = &po
	}
	if more != nil {
		more(&o)
	}
	e, err := engine.New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err) // the frame audit included: nothing held by a scheduler is lost
		}
	})
	e.Start()
	return e
}

// TestClassSockets: a guest that uses a storage class (by port, NVMe/TCP's
// 4420) and a bulk class (by its rule) has a socket per class on the
// queue: frames to 4420 arrive on the storage class's socket, UDP 5000 on
// bulk's, the rest on class 0's; the connection contexts carry the class,
// and the steering program counts each class's slot.
func TestClassSockets(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	e := startClassEngine(t, p.Host, true, []engine.ClassSpec{
		{Name: "storage", ID: 2, Ports: []engine.PortRange{{Lo: 4420, Hi: 4420}}},
		{Name: "bulk", ID: 3},
	}, nil)
	addr := netip.MustParseAddr("198.18.0.10")
	dst := netip.PrefixFrom(addr, 32)
	var byClass [4]atomic.Uint64
	g, err := e.AttachGuest(engine.GuestSpec{Name: "nvme", Port: p.Host, Rules: []engine.RuleSpec{
		{Dst: dst, Proto: 17, PortLo: 5000, PortHi: 5000, Class: 3},
		{Dst: dst, PortHi: 65535},
	}}, func(g *engine.Guest, ep *engine.Endpoint, descs []umem.Desc) {
		byClass[ep.Class].Add(uint64(len(descs)))
	})
	if err != nil {
		t.Fatal(err)
	}
	s := newPeerSender(t, l, 0)
	const n = 500
	want := map[uint16]int{4420: 2, 5000: 3, 7000: 0}
	for i := range n {
		for dport := range want {
			f, err := gen.BuildUDP(gen.FrameOptions{Size: 128, SrcMAC: p.PeerMAC, DstMAC: p.HostMAC,
				SrcIP: p.PeerIPv4, DstIP: addr, SrcPort: 30000 + uint16(i%8), DstPort: dport})
			if err != nil {
				t.Fatal(err)
			}
			s.send(t, f)
		}
	}
	waitFor(t, "every frame", func() bool { return byClass[0].Load()+byClass[2].Load()+byClass[3].Load() >= 3*n })
	for _, c := range []int{0, 2, 3} {
		if got := byClass[c].Load(); got != n {
			t.Errorf("class %d socket received %d frames, want %d", c, got, n)
		}
	}
	if got := byClass[1].Load(); got != 0 {
		t.Errorf("class 1 (unused) received %d", got)
	}
	time.Sleep(50 * time.Millisecond) // the workers publish their contexts
	seen := map[uint8]int{}
	for _, c := range e.TopConns(100) {
		want, ok := want[c.Key.DstPort]
		if !ok {
			continue
		}
		if int(c.Class) != want {
			t.Errorf("connection %s: class %d, want %d", c.Flow, c.Class, want)
		}
		seen[c.Class]++
	}
	if len(seen) != 3 {
		t.Errorf("connections by class %v, want classes 0, 2 and 3", seen)
	}
	for _, c := range []int{0, 2, 3} {
		st, err := e.Ports()[0].Steer().SlotStats(g.ID, c)
		if err != nil {
			t.Fatal(err)
		}
		if st.Redirected != n || st.RedirectedClass0 != 0 {
			t.Errorf("slot of class %d: %+v, want %d redirected to it", c, st, n)
		}
	}
}

// TestClassesOnSend: a guest shaped to 100 Mbit/s serves a flood in a
// low class (port 6002) and a ping-pong in a strict-priority class (port
// 6001) at once: the flood leaves at the guest's rate, every ping-pong is
// answered, and the high class's queue drops nothing; xnic stats
// --classes (ClassStats) shows both classes' sends.
func TestClassesOnSend(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	e := startClassEngine(t, l.Ports[0].Host, true, []engine.ClassSpec{
		{Name: "default", ID: 0, Priority: 1},
		{Name: "interactive", ID: 1, Priority: 0, Ports: []engine.PortRange{{Lo: 6001, Hi: 6001}}},
		{Name: "bulk", ID: 2, Priority: 1, Ports: []engine.PortRange{{Lo: 6002, Hi: 6002}}},
	}, func(o *engine.Options) { o.UMEM.NumFrames, o.PollMs = 8192, 1 })
	p := l.Ports[0]
	const rate = 100e6 / 8
	spec := engine.GuestSpec{Name: "shaped", Port: p.Host, Rate: rate, Burst: 64 << 10,
		MAC:   net.HardwareAddr{0x02, 0x78, 0x6e, 0x69, 0x63, 20},
		Addrs: []netip.Prefix{netip.PrefixFrom(p.AddrIPv4(20), lab.PrefixLenIPv4)},
	}
	g, err := stack.Attach(e, spec, stack.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	addr := p.AddrIPv4(20).String()
	flood, err := g.Listen("tcp", net.JoinHostPort(addr, "6002"))
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	go func() {
		c, err := flood.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	echo, err := g.Listen("tcp", net.JoinHostPort(addr, "6001"))
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fc, err := l.PeerDial(ctx, "tcp", net.JoinHostPort(addr, "6002"))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	var got atomic.Int64
	go func() {
		buf := make([]byte, 256<<10)
		for {
			n, err := fc.Read(buf)
			got.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // the flood fills the bulk class
	ec, err := l.PeerDial(ctx, "tcp", net.JoinHostPort(addr, "6001"))
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	start, t0 := got.Load(), time.Now()
	msg, back := make([]byte, 64), make([]byte, 64)
	var worst time.Duration
	for i := range 200 {
		msg[0] = byte(i)
		t1 := time.Now()
		ec.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := ec.Write(msg); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
		if _, err := io.ReadFull(ec, back); err != nil || back[0] != byte(i) {
			t.Fatalf("pong %d: %v (%d)", i, err, back[0])
		}
		worst = max(worst, time.Since(t1))
	}
	time.Sleep(max(0, time.Second-time.Since(t0)))
	bps := float64(got.Load()-start) / time.Since(t0).Seconds()
	t.Logf("flood %.1f Mbit/s of payload (guest shaped to %.0f Mbit/s on the wire); 200 ping-pongs, worst %s", bps*8/1e6, rate*8/1e6, worst)
	if bps > rate*1.02 || bps < rate*0.8 {
		t.Errorf("flood at %.1f Mbit/s, want about %.0f", bps*8/1e6, rate*8/1e6)
	}
	cs, err := e.ClassStats()
	if err != nil {
		t.Fatal(err)
	}
	var hi, lo *engine.ClassStats
	for i := range cs {
		switch cs[i].Class {
		case 1:
			hi = &cs[i]
		case 2:
			lo = &cs[i]
		}
	}
	if hi == nil || lo == nil {
		t.Fatalf("class stats %+v: want classes 1 and 2", cs)
	}
	if hi.Sent < 200 || hi.DropTail+hi.DropRED+hi.DropPolicer != 0 || hi.Name != "interactive" || !hi.Active {
		t.Errorf("interactive class: %+v; want 200 answers or more and no drop", *hi)
	}
	if lo.SentBytes < uint64(rate/2) || hi.RxPackets < 200 {
		t.Errorf("bulk class %+v, interactive rx %d", *lo, hi.RxPackets)
	}
}

// TestClassEarlyDrop: a bulk class with a receive threshold of 64 frames
// whose worker stalls: the steering program drops the class's frames
// before the copy once its ring holds 64, so its ring never overflows, and
// the other class, in its own ring, loses nothing.
func TestClassEarlyDrop(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	logs := &syncBuffer{}
	e := startClassEngine(t, p.Host, false, []engine.ClassSpec{{Name: "bulk", ID: 3, RxThreshold: 64}},
		func(o *engine.Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	addr := netip.MustParseAddr("198.18.0.10")
	dst := netip.PrefixFrom(addr, 32)
	var byClass [4]atomic.Uint64
	var stalled atomic.Bool
	_, err := e.AttachGuest(engine.GuestSpec{Name: "g", Port: p.Host, Rules: []engine.RuleSpec{
		{Dst: dst, Proto: 17, PortLo: 5000, PortHi: 5000, Class: 3},
		{Dst: dst, PortHi: 65535},
	}}, func(g *engine.Guest, ep *engine.Endpoint, descs []umem.Desc) {
		byClass[ep.Class].Add(uint64(len(descs)))
		if ep.Class == 3 && stalled.CompareAndSwap(false, true) {
			time.Sleep(300 * time.Millisecond) // the worker stalls: both rings fill
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	s := newPeerSender(t, l, 0)
	frame := func(dport uint16, i int) []byte {
		f, err := gen.BuildUDP(gen.FrameOptions{Size: 128, SrcMAC: p.PeerMAC, DstMAC: p.HostMAC,
			SrcIP: p.PeerIPv4, DstIP: addr, SrcPort: 30000 + uint16(i%8), DstPort: dport})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	s.send(t, frame(5000, 0))
	waitFor(t, "the stall", stalled.Load)
	const bulk, other = 1000, 500
	for i := range bulk {
		s.send(t, frame(5000, i))
		if i%2 == 0 {
			s.send(t, frame(7000, i))
		}
	}
	waitFor(t, "the other class's frames", func() bool { return byClass[0].Load() >= other })
	time.Sleep(100 * time.Millisecond)
	cs, err := e.ClassStats()
	if err != nil {
		t.Fatal(err)
	}
	var b, d engine.ClassStats
	for _, c := range cs {
		switch c.Class {
		case 3:
			b = c
		case 0:
			d = c
		}
	}
	got := byClass[3].Load() - 1
	t.Logf("bulk: %d delivered, %d dropped early; other class: %d delivered", got, b.RxEarlyDrops, byClass[0].Load())
	if b.RxEarlyDrops == 0 || got+b.RxEarlyDrops != bulk || got > 64+64 {
		t.Errorf("bulk class: %d delivered and %d dropped early of %d, want at most about 64 delivered and the rest dropped early", got, b.RxEarlyDrops, bulk)
	}
	if n := byClass[0].Load(); n != other || d.RxEarlyDrops != 0 {
		t.Errorf("other class: %d delivered, %d dropped early; want all %d and none dropped", n, d.RxEarlyDrops, other)
	}
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.XSK.RxRingFull+st.XSK.RxDropped != 0 {
		t.Errorf("XSK rings overflowed: %+v", st.XSK)
	}
	// The engine says so once, as an event, not per frame.
	waitFor(t, "the early drops in the engine's log", func() bool {
		return strings.Contains(logs.String(), "drops started: frames dropped early by the steering program")
	})
	if n := strings.Count(logs.String(), "frames dropped early"); n != 1 {
		t.Errorf("the early drops were logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestDialDSCPClass: a guest's connection dialled with a DSCP
// (stack.DialOptions) is sent in the class that DSCP selects, a class the
// guest has no receive socket for; a DSCP past 63 is refused.
func TestDialDSCPClass(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	e := startClassEngine(t, p.Host, true, []engine.ClassSpec{{Name: "interactive", ID: 1, DSCP: []uint8{46}}}, nil)
	g, err := stack.Attach(e, engine.GuestSpec{Name: "caller", Port: p.Host,
		MAC:   net.HardwareAddr{0x02, 0x78, 0x6e, 0x69, 0x63, 21},
		Addrs: []netip.Prefix{netip.PrefixFrom(p.AddrIPv4(21), lab.PrefixLenIPv4)},
	}, stack.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	ln, err := l.PeerListen("tcp4", net.JoinHostPort(p.PeerIPv4.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g.DialWith(ctx, "tcp4", ln.Addr().String(), stack.DialOptions{DSCP: 64}); err == nil {
		t.Fatal("DSCP 64 accepted")
	}
	c, err := g.DialWith(ctx, "tcp4", ln.Addr().String(), stack.DialOptions{DSCP: 46})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-done
	cs, err := e.ClassStats()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cs {
		if s.Class == 1 && s.Sent >= 100 {
			return
		}
	}
	t.Errorf("class stats %+v: want the connection's frames sent in class 1 (interactive)", cs)
}
