package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/xnic/xnic/flows"
)

// bufs returns n frame buffers of size sz.
func bufs(n, sz int) ([][]byte, []int) {
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, sz)
	}
	return out, make([]int, n)
}

func newGSO(t testing.TB, c CsumOut) *GSO {
	t.Helper()
	g, err := NewGSO(GSOOptions{CsumOut: c})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// large builds one big segment (a guest's TSO send) and its parse.
func large(t testing.TB, s seg, n int) ([]byte, flows.Packet) {
	t.Helper()
	s.payload = payloadOf(s.seq, n)
	f := s.frame()
	return f, parse(t, f)
}

// checkSegments checks GSO output against the large segment it came from.
func checkSegments(t *testing.T, src []byte, sp flows.Packet, mss int, fixedID bool, out [][]byte, sizes []int, n int) {
	t.Helper()
	pay := sp.Payload(src)
	if want := Segments(len(pay), mss); n != want {
		t.Fatalf("%d segments, want %d", n, want)
	}
	var got []byte
	srcTCP := sp.Proto == flows.ProtoTCP
	for i := range n {
		f := out[i][:sizes[i]]
		p := parse(t, f)
		if p.Reason != flows.ReasonOK || int(p.L3Off)+int(p.IPLen) != len(f) {
			t.Fatalf("segment %d: %v", i, p.Reason)
		}
		if int(p.PayloadLen) > mss {
			t.Fatalf("segment %d: payload %d > %d", i, p.PayloadLen, mss)
		}
		if i < n-1 && int(p.PayloadLen) != mss {
			t.Fatalf("segment %d: payload %d, want %d", i, p.PayloadLen, mss)
		}
		if !VerifyL4(f, &p) {
			t.Fatalf("segment %d: bad L4 checksum", i)
		}
		if p.Family == 4 {
			if !VerifyIPv4Header(f[p.L3Off:p.L4Off]) {
				t.Fatalf("segment %d: bad IPv4 header checksum", i)
			}
			id := binary.BigEndian.Uint16(f[p.L3Off+4:])
			want := binary.BigEndian.Uint16(src[sp.L3Off+4:])
			if !fixedID {
				want += uint16(i)
			}
			if id != want {
				t.Fatalf("segment %d: id %d, want %d", i, id, want)
			}
		}
		// Everything but lengths, IDs, checksums, seq and flags is Head's.
		if !bytes.Equal(f[:p.L3Off], src[:sp.L3Off]) {
			t.Fatalf("segment %d: L2 header differs", i)
		}
		if srcTCP {
			tcp := flows.TCP(f[p.L4Off:p.PayloadOff])
			stcp := flows.TCP(src[sp.L4Off:sp.PayloadOff])
			if tcp.Seq() != stcp.Seq()+uint32(len(got)) {
				t.Fatalf("segment %d: seq %d", i, tcp.Seq())
			}
			wantFl := stcp.Flags()
			if i != n-1 {
				wantFl &^= flows.TCPFlagPSH | flows.TCPFlagFIN
			}
			if i != 0 {
				wantFl &^= flows.TCPFlagCWR
			}
			if tcp.Flags() != wantFl {
				t.Fatalf("segment %d: flags %02x, want %02x", i, tcp.Flags(), wantFl)
			}
			if !bytes.Equal(tcp.Options(), stcp.Options()) || tcp.Ack() != stcp.Ack() || tcp.Window() != stcp.Window() {
				t.Fatalf("segment %d: TCP header differs", i)
			}
		} else if int(flows.UDP(f[p.L4Off:]).Length()) != int(p.PayloadLen)+8 {
			t.Fatalf("segment %d: UDP length", i)
		}
		got = append(got, p.Payload(f)...)
	}
	if !bytes.Equal(got, pay) {
		t.Fatalf("payload differs: %d vs %d bytes", len(got), len(pay))
	}
}

func TestGSOTCP(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, fixed := range []bool{false, true} {
			for _, tc := range []struct {
				n, mss int
				flags  uint8
			}{
				{65160, 1448, flows.TCPFlagACK | flows.TCPFlagPSH},
				{64000, 1448, flows.TCPFlagACK | flows.TCPFlagPSH | flows.TCPFlagFIN | flows.TCPFlagCWR | flows.TCPFlagECE},
				{1448, 1448, flows.TCPFlagACK | flows.TCPFlagCWR},
				{100, 1448, flows.TCPFlagACK},
				{0, 1448, flows.TCPFlagACK},
				{9999, 1, flows.TCPFlagACK},
				{3001, 1000, flows.TCPFlagACK | flows.TCPFlagPSH},
			} {
				s := baseSeg(v6)
				s.flags = tc.flags
				src, sp := large(t, s, tc.n)
				out, sizes := bufs(Segments(tc.n, tc.mss), 1600)
				g := newGSO(t, CsumFull)
				n, err := g.SegmentFrame(src, &sp, tc.mss, fixed, out, sizes)
				if err != nil {
					t.Fatalf("%+v: %v", tc, err)
				}
				checkSegments(t, src, sp, tc.mss, fixed, out, sizes, n)
				if g.Stats.Segments != uint64(n) || g.Stats.Requests != 1 {
					t.Fatalf("stats %+v", g.Stats)
				}
			}
		}
	}
}

