package offload

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/xnic/xnic/flows"
)

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// same reports whether two folded sums are the same ones-complement value
// (0x0000 and 0xffff are both zero).
func sameSum(a, b uint16) bool {
	return a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
}

func TestSumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 600; n++ {
		b := randBytes(r, n)
		init := uint16(r.Uint32())
		got := Sum(b, init)
		want := refFold(refSum(b) + uint32(init))
		if !sameSum(got, want) {
			t.Fatalf("len %d: Sum %04x, reference %04x", n, got, want)
		}
	}
	for range 200 {
		n := r.IntN(70000)
		b := randBytes(r, n)
		if got, want := Sum(b, 0), refFold(refSum(b)); !sameSum(got, want) {
			t.Fatalf("len %d: Sum %04x, reference %04x", n, got, want)
		}
	}
	// All ones: the carries pile up.
	b := bytes.Repeat([]byte{0xff}, 4097)
	if got, want := Sum(b, 0xffff), refFold(refSum(b)+0xffff); !sameSum(got, want) {
		t.Fatalf("all ones: %04x vs %04x", got, want)
	}
}

func TestSumChainMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		var pieces [][]byte
		var all []byte
		for range r.IntN(6) {
			p := randBytes(r, r.IntN(40))
			pieces = append(pieces, p)
			all = append(all, p...)
		}
		if got, want := SumChain(pieces, 7), refFold(refSum(all)+7); !sameSum(got, want) {
			t.Fatalf("pieces %d: %04x vs %04x", len(pieces), got, want)
		}
	}
}

func TestFoldAndAdd(t *testing.T) {
	if Fold(0x1_0000_0000) != 1 || Fold(0xffff) != 0xffff || Fold(0x1fffe) != 0xffff {
		t.Fatal("Fold")
	}
	if Add(0xffff, 1) != 1 || Add(0x8000, 0x8000) != 1 {
		t.Fatal("Add")
	}
}

// TestIncrementalUpdates: RFC 1624 updates agree with recomputing the
// checksum of the changed data.
func TestIncrementalUpdates(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		b := randBytes(r, 4+2*r.IntN(40))
		check := ^Sum(b, 0)
		off := 2 * r.IntN(len(b)/2-1)
		var got uint16
		switch r.IntN(4) {
		case 0:
			old := binary.BigEndian.Uint16(b[off:])
			nw := uint16(r.Uint32())
			binary.BigEndian.PutUint16(b[off:], nw)
			got = Update16(check, old, nw)
		case 1:
			old := binary.BigEndian.Uint32(b[off:])
			nw := r.Uint32()
			binary.BigEndian.PutUint32(b[off:], nw)
			got = Update32(check, old, nw)
		case 2:
			old := binary.BigEndian.Uint16(b[off:])
			nw := uint16(r.IntN(65536))
			binary.BigEndian.PutUint16(b[off:], nw)
			got = UpdateLen(check, old, nw)
		default:
			n := 2 * (1 + r.IntN((len(b)-off)/2))
			old := bytes.Clone(b[off : off+n])
			copy(b[off:], randBytes(r, n))
			got = UpdateBytes(check, old, b[off:off+n])
		}
		want := ^Sum(b, 0)
		if !sameSum(got, want) {
			t.Fatalf("incremental %04x, recomputed %04x", got, want)
		}
		// The stored value verifies.
		if s := Sum(b, got); s != 0xffff {
			t.Fatalf("updated checksum does not verify: %04x", s)
		}
	}
}

func TestPseudoHeaders(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 1000 {
		var s4, d4 [4]byte
		var s6, d6 [16]byte
		copy(s4[:], randBytes(r, 4))
		copy(d4[:], randBytes(r, 4))
		copy(s6[:], randBytes(r, 16))
		copy(d6[:], randBytes(r, 16))
		n := uint16(r.Uint32())
		if got, want := PseudoIPv4(s4, d4, 6, n), refFold(refSum(s4[:])+refSum(d4[:])+6+uint32(n)); !sameSum(got, want) {
			t.Fatalf("v4 %04x vs %04x", got, want)
		}
		n6 := r.Uint32()
		want := refFold(refSum(s6[:]) + refSum(d6[:]) + 17 + n6>>16 + n6&0xffff)
		if got := PseudoIPv6(s6, d6, 17, n6); !sameSum(got, want) {
			t.Fatalf("v6 %04x vs %04x", got, want)
		}
	}
}

