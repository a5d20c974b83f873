package replay

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// pcapng (draft-ietf-opsawg-pcapng): a sequence of blocks, each a type, a
// total length, a body and the total length again; lengths are multiples
// of 4 and count all three parts. A section header block starts each
// section and sets its byte order; interface description blocks number
// the interfaces of a section from 0; enhanced, simple and (obsolete)
// packet blocks hold the records. Other blocks are skipped.
const (
	ngSHB = 0x0a0d0d0a // section header
	ngIDB = 1          // interface description
	ngOPB = 2          // packet (obsolete)
	ngSPB = 3          // simple packet
	ngEPB = 6          // enhanced packet

	ngByteOrderMagic = 0x1a2b3c4d

	// Smallest total length of each block: type, length, fixed fields
	// and the trailing length.
	ngBlockMin = 12
	ngSHBMin   = 28 // byte-order magic, version, section length
	ngIDBMin   = 20 // link type, reserved, snap length
	ngEPBMin   = 32 // interface, timestamp, captured and original lengths
	ngOPBMin   = 32 // interface (16 bits), drops, timestamp, lengths
	ngSPBMin   = 16 // original length

	// maxNgBlockLen bounds the total length of a block the reader
	// interprets (section header, interface description, packet blocks):
	// a packet block of MaxSnaplen with 128 KiB of options (Wireshark
	// bounds a block the same way, by its largest packet). Blocks of other
	// types are skipped as they stream by, whatever their length.
	maxNgBlockLen = ngEPBMin + MaxSnaplen + 128<<10
	// maxNgInterfaces bounds the interfaces of a section (an obsolete
	// packet block names one in 16 bits).
	maxNgInterfaces = 1 << 16

	// Interface description options the reader uses.
	ngOptEnd      = 0
	ngOptTSResol  = 9  // if_tsresol: 1 byte
	ngOptTSOffset = 14 // if_tsoffset: 8 bytes, seconds
)

// ngInterface is what the reader keeps of an interface description.
type ngInterface struct {
	offset  int64  // if_tsoffset, seconds
	snaplen uint32 // clamped to MaxSnaplen; only simple packet blocks use it
	link    layers.LinkType
	// Timestamps count units of 2^-exp seconds (binary) or 10^-exp.
	binary bool
	exp    uint8
}

// finerThanMicro says whether the interface's timestamps have more than
// microsecond resolution.
func (i *ngInterface) finerThanMicro() bool {
	if i.binary {
		return i.exp >= 20 // 2^-20 s is 0.95 µs
	}
	return i.exp > 6
}

