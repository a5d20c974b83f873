package tests

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/umem"
)

// TestClassSockets: a guest that uses a storage class (by port, NVMe/TCP's
// 4420) and a bulk class (by its rule) has a socket per class on the
// queue: frames to 4420 arrive on the storage class's socket, UDP 5000 on
// bulk's, the rest on class 0's; the connection contexts carry the class,
// and the steering program counts each class's slot.
func TestClassSockets(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	o := engine.DefaultOptions()
	o.Ifaces = []string{p.Host}
	o.NoCatchAll = true
	po := engine.DefaultPipelineOptions()
	o.Pipeline = &po
	o.Classes = []engine.ClassSpec{
		{Name: "storage", ID: 2, Ports: []engine.PortRange{{Lo: 4420, Hi: 4420}}},
		{Name: "bulk", ID: 3},
	}
	e, err := engine.New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	e.Start()
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