func TestIPv4HeaderChecksum(t *testing.T) {
	s := baseSeg(false)
	s.ipOpts = []byte{1, 1, 1, 0}
	s.payload = []byte("x")
	f := s.frame()
	p := parse(t, f)
	h := f[p.L3Off:p.L4Off]
	want := binary.BigEndian.Uint16(h[10:])
	if got := IPv4HeaderChecksum(h); got != want {
		t.Fatalf("IPv4HeaderChecksum %04x, builder %04x", got, want)
	}
	if !VerifyIPv4Header(h) {
		t.Fatal("good header does not verify")
	}
	h[8]--
	if VerifyIPv4Header(h) {
		t.Fatal("changed header verifies")
	}
	SetIPv4HeaderChecksum(h)
	if !VerifyIPv4Header(h) || binary.BigEndian.Uint16(h[10:]) != ^refFold(refSum(h[:10])+refSum(h[12:])) {
		t.Fatal("SetIPv4HeaderChecksum")
	}
}

func TestL4Checksums(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, v6 := range []bool{false, true} {
		for _, udp := range []bool{false, true} {
			for n := range 70 {
				s := baseSeg(v6)
				s.udp = udp
				s.payload = randBytes(r, n*23)
				s.ext = v6 && n%3 == 0
				f := s.frame()
				p := parse(t, f)
				if !VerifyL4(f, &p) {
					t.Fatalf("v6=%v udp=%v n=%d: good segment fails", v6, udp, n)
				}
				off := int(p.L4Off) + 16
				if udp {
					off = int(p.L4Off) + 6
				}
				orig := binary.BigEndian.Uint16(f[off:])
				// TX: compute from scratch.
				binary.BigEndian.PutUint16(f[off:], 0x1234)
				if VerifyL4(f, &p) {
					t.Fatal("bad checksum verifies")
				}
				if !SetL4Checksum(f, &p) || binary.BigEndian.Uint16(f[off:]) != orig {
					t.Fatalf("SetL4Checksum %04x, want %04x", binary.BigEndian.Uint16(f[off:]), orig)
				}
				// CHECKSUM_PARTIAL: the field holds the pseudo-header sum.
				if !SetL4Partial(f, &p) {
					t.Fatal("SetL4Partial")
				}
				ps, _ := PseudoSum(f, &p)
				if binary.BigEndian.Uint16(f[off:]) != ps {
					t.Fatal("partial field is not the pseudo-header sum")
				}
				if !CompletePartial(f, &p) || binary.BigEndian.Uint16(f[off:]) != orig || !VerifyL4(f, &p) {
					t.Fatalf("CompletePartial %04x, want %04x", binary.BigEndian.Uint16(f[off:]), orig)
				}
			}
		}
	}
}

func TestUDPZeroChecksum(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		s := baseSeg(v6)
		s.udp = true
		s.payload = []byte("hello")
		f := s.frame()
		p := parse(t, f)
		binary.BigEndian.PutUint16(f[p.L4Off+6:], 0)
		if got := VerifyL4(f, &p); got != !v6 {
			t.Fatalf("v6=%v: zero UDP checksum verify = %v", v6, got)
		}
	}
}

func TestCsumStats(t *testing.T) {
	var c CsumStats
	check := func(s seg, want bool) {
		t.Helper()
		f := s.frame()
		p := parse(t, f)
		if got := c.Verify(f, &p); got != want {
			t.Fatalf("Verify = %v, want %v", got, want)
		}
	}
	s := baseSeg(false)
	s.payload = []byte("abc")
	check(s, true)
	s.badIP = true
	check(s, false)
	s.badIP, s.badTCP = false, true
	check(s, false)
	s.udp = true
	check(s, false)
	s6 := baseSeg(true)
	s6.payload = []byte("abc")
	s6.badTCP = true
	check(s6, false)
	s6.frag = true // a fragment: the L4 checksum cannot be checked
	check(s6, true)
	if c.BadIPv4 != 1 || c.BadTCP != 2 || c.BadUDP != 1 {
		t.Fatalf("counters %+v", c)
	}
	var total CsumStats
	total.Merge(&c)
	total.Merge(&c)
	if total.BadTCP != 4 {
		t.Fatal("Merge")
	}
	// Not IP: nothing to check.
	var p flows.Packet
	flows.Parse([]byte{1, 2, 3}, &p)
	if !c.Verify([]byte{1, 2, 3}, &p) {
		t.Fatal("truncated frame fails")
	}
}

