package engine

import (
	"errors"
	"fmt"
)

// WorkRequest is a guest's send: one packet, Ethernet framed, which the
// engine segments (TSO/GSO) and checksums before the tx ring.
type WorkRequest struct {
	// Head is the headers (Ethernet through TCP/UDP) and Payload the rest,
	// in any number of pieces; both are read only during Send.
	Head    []byte
	Payload [][]byte
	// GSOSize > 0 asks for segmentation into payloads of this size (the
	// MSS); 0 sends the packet as it is, and then it must fit a frame.
	GSOSize int
	// CsumPartial: the TCP/UDP checksum field holds only the pseudo-header
	// sum, for the engine to complete (a guest stack with checksum offload).
	CsumPartial bool
	// FixedID keeps every segment's IPv4 ID at the request's instead of
	// counting up (a stack that sends ID 0 with DF, as netstack does).
	FixedID bool
}

// Sentinel errors of the send path.
var (
	// ErrTxFull: the guest's send queue stayed full for TxWait.
	ErrTxFull = errors.New("send queue full")
	// ErrTxTooBig: a request larger than MaxWorkRequest, or one without
	// GSOSize larger than a frame.
	ErrTxTooBig = errors.New("work request too big")
	// ErrTxMalformed: a request to segment whose headers GSO cannot
	// parse or does not segment (Head must be exactly the headers,
	// Ethernet through TCP or UDP).
	ErrTxMalformed = errors.New("malformed work request")
	// ErrTxDetached: the guest is no longer attached.
	ErrTxDetached = errors.New("guest detached")
)

// MaxWorkRequest is the largest packet a work request may carry: a 64 KB
// IP packet plus its link header.
const MaxWorkRequest = 65535 + 64

// Send queues a work request of the guest for transmission on its active
// port. It copies the packet once, into the engine's frames (segmenting it
// there if it asks for GSO), before it returns, so the caller may reuse
// wr's buffers. It is safe to call from any goroutine. A connection's requests
// always go through the same queue, so they leave in order.
func (g *Guest) Send(wr *WorkRequest) error {
	q0 := g.sendQs.Load()
	if q0 == nil {
		return fmt.Errorf("guest %s: %w", g.Spec.Name, ErrTxDetached)
	}
	qs := *q0
	if len(qs) == 0 {
		return fmt.Errorf("guest %s: send: the engine runs no pipeline (Options.Pipeline)", g.Spec.Name)
	}
	q := qs[0]
	if len(qs) > 1 {
		q = qs[flowHash(wr.Head)%uint64(len(qs))]
	}
	if err := q.put(wr); err != nil {
		return fmt.Errorf("guest %s: %w", g.Spec.Name, err)
	}
	return nil
}

// flowHash hashes the addresses and ports of an Ethernet frame's headers,
// the same for every packet of a connection, cheaply and without parsing
// options or extension headers (a connection's headers do not change).
func flowHash(h []byte) uint64 {
	if len(h) < 14 {
		return 0
	}
	var x uint64 = 14695981039346656037
	mix := func(b []byte) {
		for _, c := range b {
			x = (x ^ uint64(c)) * 1099511628211
		}
	}
	ip := h[14:]
	switch {
	case len(ip) >= 24 && ip[0]>>4 == 4:
		ihl := int(ip[0]&0xf) * 4
		mix(ip[12:20])
		if len(ip) >= ihl+4 {
			mix(ip[ihl : ihl+4])
		}
	case len(ip) >= 44 && ip[0]>>4 == 6:
		mix(ip[8:44])
	}
	return x
}
