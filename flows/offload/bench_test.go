package offload

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/xnic/xnic/flows"
)

// benchTrain is a bulk train: MSS 1448 with timestamps, as a Linux sender
// puts on a 1500-byte MTU.
func benchTrain(b *testing.B, v6 bool, n int) ([][]byte, [][]byte, []flows.Packet) {
	fs := frames(train(baseSeg(v6), repeat(n, 1448)))
	pristine := make([][]byte, n)
	pk := make([]flows.Packet, n)
	for i, f := range fs {
		pristine[i] = slices.Clone(f)
		flows.Parse(f, &pk[i])
	}
	return fs, pristine, pk
}

// restore takes what g has queued and undoes each aggregate's head
// rewrite, so that the same frames go round again. The timed loops write
// it out after each Receive, as the engine does.
func restore(g *GRO, pristine [][]byte) {
	for a := g.Next(); a != nil; a = g.Next() {
		copy(a.Head, pristine[a.Handles[0]])
	}
}

// BenchmarkGRO: one op is one segment through GRO, batches of `batch`
// frames with a Flush after each, the frames already parsed; restore takes
// the aggregates.
func BenchmarkGRO(b *testing.B) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		for _, mode := range []struct {
			name   string
			verify bool
			out    CsumOut
		}{
			{"verify+full", true, CsumFull},
			{"trust+partial", false, CsumPartial},
			{"trust+validated", false, CsumMarkValidated},
			{"trust+validated+slow", false, CsumMarkValidated},
		} {
			for _, batch := range []int{64, 256} {
				name := fmt.Sprintf("%s/%s/batch=%d", fam, mode.name, batch)
				b.Run(name, func(b *testing.B) {
					fs, pristine, pk := benchTrain(b, fam == "ipv6", batch)
					opts := DefaultGROOptions()
					opts.Verify, opts.CsumOut = mode.verify, mode.out
					g, err := NewGRO(opts)
					if err != nil {
						b.Fatal(err)
					}
					g.noFast = strings.HasSuffix(mode.name, "slow")
					b.ReportAllocs()
					b.SetBytes(1448)
					b.ResetTimer()
					j := 0
					for i := 0; i < b.N; i++ {
						g.Receive(fs[j], uint64(j), &pk[j])
						for a := g.Next(); a != nil; a = g.Next() {
							copy(a.Head, pristine[a.Handles[0]])
						}
						j++
						if j == batch {
							g.Flush()
							restore(g, pristine)
							j = 0
						}
					}
					g.Flush()
					restore(g, pristine)
					b.StopTimer()
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Msegs/s")
					b.ReportMetric(g.Stats.Ratio(), "segs/agg")
				})
			}
		}
	}
}

// BenchmarkParseGRO is the whole RX stage: flows.Parse then GRO.
func BenchmarkParseGRO(b *testing.B) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		b.Run(fam, func(b *testing.B) {
			fs, pristine, _ := benchTrain(b, fam == "ipv6", 64)
			g, err := NewGRO(DefaultGROOptions())
			if err != nil {
				b.Fatal(err)
			}
			var p flows.Packet
			b.ReportAllocs()
			b.SetBytes(1448)
			b.ResetTimer()
			j := 0
			for i := 0; i < b.N; i++ {
				flows.Parse(fs[j], &p)
				g.Receive(fs[j], uint64(j), &p)
				for a := g.Next(); a != nil; a = g.Next() {
					copy(a.Head, pristine[a.Handles[0]])
				}
				j++
				if j == len(fs) {
					g.Flush()
					restore(g, pristine)
					j = 0
				}
			}
			g.Flush()
			restore(g, pristine)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Msegs/s")
			b.ReportMetric(g.Stats.Ratio(), "segs/agg")
		})
	}
}

// BenchmarkGSO: one op is a 64 KB TCP segment (65160 bytes of payload)
// split into 45 frames of MSS 1448.
func BenchmarkGSO(b *testing.B) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		for _, c := range []CsumOut{CsumFull, CsumPartial} {
			b.Run(fam+"/"+c.String(), func(b *testing.B) {
				s := baseSeg(fam == "ipv6")
				s.payload = payloadOf(1, 45*1448)
				src := s.frame()
				var sp flows.Packet
				flows.Parse(src, &sp)
				out, sizes := bufs(45, 2048)
				g, err := NewGSO(GSOOptions{CsumOut: c})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.SetBytes(45 * 1448)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := g.SegmentFrame(src, &sp, 1448, false, out, sizes); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(45*b.N)/b.Elapsed().Seconds()/1e6, "Msegs/s")
			})
		}
	}
}

func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{64, 1448, 9000, 65536} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			buf := payloadOf(3, n)
			b.ReportAllocs()
			b.SetBytes(int64(n))
			var s uint16
			for i := 0; i < b.N; i++ {
				s = Sum(buf, s)
			}
			_ = s
		})
	}
}
