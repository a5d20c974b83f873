package engine

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xnic/xnic/engine/gen"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
	"github.com/xnic/xnic/umem"
)

// The test frames' addresses: the guest's (198.18.0.2) and the other end's
// (198.18.0.1).
var (
	testGuestMAC = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	testHostMAC  = net.HardwareAddr{2, 0, 0, 0, 0, 1}
)

// tcpFrame builds an Ethernet/IPv4/TCP frame with valid checksums.
func tcpFrame(sport uint16, seq uint32, flags uint8, payload []byte, id uint16) []byte {
	f := make([]byte, 14+20+20+len(payload))
	copy(f, testHostMAC)
	copy(f[6:], testGuestMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(40+len(payload)))
	binary.BigEndian.PutUint16(ip[4:], id)
	ip[6] = 0x40 // DF
	ip[8] = 64
	ip[9] = 6
	copy(ip[12:], []byte{198, 18, 0, 2})
	copy(ip[16:], []byte{198, 18, 0, 1})
	tcp := f[34:54]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], 1)
	tcp[12] = 5 << 4
	tcp[13] = flags | flows.TCPFlagACK
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	copy(f[54:], payload)
	var p flows.Packet
	flows.Parse(f, &p)
	offload.SetIPv4HeaderChecksum(f[14:34])
	offload.SetL4Checksum(f, &p)
	return f
}

func udpFrame(sport uint16, size int) []byte {
	f, err := buildUDPForTest(sport, size)
	if err != nil {
		panic(err)
	}
	return f
}

type collected struct {
	tcpAggs  int
	tcpSegs  int
	stream   []byte
	single   int
	reasons  map[offload.FlushReason]int
	validate int
}

func newPipeWorker(t testing.TB, o PipelineOptions, sink Sink) (*Worker, *umem.UMEM, *umem.SimKernel) {
	t.Helper()
	w, u, k := newSimWorker(t, nil)
	var err error
	if w.pipe, err = newRxPipeline(u, len(w.descs), o, sink); err != nil {
		t.Fatal(err)
	}
	return w, u, k
}

// TestPipelineAggregatesAndCounts runs a TCP train, interleaved with UDP
// flows and a malformed frame, through a worker's pipeline: GRO merges the
// train into one aggregate whose payload is the train's, UDP frames pass
// through, the malformed frame is counted and dropped, and the connection
// counters hold exactly what was sent.
func TestPipelineAggregatesAndCounts(t *testing.T) {
	c := collected{reasons: map[offload.FlushReason]int{}}
	w, u, k := newPipeWorker(t, DefaultPipelineOptions(), func(_ *Endpoint, a *offload.Aggregate) {
		if a.Flags&offload.AggPassThrough != 0 {
			c.single++
			return
		}
		c.tcpAggs++
		c.tcpSegs += a.Count()
		for _, s := range a.Segs {
			c.stream = append(c.stream, s...)
		}
		c.reasons[a.Reason]++
		if a.Flags&offload.AggCsumValidated != 0 {
			c.validate++
		}
	})
	defer u.Close()
	const segs, mss = 40, 1000
	var want []byte
	var batch [][]byte
	for i := range segs {
		pay := bytes.Repeat([]byte{byte(i)}, mss)
		want = append(want, pay...)
		batch = append(batch, tcpFrame(40000, 1000+uint32(i*mss), 0, pay, uint16(7+i)))
		if i%10 == 0 {
			batch = append(batch, udpFrame(uint16(1000+i/10), 100))
		}
	}
	batch = append(batch, []byte{1, 2, 3}) // a runt: malformed
	if n := k.Deliver(batch); n != len(batch) {
		t.Fatalf("sim delivered %d of %d", n, len(batch))
	}
	for w.Poll() > 0 {
	}
	if c.tcpAggs != 1 || c.tcpSegs != segs {
		t.Fatalf("GRO: %d aggregates of %d segments, want 1 of %d", c.tcpAggs, c.tcpSegs, segs)
	}
	if !bytes.Equal(c.stream, want) {
		t.Fatalf("aggregate payload differs from the train's (%d vs %d bytes)", len(c.stream), len(want))
	}
	if c.single != 4 {
		t.Fatalf("%d frames passed through, want the 4 UDP frames", c.single)
	}
	st := w.Stats().Pipeline
	if st.Malformed != 1 || st.Packets != uint64(len(batch)) {
		t.Fatalf("pipeline counted %d packets, %d malformed; want %d, 1", st.Packets, st.Malformed, len(batch))
	}
	if st.Conns != 5 {
		t.Fatalf("%d connections in the table, want 5 (1 TCP + 4 UDP)", st.Conns)
	}
	if st.GRORatio() != segs {
		t.Fatalf("GRO ratio %.1f, want %d", st.GRORatio(), segs)
	}
	var top []ConnStat
	e := &Engine{workers: []*Worker{w}}
	top = e.TopConns(3)
	if len(top) != 3 {
		t.Fatalf("top 3 gave %d", len(top))
	}
	if top[0].PacketsIn != segs || top[0].BytesIn != uint64(segs*len(batch[0])) || top[0].Key.SrcPort != 40000 {
		t.Fatalf("top connection %+v: want the TCP train, %d packets, %d bytes", top[0], segs, segs*len(batch[0]))
	}
	if top[1].PacketsIn != 1 || top[1].BytesIn != 100 {
		t.Fatalf("second connection %+v: want 1 UDP frame of 100 bytes", top[1])
	}
	r, err := u.Audit()
	if err != nil {
		t.Fatal(err)
	}
	if r.Engine != 0 {
		t.Fatalf("frames left in the engine after the batch: %s", r)
	}
}

