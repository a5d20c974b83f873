package offload

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/xnic/xnic/flows"
)

// byteSource is a rand.Source that reads the fuzzer's bytes, so that every
// choice the generators make is the fuzzer's. Once they run out it goes on
// with splitmix64: a constant would stall rand's rejection sampling.
type byteSource struct {
	b []byte
	n uint64
}

func (s *byteSource) Uint64() uint64 {
	if len(s.b) >= 8 {
		x := binary.LittleEndian.Uint64(s.b)
		s.b = s.b[8:]
		return x
	}
	s.b = nil
	s.n += 0x9e3779b97f4a7c15
	z := s.n
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// mutatedFrames takes a valid train and changes header bytes where the
// fuzzer says, fixing the checksums up or not, so that odd headers reach
// the merge rules and not only the checksum check.
func mutatedFrames(r *rand.Rand, n int) [][]byte {
	base := baseSeg(r.IntN(2) == 1)
	if r.IntN(2) == 0 {
		base.opts = nil
	}
	segs := train(base, repeat(n, 1+r.IntN(300)))
	out := frames(segs)
	for _, f := range out {
		for range r.IntN(3) {
			pos := r.IntN(min(len(f), 80))
			f[pos] ^= byte(r.Uint32())
		}
		if r.IntN(4) != 0 {
			var p flows.Packet
			flows.Parse(f, &p)
			if p.Family == 4 && p.L3Len >= 20 && int(p.L3Off+p.L3Len) <= len(f) {
				SetIPv4HeaderChecksum(f[p.L3Off : p.L3Off+p.L3Len])
			}
			SetL4Checksum(f, &p)
		}
	}
	return out
}

func FuzzGRO(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{1, 7, 7, 7, 7, 7, 7, 7, 7})
	f.Add(bytes.Repeat([]byte{0x55, 0xaa, 3}, 200))
	f.Add(bytes.Repeat([]byte{2, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}, 40))
	f.Add(bytes.Repeat([]byte{0xff, 0x10, 0x80, 0x01}, 300))
	f.Add(bytes.Repeat([]byte{0x10, 0x10, 0x80, 0x01}, 300))
	f.Add(bytes.Repeat([]byte{0x11, 2, 9, 0, 0, 0, 1, 0}, 80))
	seedR := rand.New(rand.NewPCG(17, 18))
	for range 8 {
		f.Add(randBytes(seedR, 64+seedR.IntN(2000)))
	}
	gso := newGSO(f, CsumFull)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		mode := data[0]
		r := rand.New(&byteSource{b: data[1:]})
		n := 1 + r.IntN(200)
		var in [][]byte
		var fl []bool
		if mode&1 == 0 {
			in, fl = arbitraryTrain(r, n)
		} else {
			in = mutatedFrames(r, n)
			fl = make([]bool, len(in))
			for i := range fl {
				fl[i] = r.IntN(16) == 0
			}
		}
		opts := DefaultGROOptions()
		if mode&2 != 0 {
			opts.Buckets, opts.FlowsPerBucket = 1, 1+r.IntN(3)
		}
		if mode&4 != 0 {
			opts.MaxSegs = 1 + r.IntN(70)
		}
		if mode&8 != 0 {
			opts.CsumOut = CsumPartial
		}
		rt := gso
		if mode&16 != 0 {
			// Runs of ACKs deliver as their last ACK: every frame once, in
			// order, the payloads kept, but no GSO round trip.
			opts.CoalesceAcks = true
			rt = nil
		}
		h := newHarness(t, opts)
		for i, f := range in {
			h.feed(f)
			if fl[i] {
				h.flush()
			}
		}
		h.flush()
		if opts.CsumOut == CsumPartial {
			// Complete the partial sums so that the checks below apply.
			for i := range h.out {
				x := &h.out[i]
				if x.flags&AggCsumPartial != 0 {
					p := parse(t, x.bytes)
					CompletePartial(x.bytes, &p)
				}
			}
		}
		checkPreserved(t, h, in, rt)
	})
}

func FuzzGSO(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{1, 0x18, 0xff, 0xff, 0xa8, 0x05, 3, 1, 2, 3})
	f.Add([]byte{2, 0x11, 0x00, 0x10, 0x01, 0x00, 0, 0})
	f.Add([]byte{3, 0x99, 0x12, 0x34, 0x00, 0x02, 1, 200, 100, 50})
	f.Add(bytes.Repeat([]byte{0xf0, 0x0f}, 64))
	gso := newGSO(f, CsumFull)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := rand.New(&byteSource{b: data})
		s := baseSeg(r.IntN(2) == 1)
		s.udp = r.IntN(4) == 0
		s.flags = uint8(r.Uint32()) &^ (flows.TCPFlagSYN | flows.TCPFlagRST)
		if r.IntN(2) == 0 {
			s.flags = flows.TCPFlagACK | uint8(r.IntN(2))*flows.TCPFlagPSH
		}
		s.opts = make([]byte, 4*r.IntN(11))
		for i := range s.opts {
			s.opts[i] = 1 // NOPs
		}
		s.seq = r.Uint32()
		s.id = uint16(r.Uint32())
		hdr := 14 + 40 + 60
		total := r.IntN(65535 - hdr + 1)
		mss := 1 + r.IntN(2000)
		fixed := r.IntN(2) == 0
		src, sp := large(t, s, total)
		if sp.Reason != flows.ReasonOK {
			t.Fatalf("builder: %v", sp.Reason)
		}
		pay := sp.Payload(src)
		var chain [][]byte
		for i := 0; i < len(pay); {
			k := min(len(pay)-i, 1+r.IntN(3000))
			chain = append(chain, pay[i:i+k])
			i += k
		}
		req := Request{Head: src[:sp.PayloadOff], L3Off: int(sp.L3Off), Payload: chain, GSOSize: mss, FixedID: fixed}
		nseg := Segments(total, mss)
		out, sizes := bufs(nseg, int(sp.PayloadOff)+mss)
		n, err := gso.Segment(&req, out, sizes)
		if err != nil {
			t.Fatalf("total %d mss %d: %v", total, mss, err)
		}
		checkSegments(t, src, sp, mss, fixed, out, sizes, n)

		// GRO(GSO(x)) is x when the rules let it merge everything.
		if s.udp || s.flags&(flows.TCPFlagURG|flows.TCPFlagCWR) != 0 || total == 0 || n > 64 {
			return
		}
		h := newHarness(t, DefaultGROOptions())
		for i := range n {
			h.feed(out[i][:sizes[i]])
		}
		h.flush()
		if len(h.out) != 1 || !sameFrame(h.out[0].bytes, src) {
			t.Fatalf("total %d mss %d: %d aggregates back", total, mss, len(h.out))
		}
	})
}
