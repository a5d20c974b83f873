package replay

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"io"
	"runtime/metrics"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/xnic/xnic/flows"
)

// encodeFrames packs frames as 2-byte lengths and bytes, the fuzz input.
func encodeFrames(fs [][]byte) []byte {
	var b []byte
	for _, f := range fs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

func decodeFrames(b []byte) [][]byte {
	var fs [][]byte
	for len(b) >= 2 {
		n := min(int(binary.BigEndian.Uint16(b)), len(b)-2)
		fs = append(fs, b[2:2+n])
		b = b[2+n:]
	}
	return fs
}

// seedTrains are the fuzz seeds: trains, mixed and broken frames. They
// are kept short (each segment a few hundred bytes, one frame just over
// the MTU for GSO to cut), because every input the fuzzer finds that adds
// coverage is minimized, in time that grows with the square of its
// length, and its executions are only counted once that is done.
func seedTrains() [][][]byte {
	bulk := frames(train(baseSeg(false), repeat(6, 200)...)...)
	v6 := train(baseSeg(true), 180, 180, 180, 60)
	v6[3].flags |= flows.TCPFlagPSH
	big := baseSeg(false)
	big.payload = fill(7, 1500)
	bigUDP := baseSeg(true)
	bigUDP.udp, bigUDP.payload = true, fill(8, 1500)
	part := baseSeg(false)
	part.partial, part.payload = true, fill(9, 10)
	bad := baseSeg(true)
	bad.badL4, bad.payload = true, fill(10, 200)
	ack := baseSeg(false)
	ack.pad = 6
	mixed := append(frames(big, bigUDP, part, bad, ack), malformedFrames()...)
	return [][][]byte{bulk, frames(v6...), mixed, append(bulk[:3:3], mixed...)}
}

// readSeedFrames are the frames of FuzzReadCapture's seed files: what
// matters there is the file around them, so they are few and short.
func readSeedFrames() [][]byte {
	part := baseSeg(false)
	part.partial, part.payload = true, fill(9, 10)
	fs := frames(train(baseSeg(false), 40, 40)...)
	return append(fs, part.frame(), hostileFrame(), malformedFrames()[2])
}

// FuzzReplay runs arbitrary frames through every stage: no panic, every
// frame accounted for, payload kept, the output a readable pcap.
func FuzzReplay(f *testing.F) {
	for _, s := range seedTrains() {
		f.Add(encodeFrames(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := decodeFrames(data)
		file := pcapOf(t, fs)
		var malformed, bytesIn uint64
		for _, fr := range fs {
			var p flows.Packet
			flows.Parse(fr, &p)
			if p.Reason.Malformed() {
				malformed++
			}
			bytesIn += uint64(len(fr))
		}
		gsoSmall := optsFor(StageGSO)
		gsoSmall.MSS, gsoSmall.UDPGSO, gsoSmall.Verify, gsoSmall.FixedID = 100, true, false, true
		groSmall := optsFor(StageGRO)
		groSmall.BatchSize, groSmall.MaxSegs, groSmall.Verify, groSmall.CsumPartial = 3, 2, false, true
		csumFix := optsFor(StageCsum)
		csumFix.Fix = true
		for _, o := range []Options{optsFor(StageGRO), groSmall, optsFor(StageGSO), gsoSmall, optsFor(StageCsum), csumFix} {
			var out bytes.Buffer
			rep, err := Run(context.Background(), bytes.NewReader(file), &out, o)
			if err != nil {
				t.Fatalf("%v: %v", o.Stage, err)
			}
			if rep.FramesIn != uint64(len(fs)) || rep.BytesIn != bytesIn || rep.Malformed != malformed {
				t.Fatalf("%v: frames %d/%d bytes %d/%d malformed %d/%d", o.Stage,
					rep.FramesIn, len(fs), rep.BytesIn, bytesIn, rep.Malformed, malformed)
			}
			if !rep.PayloadKept() {
				t.Fatalf("%v: payload %d in, %d out", o.Stage, rep.PayloadIn, rep.PayloadOut)
			}
			recs := readPcap(t, out.Bytes())
			var bytesOut uint64
			for _, r := range recs {
				bytesOut += uint64(len(r.data))
			}
			if uint64(len(recs)) != rep.PacketsOut || bytesOut != rep.BytesOut {
				t.Fatalf("%v: %d packets (%d bytes) in the file, report %d (%d)", o.Stage,
					len(recs), bytesOut, rep.PacketsOut, rep.BytesOut)
			}
			switch o.Stage {
			case StageGRO:
				if rep.PacketsOut > rep.FramesIn || rep.BytesOut > rep.BytesIn ||
					(rep.PacketsOut == rep.FramesIn && rep.BytesOut != rep.BytesIn) {
					t.Fatalf("gro: %d frames (%d bytes) became %d (%d)", rep.FramesIn, rep.BytesIn, rep.PacketsOut, rep.BytesOut)
				}
			case StageGSO:
				g := rep.GSO
				if rep.PacketsOut != rep.FramesIn-g.Segmented+g.Segments {
					t.Fatalf("gso: %d frames, %d segmented into %d, %d out", rep.FramesIn, g.Segmented, g.Segments, rep.PacketsOut)
				}
				if g.Segmented == 0 && rep.BytesOut != rep.BytesIn {
					t.Fatalf("gso: nothing segmented but %d bytes became %d", rep.BytesIn, rep.BytesOut)
				}
			case StageCsum:
				c := rep.Csum
				if rep.PacketsOut != rep.FramesIn || rep.BytesOut != rep.BytesIn ||
					c.Good+c.Partial+c.Bad+c.Unchecked != rep.FramesIn {
					t.Fatalf("csum: %d frames, %d out, %+v", rep.FramesIn, rep.PacketsOut, c)
				}
			}
		}
	})
}

// fuzzAllocLimit bounds what one replay of any input may allocate: the
// readers' buffers, at most MaxSnaplen of record data, gzip's state.
const fuzzAllocLimit = 8 << 20

// heapAllocs is the bytes allocated so far (runtime/metrics: cheap, no
// stop of the world).
func heapAllocs() uint64 {
	s := [1]metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s[:])
	return s[0].Value.Uint64()
}

// FuzzReadCapture feeds arbitrary file bytes to the reader: an error or a
// replay, never a panic, and never more than fuzzAllocLimit allocated
// whatever the file says its lengths are. The hostile captures of
// TestHostileCaptures are seeds.
func FuzzReadCapture(f *testing.F) {
	fs := readSeedFrames()
	pc := pcapOf(f, fs)
	f.Add(pc)
	var ng bytes.Buffer
	if w, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeEthernet); err == nil {
		for i, fr := range fs {
			w.WritePacket(gopacket.CaptureInfo{Timestamp: stamp(i), CaptureLength: len(fr), Length: len(fr)}, fr)
		}
		w.Flush()
	}
	f.Add(ng.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(pc)
	zw.Close()
	f.Add(gz.Bytes())
	f.Add(pcapLink(f, layers.LinkTypeLinuxSLL, cooked(fs[:2], false)))
	for _, h := range hostileCaptures(f) {
		f.Add(h.file)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		before := heapAllocs()
		rep, err := Run(context.Background(), bytes.NewReader(data), io.Discard, optsFor(StageCsum))
		if n := heapAllocs() - before; n > fuzzAllocLimit {
			t.Fatalf("a %d-byte input allocated %d bytes", len(data), n)
		}
		if err == nil && rep.PacketsOut != rep.FramesIn {
			t.Fatalf("csum: %d frames in, %d out", rep.FramesIn, rep.PacketsOut)
		}
	})
}
