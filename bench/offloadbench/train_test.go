package offloadbench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// naiveSum is the 16-bit ones-complement sum of b, folded, by the book and
// independent of package offload.
func naiveSum(b []byte, s uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return s
}

// checkFrame checks a frame's checksums without package offload: the IPv4
// header sums to 0xffff, and so does the TCP segment with its
// pseudo-header.
func checkFrame(t *testing.T, what string, f []byte, p *flows.Packet) {
	t.Helper()
	l3, l4 := int(p.L3Off), int(p.L4Off)
	end := l3 + int(p.IPLen)
	var pseudo uint32
	if p.Family == 4 {
		if s := naiveSum(f[l3:l4], 0); s != 0xffff {
			t.Errorf("%s: IPv4 header sums to %#x", what, s)
		}
		pseudo = naiveSum(f[l3+12:l3+20], 0)
	} else {
		pseudo = naiveSum(f[l3+8:l3+40], 0)
	}
	pseudo += flows.ProtoTCP + uint32(end-l4)
	if s := naiveSum(f[l4:end], pseudo); s != 0xffff {
		t.Errorf("%s: TCP segment sums to %#x", what, s)
	}
}

// TestTrain: the train is what a Linux sender puts on a 1500 MTU, and
// nothing in it is left to chance: frame sizes, headers, sequence numbers,
// IPv4 IDs, payload and checksums, checked by hand.
func TestTrain(t *testing.T) {
	for _, f := range Families() {
		tr, err := newTrain(f, 100) // three 64 KB segments' worth
		if err != nil {
			t.Fatal(err)
		}
		if len(tr.frames) != 100 {
			t.Fatalf("%s: %d frames", f, len(tr.frames))
		}
		mss := MSS(f)
		if want := map[Family]int{IPv4: 1448, IPv6: 1428}[f]; mss != want {
			t.Errorf("%s: MSS %d, want %d", f, mss, want)
		}
		checkFrame(t, string(f)+" 64 KB segment", tr.big, &tr.bigPkt)
		if int(tr.bigPkt.PayloadLen) != SegsPerTSO*mss || int(tr.bigPkt.IPLen) > offload.MaxAggregateLen {
			t.Errorf("%s: 64 KB segment: IP length %d, payload %d", f, tr.bigPkt.IPLen, tr.bigPkt.PayloadLen)
		}
		for i, fr := range tr.frames {
			var p flows.Packet
			flows.Parse(fr, &p)
			what := fmt.Sprintf("%s frame %d", f, i)
			if len(fr) != 1514 || p.Reason != flows.ReasonOK || int(p.L3Off)+int(p.IPLen) != 1514 ||
				int(p.PayloadLen) != mss || int(p.L4Len) != TCPHeaderLen {
				t.Fatalf("%s %d: %d bytes, %+v", f, i, len(fr), p)
			}
			if p != tr.pkts[i] {
				t.Errorf("%s %d: stored parse differs", f, i)
			}
			checkFrame(t, what, fr, &p)
			tcp := p.TCP(fr)
			seq := uint32(firstSeq + i*mss)
			if tcp.Seq() != seq || tcp.Flags() != flows.TCPFlagACK || tcp.Ack() != ackNum {
				t.Errorf("%s %d: seq %d flags %#x ack %d, want seq %d, ACK only", f, i, tcp.Seq(), tcp.Flags(), tcp.Ack(), seq)
			}
			if o := tcp.Options(); len(o) != 12 || o[0] != 1 || o[1] != 1 || o[2] != 8 || o[3] != 10 {
				t.Errorf("%s %d: TCP options % x, want NOP, NOP, timestamps", f, i, o)
			}
			if f == IPv4 {
				if id := binary.BigEndian.Uint16(fr[p.L3Off+4:]); id != uint16(firstID+i) {
					t.Errorf("%s %d: IPv4 ID %d, want %d", f, i, id, firstID+i)
				}
			}
			want := make([]byte, mss)
			fill(want, seq)
			if !bytes.Equal(p.Payload(fr), want) {
				t.Errorf("%s %d: payload is not the stream's bytes %d..", f, i, seq)
			}
		}
	}
}

