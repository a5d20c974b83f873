package tests

import (
	"math/rand/v2"
	"testing"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/flows"
)

// TestConnCountersEqualSent sends thousands of UDP flows, IPv4 and IPv6,
// interleaved at random and each with its own number of frames, through an
// engine running the pipeline with a cache much smaller than the working set.
// Every flow's context must hold exactly the frames and bytes sent on it.
func TestConnCountersEqualSent(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	o := engine.DefaultOptions()
	o.Ifaces = []string{p.Host}
	po := engine.DefaultPipelineOptions()
	po.Cache.Entries = 64 // far below the 3000 flows: evictions write back
	po.Table.Capacity = 1 << 14
	o.Pipeline = &po
	e, err := engine.New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	e.Start()

	const nflows = 3000
	type flow struct {
		sport   uint16
		v6      bool
		frames  int
		size    int
		wantLen uint64
	}
	rng := rand.New(rand.NewPCG(1, 2))
	fl := make([]flow, nflows)
	var order []int
	for i := range fl {
		f := &fl[i]
		f.sport = uint16(20000 + i/2)
		f.v6 = i%2 == 1
		f.frames = 1 + rng.IntN(7)
		f.size = 80 + rng.IntN(400)
		for range f.frames {
			order = append(order, i)
		}
	}
	rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
	frames := make([][]byte, len(order))
	for j, i := range order {
		f := &fl[i]
		src, dst := p.PeerIPv4, p.HostIPv4
		if f.v6 {
			src, dst = p.PeerIPv6, p.HostIPv6
		}
		fr, err := gen.BuildUDP(gen.FrameOptions{
			Size: f.size, SrcMAC: p.PeerMAC, DstMAC: p.HostMAC,
			SrcIP: src, DstIP: dst, SrcPort: f.sport, DstPort: 9,
		})
		if err != nil {
			t.Fatal(err)
		}
		frames[j] = fr
		f.wantLen += uint64(len(fr))
	}
	sendPaced(t, newPeerSender(t, l, 0), frames, 256, rxPackets(e.Workers()[0]))

	top := e.TopConns(nflows + 10)
	if len(top) != nflows {
		t.Fatalf("the engine tracks %d connections, want %d", len(top), nflows)
	}
	type fk struct {
		sport uint16
		v6    bool
	}
	got := map[fk]engine.ConnStat{}
	for _, c := range top {
		got[fk{c.Key.SrcPort, c.Key.Family == 6}] = c
	}
	for i := range fl {
		f := &fl[i]
		c, ok := got[fk{f.sport, f.v6}]
		if !ok {
			t.Fatalf("flow %d (port %d, v6 %v) has no context", i, f.sport, f.v6)
		}
		if c.PacketsIn != uint64(f.frames) || c.BytesIn != f.wantLen {
			t.Fatalf("flow %d (port %d, v6 %v): context counts %d frames, %d bytes; sent %d, %d",
				i, f.sport, f.v6, c.PacketsIn, c.BytesIn, f.frames, f.wantLen)
		}
		if c.Key.Proto != flows.ProtoUDP || c.Key.DstPort != 9 {
			t.Fatalf("flow %d: key %s", i, c.Flow)
		}
	}
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Pipeline.Packets != uint64(len(frames)) || st.Pipeline.Malformed != 0 {
		t.Fatalf("pipeline saw %d frames (%d malformed), sent %d", st.Pipeline.Packets, st.Pipeline.Malformed, len(frames))
	}
	if st.Pipeline.Evictions == 0 {
		t.Fatalf("a 64-entry cache under 3000 flows evicted nothing: %+v", st.Pipeline)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}
