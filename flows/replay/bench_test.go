package replay

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/xnic/xnic/flows"
)

// benchCapture is a bulk-transfer capture: 32 trains of 40 MSS segments,
// IPv4 and IPv6 alternately, each followed by a pure ACK, a UDP datagram
// and a large TSO-style segment; about 1,400 frames.
func benchCapture(tb testing.TB, trains int) ([]byte, int) {
	var fs [][]byte
	for i := range trains {
		v6 := i%2 == 1
		mss := 1448
		if v6 {
			mss = 1428
		}
		base := baseSeg(v6)
		base.seq = uint32(i) * 100_000
		fs = append(fs, frames(train(base, repeat(40, mss)...)...)...)
		ack := baseSeg(!v6)
		ack.pad = 6
		udp := baseSeg(v6)
		udp.udp, udp.payload = true, fill(1, 200)
		big := baseSeg(v6)
		big.partial, big.payload = true, fill(2, 8000)
		fs = append(fs, frames(ack, udp, big)...)
	}
	return pcapOf(tb, fs), len(fs)
}

func BenchmarkReplay(b *testing.B) {
	file, n := benchCapture(b, 32)
	for _, st := range []Stage{StageGRO, StageGSO, StageCsum} {
		b.Run(st.String(), func(b *testing.B) {
			o := optsFor(st)
			b.ReportAllocs()
			b.SetBytes(int64(len(file)))
			for b.Loop() {
				if _, err := Run(context.Background(), bytes.NewReader(file), io.Discard, o); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// TestAllocsPerFrame: after setup a replay allocates nothing per frame. A
// capture sixteen times as long (some 2,600 frames more) costs the same
// allocations in the GSO and checksum stages; in the GRO stage at most one
// more per frame slot (BatchSize+1 of them), when a slot first holds a
// frame longer than it was made for.
func TestAllocsPerFrame(t *testing.T) {
	short, nShort := benchCapture(t, 4)
	long, nLong := benchCapture(t, 64)
	for _, st := range []Stage{StageGRO, StageGSO, StageCsum} {
		o := optsFor(st)
		allocs := func(file []byte) float64 {
			return testing.AllocsPerRun(3, func() {
				if _, err := Run(context.Background(), bytes.NewReader(file), io.Discard, o); err != nil {
					t.Fatal(err)
				}
			})
		}
		a, b := allocs(short), allocs(long)
		slack := 0.0
		if st == StageGRO {
			slack = float64(o.BatchSize + 1)
		}
		if b < a || b-a > slack {
			t.Errorf("%v: %v allocations for %d frames, %v for %d", st, a, nShort, b, nLong)
		}
		t.Logf("%v: %v allocations for %d frames, %v for %d", st, a, nShort, b, nLong)
	}
	// The per-frame work of the parse wrapper: nothing.
	var p flows.Packet
	f := frames(train(baseSeg(false), 1448)...)[0]
	if n := testing.AllocsPerRun(100, func() { parseFrame(f, &p) }); n != 0 {
		t.Errorf("parseFrame allocates %v", n)
	}
}
