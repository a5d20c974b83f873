package offload

import (
	"encoding/binary"
	"fmt"

	"github.com/xnic/xnic/flows"
)

// Request is a large TCP segment or UDP datagram for GSO to split: the
// headers of the first segment and the payload, as one slice or a chain.
type Request struct {
	// Head is the headers, Ethernet (or whatever precedes the IP header)
	// through the TCP header with options or the UDP header, and nothing
	// more. Every output segment starts with a copy of it.
	Head []byte
	// L3Off is where the IP header starts in Head.
	L3Off int
	// Payload is the payload in order, as one or more slices of any length.
	Payload [][]byte
	// GSOSize is the payload bytes per output segment: the MSS for TCP,
	// gso_size for UDP. The last segment takes the rest.
	GSOSize int
	// FixedID keeps every segment's IPv4 ID at Head's instead of adding
	// one per segment (Linux's SKB_GSO_TCP_FIXEDID; see AggFixedID).
	FixedID bool
}

// GSOOptions configure a GSO.
type GSOOptions struct {
	// CsumOut is CsumFull (compute every TCP/UDP checksum) or CsumPartial
	// (store the pseudo-header sum, for a device that completes it).
	CsumOut CsumOut
}

// DefaultGSOOptions computes full checksums.
func DefaultGSOOptions() GSOOptions { return GSOOptions{CsumOut: CsumFull} }

// GSOStats count what a GSO did.
type GSOStats struct {
	Requests uint64 // requests segmented
	Segments uint64 // segments written
	Errors   uint64 // requests refused
}

// GSO splits large TCP segments and UDP datagrams into frames (TSO/GSO in
// software) and fills in their checksums. Like a GRO, it belongs to one
// worker.
type GSO struct {
	opts  GSOOptions
	Stats GSOStats
}

// NewGSO makes a GSO.
func NewGSO(opts GSOOptions) (*GSO, error) {
	if opts.CsumOut != CsumFull && opts.CsumOut != CsumPartial {
		return nil, fmt.Errorf("new gso: csum out %v: %w", opts.CsumOut, ErrOptions)
	}
	return &GSO{opts: opts}, nil
}

// Segments is the number of segments a payload of n bytes makes at the
// given GSO size: at least one.
func Segments(n, gsoSize int) int {
	if n <= 0 || gsoSize <= 0 {
		return 1
	}
	return (n + gsoSize - 1) / gsoSize
}

// head describes a Request's headers.
type head struct {
	family, proto uint8
	l3, l4, end   int // IP header, L4 header, end of headers
}

func parseHead(h []byte, l3 int) (head, error) {
	var d head
	if l3 < 0 || l3 >= len(h) {
		return d, ErrHeader
	}
	d.l3 = l3
	ip := h[l3:]
	switch ip[0] >> 4 {
	case 4:
		if len(ip) < flows.IPv4MinLen {
			return d, ErrHeader
		}
		ihl := int(ip[0]&0x0f) * 4
		if ihl < flows.IPv4MinLen || ihl > len(ip) {
			return d, ErrHeader
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return d, ErrUnsupported // a fragment
		}
		d.family, d.proto, d.l4 = 4, ip[9], l3+ihl
	case 6:
		if len(ip) < flows.IPv6Len {
			return d, ErrHeader
		}
		d.family, d.proto, d.l4 = 6, ip[6], l3+flows.IPv6Len
	default:
		return d, ErrHeader
	}
	rest := h[d.l4:]
	switch d.proto {
	case flows.ProtoTCP:
		if len(rest) < flows.TCPMinLen {
			return d, ErrHeader
		}
		d.end = d.l4 + int(rest[12]>>4)*4
		if d.end-d.l4 < flows.TCPMinLen {
			return d, ErrHeader
		}
	case flows.ProtoUDP:
		d.end = d.l4 + flows.UDPLen
	default:
		return d, ErrUnsupported
	}
	if d.end != len(h) {
		return d, ErrHeader
	}
	return d, nil
}

// Segment splits r into out[0:n], setting sizes[i] to the length of
// out[i]'s frame, and returns n. Every out[i] must be long enough for its
// frame (len(Head) plus up to GSOSize payload bytes). Each segment gets the
// headers of Head with: the IP length; for IPv4 the ID plus i (unless
// FixedID) and a new header checksum; for TCP the sequence number plus the
// payload before it, PSH and FIN on the last segment only and CWR on the
// first only; for UDP the length; and the TCP/UDP checksum per CsumOut. A
// payload no longer than GSOSize makes one segment. On error nothing is
// counted as written and out's contents are unspecified.
func (g *GSO) Segment(r *Request, out [][]byte, sizes []int) (int, error) {
	d, err := parseHead(r.Head, r.L3Off)
	if err != nil {
		g.Stats.Errors++
		return 0, err
	}
	return g.segment(r, d, out, sizes)
}

