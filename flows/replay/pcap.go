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

// source reads the records of a capture file.
type source struct {
	r      recordReader
	link   layers.LinkType
	format string // "pcap" or "pcapng", with "+gzip"
	nanos  bool   // timestamps finer than microseconds
	record int    // records read so far
}

// Magic numbers as the first four bytes of a file.
var (
	magicPcap = [][4]byte{
		{0xd4, 0xc3, 0xb2, 0xa1}, {0xa1, 0xb2, 0xc3, 0xd4}, // microseconds, LE and BE
		{0x4d, 0x3c, 0xb2, 0xa1}, {0xa1, 0xb2, 0x3c, 0x4d}, // nanoseconds
	}
	magicPcapng = [4]byte{0x0a, 0x0d, 0x0d, 0x0a}
)

// ioBufSize is the size of the replay's read and write buffers.
const ioBufSize = 64 << 10

// bufSizeFor is the buffer size for reading in, and writing what a replay
// of it makes: ioBufSize, or less for an input known to be shorter (as
// io.Copy sizes its buffer by a LimitedReader), but no less than 4 KiB.
func bufSizeFor(in io.Reader) int {
	if l, ok := in.(interface{ Len() int }); ok {
		return min(ioBufSize, max(4<<10, l.Len()))
	}
	return ioBufSize
}

// openSource recognizes a pcap or pcapng file, gzip-compressed or not, and
// reads its header (for pcapng, up to the first interface description).
func openSource(in io.Reader) (*source, error) {
	br := bufio.NewReaderSize(in, bufSizeFor(in))
	s := &source{}
	head, err := br.Peek(4)
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		gz, gerr := gzip.NewReader(br)
		if gerr != nil {
			return nil, fmt.Errorf("read gzip header: %w: %w", ErrFormat, gerr)
		}
		br = bufio.NewReaderSize(gz, ioBufSize)
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
	st := newStream(br)
	switch {
	case magic == magicPcapng:
		s.format = "pcapng" + s.format
		nr, err := newNgReader(st)
		if err != nil {
			return nil, formatError("read pcapng header", err)
		}
		s.r, s.link, s.nanos = nr, nr.first.link, nr.first.finerThanMicro()
	case isPcapMagic(magic):
		s.format = "pcap" + s.format
		pr, err := newPcapReader(st)
		if err != nil {
			return nil, formatError("read pcap header", err)
		}
		s.r, s.link, s.nanos = pr, pr.link, pr.nanos
	default:
		return nil, fmt.Errorf("read capture header: magic %x: %w", head, ErrFormat)
	}
	switch s.link {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2:
	default:
		return nil, fmt.Errorf("%s link type %d (%s): %w", s.format, uint32(s.link), s.link, ErrLinkType)
	}
	return s, nil
}

// formatError wraps an error of the readers: ErrFormat unless it says
// already what is wrong with the file (a read error of a gzip stream,
// say, is a malformed file too).
func formatError(action string, err error) error {
	if errors.Is(err, ErrFormat) || errors.Is(err, ErrLinkType) {
		return fmt.Errorf("%s: %w", action, err)
	}
	return fmt.Errorf("%s: %w: %w", action, ErrFormat, err)
}

func isPcapMagic(m [4]byte) bool {
	for _, p := range magicPcap {
		if m == p {
			return true
		}
	}
	return false
}

// epoch stands for a missing timestamp (pcapng simple packet blocks).
var epoch = time.Unix(0, 0).UTC()

// next returns the next record, valid until the following call: io.EOF at
// the end, errTruncated for a last record cut short, or an error that says
// which record is malformed, which field and where.
func (s *source) next() (data []byte, ci gopacket.CaptureInfo, err error) {
	data, ci, err = s.r.next()
	switch {
	case err == nil:
		s.record++
		ci.Length = max(ci.Length, ci.CaptureLength)
		return data, ci, nil
	case err == io.EOF, err == errTruncated:
		return nil, ci, err
	default:
		return nil, ci, formatError(fmt.Sprintf("read record %d", s.record+1), err)
	}
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

func newSink(out io.Writer, size int, nanos bool) (*sink, error) {
	s := &sink{bw: bufio.NewWriterSize(out, size)}
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
