package replay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/xnic/xnic/flows"
)

// ngFile builds a pcapng file block by block.
type ngFile struct {
	o binary.AppendByteOrder
	b []byte
}

func newNg(o binary.AppendByteOrder) *ngFile { return (&ngFile{o: o}).shb() }

// raw appends a block with the lengths given, the body as it is.
func (f *ngFile) raw(typ, length uint32, body []byte, trailer uint32) *ngFile {
	f.b = f.o.AppendUint32(f.b, typ)
	f.b = f.o.AppendUint32(f.b, length)
	f.b = append(f.b, body...)
	f.b = f.o.AppendUint32(f.b, trailer)
	return f
}

// block appends a well-formed block: the body padded, both lengths right.
func (f *ngFile) block(typ uint32, body []byte) *ngFile {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	return f.raw(typ, n, body, n)
}

func (f *ngFile) shb() *ngFile {
	b := f.o.AppendUint32(nil, ngByteOrderMagic)
	b = f.o.AppendUint16(b, 1)
	b = f.o.AppendUint16(b, 0)
	b = f.o.AppendUint64(b, ^uint64(0)) // section length unknown
	return f.block(ngSHB, b)
}

// option is a pcapng option: code and value.
type option struct {
	code  uint16
	value []byte
}

func (f *ngFile) options(b []byte, opts []option) []byte {
	for _, o := range opts {
		b = f.o.AppendUint16(b, o.code)
		b = f.o.AppendUint16(b, uint16(len(o.value)))
		b = append(b, o.value...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	if len(opts) > 0 {
		b = append(b, 0, 0, 0, 0)
	}
	return b
}

func (f *ngFile) idb(link layers.LinkType, snaplen uint32, opts ...option) *ngFile {
	b := f.o.AppendUint16(nil, uint16(link))
	b = f.o.AppendUint16(b, 0)
	b = f.o.AppendUint32(b, snaplen)
	return f.block(ngIDB, f.options(b, opts))
}

// epbBody is an enhanced packet block's body, captured length as given.
func (f *ngFile) epbBody(iface uint32, ts uint64, capLen uint32, data []byte, opts ...option) []byte {
	b := f.o.AppendUint32(nil, iface)
	b = f.o.AppendUint32(b, uint32(ts>>32))
	b = f.o.AppendUint32(b, uint32(ts))
	b = f.o.AppendUint32(b, capLen)
	b = f.o.AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return f.options(b, opts)
}

func (f *ngFile) epb(iface uint32, ts uint64, data []byte, opts ...option) *ngFile {
	return f.block(ngEPB, f.epbBody(iface, ts, uint32(len(data)), data, opts...))
}

func (f *ngFile) spb(orig uint32, data []byte) *ngFile {
	return f.block(ngSPB, append(f.o.AppendUint32(nil, orig), data...))
}

func (f *ngFile) opb(iface uint16, ts uint64, data []byte) *ngFile {
	b := f.o.AppendUint16(nil, iface)
	b = f.o.AppendUint16(b, 0) // drops
	b = f.o.AppendUint32(b, uint32(ts>>32))
	b = f.o.AppendUint32(b, uint32(ts))
	b = f.o.AppendUint32(b, uint32(len(data)))
	b = f.o.AppendUint32(b, uint32(len(data)))
	return f.block(ngOPB, append(b, data...))
}

var le = binary.LittleEndian

// hostileFrame is the record the hostile files carry: an ARP request
// padded to Ethernet's 60-byte minimum.
func hostileFrame() []byte {
	f := make([]byte, 60)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:], macA[:])
	binary.BigEndian.PutUint16(f[12:], flows.EtherTypeARP)
	copy(f[14:], []byte{0, 1, 8, 0, 6, 4, 0, 1})
	copy(f[22:], macA[:])
	copy(f[28:], src4[:])
	copy(f[38:], dst4[:])
	return f
}

// hostile is a capture built to make a reader allocate, loop or panic,
// and what a replay of it must do: fail with ErrFormat naming msg, or
// replay frames frames (with the tail cut short if truncated).
type hostile struct {
	name      string
	file      []byte
	msg       string // the error names this; "" for a replay that succeeds
	frames    uint64
	truncated bool
}