// segment is Segment with r's headers described by d.
func (g *GSO) segment(r *Request, d head, out [][]byte, sizes []int) (int, error) {
	total := 0
	for _, p := range r.Payload {
		total += len(p)
	}
	mss := r.GSOSize
	if total > 0 && mss <= 0 {
		g.Stats.Errors++
		return 0, ErrGSOSize
	}
	n := Segments(total, mss)
	if len(out) < n || len(sizes) < n {
		g.Stats.Errors++
		return 0, ErrShortBuffer
	}
	hl := len(r.Head)
	first := min(total, max(mss, 0))
	if hl-d.l3+first > MaxAggregateLen {
		g.Stats.Errors++
		return 0, ErrTooBig
	}
	for i := range n {
		segLen := min(mss, total-i*mss)
		if total == 0 {
			segLen = 0
		}
		if len(out[i]) < hl+segLen {
			g.Stats.Errors++
			return 0, ErrShortBuffer
		}
	}

	// Sums of the fixed parts of the headers, to which each segment adds
	// its own fields: IPv4 header without length, ID and checksum; L4
	// header without checksum and sequence number and flags (TCP) or
	// length (UDP); the pseudo-header without length.
	h := r.Head
	ip := h[d.l3:d.l4]
	l4h := h[d.l4:]
	be := binary.BigEndian
	var id, ipsum uint16
	if d.family == 4 {
		id = be.Uint16(ip[4:])
		ipsum = sub(sub(sub(Sum(ip, 0), be.Uint16(ip[2:])), id), be.Uint16(ip[ipv4CsumOff:]))
	}
	var seq uint32
	var flags uint8
	off := udpCsumOff
	hsum := Sum(l4h, 0)
	if d.proto == flows.ProtoTCP {
		off = tcpCsumOff
		seq = be.Uint32(l4h[4:])
		flags = l4h[13]
		hsum = sub(sub(sub(hsum, uint16(seq>>16)), uint16(seq)), uint16(flags))
	} else {
		hsum = sub(hsum, be.Uint16(l4h[4:]))
	}
	hsum = sub(hsum, be.Uint16(l4h[off:]))
	pseudo := pseudoOf(ip, d.family, d.proto, 0)

	full := g.opts.CsumOut == CsumFull
	pi, po := 0, 0 // cursor in the payload chain
	for i := range n {
		segLen := 0
		if total > 0 {
			segLen = min(mss, total-i*mss)
		}
		o := out[i][:hl+segLen]
		copy(o, h)
		// Gather the payload, summing it on the way when a full checksum
		// is due.
		w := o[hl:]
		var psum uint64
		odd := false
		for len(w) > 0 {
			src := r.Payload[pi][po:]
			c := min(len(src), len(w))
			if full {
				x := copySumLE(w, src[:c])
				if odd {
					x = swapLE(x)
				}
				psum = addLE(psum, x)
				odd = odd != (c&1 != 0)
			} else {
				copy(w, src[:c])
			}
			w = w[c:]
			po += c
			if po == len(r.Payload[pi]) {
				pi, po = pi+1, 0
			}
		}
		oip := o[d.l3:d.l4]
		l4len := uint16(hl - d.l4 + segLen)
		if d.family == 4 {
			tot := uint16(d.l4-d.l3) + l4len
			sid := id
			if !r.FixedID {
				sid += uint16(i)
			}
			be.PutUint16(oip[2:], tot)
			be.PutUint16(oip[4:], sid)
			be.PutUint16(oip[ipv4CsumOff:], ^Add(ipsum, Add(tot, sid)))
		} else {
			be.PutUint16(oip[4:], l4len)
		}
		seg := o[d.l4:]
		var var16 uint16 // the segment's own L4 header fields, summed
		if d.proto == flows.ProtoTCP {
			sq := seq + uint32(i*mss)
			f := flags
			if i != n-1 {
				f &^= flows.TCPFlagPSH | flows.TCPFlagFIN
			}
			if i != 0 {
				f &^= flows.TCPFlagCWR
			}
			be.PutUint32(seg[4:], sq)
			seg[13] = f
			var16 = Add(Add(uint16(sq>>16), uint16(sq)), uint16(f))
		} else {
			be.PutUint16(seg[4:], l4len)
			var16 = l4len
		}
		ps := Add(pseudo, l4len)
		if !full {
			be.PutUint16(seg[off:], ps)
		} else {
			c := ^Add(Add(hsum, var16), Add(ps, foldLE(psum)))
			if c == 0 && d.proto == flows.ProtoUDP {
				c = 0xffff
			}
			be.PutUint16(seg[off:], c)
		}
		sizes[i] = len(o)
	}
	g.Stats.Requests++
	g.Stats.Segments += uint64(n)
	return n, nil
}

// SegmentFrame splits one whole frame, parsed into p (TCP or UDP with
// ReasonOK), at gsoSize: Segment for a large segment in one buffer, with
// the headers as p describes them rather than parsed again. fixedID is as
// Request.FixedID.
func (g *GSO) SegmentFrame(frame []byte, p *flows.Packet, gsoSize int, fixedID bool, out [][]byte, sizes []int) (int, error) {
	d, err := headOf(frame, p)
	if err != nil {
		g.Stats.Errors++
		return 0, err
	}
	po := int(p.PayloadOff)
	pay := frame[po : po+int(p.PayloadLen)]
	r := Request{
		Head:    frame[:po],
		L3Off:   int(p.L3Off),
		Payload: [][]byte{pay},
		GSOSize: gsoSize,
		FixedID: fixedID,
	}
	return g.segment(&r, d, out, sizes)
}

// headOf describes the headers of a frame parsed into p as parseHead
// does, refusing what parseHead refuses.
func headOf(frame []byte, p *flows.Packet) (head, error) {
	if p.Reason != flows.ReasonOK || int(p.PayloadOff)+int(p.PayloadLen) > len(frame) ||
		(p.Family != 4 && p.Family != 6) {
		return head{}, ErrHeader
	}
	if p.Fragment || p.ExtHeaders != 0 || (p.Proto != flows.ProtoTCP && p.Proto != flows.ProtoUDP) {
		return head{}, ErrUnsupported
	}
	return head{family: p.Family, proto: p.Proto, l3: int(p.L3Off), l4: int(p.L4Off), end: int(p.PayloadOff)}, nil
}

// sub is the ones-complement subtraction a - b.
func sub(a, b uint16) uint16 { return Add(a, ^b) }