// TestGROOfTrain: GRO merges the 45 frames of one 64 KB segment back into
// exactly that segment (one aggregate), and a batch of 64 frames into
// aggregates of 45 (the 64 KB limit) and 19 (the end of the batch).
func TestGROOfTrain(t *testing.T) {
	for _, f := range Families() {
		tr, err := newTrain(f, SegsPerTSO)
		if err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		g, err := offload.NewGRO(offload.DefaultGROOptions())
		if err != nil {
			t.Fatal(err)
		}
		take := func() {
			for a := g.Next(); a != nil; a = g.Next() {
				got = append(got, a.AppendTo(nil))
			}
		}
		for i := range tr.frames {
			g.Receive(tr.frames[i], uint64(i), &tr.pkts[i])
			take()
		}
		g.Flush()
		take()
		if len(got) != 1 || !bytes.Equal(got[0], tr.big) {
			t.Errorf("%s: %d aggregates; want one equal to the 64 KB segment", f, len(got))
		}

		for _, mode := range []struct {
			name   string
			verify bool
			out    offload.CsumOut
		}{{ModeVerifyFull, true, offload.CsumFull}, {ModeTrustValidated, false, offload.CsumMarkValidated}} {
			tr64, err := newTrain(f, 64)
			if err != nil {
				t.Fatal(err)
			}
			s, err := newGRO(tr64, mode.name, mode.verify, mode.out)
			if err != nil {
				t.Fatal(err)
			}
			const batches = 10
			for range batches {
				s.runBatch()
			}
			st := &s.gro.Stats
			if st.Segments != batches*64 || st.Aggregates != batches*2 ||
				st.Flush[offload.FlushBySize] != batches || st.Flush[offload.FlushByBatchEnd] != batches {
				t.Errorf("%s %s: %d segments, %d aggregates, %d by size, %d by batch end; want %d, %d, %d, %d",
					f, mode.name, st.Segments, st.Aggregates, st.Flush[offload.FlushBySize], st.Flush[offload.FlushByBatchEnd],
					batches*64, batches*2, batches, batches)
			}
			if err := s.check(); err != nil {
				t.Error(err)
			}
			// restore put every head back.
			for i := range s.frames {
				if !bytes.Equal(s.frames[i], tr64.frames[i]) {
					t.Fatalf("%s %s: frame %d not restored after the batches", f, mode.name, i)
				}
			}
		}
	}
}

// TestGSOOfTrain: the GSO stage writes the train's frames, every time.
func TestGSOOfTrain(t *testing.T) {
	for _, f := range Families() {
		tr, err := newTrain(f, SegsPerTSO)
		if err != nil {
			t.Fatal(err)
		}
		s, err := newGSO(tr, ModeFull, offload.CsumFull)
		if err != nil {
			t.Fatal(err)
		}
		for round := range 3 {
			for i := range s.out {
				clear(s.out[i])
			}
			s.runBatch()
			if err := s.check(); err != nil {
				t.Fatal(err)
			}
			for i := range SegsPerTSO {
				if !bytes.Equal(s.out[i][:s.sizes[i]], tr.frames[i]) {
					t.Fatalf("%s round %d: frame %d differs from the train", f, round, i)
				}
			}
		}
		if s.gso.Stats.Segments != 3*SegsPerTSO || s.gso.Stats.Requests != 3 {
			t.Errorf("%s: %+v", f, s.gso.Stats)
		}

		// Partial: the same frames but the TCP checksum field, which
		// holds the pseudo-header sum.
		sp, err := newGSO(tr, ModePartial, offload.CsumPartial)
		if err != nil {
			t.Fatal(err)
		}
		sp.runBatch()
		for i := range SegsPerTSO {
			fr := sp.out[i][:sp.sizes[i]]
			var p flows.Packet
			flows.Parse(fr, &p)
			if !offload.CompletePartial(fr, &p) || !bytes.Equal(fr, tr.frames[i]) {
				t.Fatalf("%s partial: frame %d, completed, differs from the train", f, i)
			}
		}
	}
}
