package qos

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// ipv4Sum returns the one's complement sum of an IPv4 header, checksum
// included: 0xffff when the checksum is valid.
func ipv4Sum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// ipv4Frame returns an Ethernet frame with a random IPv4 header (options
// included at random) of the given ECN and a valid checksum.
func ipv4Frame(r *rand.Rand, ecn byte) []byte {
	ihl := 5 + r.IntN(11)
	f := make([]byte, 14+ihl*4+8)
	for i := range f {
		f[i] = byte(r.Uint32())
	}
	h := f[14 : 14+ihl*4]
	h[0] = 0x40 | byte(ihl)
	h[1] = h[1]&^3 | ecn
	h[10], h[11] = 0, 0
	c := ^ipv4Sum(h)
	h[10], h[11] = byte(c>>8), byte(c)
	return f
}

func TestMarkCEIPv4(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for i := range 20_000 {
		ecn := byte(i % 4)
		f := ipv4Frame(r, ecn)
		orig := bytes.Clone(f)
		h := f[14:]
		ok := MarkCE(f, 14)
		if ECNCapable(orig, 14) != (ecn != 0) {
			t.Fatalf("ECNCapable wrong for ECN %d", ecn)
		}
		if ecn == 0 {
			if ok || !bytes.Equal(f, orig) {
				t.Fatalf("Not-ECT packet: ok %v, changed %v", ok, !bytes.Equal(f, orig))
			}
			continue
		}
		if !ok || h[1]&3 != 3 {
			t.Fatalf("ECN %d: ok %v, ECN now %d", ecn, ok, h[1]&3)
		}
		if h[1]>>2 != orig[15]>>2 {
			t.Fatal("DSCP changed")
		}
		if s := ipv4Sum(h[:int(h[0]&0xf)*4]); s != 0xffff {
			t.Fatalf("ECN %d: checksum invalid after marking (sum %#x)", ecn, s)
		}
		// Only the TOS byte and the checksum may change.
		for j := range f {
			if f[j] != orig[j] && j != 15 && j != 24 && j != 25 {
				t.Fatalf("byte %d changed", j)
			}
		}
		if ecn == 3 && !bytes.Equal(f, orig) {
			t.Fatal("a CE packet changed")
		}
	}
}

func TestMarkCEIPv6(t *testing.T) {
	for ecn := range byte(4) {
		f := make([]byte, 14+40)
		f[14] = 0x6a                 // version 6, traffic class high nibble 0xa
		f[15] = 0x80 | ecn<<4 | 0x05 // TC low nibble: DSCP bits 0b10 and ECN; flow label 0x5...
		f[16], f[17] = 0x12, 0x34
		orig := bytes.Clone(f)
		ok := MarkCE(f, 14)
		tc := f[14]<<4 | f[15]>>4
		switch {
		case ecn == 0 && (ok || !bytes.Equal(f, orig)):
			t.Fatalf("Not-ECT IPv6 changed or reported marked")
		case ecn != 0 && (!ok || tc&3 != 3):
			t.Fatalf("ECN %d: ok %v, traffic class %#x", ecn, ok, tc)
		case ecn != 0 && (tc>>2 != (orig[14]<<4|orig[15]>>4)>>2 || f[15]&0xf != 5 || f[14] != 0x6a):
			t.Fatalf("ECN %d: more than ECN changed: % x", ecn, f[14:18])
		}
	}
}

func TestMarkCEMalformed(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	good := ipv4Frame(r, 2)
	for _, c := range []struct {
		f   []byte
		off int
	}{
		{nil, 0},
		{good, -1},
		{good, len(good)},
		{good[:14+19], 14},             // short IPv4
		{append([]byte{0x45}, 0x2), 0}, // one byte past the version
		{make([]byte, 39), 0},
		{append([]byte{0x60, 0x10}, make([]byte, 37)...), 0}, // IPv6, 39 bytes
		{append([]byte{0x42, 0x02}, make([]byte, 30)...), 0}, // IHL 2
		{append([]byte{0x55, 0x02}, make([]byte, 30)...), 0}, // version 5
	} {
		orig := bytes.Clone(c.f)
		if MarkCE(c.f, c.off) || ECNCapable(c.f, c.off) || !bytes.Equal(orig, c.f) {
			t.Errorf("malformed % x at %d: marked or changed", orig, c.off)
		}
	}
}

func FuzzMarkCE(f *testing.F) {
	r := rand.New(rand.NewPCG(6, 6))
	for ecn := range byte(4) {
		f.Add(ipv4Frame(r, ecn), 14)
	}
	f.Add(append([]byte{0x60, 0x10}, make([]byte, 38)...), 0)
	f.Add([]byte{0x45}, 0)
	f.Fuzz(func(t *testing.T, frame []byte, off int) {
		orig := bytes.Clone(frame)
		ect := ECNCapable(frame, off)
		ok := MarkCE(frame, off)
		if ok != ect {
			t.Fatalf("MarkCE %v but ECNCapable %v", ok, ect)
		}
		if !ok {
			if !bytes.Equal(frame, orig) {
				t.Fatal("changed a frame it did not mark")
			}
			return
		}
		if frame[off]>>4 == 4 {
			ihl := int(frame[off]&0xf) * 4
			if frame[off+1]&3 != 3 || frame[off+1]>>2 != orig[off+1]>>2 {
				t.Fatalf("IPv4 TOS %#x from %#x", frame[off+1], orig[off+1])
			}
			valid := ipv4Sum(orig[off:off+ihl]) == 0xffff
			if valid && ipv4Sum(frame[off:off+ihl]) != 0xffff {
				t.Fatal("a valid IPv4 checksum became invalid")
			}
			for i := range frame {
				if frame[i] != orig[i] && i != off+1 && i != off+10 && i != off+11 {
					t.Fatalf("byte %d changed", i)
				}
			}
			return
		}
		if (frame[off+1]>>4)&3 != 3 {
			t.Fatal("IPv6 ECN not CE")
		}
		for i := range frame {
			if frame[i] != orig[i] && (i != off+1 || (frame[i]^orig[i])&^0x30 != 0) {
				t.Fatalf("byte %d changed beyond ECN", i)
			}
		}
	})
}
