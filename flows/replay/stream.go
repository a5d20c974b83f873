package replay

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/gopacket/gopacket"
)

// The capture readers trust no length in a file. Every length is checked
// against a limit and against the block that holds it before anything is
// read; record data is the only thing read into memory, and its buffer
// grows with the bytes that actually arrive (dataChunk at a time), so a
// file that announces more than it holds costs no more than it holds.
// Everything else (options, blocks skipped, padding) streams past. The
// limits of each format are with its reader.
//
// dataChunk is how far a record buffer grows ahead of the bytes read.
const dataChunk = 64 << 10

// recordReader reads the records of one capture format. next returns the
// next record's data, valid until the following call, and its capture
// info: io.EOF at the end, errTruncated for a last record or block cut
// short, or an error that names the malformed field and its offset.
type recordReader interface {
	next() ([]byte, gopacket.CaptureInfo, error)
}

// errTruncated ends a capture whose last record is cut short.
var errTruncated = errors.New("last record truncated")

// malformed is the error for a field out of bounds: what holds it, its
// name, value and offset in the (uncompressed) capture, and why.
func malformed(what, field string, v uint64, off int64, why string) error {
	return fmt.Errorf("%s: %s %d at offset %d: %s: %w", what, field, v, off, why, ErrFormat)
}

// stream is a capture's bytes with the offset of the next one.
type stream struct {
	r   *bufio.Reader
	off int64
	buf []byte // record data, grown to the largest record read
}

func newStream(r *bufio.Reader) *stream {
	return &stream{r: r, buf: make([]byte, 0, minSlot)}
}

// readFull fills b: io.EOF if the stream ended before its first byte,
// errTruncated if it ended inside.
func (s *stream) readFull(b []byte) error {
	n, err := io.ReadFull(s.r, b)
	s.off += int64(n)
	switch {
	case err == nil:
		return nil
	case err == io.EOF:
		return io.EOF
	case err == io.ErrUnexpectedEOF:
		return errTruncated
	}
	return fmt.Errorf("read at offset %d: %w", s.off, err)
}

// data reads n bytes of record data into the stream's buffer. The buffer
// grows at most dataChunk bytes ahead of what has arrived.
func (s *stream) data(n int) ([]byte, error) {
	b := s.buf[:0]
	for len(b) < n {
		k := min(n-len(b), dataChunk)
		b = slices.Grow(b, k)
		err := s.readFull(b[len(b) : len(b)+k])
		if err != nil {
			s.buf = b
			if err == io.EOF {
				err = errTruncated // inside a record
			}
			return nil, err
		}
		b = b[:len(b)+k]
	}
	s.buf = b
	return b, nil
}

// discard skips n bytes without reading them into memory.
func (s *stream) discard(n int64) error {
	for n > 0 {
		k := int(min(n, 1<<30))
		d, err := s.r.Discard(k)
		s.off += int64(d)
		n -= int64(d)
		if err == io.EOF {
			return errTruncated
		}
		if err != nil {
			return fmt.Errorf("read at offset %d: %w", s.off, err)
		}
	}
	return nil
}
