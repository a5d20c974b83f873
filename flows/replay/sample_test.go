package replay

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/xnic/xnic/flows"
)

var update = flag.Bool("update", false, "rewrite testdata/sample.pcap from sampleFrames")

const samplePath = "testdata/sample.pcap"

// sampleFrames is a small mixed capture: two bulk flows (IPv4 at MSS
// 1448, IPv6 at 1428) interleaved, a pure ACK with Ethernet padding, ARP,
// UDP, a CHECKSUM_PARTIAL segment, a corrupted one, a malformed frame and
// a large TSO send with a partial checksum, as a sender's tcpdump shows
// it.
func sampleFrames() [][]byte {
	a := baseSeg(false)
	a.id = 1
	fa := train(a, repeat(16, 1448)...)
	fa[15].flags |= flows.TCPFlagPSH
	b := baseSeg(true)
	b.sport = 40001
	fb := train(b, repeat(16, 1428)...)
	ack := baseSeg(false)
	ack.sport, ack.dport, ack.pad = 5201, 40000, 6
	arp := make([]byte, 42) // who has 198.18.0.1? tell 198.18.0.2
	copy(arp, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(arp[6:], macA[:])
	binary.BigEndian.PutUint16(arp[12:], flows.EtherTypeARP)
	copy(arp[14:], []byte{0, 1, 8, 0, 6, 4, 0, 1})
	copy(arp[22:], macA[:])
	copy(arp[28:], src4[:])
	copy(arp[38:], dst4[:])
	udp := baseSeg(false)
	udp.udp, udp.sport, udp.dport, udp.payload = true, 53000, 53, fill(11, 40)
	part := baseSeg(false)
	part.sport, part.partial, part.payload = 40002, true, fill(12, 300)
	bad := baseSeg(true)
	bad.sport, bad.badL4, bad.payload = 40003, true, fill(13, 1428)
	tso := baseSeg(false)
	tso.sport, tso.partial, tso.payload = 40004, true, fill(14, 6000)
	tso.flags |= flows.TCPFlagPSH

	var fs [][]byte
	fs = append(fs, arp)
	fs = append(fs, frames(fa[:8]...)...)
	fs = append(fs, frames(fb[:8]...)...)
	fs = append(fs, frames(ack, udp)...)
	fs = append(fs, frames(fa[8:]...)...)
	fs = append(fs, frames(fb[8:]...)...)
	fs = append(fs, frames(part, bad, tso)...)
	return append(fs, malformedFrames()[0])
}

// TestSampleCapture: testdata/sample.pcap is what sampleFrames builds
// (go test -run TestSampleCapture -update rewrites it).
func TestSampleCapture(t *testing.T) {
	want := pcapOf(t, sampleFrames())
	if *update {
		if err := os.WriteFile(samplePath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from sampleFrames; run with -update", samplePath)
	}
}

// TestSampleReplay runs the sample file through the stages: GRO merges
// each bulk flow into one aggregate, GSO cuts them back into the frames
// they were, the checksum stage finds the sample's partial and bad sums.
func TestSampleReplay(t *testing.T) {
	in := sampleFrames()
	dir := t.TempDir()
	agg, back := filepath.Join(dir, "agg.pcap"), filepath.Join(dir, "back.pcap")
	rep, err := RunFile(context.Background(), samplePath, agg, optsFor(StageGRO))
	if err != nil {
		t.Fatal(err)
	}
	// 32 bulk segments become 2 aggregates; the other 7 frames pass. GRO
	// verifies full checksums: the two partial ones count as bad, as they
	// would on a veth with tx offload on.
	if rep.FramesIn != uint64(len(in)) || rep.PacketsOut != uint64(len(in)-32+2) || !rep.PayloadKept() ||
		rep.GRO.Merged != 30 || rep.Malformed != 1 || rep.GRO.BadTCP != 3 {
		t.Fatalf("gro: %+v %+v", rep, rep.GRO)
	}
	o := optsFor(StageGSO)
	o.MSS = 1448
	if _, err := RunFile(context.Background(), agg, back, o); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(back)
	if err != nil {
		t.Fatal(err)
	}
	out := datas(readPcap(t, raw))
	// The IPv4 flow comes back byte for byte at its MSS (the IPv6 one, at
	// 1428, would need --mss 1428).
	flowA := func(fs [][]byte) (sel [][]byte) {
		for _, f := range fs {
			var p flows.Packet
			flows.Parse(f, &p)
			if p.Reason == flows.ReasonOK && p.Key.SrcPort == 40000 {
				sel = append(sel, f)
			}
		}
		return sel
	}
	wa, ga := flowA(in), flowA(out)
	if len(ga) != len(wa) {
		t.Fatalf("flow A: %d frames back, want %d", len(ga), len(wa))
	}
	for i := range wa {
		if !bytes.Equal(ga[i], wa[i]) {
			t.Fatalf("flow A frame %d differs", i)
		}
	}
	rep, err = RunFile(context.Background(), samplePath, filepath.Join(dir, "csum.pcap"), optsFor(StageCsum))
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Csum; c.Partial != 2 || c.Completed != 2 || c.BadTCP != 1 || c.Unchecked != 2 {
		t.Fatalf("csum: %+v", c)
	}
}
