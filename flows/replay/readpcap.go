package replay

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Classic pcap: a 24-byte file header, then records of a 16-byte header
// (seconds, micro- or nanoseconds, captured length, original length) and
// the captured bytes.
const (
	pcapHeaderLen    = 24
	pcapRecordHdrLen = 16
	pcapOffSnaplen   = 16 // in the file header
	pcapOffLinkType  = 20
	pcapOffCapLen    = 8 // in a record header
)

// pcapReader reads a classic pcap file.
type pcapReader struct {
	s     *stream
	order binary.ByteOrder
	nanos bool
	link  layers.LinkType
	hdr   [pcapRecordHdrLen]byte
}

// newPcapReader reads the file header; the caller has checked the magic.
func newPcapReader(s *stream) (*pcapReader, error) {
	var h [pcapHeaderLen]byte
	if err := s.readFull(h[:]); err != nil {
		if err == io.EOF || err == errTruncated {
			return nil, fmt.Errorf("cut short at offset %d: %w", s.off, ErrFormat)
		}
		return nil, err
	}
	r := &pcapReader{s: s, order: binary.LittleEndian}
	switch binary.LittleEndian.Uint32(h[:4]) {
	case 0xa1b2c3d4:
	case 0xa1b23c4d:
		r.nanos = true
	case 0xd4c3b2a1:
		r.order = binary.BigEndian
	case 0x4d3cb2a1:
		r.order, r.nanos = binary.BigEndian, true
	default:
		return nil, malformed("pcap header", "magic", uint64(binary.BigEndian.Uint32(h[:4])), 0, "not pcap")
	}
	if v := r.order.Uint16(h[4:]); v != 2 {
		return nil, malformed("pcap header", "major version", uint64(v), 4, "want 2")
	}
	// The snap length (at pcapOffSnaplen) is not trusted: some writers
	// put 0, or less than the 64 KB aggregates they wrote. Every record
	// is bounded by MaxSnaplen instead. The link type field carries FCS
	// flags in its top six bits.
	lt := r.order.Uint32(h[pcapOffLinkType:]) & 0x03ffffff
	if lt > 0xffff {
		return nil, fmt.Errorf("pcap header: link type %d at offset %d: %w", lt, pcapOffLinkType, ErrLinkType)
	}
	r.link = layers.LinkType(lt)
	return r, nil
}

func (r *pcapReader) next() ([]byte, gopacket.CaptureInfo, error) {
	var ci gopacket.CaptureInfo
	off := r.s.off
	if err := r.s.readFull(r.hdr[:]); err != nil {
		return nil, ci, err
	}
	capLen := r.order.Uint32(r.hdr[pcapOffCapLen:])
	if capLen > MaxSnaplen {
		return nil, ci, malformed("pcap record", "captured length", uint64(capLen), off+pcapOffCapLen,
			fmt.Sprintf("over the %d-byte limit", MaxSnaplen))
	}
	frac := int64(r.order.Uint32(r.hdr[4:]))
	if !r.nanos {
		frac *= 1000
	}
	ci.Timestamp = time.Unix(int64(r.order.Uint32(r.hdr[0:])), frac).UTC()
	ci.CaptureLength = int(capLen)
	ci.Length = int(r.order.Uint32(r.hdr[12:]))
	data, err := r.s.data(int(capLen))
	return data, ci, err
}
