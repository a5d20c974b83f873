package stack

import (
	"context"
	"io"
	"testing"
	"time"
)

// BenchmarkWireTCP measures one TCP stream from A to B over the simulated
// wire (TxFunc -> GSO -> frames -> parse -> GRO -> DeliverAggregate), with
// TSO and GRO each on or off. Both netstacks, the wire and the reader share
// the machine's cores, so the figure is the cost of the whole path, not a
// link speed.
func BenchmarkWireTCP(b *testing.B) {
	for _, c := range []struct {
		name    string
		gso     bool
		maxSegs int
	}{
		{"tso+gro", true, 0},
		{"tso,nogro", true, 1},
		{"notso+gro", false, 0},
		{"notso,nogro", false, 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := newPair(b, func(a, bo *Options) {
				if !c.gso {
					a.GSOMaxSize, bo.GSOMaxSize = 0, 0
				}
			}, wireOptions{maxSegs: c.maxSegs, csumOut: 2}, wireOptions{maxSegs: c.maxSegs, csumOut: 2})
			l, err := p.b.Listen("tcp4", ":9000")
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			accepted := make(chan error, 1)
			var total int64
			go func() {
				s, err := l.Accept()
				if err != nil {
					accepted <- err
					return
				}
				defer s.Close()
				n, err := io.CopyBuffer(io.Discard, s, make([]byte, 256<<10))
				total = n
				accepted <- err
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			conn, err := p.a.Dial(ctx, "tcp4", "198.18.0.2:9000")
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			chunk := make([]byte, 1<<20)
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			before := p.a.Stats()
			start := time.Now()
			for b.Loop() {
				if _, err := conn.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			conn.Close()
			if err := <-accepted; err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			b.StopTimer()
			if total != int64(b.N)*int64(len(chunk)) {
				b.Fatalf("received %d bytes, sent %d", total, b.N*len(chunk))
			}
			st := p.a.Stats()
			b.ReportMetric(float64(total)*8/el.Seconds()/1e9, "Gbit/s")
			b.ReportMetric(p.ab.dataRatio(), "frames/agg")
			if n := st.TxPackets - before.TxPackets; n > 0 {
				b.ReportMetric(float64(st.TxBytes-before.TxBytes)/float64(n), "B/txpkt")
			}
		})
	}
}