func hostileCaptures(tb testing.TB) []hostile {
	fr := hostileFrame()
	// ok is a section and an Ethernet interface: 48 bytes, so the next
	// block starts at 48 and, after one packet (92 bytes), at 140.
	ok := func() *ngFile { return newNg(le).idb(layers.LinkTypeEthernet, 0) }
	var hs []hostile
	add := func(name string, file []byte, msg string, frames uint64, truncated bool) {
		hs = append(hs, hostile{name, file, msg, frames, truncated})
	}
	// body is n bytes of a block body: a section header's starts with its
	// byte-order magic.
	body := func(typ uint32, n int) []byte {
		b := make([]byte, n)
		if typ == ngSHB {
			le.PutUint32(b, ngByteOrderMagic)
		}
		return b
	}

	// Issue 15: a 140-byte file whose interface announces a 4 GB snap
	// length; pcapgo sized its record buffer by it. The snap length is
	// now clamped and never sizes anything.
	issue := newNg(le).idb(layers.LinkTypeEthernet, 0xfffff000).epb(0, 1, fr).b
	if len(issue) != 140 {
		tb.Fatalf("the issue's file is 140 bytes, not %d", len(issue))
	}
	add("idb snaplen 0xfffff000", issue, "", 1, false)
	add("idb snaplen 0xffffffff, simple packet", newNg(le).idb(layers.LinkTypeEthernet, 0xffffffff).spb(0xffffffff, fr).b, "", 1, false)

	// Block lengths: all ones, not a multiple of 4, under the block's
	// fields, over the limit; a trailer that disagrees.
	for _, typ := range []uint32{ngSHB, ngIDB, ngEPB, ngSPB, ngOPB, 4, 5, 10, 0xbad} {
		name := ngBlockName(typ)
		f := ok().epb(0, 1, fr).raw(typ, 0xffffffff, body(typ, 20), 0xffffffff)
		add(name+" of length 0xffffffff", f.b, "total length 4294967295 at offset 144: not a multiple of 4", 1, false)
		f = ok().epb(0, 1, fr).raw(typ, 62, body(typ, 50), 62)
		add(name+" of length 62", f.b, "total length 62 at offset 144: not a multiple of 4", 1, false)
	}
	for typ, least := range map[uint32]int{ngSHB: ngSHBMin, ngIDB: ngIDBMin, ngEPB: ngEPBMin, ngSPB: ngSPBMin, ngOPB: ngOPBMin} {
		name := ngBlockName(typ)
		short := uint32(least - 4)
		f := ok().epb(0, 1, fr).raw(typ, short, body(typ, least-16), short)
		add(fmt.Sprintf("%s of length %d", name, short), f.b,
			fmt.Sprintf("total length %d at offset 144: under the %d bytes of its fields", short, least), 1, false)
		f = ok().epb(0, 1, fr).raw(typ, 0xfffffff0, body(typ, 64), 0xfffffff0)
		add(name+" of length 0xfffffff0", f.b, "total length 4294967280 at offset 144: over the 393248-byte limit", 1, false)
	}
	// A block of a type the reader skips may be long: it streams by, and
	// past the end of the file it is a cut tail. (pcapgo allocated the
	// secrets length of a decryption secrets block.)
	for _, typ := range []uint32{4, 5, 10, 0xbad, 0x40000bad} {
		secrets := le.AppendUint32(le.AppendUint32(nil, 0x544c534b), 0xffffffff) // TLS key log, 4 GB
		f := ok().epb(0, 1, fr).raw(typ, 0xfffffff0, secrets, 0)
		add(ngBlockName(typ)+" of 4 GB, skipped", f.b, "", 1, true)
	}
	f := ok().epb(0, 1, fr)
	n := uint32(ngEPBMin + len(fr))
	f.raw(ngEPB, n, f.epbBody(0, 2, uint32(len(fr)), fr), 999)
	add("trailer differs", f.b, "trailing total length 999 at offset 228: the block at offset 140 began with 92", 1, false)

	// Record sizes: captured lengths over the limit, over the block.
	add("captured length 0xffffffff", ok().block(ngEPB, ok().epbBody(0, 1, 0xffffffff, fr)).b,
		"read record 1: pcapng enhanced packet block: captured length 4294967295 at offset 68: over the 262144-byte limit", 0, false)
	add("captured length past the block", ok().block(ngEPB, ok().epbBody(0, 1, 1000, fr)).b,
		"captured length 1000 at offset 68: over the 60 bytes the block holds", 0, false)
	add("simple packet longer than its block", ok().spb(100000, fr).b, "", 1, false)
	add("missing interface", ok().epb(7, 1, fr).b, "interface 7: the section has 1", 0, false)
	add("packet before any interface", newNg(le).epb(0, 1, fr).b, "interface 0: the section has 0", 0, false)
	add("no interface", newNg(le).b, "no interface description block", 0, false)

	// Interface options: one longer than the block, resolutions out of
	// range, a value of the wrong length.
	opt := le.AppendUint16(le.AppendUint16(nil, uint16(layers.LinkTypeEthernet)), 0)
	opt = le.AppendUint32(opt, 0)                                              // snap length
	opt = append(le.AppendUint16(le.AppendUint16(opt, 2), 0xfff0), 0, 0, 0, 0) // a 65520-byte name in 4
	add("option past the block", newNg(le).block(ngIDB, opt).b,
		"option 2 length 65520 at offset 46: past the end of the block (4 bytes left)", 0, false)
	add("if_tsresol 10^-127", newNg(le).idb(layers.LinkTypeEthernet, 0, option{ngOptTSResol, []byte{0x7f}}).b,
		"if_tsresol 127 at offset 48: finer than", 0, false)
	add("if_tsresol 2^-64", newNg(le).idb(layers.LinkTypeEthernet, 0, option{ngOptTSResol, []byte{0x80 | 64}}).b,
		"if_tsresol 192 at offset 48: finer than", 0, false)
	add("if_tsresol of 4 bytes", newNg(le).idb(layers.LinkTypeEthernet, 0, option{ngOptTSResol, []byte{9, 0, 0, 0}}).b,
		"if_tsresol length 4 at offset 46: want 1", 0, false)

	// Truncated blocks: inside a header, a body, a trailer.
	whole := ok().epb(0, 1, fr).epb(0, 2, fr).b
	for _, cut := range []int{2, 6, 50, 88, 91} {
		add(fmt.Sprintf("cut %d bytes before the end", cut), whole[:len(whole)-cut], "", 1, true)
	}
	add("cut in the interface block", whole[:40], "block at offset 28 cut short", 0, false)
	add("cut in the section header", whole[:20], "block at offset 0 cut short", 0, false)

	// Classic pcap: a 4 GB snap length is ignored; a record is bounded.
	pc := pcapOf(tb, [][]byte{fr, fr})
	snap := bytes.Clone(pc)
	le.PutUint32(snap[pcapOffSnaplen:], 0xffffffff)
	add("pcap snaplen 0xffffffff", snap, "", 2, false)
	huge := bytes.Clone(pc)
	le.PutUint32(huge[pcapHeaderLen+pcapRecordHdrLen+len(fr)+pcapOffCapLen:], 0xffffffff)
	add("pcap captured length 0xffffffff", huge,
		"read record 2: pcap record: captured length 4294967295 at offset 108: over the 262144-byte limit", 1, false)
	add("pcap cut in a record", pc[:len(pc)-7], "", 1, true)
	return hs
}

