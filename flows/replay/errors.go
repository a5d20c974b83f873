package replay

import "errors"

// Errors, wrapped with what was being read or checked.
var (
	// ErrFormat: the input is not a pcap or pcapng file, or is malformed.
	ErrFormat = errors.New("not a valid pcap or pcapng file")
	// ErrLinkType: the capture's link type is not Ethernet or Linux SLL.
	ErrLinkType = errors.New("link type not supported (want Ethernet, Linux SLL or SLL2)")
	// ErrOptions: an Options field is out of range.
	ErrOptions = errors.New("invalid options")
)