// TestPipelineGROOffDeliversEveryFrame: with GRO off every frame is
// delivered alone, in order.
func TestPipelineGROOffDeliversEveryFrame(t *testing.T) {
	o := DefaultPipelineOptions()
	o.GRO = false
	var seqs []uint32
	w, u, k := newPipeWorker(t, o, func(_ *Endpoint, a *offload.Aggregate) {
		if a.Pkt.Proto == flows.ProtoTCP {
			seqs = append(seqs, binary.BigEndian.Uint32(a.Head[a.Pkt.L4Off+4:]))
		}
	})
	defer u.Close()
	var batch [][]byte
	for i := range 20 {
		batch = append(batch, tcpFrame(40001, uint32(i*500), 0, make([]byte, 500), uint16(i)))
	}
	k.Deliver(batch)
	for w.Poll() > 0 {
	}
	if len(seqs) != 20 {
		t.Fatalf("%d frames delivered, want 20", len(seqs))
	}
	for i, s := range seqs {
		if s != uint32(i*500) {
			t.Fatalf("frame %d has seq %d: order lost", i, s)
		}
	}
}

// TestPipelineBadChecksumDropped: a segment with a bad TCP checksum is
// counted and never delivered.
func TestPipelineBadChecksumDropped(t *testing.T) {
	delivered := 0
	w, u, k := newPipeWorker(t, DefaultPipelineOptions(), func(*Endpoint, *offload.Aggregate) { delivered++ })
	defer u.Close()
	f := tcpFrame(40002, 1, flows.TCPFlagPSH, []byte("hello"), 1)
	f[len(f)-1] ^= 0xff
	k.Deliver([][]byte{f})
	for w.Poll() > 0 {
	}
	if bad := w.Stats().Pipeline.CsumBad; delivered != 0 || bad != 1 {
		t.Fatalf("bad checksum: delivered %d, counted %d; want 0, 1", delivered, bad)
	}
}

// TestPipelineAllocs: the whole receive pipeline, GRO included, allocates
// nothing per batch.
func TestPipelineAllocs(t *testing.T) {
	w, u, k := newPipeWorker(t, DefaultPipelineOptions(), func(*Endpoint, *offload.Aggregate) {})
	defer u.Close()
	var batch [][]byte
	for i := range 64 {
		batch = append(batch, tcpFrame(uint16(41000+i%8), uint32(i/8*1000), 0, make([]byte, 1000), uint16(i)))
	}
	k.Deliver(batch) // warm up: connections created
	w.Poll()
	allocs := testing.AllocsPerRun(200, func() {
		k.Deliver(batch)
		w.Poll()
	})
	if allocs != 0 {
		t.Fatalf("pipeline: %.1f allocations per batch of 64, want 0", allocs)
	}
}

func TestPipelineOptionsNameField(t *testing.T) {
	o := DefaultPipelineOptions()
	o.Window = 0
	if err := o.Validate(); err == nil || !bytes.Contains([]byte(err.Error()), []byte("window")) {
		t.Fatalf("window 0: %v", err)
	}
	o = DefaultPipelineOptions()
	o.Table.Capacity = 1000
	if err := o.Validate(); err == nil || !bytes.Contains([]byte(err.Error()), []byte("capacity")) {
		t.Fatalf("capacity 1000: %v", err)
	}
}