// hostileAllocLimit bounds what a replay of any hostile file allocates.
const hostileAllocLimit = 2 << 20

// allocated runs f and returns the bytes it allocated.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestHostileCaptures: every hostile capture is an error naming the field
// and its offset, or a bounded replay, and costs under 2 MiB.
func TestHostileCaptures(t *testing.T) {
	var most uint64
	defer func() { t.Logf("at most %d bytes allocated by one replay", most) }()
	for _, h := range hostileCaptures(t) {
		var rep *Report
		var err error
		n := allocated(func() {
			rep, err = Run(context.Background(), bytes.NewReader(h.file), io.Discard, optsFor(StageCsum))
		})
		if n > hostileAllocLimit {
			t.Errorf("%s (%d bytes): allocated %d bytes", h.name, len(h.file), n)
		}
		most = max(most, n)
		if h.msg != "" {
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), h.msg) || rep != nil {
				t.Errorf("%s: error %v, want one naming %q", h.name, err, h.msg)
			}
			continue
		}
		if err != nil || rep.FramesIn != h.frames || rep.TruncatedTail != h.truncated {
			t.Errorf("%s: %v, report %+v; want %d frames, truncated %v", h.name, err, rep, h.frames, h.truncated)
		}
	}
}

// TestPcapngInterfaceLimit: a section may describe 65536 interfaces, not
// one more; the file costs about what it holds.
func TestPcapngInterfaceLimit(t *testing.T) {
	f := newNg(le)
	for range maxNgInterfaces + 1 {
		f.idb(layers.LinkTypeEthernet, 0)
	}
	var err error
	n := allocated(func() {
		_, err = Run(context.Background(), bytes.NewReader(f.b), io.Discard, optsFor(StageCsum))
	})
	want := fmt.Sprintf("interface description block at offset %d: more than 65536 interfaces", len(f.b)-20)
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	if n > 2*uint64(len(f.b)) {
		t.Fatalf("a %d-byte file allocated %d bytes", len(f.b), n)
	}
}