// TestGSOChain: a payload chain with odd-length pieces gives the same
// frames as one buffer.
func TestGSOChain(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		src, sp := large(t, baseSeg(v6), 20000)
		g := newGSO(t, CsumFull)
		want, wsz := bufs(14, 1600)
		n, err := g.SegmentFrame(src, &sp, 1448, false, want, wsz)
		if err != nil {
			t.Fatal(err)
		}
		pay := sp.Payload(src)
		var chain [][]byte
		for i := 0; i < len(pay); {
			k := min(len(pay)-i, 1+(i*7)%977)
			chain = append(chain, pay[i:i+k])
			i += k
		}
		r := Request{Head: src[:sp.PayloadOff], L3Off: int(sp.L3Off), Payload: chain, GSOSize: 1448}
		out, sizes := bufs(14, 1600)
		m, err := g.Segment(&r, out, sizes)
		if err != nil || m != n {
			t.Fatalf("%d, %v", m, err)
		}
		for i := range n {
			if !bytes.Equal(out[i][:sizes[i]], want[i][:wsz[i]]) {
				t.Fatalf("segment %d differs", i)
			}
		}
	}
}

func TestGSOUDP(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, n := range []int{0, 1, 1200, 1201, 30000} {
			s := baseSeg(v6)
			s.udp = true
			src, sp := large(t, s, n)
			out, sizes := bufs(Segments(n, 1200), 1400)
			n2, err := newGSO(t, CsumFull).SegmentFrame(src, &sp, 1200, false, out, sizes)
			if err != nil {
				t.Fatal(err)
			}
			checkSegments(t, src, sp, 1200, false, out, sizes, n2)
		}
	}
}

func TestGSOPartial(t *testing.T) {
	for _, udp := range []bool{false, true} {
		s := baseSeg(true)
		s.udp = udp
		src, sp := large(t, s, 5000)
		out, sizes := bufs(4, 1600)
		n, err := newGSO(t, CsumPartial).SegmentFrame(src, &sp, 1448, false, out, sizes)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			f := out[i][:sizes[i]]
			p := parse(t, f)
			if VerifyL4(f, &p) {
				t.Fatal("partial checksum verifies as full")
			}
			if !CompletePartial(f, &p) || !VerifyL4(f, &p) {
				t.Fatalf("segment %d: partial does not complete", i)
			}
		}
	}
}

func TestGSOErrors(t *testing.T) {
	g := newGSO(t, CsumFull)
	src, sp := large(t, baseSeg(false), 3000)
	head := src[:sp.PayloadOff]
	pay := [][]byte{sp.Payload(src)}
	out, sizes := bufs(3, 1600)
	cases := []struct {
		name string
		r    Request
		out  [][]byte
		want error
	}{
		{"gso size 0", Request{Head: head, L3Off: 14, Payload: pay}, out, ErrGSOSize},
		{"too few buffers", Request{Head: head, L3Off: 14, Payload: pay, GSOSize: 1000}, out[:2], ErrShortBuffer},
		{"short buffer", Request{Head: head, L3Off: 14, Payload: pay, GSOSize: 1000}, [][]byte{out[0], out[1], out[2][:500]}, ErrShortBuffer},
		{"head too long", Request{Head: src[:sp.PayloadOff+1], L3Off: 14, Payload: pay, GSOSize: 1000}, out, ErrHeader},
		{"bad l3 offset", Request{Head: head, L3Off: 100, Payload: pay, GSOSize: 1000}, out, ErrHeader},
		{"not ip", Request{Head: head, L3Off: 0, Payload: pay, GSOSize: 1000}, out, ErrHeader},
		{"too big", Request{Head: head, L3Off: 14, Payload: [][]byte{make([]byte, 70000)}, GSOSize: 70000}, [][]byte{make([]byte, 71000)}, ErrTooBig},
	}
	for _, c := range cases {
		if _, err := g.Segment(&c.r, c.out, sizes); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	for _, s := range []seg{func() seg { s := baseSeg(false); s.frag = true; return s }(), func() seg { s := baseSeg(true); s.ext = true; return s }()} {
		f, p := large(t, s, 3000)
		if _, err := g.SegmentFrame(f, &p, 1000, false, out, sizes); !errors.Is(err, ErrUnsupported) {
			t.Errorf("frag=%v ext=%v: %v", s.frag, s.ext, err)
		}
	}
	if g.Stats.Errors != uint64(len(cases)+2) {
		t.Errorf("errors counted %d", g.Stats.Errors)
	}
	if _, err := NewGSO(GSOOptions{CsumOut: CsumMarkValidated}); !errors.Is(err, ErrOptions) {
		t.Error("mark-validated accepted for GSO")
	}
}

func TestGSOAllocs(t *testing.T) {
	src, sp := large(t, baseSeg(false), 65160)
	out, sizes := bufs(45, 1600)
	g := newGSO(t, CsumFull)
	if n := testing.AllocsPerRun(50, func() {
		if _, err := g.SegmentFrame(src, &sp, 1448, false, out, sizes); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocs per 64 KB", n)
	}
}