var pow10 = func() (p [20]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// time converts a timestamp in the interface's units.
func (i *ngInterface) time(ts uint64) time.Time {
	var sec, nsec uint64
	if i.binary {
		sec = ts >> i.exp
		frac := ts & (1<<i.exp - 1)
		hi, lo := bits.Mul64(frac, 1e9)
		nsec = hi<<(64-i.exp) | lo>>i.exp // frac·10^9 / 2^exp
	} else {
		unit := pow10[i.exp]
		sec = ts / unit
		if frac := ts % unit; i.exp <= 9 {
			nsec = frac * pow10[9-i.exp]
		} else {
			nsec = frac / pow10[i.exp-9]
		}
	}
	return time.Unix(int64(sec)+i.offset, int64(nsec)).UTC()
}

// ngBlock is the block being read.
type ngBlock struct {
	typ    uint32
	length uint32 // total, as the header says
	off    int64  // of its first byte
	rest   int64  // body bytes not yet consumed (the trailer excluded)
}

// ngReader reads a pcapng file.
type ngReader struct {
	s      *stream
	order  binary.ByteOrder
	ifaces []ngInterface // of the current section
	first  ngInterface   // the file's first interface: link type and resolution
	blk    ngBlock
	hdr    [20]byte
}

// newNgReader reads the first section header and the blocks up to the
// first interface description; the caller has checked the magic.
func newNgReader(s *stream) (*ngReader, error) {
	r := &ngReader{s: s, order: binary.LittleEndian}
	for len(r.ifaces) == 0 {
		// A packet block here names an interface the section lacks.
		_, _, _, err := r.block()
		switch {
		case err == io.EOF:
			return nil, fmt.Errorf("no interface description block: %w", ErrFormat)
		case err == errTruncated:
			return nil, fmt.Errorf("block at offset %d cut short: %w", r.blk.off, ErrFormat)
		case err != nil:
			return nil, err
		}
	}
	r.first = r.ifaces[0]
	return r, nil
}

func (r *ngReader) next() ([]byte, gopacket.CaptureInfo, error) {
	for {
		data, ci, ok, err := r.block()
		if err != nil || ok {
			return data, ci, err
		}
	}
}

// block reads one block: ok says it was a packet, returned as a record.
func (r *ngReader) block() (data []byte, ci gopacket.CaptureInfo, ok bool, err error) {
	if err := r.header(); err != nil {
		return nil, ci, false, err
	}
	switch r.blk.typ {
	case ngSHB:
		err = r.sectionHeader()
	case ngIDB:
		err = r.interfaceDescription()
	case ngEPB, ngOPB, ngSPB:
		data, ci, err = r.packet()
		ok = err == nil
	}
	if err != nil {
		return nil, ci, false, err
	}
	if err := r.end(); err != nil {
		return nil, ci, false, err
	}
	return data, ci, ok, nil
}

// header reads a block's type and length (and a section header's byte
// order) and bounds the length before anything else is read.
func (r *ngReader) header() error {
	b := &r.blk
	b.off = r.s.off
	h := r.hdr[:8]
	if err := r.s.readFull(h); err != nil {
		return err
	}
	b.typ = r.order.Uint32(h)
	b.rest = 0
	if b.typ == ngSHB { // the same in both byte orders; the magic says which
		var m [4]byte
		if err := r.s.readFull(m[:]); err != nil {
			return truncated(err)
		}
		switch {
		case binary.LittleEndian.Uint32(m[:]) == ngByteOrderMagic:
			r.order = binary.LittleEndian
		case binary.BigEndian.Uint32(m[:]) == ngByteOrderMagic:
			r.order = binary.BigEndian
		default:
			return malformed("pcapng section header", "byte-order magic", uint64(binary.BigEndian.Uint32(m[:])), b.off+8, "want 0x1a2b3c4d")
		}
	}
	b.length = r.order.Uint32(h[4:])
	least, limit := uint32(ngBlockMin), uint32(0) // no limit: skipped as it streams by
	switch b.typ {
	case ngSHB:
		least, limit = ngSHBMin, maxNgBlockLen
	case ngIDB:
		least, limit = ngIDBMin, maxNgBlockLen
	case ngEPB:
		least, limit = ngEPBMin, maxNgBlockLen
	case ngOPB:
		least, limit = ngOPBMin, maxNgBlockLen
	case ngSPB:
		least, limit = ngSPBMin, maxNgBlockLen
	}
	switch {
	case b.length%4 != 0:
		return malformed(ngBlockName(b.typ), "total length", uint64(b.length), b.off+4, "not a multiple of 4")
	case b.length < least:
		return malformed(ngBlockName(b.typ), "total length", uint64(b.length), b.off+4,
			fmt.Sprintf("under the %d bytes of its fields", least))
	case limit != 0 && b.length > limit:
		return malformed(ngBlockName(b.typ), "total length", uint64(b.length), b.off+4,
			fmt.Sprintf("over the %d-byte limit", limit))
	}
	b.rest = int64(b.length) - ngBlockMin
	if b.typ == ngSHB {
		b.rest -= 4 // the byte-order magic
	}
	return nil
}

// end skips what is left of the block's body and checks its trailing
// length.
func (r *ngReader) end() error {
	b := &r.blk
	if err := r.s.discard(b.rest); err != nil {
		return err
	}
	b.rest = 0
	off := r.s.off
	t := r.hdr[:4]
	if err := r.s.readFull(t); err != nil {
		return truncated(err)
	}
	if n := r.order.Uint32(t); n != b.length {
		return malformed(ngBlockName(b.typ), "trailing total length", uint64(n), off,
			fmt.Sprintf("the block at offset %d began with %d", b.off, b.length))
	}
	return nil
}

// read fills p from the block's body.
func (r *ngReader) read(p []byte) error {
	if err := r.s.readFull(p); err != nil {
		return truncated(err)
	}
	r.blk.rest -= int64(len(p))
	return nil
}

func (r *ngReader) sectionHeader() error {
	h := r.hdr[:12] // version major and minor, section length
	off := r.s.off
	if err := r.read(h); err != nil {
		return err
	}
	if v := r.order.Uint16(h); v != 1 {
		return malformed("pcapng section header", "major version", uint64(v), off, "want 1")
	}
	r.ifaces = r.ifaces[:0] // interface numbers start again
	return nil
}

func (r *ngReader) interfaceDescription() error {
	const what = "pcapng interface description block"
	if len(r.ifaces) == maxNgInterfaces {
		return fmt.Errorf("%s at offset %d: more than %d interfaces in a section: %w", what, r.blk.off, maxNgInterfaces, ErrFormat)
	}
	h := r.hdr[:8]
	if err := r.read(h); err != nil {
		return err
	}
	i := ngInterface{link: layers.LinkType(r.order.Uint16(h)), snaplen: r.order.Uint32(h[4:]), exp: 6}
	// A snap length of 0 means none; like the pcap header's, it is never
	// used to size a buffer: simple packet blocks are cut at MaxSnaplen.
	if i.snaplen == 0 || i.snaplen > MaxSnaplen {
		i.snaplen = MaxSnaplen
	}
	// Options: code, length, value padded to 4 bytes.
	for r.blk.rest >= 4 {
		off := r.s.off
		o := r.hdr[:4]
		if err := r.read(o); err != nil {
			return err
		}
		code, n := r.order.Uint16(o), int64(r.order.Uint16(o[2:]))
		if code == ngOptEnd {
			break
		}
		padded := (n + 3) &^ 3
		if padded > r.blk.rest {
			return malformed(what, fmt.Sprintf("option %d length", code), uint64(n), off+2,
				fmt.Sprintf("past the end of the block (%d bytes left)", r.blk.rest))
		}
		switch code {
		case ngOptTSResol:
			if n != 1 {
				return malformed(what, "if_tsresol length", uint64(n), off+2, "want 1")
			}
			v := r.hdr[:4]
			if err := r.read(v); err != nil {
				return err
			}
			i.binary, i.exp = v[0]&0x80 != 0, v[0]&0x7f
			if (i.binary && i.exp > 63) || (!i.binary && int(i.exp) >= len(pow10)) {
				return malformed(what, "if_tsresol", uint64(v[0]), off+4, "finer than the reader can count")
			}
		case ngOptTSOffset:
			if n != 8 {
				return malformed(what, "if_tsoffset length", uint64(n), off+2, "want 8")
			}
			v := r.hdr[:8]
			if err := r.read(v); err != nil {
				return err
			}
			i.offset = int64(r.order.Uint64(v))
		default:
			if err := r.s.discard(padded); err != nil {
				return truncated(err)
			}
			r.blk.rest -= padded
		}
	}
	if len(r.ifaces) == cap(r.ifaces) {
		// Doubling, so that what a long run of interface blocks costs
		// stays under what the file holds (16 bytes for each 20).
		r.ifaces = append(make([]ngInterface, 0, max(4, 2*cap(r.ifaces))), r.ifaces...)
	}
	r.ifaces = append(r.ifaces, i)
	return nil
}

// packet reads an enhanced, simple or obsolete packet block's record.
func (r *ngReader) packet() ([]byte, gopacket.CaptureInfo, error) {
	var ci gopacket.CaptureInfo
	what := ngBlockName(r.blk.typ)
	var ifIndex, capLen uint32
	var ts uint64
	switch r.blk.typ {
	case ngEPB, ngOPB:
		h := r.hdr[:20]
		if err := r.read(h); err != nil {
			return nil, ci, err
		}
		if r.blk.typ == ngEPB {
			ifIndex = r.order.Uint32(h)
		} else {
			ifIndex = uint32(r.order.Uint16(h))
		}
		ts = uint64(r.order.Uint32(h[4:]))<<32 | uint64(r.order.Uint32(h[8:]))
		capLen = r.order.Uint32(h[12:])
		ci.Length = int(r.order.Uint32(h[16:]))
		capOff := r.blk.off + 8 + 12
		if capLen > MaxSnaplen {
			return nil, ci, malformed(what, "captured length", uint64(capLen), capOff,
				fmt.Sprintf("over the %d-byte limit", MaxSnaplen))
		}
		if int64(capLen) > r.blk.rest {
			return nil, ci, malformed(what, "captured length", uint64(capLen), capOff,
				fmt.Sprintf("over the %d bytes the block holds", r.blk.rest))
		}
	case ngSPB:
		h := r.hdr[:4]
		if err := r.read(h); err != nil {
			return nil, ci, err
		}
		orig := r.order.Uint32(h)
		ci.Length = int(orig)
		// The captured length is what the block holds, cut at the first
		// interface's snap length.
		capLen = uint32(min(int64(orig), r.blk.rest))
		if len(r.ifaces) > 0 {
			capLen = min(capLen, r.ifaces[0].snaplen)
		}
	}
	if int(ifIndex) >= len(r.ifaces) {
		return nil, ci, fmt.Errorf("%s at offset %d: interface %d: the section has %d: %w",
			what, r.blk.off, ifIndex, len(r.ifaces), ErrFormat)
	}
	iface := &r.ifaces[ifIndex]
	if iface.link != r.first.link {
		return nil, ci, fmt.Errorf("%s at offset %d: interface %d's link type %d (%s), not the first interface's %s: %w",
			what, r.blk.off, ifIndex, uint16(iface.link), iface.link, r.first.link, ErrLinkType)
	}
	if r.blk.typ == ngSPB {
		ci.Timestamp = epoch // a simple packet block has none
	} else {
		ci.Timestamp = iface.time(ts)
	}
	ci.CaptureLength = int(capLen)
	ci.InterfaceIndex = int(ifIndex)
	data, err := r.s.data(int(capLen))
	if err != nil {
		return nil, ci, err
	}
	r.blk.rest -= int64(capLen)
	return data, ci, nil
}

// truncated is err for a read inside a block: the end of the stream there
// cuts the block short.
func truncated(err error) error {
	if err == io.EOF {
		return errTruncated
	}
	return err
}

func ngBlockName(typ uint32) string {
	switch typ {
	case ngSHB:
		return "pcapng section header"
	case ngIDB:
		return "pcapng interface description block"
	case ngEPB:
		return "pcapng enhanced packet block"
	case ngSPB:
		return "pcapng simple packet block"
	case ngOPB:
		return "pcapng packet block"
	}
	return fmt.Sprintf("pcapng block type %#x", typ)
}
