package conn

import (
	"encoding/binary"

	"github.com/xnic/xnic/flows"
)

// Context is the state xnic keeps per connection. It holds no pointers, so
// a table of a million of them costs the garbage collector nothing to scan.
// It is 128 bytes: two cache lines.
//
// A connection is keyed by the flow key of its receive direction (the key of
// packets arriving from the peer); send-direction packets are matched with
// their key reversed.
type Context struct {
	// Identity, owned by the table: read-only for callers.
	key   flows.Key
	Owner uint32 // the guest that owns the connection
	Class uint8  // traffic class
	flags uint8  // flagInUse, flagCached: owned by the table and the cache
	TCP   uint8  // TCPSeqKnown, TCPAckKnown, TCPSawSYN, ...
	_     uint8
	gen   uint32 // bumped each time the table slot is reused
	GRO   uint32 // GRO state reference, 0 = none

	// Counters.
	PacketsIn, PacketsOut uint64
	BytesIn, BytesOut     uint64

	// TCP sequence tracking of the receive direction.
	NextSeq    uint32 // next expected sequence number; valid with TCPSeqKnown
	LastAck    uint32 // highest acknowledgment seen; valid with TCPAckKnown
	Window     uint32 // last advertised window, as on the wire (unscaled)
	OutOfOrder uint32 // segments that did not start at NextSeq

	// Timestamps, monotonic nanoseconds.
	FirstSeen, LastSeen int64

	_ [8]byte // pad to 128 bytes
}

// ContextSize is the size of a Context in bytes.
const ContextSize = 128

// Context.flags bits.
const (
	flagInUse  = 1 << 0 // the table slot holds a live connection
	flagCached = 1 << 1 // a cache holds the authoritative copy
)

// Context.TCP bits.
const (
	TCPSeqKnown = 1 << 0 // NextSeq is valid
	TCPAckKnown = 1 << 1 // LastAck is valid
	TCPSawSYN   = 1 << 2
	TCPSawFIN   = 1 << 3
	TCPSawRST   = 1 << 4
)

// Key is the connection's key (receive direction).
func (c *Context) Key() flows.Key { return c.key }

// Generation counts how often the context's table slot has been used: a
// Handle together with a Generation names one connection for good.
func (c *Context) Generation() uint32 { return c.gen }

// Bytes is the connection's total traffic in bytes, both directions.
func (c *Context) Bytes() uint64 { return c.BytesIn + c.BytesOut }

// Dir is a packet's direction relative to the connection key.
type Dir uint8

const (
	DirRX Dir = iota // received: the packet's key is the connection key
	DirTX            // sent: the packet's key is the connection key reversed
)

func (d Dir) String() string {
	if d == DirTX {
		return "tx"
	}
	return "rx"
}

// Apply accounts one packet to the context: counters, last-seen time, and,
// for received TCP segments, sequence tracking. frame is the packet's frame;
// it may be nil, and then TCP sequence tracking is skipped. Apply is the one
// definition of how a packet changes a context: the Processor calls it, and
// so can a custom stage.
func (c *Context) Apply(dir Dir, p *flows.Packet, frame []byte, now int64) {
	n := uint64(p.L3Off) + uint64(p.IPLen)
	if dir == DirTX {
		c.PacketsOut++
		c.BytesOut += n
	} else {
		c.PacketsIn++
		c.BytesIn += n
	}
	c.LastSeen = now
	if p.Proto != flows.ProtoTCP || p.Reason != flows.ReasonOK {
		return
	}
	end := int(p.L4Off) + flows.TCPMinLen
	if end > len(frame) {
		return
	}
	h := frame[p.L4Off:end]
	if dir == DirTX {
		if p.TCPFlags&flows.TCPFlagFIN != 0 {
			c.TCP |= TCPSawFIN
		}
		if p.TCPFlags&flows.TCPFlagRST != 0 {
			c.TCP |= TCPSawRST
		}
		return
	}
	c.TrackTCP(binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint32(h[8:]),
		binary.BigEndian.Uint16(h[14:]), p.TCPFlags, uint32(p.PayloadLen))
}

// TrackTCP follows the receive direction's sequence space for one segment:
// seq, ack, window and flags as on the wire, plen the payload length.
//
// The first segment seen (or any SYN) sets NextSeq. After that, a segment
// that occupies sequence space and does not start at NextSeq counts as out of
// order; a gap moves NextSeq past the segment, an old segment only moves it
// forward if it ends beyond it. Pure ACKs and window updates never count as
// out of order. ACKs only move LastAck forward.
func (c *Context) TrackTCP(seq, ack uint32, win uint16, flags uint8, plen uint32) {
	segLen := plen
	if flags&flows.TCPFlagSYN != 0 {
		segLen++
		c.TCP |= TCPSawSYN
	}
	if flags&flows.TCPFlagFIN != 0 {
		segLen++
		c.TCP |= TCPSawFIN
	}
	if flags&flows.TCPFlagRST != 0 {
		c.TCP |= TCPSawRST
	}
	switch {
	case c.TCP&TCPSeqKnown == 0 || flags&flows.TCPFlagSYN != 0:
		c.NextSeq = seq + segLen
		c.TCP |= TCPSeqKnown
	case segLen == 0:
		// A pure ACK, window update or keepalive: nothing to track.
	case seq == c.NextSeq:
		c.NextSeq += segLen
	case seqLess(c.NextSeq, seq):
		// A gap: something before this segment is missing or late.
		c.OutOfOrder++
		c.NextSeq = seq + segLen
	default:
		// Old data: a retransmission or a late segment.
		c.OutOfOrder++
		if end := seq + segLen; seqLess(c.NextSeq, end) {
			c.NextSeq = end
		}
	}
	if flags&flows.TCPFlagACK != 0 {
		if c.TCP&TCPAckKnown == 0 || seqLess(c.LastAck, ack) {
			c.LastAck = ack
			c.TCP |= TCPAckKnown
		}
		c.Window = uint32(win)
	}
}

// seqLess compares sequence numbers modulo 2^32 (RFC 1982 style).
func seqLess(a, b uint32) bool { return int32(a-b) < 0 }

// keyEqual is a == b without the call to runtime.memequal that the
// compiler emits for 40-byte structs: five 8-byte compares.
func keyEqual(a, b *flows.Key) bool {
	le := binary.LittleEndian
	x := le.Uint64(a.Src[0:8]) ^ le.Uint64(b.Src[0:8])
	x |= le.Uint64(a.Src[8:16]) ^ le.Uint64(b.Src[8:16])
	x |= le.Uint64(a.Dst[0:8]) ^ le.Uint64(b.Dst[0:8])
	x |= le.Uint64(a.Dst[8:16]) ^ le.Uint64(b.Dst[8:16])
	x |= keyTail(a) ^ keyTail(b)
	return x == 0
}

func keyTail(k *flows.Key) uint64 {
	return uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32 | uint64(k.Family)<<40 | uint64(k.VLAN)<<48
}