func TestChecksumAllocs(t *testing.T) {
	s := baseSeg(true)
	s.payload = make([]byte, 1448)
	f := s.frame()
	p := parse(t, f)
	var c CsumStats
	if n := testing.AllocsPerRun(100, func() {
		Sum(f, 0)
		c.Verify(f, &p)
		SetL4Checksum(f, &p)
		SetL4Partial(f, &p)
		CompletePartial(f, &p)
	}); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

// TestCopySum checks the copying sum, vector path included (from 256
// bytes), against the byte-by-byte sum and the copy against the source.
func TestCopySum(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	for n := range 2100 {
		src := randBytes(r, n)
		dst := make([]byte, n+5)
		s := copySumLE(dst, src)
		if !bytes.Equal(dst[:n], src) || Fold(s) != naiveSumLE(src) {
			t.Fatalf("len %d", n)
		}
	}
	src := bytes.Repeat([]byte{0xff}, 65536)
	dst := make([]byte, len(src))
	if s := copySumLE(dst, src); !bytes.Equal(dst, src) || Fold(s) != naiveSumLE(src) {
		t.Fatal("64 KB of ones")
	}
}

// naiveSumLE is the ones'-complement sum of b as little-endian 16-bit words,
// an odd last byte as the low byte of a word, folded.
func naiveSumLE(b []byte) uint16 {
	var s uint64 // 64 bits: a uint32 overflows past 128 KB of 0xffff words
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i]) | uint64(b[i+1])<<8
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1])
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// TestSumLEVectorAndScalarAgree checks the checksum loop, vector path
// included, against a byte-by-byte sum for every length up to 2 KB plus
// large ones, at odd and even start offsets, on random and all-0xff data
// (the worst case for carries).
func TestSumLEVectorAndScalarAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	buf := make([]byte, 70004)
	for _, fill := range []string{"random", "ones"} {
		for i := range buf {
			if fill == "random" {
				buf[i] = byte(rng.Uint32())
			} else {
				buf[i] = 0xff
			}
		}
		lengths := []int{65535, 65536, 69999}
		for n := 0; n <= 2048; n++ {
			lengths = append(lengths, n)
		}
		for _, n := range lengths {
			for _, off := range []int{0, 1, 3} {
				b := buf[off : off+n]
				if got, want := Fold(sumLE(b)), naiveSumLE(b); got != want {
					t.Fatalf("%s data, %d bytes at offset %d: sum %#04x, want %#04x", fill, n, off, got, want)
				}
			}
		}
	}
}

// TestSumLEExtremesAndChunks: words at both ends of the vector loop's
// signed lanes (all 0x0000 and all 0xffff, and alternating), over buffers
// longer than maxVectorChunk so the chunking runs, for sumLE and copySumLE.
func TestSumLEExtremesAndChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 29))
	for _, fill := range []string{"zeros", "ones", "alternating", "random"} {
		buf := make([]byte, 3*maxVectorChunk+777)
		for i := range buf {
			switch fill {
			case "ones":
				buf[i] = 0xff
			case "alternating":
				if i/2%2 == 0 {
					buf[i] = 0xff
				}
			case "random":
				buf[i] = byte(rng.Uint32())
			}
		}
		for _, n := range []int{256, 4096, maxVectorChunk - 64, maxVectorChunk, maxVectorChunk + 64, len(buf)} {
			b := buf[:n]
			want := naiveSumLE(b)
			if got := Fold(sumLE(b)); got != want {
				t.Errorf("%s, %d bytes: sumLE %#04x, want %#04x", fill, n, got, want)
			}
			dst := make([]byte, n)
			if got := Fold(copySumLE(dst, b)); got != want || !bytes.Equal(dst, b) {
				t.Errorf("%s, %d bytes: copySumLE %#04x (copy equal %v), want %#04x", fill, n, got, bytes.Equal(dst, b), want)
			}
		}
	}
}
