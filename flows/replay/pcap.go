package replay

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/xnic/xnic/flows"
)

// recordReader is what pcapgo's Reader and NgReader have in common.
type recordReader interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	Resolution() gopacket.TimestampResolution
}

// source reads the records of a capture file.
type source struct {
	r      recordReader
	ng     bool
	link   layers.LinkType
	format string // "pcap" or "pcapng", with "+gzip"
	nanos  bool
	record int // records read so far
}

// Magic numbers as the first four bytes of a file.
var (
	magicPcap = [][4]byte{
		{0xd4, 0xc3, 0xb2, 0xa1}, {0xa1, 0xb2, 0xc3, 0xd4}, // microseconds, LE and BE
		{0x4d, 0x3c, 0xb2, 0xa1}, {0xa1, 0xb2, 0x3c, 0x4d}, // nanoseconds
	}
	magicPcapng = [4]byte{0x0a, 0x0d, 0x0d, 0x0a}
)

// openSource recognizes a pcap or pcapng file, gzip-compressed or not, and
// reads its header.
func openSource(in io.Reader) (*source, error) {
	br := bufio.NewReaderSize(in, 1<<16)
	s := &source{}
	head, err := br.Peek(4)
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		gz, gerr := gzip.NewReader(br)
		if gerr != nil {
			return nil, fmt.Errorf("read gzip header: %w: %w", ErrFormat, gerr)
		}
		br = bufio.NewReaderSize(gz, 1<<16)
		s.format = "+gzip"
		head, err = br.Peek(4)
	}
	if len(head) < 4 {
		if len(head) == 0 && errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read capture header: empty file: %w", ErrFormat)
		}
		return nil, fmt.Errorf("read capture header: only %d bytes: %w", len(head), ErrFormat)
	}
	magic := [4]byte(head)
	switch {
	case magic == magicPcapng:
		s.format = "pcapng" + s.format
		s.ng = true
		nr, err := newNgReader(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("no interface description block")
			}
			return nil, fmt.Errorf("read pcapng header: %w: %w", ErrFormat, err)
		}
		s.r, s.link = nr, nr.LinkType()
	case isPcapMagic(magic):
		s.format = "pcap" + s.format
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("read pcap header: %w: %w", ErrFormat, err)
		}
		// Trust no header snap length: some writers put 0, or less than
		// the 64 KB aggregates they wrote. This still bounds a record.
		pr.SetSnaplen(MaxSnaplen)
		s.r, s.link = pr, pr.LinkType()
	default:
		return nil, fmt.Errorf("read capture header: magic %x: %w", head, ErrFormat)
	}
	s.nanos = s.r.Resolution() == gopacket.TimestampResolutionNanosecond
	switch s.link {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2:
	default:
		return nil, fmt.Errorf("%s link type %d (%s): %w", s.format, uint32(s.link), s.link, ErrLinkType)
	}
	return s, nil
}

func isPcapMagic(m [4]byte) bool {
	for _, p := range magicPcap {
		if m == p {
			return true
		}
	}
	return false
}

// newNgReader guards against panics in pcapgo's pcapng parser on
// malformed blocks (it indexes option values without checking them).
func newNgReader(r io.Reader) (nr *pcapgo.NgReader, err error) {
	defer func() {
		if p := recover(); p != nil {
			nr, err = nil, fmt.Errorf("malformed block (%v)", p)
		}
	}()
	return pcapgo.NewNgReader(r, pcapgo.NgReaderOptions{ErrorOnMismatchingLinkType: true})
}

// epoch stands for a missing timestamp (pcapng simple packet blocks).
var epoch = time.Unix(0, 0).UTC()

// errTruncated ends a capture whose last record is cut short.
var errTruncated = errors.New("last record truncated")