// TestPcapngBlocks reads what a pcapng file may hold: two sections of
// either byte order, timestamps in decimal and binary units with an
// offset, enhanced, simple and obsolete packet blocks, options the
// reader ignores (a malformed epb_flags among them, on which pcapgo
// panicked) and blocks it skips.
func TestPcapngBlocks(t *testing.T) {
	fs := frames(train(baseSeg(false), repeat(7, 100)...)...)
	sec := t0.Unix() - 1000 // interface 1's if_tsoffset is 1000 s
	be := binary.BigEndian
	f := newNg(le).
		idb(layers.LinkTypeEthernet, 0, option{ngOptTSResol, []byte{9}}, option{2, []byte("veth0")}).
		idb(layers.LinkTypeEthernet, 0, option{ngOptTSResol, []byte{0x80 | 30}}, option{ngOptTSOffset, le.AppendUint64(nil, 1000)}).
		block(4, make([]byte, 8)). // name resolution
		epb(0, uint64(t0.UnixNano()), fs[0], option{1, []byte("a comment")}).
		epb(1, uint64(sec)<<30|1<<29, fs[1], option{2, []byte{9}}). // epb_flags: 1 byte, 4 due
		block(5, make([]byte, 12)).                                 // interface statistics
		spb(uint32(len(fs[2])), fs[2]).
		opb(1, uint64(sec)<<30|1<<20, fs[3]).
		block(10, le.AppendUint32(le.AppendUint32(nil, 0x544c534b), 4)). // decryption secrets
		block(0xbad, make([]byte, 4))                                    // custom
	g := &ngFile{o: be, b: f.b}
	g.shb().idb(layers.LinkTypeEthernet, 50).
		epb(0, uint64(t0.UnixMicro()+5), fs[4]).
		spb(uint32(len(fs[5])), fs[5]).
		epb(0, uint64(t0.UnixMicro()+6), fs[6])

	want := []record{
		{fs[0], ci(t0, len(fs[0]), len(fs[0]))},
		{fs[1], ci(t0.Add(500*time.Millisecond), len(fs[1]), len(fs[1]))},
		{fs[2], ci(epoch, len(fs[2]), len(fs[2]))},
		{fs[3], ci(t0.Add(976562), len(fs[3]), len(fs[3]))}, // 2^-10 s
		{fs[4], ci(t0.Add(5*time.Microsecond), len(fs[4]), len(fs[4]))},
		{fs[5][:50], ci(epoch, 50, len(fs[5]))}, // cut at the snap length
		{fs[6], ci(t0.Add(6*time.Microsecond), len(fs[6]), len(fs[6]))},
	}
	rep, out := replay(t, g.b, optsFor(StageCsum))
	if rep.Format != "pcapng" || rep.FramesIn != uint64(len(want)) || rep.SnapTruncated != 1 || len(out) != len(want) {
		t.Fatalf("format %q, %d frames in, %d snap-truncated, %d out", rep.Format, rep.FramesIn, rep.SnapTruncated, len(out))
	}
	for i, w := range want {
		o := out[i]
		if !bytes.Equal(o.data, w.data) || !o.ci.Timestamp.Equal(w.ci.Timestamp) ||
			o.ci.CaptureLength != w.ci.CaptureLength || o.ci.Length != w.ci.Length {
			t.Errorf("record %d: %d of %d bytes at %v, want %d of %d at %v", i,
				o.ci.CaptureLength, o.ci.Length, o.ci.Timestamp, w.ci.CaptureLength, w.ci.Length, w.ci.Timestamp)
		}
	}

	// A packet on an interface of another link type than the first.
	mixed := newNg(le).idb(layers.LinkTypeEthernet, 0).idb(layers.LinkTypeRaw, 0).epb(0, 1, fs[0])
	off := len(mixed.b)
	mixed.epb(1, 2, fs[1])
	_, err := Run(context.Background(), bytes.NewReader(mixed.b), io.Discard, optsFor(StageCsum))
	msg := fmt.Sprintf("read record 2: pcapng enhanced packet block at offset %d: interface 1's link type 101", off)
	if !errors.Is(err, ErrLinkType) || !strings.Contains(err.Error(), msg) {
		t.Fatalf("mixed link types: %v", err)
	}
}

func ci(ts time.Time, capLen, length int) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: ts, CaptureLength: capLen, Length: length}
}
