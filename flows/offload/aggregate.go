package offload

import "github.com/xnic/xnic/flows"

// FlushReason says why GRO delivered an aggregate. The first group ends a
// held aggregate; the last three deliver a frame that never was held.
type FlushReason uint8

const (
	FlushByPush        FlushReason = iota // a PSH segment merged, then the aggregate flushed (or a PSH segment came alone)
	FlushByFIN                            // the same for FIN
	FlushByShort                          // a segment shorter than the MSS merged, then the aggregate flushed
	FlushBySize                           // the next segment would pass the byte limit (64 KB) or MaxSegs; or nothing more fits
	FlushByBatchEnd                       // Flush at the end of a receive batch
	FlushByTimeout                        // FlushOlderThan: held longer than FlushTimeout
	FlushBySeq                            // the next segment is not contiguous: loss, reordering, a duplicate
	FlushByAck                            // the next segment acknowledges something else
	FlushByMismatch                       // the next segment differs in a header field that must match (flags, window, options, TTL, TOS, DF, IPv4 ID, L2 header, flow label)
	FlushByMSS                            // the next segment is longer than the MSS
	FlushByUnmergeable                    // the next frame of the flow can never merge; it is delivered right after
	FlushByEvict                          // the table was full: the oldest flow of the bucket made room
	DeliverUnmergeable                    // a TCP frame that never merges: SYN, RST, URG, CWR, no payload, IPv4 options or reserved flag, padding
	DeliverBadCsum                        // a TCP frame with a bad IPv4 header or TCP checksum
	DeliverPassThrough                    // not a TCP segment GRO looks at: non-TCP, non-IP, malformed, fragments, IPv6 extension headers
	numFlushReasons
)

// NumFlushReasons is the number of FlushReason values, for counter arrays.
const NumFlushReasons = int(numFlushReasons)

var flushReasonNames = [numFlushReasons]string{
	"push", "fin", "short", "size", "batch_end", "timeout", "seq", "ack", "mismatch", "mss",
	"unmergeable_next", "evict", "unmergeable", "bad_csum", "pass_through",
}

func (r FlushReason) String() string {
	if r < numFlushReasons {
		return flushReasonNames[r]
	}
	return "flush_reason(?)"
}

// AggFlags describe an Aggregate.
type AggFlags uint8

const (
	// AggPassThrough: GRO did not look into the frame (DeliverPassThrough).
	// Head is the whole frame, untouched, Ethernet padding included, and
	// Segs is empty.
	AggPassThrough AggFlags = 1 << iota
	// AggCsumValidated: the IPv4 header and TCP checksums of every frame
	// were verified (or, with GROOptions.Verify off, the caller vouched for
	// them). The consumer need not verify them again.
	AggCsumValidated
	// AggCsumPartial: the TCP checksum field holds only the pseudo-header
	// sum, as after Linux's tcp_gro_complete (CHECKSUM_PARTIAL); see
	// CompletePartial.
	AggCsumPartial
	// AggCsumBad: a checksum failed (DeliverBadCsum); drop the frame.
	AggCsumBad
	// AggFixedID: the IPv4 ID stayed the same in every segment instead of
	// increasing by one; segment the aggregate back with Request.FixedID
	// (Linux's SKB_GSO_TCP_FIXEDID).
	AggFixedID
)

// Aggregate is what GRO delivers: one or more TCP segments of a flow, merged
// without copying any payload, or one frame passed through.
//
// For TCP, Head is the first frame's headers (Ethernet through TCP with
// options), rewritten in place for the whole aggregate when Count() > 1: the
// IPv4 total length and header checksum or the IPv6 payload length, the TCP
// flags (PSH and FIN of the last segment OR'ed in) and the TCP checksum
// (per GROOptions.CsumOut). Segs are the payloads, views into the original
// frames, in sequence order; Segs[i] belongs to the frame Handles[i]. The
// packet on the wire is Head followed by every Seg: see AppendTo.
//
// An Aggregate from GRO.Next is valid until the next Receive, Flush or
// FlushOlderThan: GRO reuses it and its slices. The frames themselves stay
// the caller's: GRO never touches a frame once Next has handed out its
// aggregate.
type Aggregate struct {
	Head    []byte
	Segs    [][]byte
	Handles []uint64 // the caller's handle of every frame, for releasing them

	// Pkt is the first frame's parse, with IPLen, PayloadLen and TCPFlags
	// updated for the aggregate. Its offsets index Head.
	Pkt flows.Packet

	GSOSize int // the MSS: the first segment's payload length
	Len     int // payload bytes in all Segs
	Flags   AggFlags
	Reason  FlushReason
}

// Count is the number of frames in the aggregate.
func (a *Aggregate) Count() int { return len(a.Handles) }

// AppendTo appends the aggregate's packet (Head, then every Seg) to dst.
func (a *Aggregate) AppendTo(dst []byte) []byte {
	dst = append(dst, a.Head...)
	for _, s := range a.Segs {
		dst = append(dst, s...)
	}
	return dst
}

// Request returns the GSO request that segments the aggregate back into
// frames like the ones it was merged from. Payload shares a.Segs: use the
// request before the aggregate is reused.
func (a *Aggregate) Request() Request {
	return Request{
		Head:    a.Head,
		L3Off:   int(a.Pkt.L3Off),
		Payload: a.Segs,
		GSOSize: a.GSOSize,
		FixedID: a.Flags&AggFixedID != 0,
	}
}