func BenchmarkPipelineSim(b *testing.B) {
	for _, gro := range []bool{false, true} {
		name := "gro=off"
		if gro {
			name = "gro=on"
		}
		b.Run(name, func(b *testing.B) {
			o := DefaultPipelineOptions()
			o.GRO = gro
			w, u, k := newPipeWorker(b, o, func(*Endpoint, *offload.Aggregate) {})
			defer u.Close()
			var batch [][]byte
			for i := range 64 {
				batch = append(batch, tcpFrame(uint16(41000+i%8), uint32(i/8*1448), 0, make([]byte, 1448), uint16(i)))
			}
			b.ReportAllocs()
			b.SetBytes(int64(64 * len(batch[0])))
			b.ResetTimer()
			for range b.N {
				k.Deliver(batch)
				w.Poll()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/pkt")
		})
	}
}

func buildUDPForTest(sport uint16, size int) ([]byte, error) {
	return gen.BuildUDP(gen.FrameOptions{
		Size:   size,
		SrcMAC: testGuestMAC, DstMAC: testHostMAC,
		SrcIP: netip.MustParseAddr("198.18.0.2"), DstIP: netip.MustParseAddr("198.18.0.1"),
		SrcPort: sport, DstPort: 9,
	})
}

// TestPipelineAgesOutIdleConnections: a connection idle for longer than
// IdleTimeout leaves the table from the worker's background passes.
func TestPipelineAgesOutIdleConnections(t *testing.T) {
	o := DefaultPipelineOptions()
	o.IdleTimeout = time.Millisecond
	o.Table.Capacity = 1 << 10
	w, u, k := newPipeWorker(t, o, func(*Endpoint, *offload.Aggregate) {})
	defer u.Close()
	k.Deliver([][]byte{udpFrame(4000, 100), udpFrame(4001, 100)})
	w.Poll()
	if n := w.Stats().Pipeline.Conns; n != 2 {
		t.Fatalf("%d connections after two flows, want 2", n)
	}
	time.Sleep(5 * time.Millisecond)
	for range 64 * 16 { // ageing runs every 64 passes over a slice of the table
		w.Poll()
	}
	if st := w.Stats().Pipeline; st.Conns != 0 || st.AgedOut != 2 {
		t.Fatalf("after the idle timeout: %d connections, %d aged out; want 0 and 2", st.Conns, st.AgedOut)
	}
	k.Deliver([][]byte{udpFrame(4002, 100)})
	w.Poll()
	if st := w.Stats().Pipeline; st.Conns != 1 || st.AgedOut != 2 {
		t.Fatalf("after a new flow: %d connections, %d aged out; want 1 (the new one) and 2", st.Conns, st.AgedOut)
	}
}

// TestPipelineCoalescesAcks: the default pipeline folds a run of pure ACKs
// into its last one, delivers the data that ends the run after it, and
// publishes how many ACKs it folded; with CoalesceAcks off every ACK is
// delivered.
func TestPipelineCoalescesAcks(t *testing.T) {
	ack := func(n uint32) []byte {
		f := tcpFrame(4100, 5000, 0, nil, uint16(n))
		binary.BigEndian.PutUint32(f[42:], n)
		var p flows.Packet
		flows.Parse(f, &p)
		offload.SetL4Checksum(f, &p)
		return f
	}
	for _, on := range []bool{true, false} {
		o := DefaultPipelineOptions()
		o.GROOptions.CoalesceAcks = on
		var acks []uint32
		var data int
		w, u, k := newPipeWorker(t, o, func(_ *Endpoint, a *offload.Aggregate) {
			if a.Len > 0 {
				data++
				return
			}
			acks = append(acks, binary.BigEndian.Uint32(a.Head[42:]))
		})
		k.Deliver([][]byte{ack(100), ack(200), ack(300), ack(300), tcpFrame(4100, 5000, 0, make([]byte, 100), 9), ack(400)})
		w.Poll()
		want, folded := []uint32{300, 300, 400}, uint64(2)
		if !on {
			want, folded = []uint32{100, 200, 300, 300, 400}, 0
		}
		if got := w.Stats().Pipeline.GROAcks; !slices.Equal(acks, want) || data != 1 || got != folded {
			t.Errorf("coalesce %v: ACKs delivered %v, data %d, folded %d; want %v, 1 and %d",
				on, acks, data, got, want, folded)
		}
		u.Close()
	}
}
