package offload

import "errors"

// Errors. GSO returns them unwrapped so that its hot path never allocates;
// constructors wrap them with what they were given.
var (
	// ErrOptions: an Options field is out of range.
	ErrOptions = errors.New("invalid options")
	// ErrHeader: a GSO request's headers are malformed or do not end where
	// the TCP/UDP header ends.
	ErrHeader = errors.New("malformed headers")
	// ErrUnsupported: headers GSO does not segment (not TCP/UDP, IPv4
	// fragments, IPv6 extension headers).
	ErrUnsupported = errors.New("unsupported headers")
	// ErrGSOSize: the GSO size is zero for a request with payload.
	ErrGSOSize = errors.New("gso size out of range")
	// ErrTooBig: a segment would not fit the IP length field.
	ErrTooBig = errors.New("segment too big for the ip length field")
	// ErrShortBuffer: too few output buffers, or one too short for its
	// segment.
	ErrShortBuffer = errors.New("output buffers too few or too short")
)
