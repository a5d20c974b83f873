package flows_test

import (
	"testing"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/corpus"
)

// BenchmarkParse parses one frame kind per sub-benchmark; ns/op is ns per
// packet.
func BenchmarkParse(b *testing.B) {
	frames := []struct {
		name  string
		frame []byte
	}{
		{"ipv4-udp", corpusFrame(b, "ipv4-udp")},
		{"ipv4-tcp-options", corpusFrame(b, "ipv4-options-max-tcp")},
		{"ipv6-tcp-ext", corpusFrame(b, "ipv6-chain-tcp")},
		{"qinq-ipv4-tcp", corpusFrame(b, "qinq-88a8-ipv4-tcp")},
		{"qinq-ipv6-udp", corpusFrame(b, "qinq-9100-ipv6-udp")},
	}
	for _, f := range frames {
		b.Run(f.name, func(b *testing.B) {
			var p flows.Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(f.frame)))
			for b.Loop() {
				flows.Parse(f.frame, &p)
			}
			if p.Reason != flows.ReasonOK {
				b.Fatalf("reason %s", p.Reason)
			}
		})
	}
}

// BenchmarkParseMix parses the whole corpus round robin, so the branch
// predictor sees every kind of frame.
func BenchmarkParseMix(b *testing.B) {
	frames := corpus.Frames()
	var p flows.Packet
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		flows.Parse(frames[i].Frame, &p)
		if i++; i == len(frames) {
			i = 0
		}
	}
}

// BenchmarkParseHash is the worker's per-packet cost: parse, then the
// symmetric flow hash.
func BenchmarkParseHash(b *testing.B) {
	frame := corpusFrame(b, "ipv4-udp")
	var p flows.Packet
	var sink uint64
	b.ReportAllocs()
	for b.Loop() {
		flows.Parse(frame, &p)
		sink += p.Key.SymmetricHash()
	}
	_ = sink
}