// next returns the next record, valid until the following call: io.EOF at
// the end, errTruncated for a last record cut short, or an error that says
// which record is malformed.
func (s *source) next() (data []byte, ci gopacket.CaptureInfo, err error) {
	if s.ng {
		data, ci, err = s.nextNg()
	} else {
		data, ci, err = s.r.ZeroCopyReadPacketData()
	}
	switch {
	case err == nil:
		s.record++
		if ci.CaptureLength > MaxSnaplen || ci.CaptureLength != len(data) {
			return nil, ci, fmt.Errorf("read record %d: captured length %d: %w", s.record, ci.CaptureLength, ErrFormat)
		}
		ci.Length = max(ci.Length, ci.CaptureLength)
		if ci.Timestamp.IsZero() {
			ci.Timestamp = epoch // pcapgo would write the time of writing
		}
		return data, ci, nil
	case err == io.EOF && ci.CaptureLength > 0:
		return nil, ci, errTruncated // a record header and no data
	case err == io.EOF:
		return nil, ci, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, ci, errTruncated
	default:
		return nil, ci, fmt.Errorf("read record %d: %w: %w", s.record+1, ErrFormat, err)
	}
}

func (s *source) nextNg() (data []byte, ci gopacket.CaptureInfo, err error) {
	defer func() {
		if p := recover(); p != nil {
			data, err = nil, fmt.Errorf("malformed block (%v)", p)
		}
	}()
	return s.r.ZeroCopyReadPacketData()
}

// Linux cooked capture headers.
const (
	sllLen  = 16 // type, ARPHRD, address length, address (8), protocol
	sll2Len = 20 // protocol, reserved, ifindex, ARPHRD, type, address length, address (8)
)

// linkHeaderDelta is how many bytes converting a record to Ethernet
// removes from its front.
func (s *source) linkHeaderDelta() int {
	switch s.link {
	case layers.LinkTypeLinuxSLL:
		return sllLen - flows.EthernetLen
	case layers.LinkTypeLinuxSLL2:
		return sll2Len - flows.EthernetLen
	}
	return 0
}

// toEthernet copies the record data into dst as an Ethernet frame and
// returns it; ok is false for a cooked record shorter than its header,
// which is copied as it is.
func (s *source) toEthernet(dst, data []byte) (frame []byte, ok bool) {
	var proto uint16
	var addr []byte
	switch s.link {
	case layers.LinkTypeLinuxSLL:
		if len(data) < sllLen {
			return append(dst[:0], data...), false
		}
		if n := binary.BigEndian.Uint16(data[4:]); n == 6 {
			addr = data[6:12]
		}
		proto = binary.BigEndian.Uint16(data[14:])
		data = data[sllLen:]
	case layers.LinkTypeLinuxSLL2:
		if len(data) < sll2Len {
			return append(dst[:0], data...), false
		}
		proto = binary.BigEndian.Uint16(data[0:])
		if data[11] == 6 {
			addr = data[12:18]
		}
		data = data[sll2Len:]
	default:
		return append(dst[:0], data...), true
	}
	var eth [flows.EthernetLen]byte
	copy(eth[6:12], addr)
	binary.BigEndian.PutUint16(eth[12:], proto)
	dst = append(dst[:0], eth[:]...)
	return append(dst, data...), true
}

// sink writes a pcap file, Ethernet, MaxSnaplen.
type sink struct {
	bw *bufio.Writer
	w  *pcapgo.Writer
}

func newSink(out io.Writer, nanos bool) (*sink, error) {
	s := &sink{bw: bufio.NewWriterSize(out, 1<<16)}
	if nanos {
		s.w = pcapgo.NewWriterNanos(s.bw)
	} else {
		s.w = pcapgo.NewWriter(s.bw)
	}
	if err := s.w.WriteFileHeader(MaxSnaplen, layers.LinkTypeEthernet); err != nil {
		return nil, fmt.Errorf("write pcap header: %w", err)
	}
	return s, nil
}

func (s *sink) write(ci gopacket.CaptureInfo, data []byte) error {
	if err := s.w.WritePacket(ci, data); err != nil {
		return fmt.Errorf("write pcap record: %w", err)
	}
	return nil
}

func (s *sink) flush() error {
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("write pcap: %w", err)
	}
	return nil
}
