package offload

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"time"

	"github.com/xnic/xnic/flows"
)

// CsumOut says what GRO writes in the TCP checksum field of an aggregate
// of two or more segments. Aggregates of one frame are never rewritten.
type CsumOut uint8

const (
	// CsumFull writes the full checksum of the aggregate. With Verify on it
	// costs next to nothing: the payload sums come from the verification.
	CsumFull CsumOut = iota
	// CsumPartial writes the pseudo-header sum only, as Linux's
	// tcp_gro_complete does (CHECKSUM_PARTIAL), and sets AggCsumPartial.
	CsumPartial
	// CsumMarkValidated leaves the first segment's field as it was: the
	// field is stale and only AggCsumValidated vouches for the data (like
	// CHECKSUM_UNNECESSARY).
	CsumMarkValidated
	numCsumOut
)

func (c CsumOut) String() string {
	switch c {
	case CsumFull:
		return "full"
	case CsumPartial:
		return "partial"
	case CsumMarkValidated:
		return "mark_validated"
	}
	return "csum_out(?)"
}

// GRO limits.
const (
	// MaxSegsLimit bounds GROOptions.MaxSegs.
	MaxSegsLimit = 256
	// MaxAggregateLen is the largest IP total length of an aggregate: the
	// IPv4 total length and IPv6 payload length fields are 16 bits (Linux
	// merges while the length stays below GRO_LEGACY_MAX_SIZE, 65536).
	MaxAggregateLen = 0xffff
)

// GROOptions configure a GRO table.
type GROOptions struct {
	// Buckets is the number of hash buckets, a power of two, and
	// FlowsPerBucket the flows each one holds (Linux: GRO_HASH_BUCKETS = 8
	// and MAX_GRO_SKBS = 8). A new flow in a full bucket flushes the
	// bucket's oldest (FlushByEvict).
	Buckets        int
	FlowsPerBucket int
	// MaxSegs is the most frames in one aggregate (1..MaxSegsLimit).
	// Linux has no such bound; at an MSS of 1448 the byte limit stops an
	// aggregate at 45 frames first.
	MaxSegs int
	// MaxBytes is the largest IP total length of an aggregate
	// (up to MaxAggregateLen).
	MaxBytes int
	// Verify checks the IPv4 header and TCP checksums of every TCP frame
	// before merging, counts the bad ones and never merges them. Off, the
	// caller vouches for the checksums (e.g. a NIC or XDP checked them).
	Verify bool
	// CsumOut is what to write in an aggregate's TCP checksum field.
	CsumOut CsumOut
	// FlushTimeout is how long FlushOlderThan lets a flow stay held, like
	// gro_flush_timeout. Zero means the caller calls Flush at the end of
	// every receive batch, the default.
	FlushTimeout time.Duration
	// CoalesceAcks folds a run of a flow's pure ACKs, each acknowledging
	// more than the one before, into one aggregate that carries the last
	// ACK's headers, as FreeBSD's LRO does. Linux's GRO delivers every
	// ACK, so it is off by default; see GRO for the rules.
	CoalesceAcks bool
}

// DefaultGROOptions are Linux's table shape, 64 frames per aggregate,
// 64 KB, verification on, full checksums out and a flush per batch.
func DefaultGROOptions() GROOptions {
	return GROOptions{
		Buckets:        8,
		FlowsPerBucket: 8,
		MaxSegs:        64,
		MaxBytes:       MaxAggregateLen,
		Verify:         true,
		CsumOut:        CsumFull,
	}
}

func (o *GROOptions) validate() error {
	switch {
	case o.Buckets < 1 || o.Buckets > 1024 || o.Buckets&(o.Buckets-1) != 0:
		return fmt.Errorf("gro buckets %d: %w", o.Buckets, ErrOptions)
	case o.FlowsPerBucket < 1 || o.FlowsPerBucket > 64:
		return fmt.Errorf("gro flows per bucket %d: %w", o.FlowsPerBucket, ErrOptions)
	case o.MaxSegs < 1 || o.MaxSegs > MaxSegsLimit:
		return fmt.Errorf("gro max segs %d: %w", o.MaxSegs, ErrOptions)
	case o.MaxBytes < flows.IPv6Len+flows.TCPMinLen+1 || o.MaxBytes > MaxAggregateLen:
		return fmt.Errorf("gro max bytes %d: %w", o.MaxBytes, ErrOptions)
	case o.CsumOut >= numCsumOut:
		return fmt.Errorf("gro csum out %d: %w", o.CsumOut, ErrOptions)
	case o.FlushTimeout < 0:
		return fmt.Errorf("gro flush timeout %v: %w", o.FlushTimeout, ErrOptions)
	}
	return nil
}

// GROStats count what a GRO table did.
type GROStats struct {
	Frames     uint64 // frames received
	Segments   uint64 // TCP segments that went through the merge rules
	Merged     uint64 // segments merged into a held aggregate
	Aggregates uint64 // aggregates delivered, single frames included
	Flush      [NumFlushReasons]uint64
	// SegsHist counts delivered TCP aggregates by frame count:
	// [1], [2,3], [4,7], ... [128,255], [256].
	SegsHist [9]uint64
	Csum     CsumStats
	// AcksCoalesced counts pure ACKs folded into a later one
	// (GROOptions.CoalesceAcks).
	AcksCoalesced uint64
}

// Ratio is frames per delivered aggregate.
func (s *GROStats) Ratio() float64 {
	if s.Aggregates == 0 {
		return 0
	}
	return float64(s.Frames) / float64(s.Aggregates)
}

// GRO merges the TCP segments of flows into aggregates by Linux's rules
// (net/ipv4/tcp_offload.c tcp_gro_receive, af_inet.c, net/ipv6/ip6_offload.c,
// net/core/gro.c). Every frame comes out exactly once, in an aggregate,
// keeping the order of each flow.
//
// The caller pulls the aggregates: Receive, Flush and FlushOlderThan queue
// the ones they complete, in delivery order, in storage the GRO owns, and
// Next hands them out:
//
//	g.Receive(frame, handle, &p)
//	for a := g.Next(); a != nil; a = g.Next() {
//		deliver(a)
//	}
//
// An aggregate stays valid until the next Receive, Flush or FlushOlderThan,
// which reuse its storage; take them all before that, as those calls drop
// whatever is still queued. A Receive queues at most two aggregates (a
// held one it ends, then the frame alone), a Flush every held one.
//
// A segment merges into the flow's held aggregate only if the L2 header, the
// addresses and ports, the ACK, the TCP flags other than PSH and FIN (so the
// data offset, ECE and window too), the urgent pointer, the TCP options byte
// for byte, TTL or hop limit, TOS or traffic class, DF or the IPv6 flow
// label all match; the IPv4 ID stays fixed or increases by one per segment
// (decided by the second segment; a fixed ID needs no DF, as in 6.18); the
// sequence continues; its payload is 1..MSS bytes (the MSS is the first
// segment's payload length); and the aggregate stays within MaxBytes and
// MaxSegs. CWR, SYN, RST and URG segments, those without payload, with IPv4
// options or the reserved IPv4 flag, Ethernet padding or a bad checksum
// never merge: they flush the held aggregate of their flow and are
// delivered alone. Fragments and IPv6 extension headers pass through, after
// the held aggregate of their flow too. (Linux delivers those and bad
// checksums before the held aggregate; the boundaries are the same.)
//
// A segment shorter than the MSS, or with PSH or FIN, merges and then
// flushes the aggregate. A segment that cannot merge flushes the held one
// and starts a new aggregate (or, with PSH or FIN, is delivered alone).
// TestKernelGRO checks these boundaries against the running kernel.
//
// With CoalesceAcks, a pure ACK (flags exactly ACK, no payload, no IPv4
// options, TCP options none or NOP, NOP, timestamps) is held as a run of
// ACKs instead of delivered alone. The flow's next pure ACK joins the run
// when its L2 header, TTL or hop limit, TOS or traffic class, DF or flow
// label, sequence number, header layout and urgent pointer match and it
// acknowledges strictly more: its headers (ACK, window, timestamps, IPv4 ID
// and checksums) are copied over the run's head, so the run delivers as
// that one ACK, every frame handled once. A duplicate ACK (the same ACK
// number, which counts for fast retransmit), a SACK, or any other frame of
// the flow ends the run first, so order and loss signals are kept.
//
// The previous segment's flow is tried first against a template of the
// headers its next segment must have (word compares under a mask); a
// segment that does not match goes through the hash table and the field by
// field rules, which also name the flush reason.
//
// A GRO belongs to one worker: no method may be called concurrently.
type GRO struct {
	opts GROOptions

	// The table: flows, their free list, the buckets and the list of held
	// flows in the order they started. Only the owning worker touches them.
	// A flushed flow leaves the table at once but goes back to the free
	// list only when its queued aggregate is dropped (retire), so there is
	// one flow more than the buckets hold: a Receive may end a held flow
	// and start another before the caller has taken the first.
	flows  []flow
	free   []int32
	bslots []int32 // Buckets × FlowsPerBucket flow indices
	bcount []int32
	bmask  uint64
	oldest int32 // head of the held list (oldest), -1 if empty
	newest int32
	held   int
	last   *flow // the flow of the previous segment, a one-entry cache
	starts uint64
	noFast bool // tests and benchmarks: skip the template fast path
	now    int64

	single    Aggregate // for frames delivered without being held
	singleSeg [1][]byte
	singleH   [1]uint64

	// ready is the queue of aggregates for Next, in delivery order: a
	// flow's index, or readySingle. Next has handed out the first taken.
	ready []int32
	taken int

	Stats GROStats
}

// readySingle in the ready queue stands for GRO.single.
const readySingle = -1

// flow is a held aggregate and what the merge rules need to know of it.
type flow struct {
	agg   Aggregate
	key   flows.Key
	hash  uint64
	frame []byte // the first frame, whole

	mss     int
	ipLen   int    // IP total length of the aggregate so far
	nextSeq uint32 // sequence number the next segment must have
	firstID uint16 // IPv4 ID of the first segment
	fixedID bool   // decided by the second segment
	flags   uint8  // PSH and FIN of merged segments

	psum   uint64 // payload sum so far (little-endian domain), when psumOK
	psumOK bool
	ack    bool // a run of pure ACKs (CoalesceAcks), not a data aggregate

	// The headers the next segment must have, bytes under a zero mask
	// aside (lengths, checksums, PSH and FIN): see fast.
	tmpl   [maxHdr]byte
	mask   [maxHdr]byte
	hdrLen int
	podd   bool // payload length so far is odd

	idx        int32
	bucket     int32
	prev, next int32 // the held list
	start      uint64
	born       int64
}

// NewGRO makes a GRO table; take its aggregates with Next.
func NewGRO(opts GROOptions) (*GRO, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("new gro: %w", err)
	}
	held := opts.Buckets * opts.FlowsPerBucket
	n := held + 1 // the spare flow: see GRO.flows
	g := &GRO{
		opts:   opts,
		flows:  make([]flow, n),
		free:   make([]int32, 0, n),
		bslots: make([]int32, held),
		bcount: make([]int32, opts.Buckets),
		bmask:  uint64(opts.Buckets - 1),
		oldest: -1,
		newest: -1,
		ready:  make([]int32, 0, n+1),
	}
	// One backing array for every flow's chain.
	segs := make([][]byte, n*opts.MaxSegs)
	handles := make([]uint64, n*opts.MaxSegs)
	for i := n - 1; i >= 0; i-- {
		f := &g.flows[i]
		f.idx = int32(i)
		lo, hi := i*opts.MaxSegs, (i+1)*opts.MaxSegs
		f.agg.Segs = segs[lo:lo:hi]
		f.agg.Handles = handles[lo:lo:hi]
		g.free = append(g.free, int32(i))
	}
	g.single.Segs = g.singleSeg[:0]
	g.single.Handles = g.singleH[:0]
	return g, nil
}

// Options returns the options the table was made with.
func (g *GRO) Options() GROOptions { return g.opts }

// Held is the number of flows with an aggregate held.
func (g *GRO) Held() int { return g.held }

// TCP flag word bits (bytes 12..15 of the TCP header: data offset,
// reserved bits, flags, window) that may differ between merged segments.
const flagWordMergeMask = ^(uint32(flows.TCPFlagFIN|flows.TCPFlagPSH) << 16)

// Receive takes one frame parsed into p and either holds it in its flow's
// aggregate or queues it for Next, after the held aggregate it ends, if
// any. handle is the caller's name for the frame (a UMEM address),
// returned in the aggregate. The frame may be rewritten in place (its
// headers, if it heads an aggregate) and must stay untouched by the caller
// until Next has handed out its aggregate. Receive first drops the
// aggregates still queued.
func (g *GRO) Receive(frame []byte, handle uint64, p *flows.Packet) {
	if len(g.ready) != 0 {
		g.retire()
	}
	g.Stats.Frames++
	if p.Reason != flows.ReasonOK || p.Proto != flows.ProtoTCP || (p.Family != 4 && p.Family != 6) ||
		int(p.L3Off)+int(p.IPLen) > len(frame) || int(p.PayloadOff)+int(p.PayloadLen) > len(frame) ||
		int(p.L4Off)+int(p.L4Len) != int(p.PayloadOff) {
		g.passThrough(frame, handle, p)
		return
	}
	if p.Fragment || p.ExtHeaders != 0 {
		if f, _ := g.lookup(&p.Key); f != nil {
			g.flush(f, FlushByUnmergeable)
		}
		g.passThrough(frame, handle, p)
		return
	}
	g.Stats.Segments++
	n := int(p.PayloadLen)
	l3, l4, po := int(p.L3Off), int(p.L4Off), int(p.PayloadOff)
	s := segment{frame: frame, handle: handle, p: p, pay: frame[po : po+n]}

	// Checksums. The payload sum is kept for the aggregate's checksum.
	if g.opts.Verify {
		if p.Family == 4 && !VerifyIPv4Header(frame[l3:l4]) {
			g.Stats.Csum.BadIPv4++
			g.unmergeable(frame, handle, p, DeliverBadCsum, AggCsumBad)
			return
		}
		s.psum = sumLE(s.pay)
		sum := addLE(sumLE(frame[l4:po]), s.psum)
		if Add(foldLE(sum), pseudoOf(frame[l3:], p.Family, flows.ProtoTCP, po-l4+n)) != 0xffff {
			g.Stats.Csum.BadTCP++
			g.unmergeable(frame, handle, p, DeliverBadCsum, AggCsumBad)
			return
		}
		s.verified = true
	}

	fl := p.TCPFlags
	if n == 0 && g.opts.CoalesceAcks && fl == flows.TCPFlagACK && !p.IPOptions &&
		l3+int(p.IPLen) <= len(frame) && (p.Family != 4 || frame[l3+6]&0x80 == 0) && pureAckShape(frame[l4:po]) {
		g.ackRun(frame, handle, p)
		return
	}
	if fl&(flows.TCPFlagSYN|flows.TCPFlagRST|flows.TCPFlagURG|flows.TCPFlagCWR) != 0 || n == 0 ||
		p.IPOptions || l3+int(p.IPLen) != len(frame) || (p.Family == 4 && frame[l3+6]&0x80 != 0) {
		g.unmergeable(frame, handle, p, DeliverUnmergeable, AggCsumValidated)
		return
	}

	// The fast path: the flow of the previous segment, whose next segment
	// has exactly the headers of its template.
	f := g.last
	r := mergeOK
	var h keyHash
	if f == nil || g.noFast || !g.fast(f, frame, p) {
		f, h = g.lookup(&p.Key)
		if f != nil {
			r = g.check(f, frame, p)
		}
	}
	if f != nil {
		if r == mergeOK {
			g.merge(f, &s)
			switch {
			case fl&flows.TCPFlagFIN != 0:
				g.flush(f, FlushByFIN)
			case fl&flows.TCPFlagPSH != 0:
				g.flush(f, FlushByPush)
			case n < f.mss:
				g.flush(f, FlushByShort)
			case len(f.agg.Handles) >= g.opts.MaxSegs || f.ipLen >= g.opts.MaxBytes:
				g.flush(f, FlushBySize)
			}
			return
		}
		g.flush(f, r)
	}
	switch {
	case fl&flows.TCPFlagFIN != 0:
		g.single1(frame, handle, p, FlushByFIN, AggCsumValidated)
	case fl&flows.TCPFlagPSH != 0:
		g.single1(frame, handle, p, FlushByPush, AggCsumValidated)
	case g.opts.MaxSegs == 1 || int(p.IPLen) >= g.opts.MaxBytes:
		g.single1(frame, handle, p, FlushBySize, AggCsumValidated)
	default:
		g.hold(&s, h)
	}
}

// segment is a TCP segment on its way through the merge rules.
type segment struct {
	frame  []byte
	handle uint64
	p      *flows.Packet
	pay    []byte // the payload: frame[PayloadOff:][:PayloadLen]
	// verified: the checksums were verified, and psum is the payload's
	// sum (little-endian domain), kept for the aggregate's checksum.
	psum     uint64
	verified bool
}

// keyHash is a flow key's hash, when it has been computed.
type keyHash struct {
	h  uint64
	ok bool
}

// mergeOK is check's verdict for a segment that merges.
const mergeOK = numFlushReasons

// maxHdr bounds the headers of a held segment: two VLAN tags, IPv4 without
// options or IPv6 without extension headers, TCP with 40 bytes of options.
const maxHdr = 128

// ones is a mask that keeps every byte.
var ones = func() (b [maxHdr]byte) {
	for i := range b {
		b[i] = 0xff
	}
	return b
}()

// fast reports whether frame merges into f, comparing its headers with f's
// template word by word. It is exactly check's mergeOK when the template
// holds; a segment it refuses goes through lookup and check, which decide
// (and may still merge it: the second segment of a fixed-ID flow).
func (g *GRO) fast(f *flow, frame []byte, p *flows.Packet) bool {
	hl := int(p.PayloadOff)
	n := int(p.PayloadLen)
	if hl != f.hdrLen || n > f.mss || len(f.agg.Handles) >= g.opts.MaxSegs || f.ipLen+n > g.opts.MaxBytes {
		return false
	}
	x := frame[:hl]
	t, m := f.tmpl[:hl], f.mask[:hl]
	le := binary.LittleEndian
	var d uint64
	i := 0
	for ; i+8 <= len(x) && i+8 <= len(t) && i+8 <= len(m); i += 8 {
		d |= (le.Uint64(x[i:]) ^ le.Uint64(t[i:])) & le.Uint64(m[i:])
	}
	if i < hl {
		j := hl - 8
		d |= (le.Uint64(x[j:]) ^ le.Uint64(t[j:])) & le.Uint64(m[j:])
	}
	return d == 0
}

// setTemplate makes f's template from its first frame.
func (f *flow) setTemplate(frame []byte, p *flows.Packet) {
	hl := int(p.PayloadOff)
	if hl > maxHdr {
		f.hdrLen = -1 // no template: lookup and check decide
		return
	}
	f.hdrLen = hl
	copy(f.tmpl[:], frame[:hl])
	copy(f.mask[:], ones[:hl])
	l3, l4 := int(p.L3Off), int(p.L4Off)
	if p.Family == 4 {
		f.mask[l3+2], f.mask[l3+3] = 0, 0   // total length
		f.mask[l3+10], f.mask[l3+11] = 0, 0 // header checksum
	} else {
		f.mask[l3+4], f.mask[l3+5] = 0, 0 // payload length
	}
	f.mask[l4+13] = ^uint8(flows.TCPFlagFIN | flows.TCPFlagPSH)
	f.mask[l4+16], f.mask[l4+17] = 0, 0 // checksum
	f.nextTemplate(p)
}

// nextTemplate sets the template's sequence number and IPv4 ID for the
// next segment. Until the second segment decides, it expects IDs to
// increase.
func (f *flow) nextTemplate(p *flows.Packet) {
	if f.hdrLen < 0 {
		return
	}
	binary.BigEndian.PutUint32(f.tmpl[int(p.L4Off)+4:], f.nextSeq)
	if p.Family == 4 {
		id := f.firstID
		if !f.fixedID {
			id += uint16(len(f.agg.Handles))
		}
		binary.BigEndian.PutUint16(f.tmpl[int(p.L3Off)+4:], id)
	}
}

// check applies the merge rules to segment frame of held flow f and returns
// mergeOK or the reason the held aggregate must be flushed.
func (g *GRO) check(f *flow, frame []byte, p *flows.Packet) FlushReason {
	if f.ack {
		return FlushByMismatch // a segment with data never joins a run of ACKs
	}
	hp := &f.agg.Pkt
	if p.L4Off != hp.L4Off || p.PayloadOff != hp.PayloadOff {
		return FlushByMismatch
	}
	h := f.frame
	l3, l4, po := int(p.L3Off), int(p.L4Off), int(p.PayloadOff)
	if !eqSmall(frame[:l3], h[:l3]) {
		return FlushByMismatch
	}
	count := len(f.agg.Handles)
	a, b := frame[l3:l4], h[l3:l4]
	if p.Family == 4 {
		if a[1] != b[1] || a[8] != b[8] || (a[6]^b[6])&0x40 != 0 {
			return FlushByMismatch
		}
		off := binary.BigEndian.Uint16(a[4:]) - f.firstID
		switch {
		case count == 1:
			if off > 1 {
				return FlushByMismatch
			}
		case f.fixedID:
			if off != 0 {
				return FlushByMismatch
			}
		case int(off) != count&0xffff:
			return FlushByMismatch
		}
	} else if binary.BigEndian.Uint32(a)^binary.BigEndian.Uint32(b) != 0 || a[7] != b[7] {
		return FlushByMismatch
	}
	t, u := frame[l4:po], h[l4:po]
	if (binary.BigEndian.Uint32(t[12:])^binary.BigEndian.Uint32(u[12:]))&flagWordMergeMask != 0 ||
		binary.BigEndian.Uint16(t[18:]) != binary.BigEndian.Uint16(u[18:]) ||
		!eqSmall(t[flows.TCPMinLen:], u[flows.TCPMinLen:]) {
		return FlushByMismatch
	}
	if binary.BigEndian.Uint32(t[8:]) != binary.BigEndian.Uint32(u[8:]) {
		return FlushByAck
	}
	if binary.BigEndian.Uint32(t[4:]) != f.nextSeq {
		return FlushBySeq
	}
	n := int(p.PayloadLen)
	if n > f.mss {
		return FlushByMSS
	}
	if count >= g.opts.MaxSegs || f.ipLen+n > g.opts.MaxBytes {
		return FlushBySize
	}
	return mergeOK
}

// merge appends segment s, which passed check, to f.
func (g *GRO) merge(f *flow, s *segment) {
	a := &f.agg
	p := s.p
	if len(a.Handles) == 1 && p.Family == 4 {
		f.fixedID = binary.BigEndian.Uint16(s.frame[int(p.L3Off)+4:]) == f.firstID
	}
	a.Segs = append(a.Segs, s.pay)
	a.Handles = append(a.Handles, s.handle)
	n := len(s.pay)
	f.ipLen += n
	f.nextSeq += uint32(n)
	f.flags |= p.TCPFlags & (flows.TCPFlagFIN | flows.TCPFlagPSH)
	if f.psumOK {
		if s.verified {
			psum := s.psum
			if f.podd {
				psum = swapLE(psum)
			}
			f.psum = addLE(f.psum, psum)
		} else {
			f.psumOK = false
		}
	}
	if n&1 != 0 {
		f.podd = !f.podd
	}
	f.nextTemplate(p)
	g.Stats.Merged++
}

// hold starts a new aggregate with segment s and returns its flow. h is
// the hash of s's key, if lookup computed it.
func (g *GRO) hold(s *segment, h keyHash) *flow {
	p, frame := s.p, s.frame
	if !h.ok {
		h.h = p.Key.Hash()
	}
	b := int(h.h & g.bmask)
	per := g.opts.FlowsPerBucket
	if int(g.bcount[b]) >= per {
		// Evict the oldest flow of the bucket.
		var old *flow
		for _, i := range g.bslots[b*per : b*per+per] {
			if f := &g.flows[i]; old == nil || f.start < old.start {
				old = f
			}
		}
		g.flush(old, FlushByEvict)
	}
	i := g.free[len(g.free)-1]
	g.free = g.free[:len(g.free)-1]
	f := &g.flows[i]
	g.bslots[b*per+int(g.bcount[b])] = i
	g.bcount[b]++
	f.bucket = int32(b)
	// Link at the newest end of the held list.
	f.prev, f.next = g.newest, -1
	if g.newest >= 0 {
		g.flows[g.newest].next = i
	} else {
		g.oldest = i
	}
	g.newest = i
	g.held++
	g.starts++
	f.start = g.starts
	f.born = g.now

	f.key = p.Key
	f.hash = h.h
	f.frame = frame
	po := int(p.PayloadOff)
	n := int(p.PayloadLen)
	a := &f.agg
	a.Head = frame[:po]
	a.Segs = append(a.Segs[:0], frame[po:po+n])
	a.Handles = append(a.Handles[:0], s.handle)
	a.Pkt = *p
	f.mss = n
	f.ipLen = int(p.IPLen)
	f.nextSeq = binary.BigEndian.Uint32(frame[int(p.L4Off)+4:]) + uint32(n)
	if p.Family == 4 {
		f.firstID = binary.BigEndian.Uint16(frame[int(p.L3Off)+4:])
	}
	f.fixedID = false
	f.flags = 0
	f.ack = false
	f.psum, f.psumOK, f.podd = s.psum, s.verified, n&1 != 0
	f.setTemplate(frame, p)
	g.last = f
	return f
}

// pureAckShape reports whether a pure ACK's TCP header t may join a run:
// no options, or NOP, NOP, timestamps (Linux's layout). SACK blocks and
// anything else end the run, so a loss signal reaches the stack as sent.
func pureAckShape(t []byte) bool {
	switch len(t) {
	case flows.TCPMinLen:
		return true
	case flows.TCPMinLen + 12:
		return t[20] == 1 && t[21] == 1 && t[22] == 8 && t[23] == 10
	}
	return false
}

// ackRun holds a pure ACK (CoalesceAcks): it joins the flow's run of ACKs
// when ackJoins says so, else it ends what the flow holds and starts a run.
func (g *GRO) ackRun(frame []byte, handle uint64, p *flows.Packet) {
	f, h := g.lookup(&p.Key)
	if f != nil {
		r := g.ackJoins(f, frame, p)
		if r == mergeOK {
			po := int(p.PayloadOff)
			copy(f.frame[:po], frame[:po]) // the run delivers as its last ACK
			a := &f.agg
			a.Pkt = *p
			a.Segs = append(a.Segs, frame[po:po])
			a.Handles = append(a.Handles, handle)
			g.Stats.AcksCoalesced++
			if len(a.Handles) >= g.opts.MaxSegs {
				g.flush(f, FlushBySize)
			}
			return
		}
		g.flush(f, r)
	}
	// No payload sum: a run delivers its last ACK's headers as they came.
	f = g.hold(&segment{frame: frame, handle: handle, p: p}, h)
	f.ack = true
	f.hdrLen = -1 // no template: the fast path is for data
}

// ackJoins applies the run rules to pure ACK frame and f's run (whose head
// holds the run's last ACK): mergeOK, or why the run ends.
func (g *GRO) ackJoins(f *flow, frame []byte, p *flows.Packet) FlushReason {
	hp := &f.agg.Pkt
	if !f.ack {
		return FlushByUnmergeable // held data: the ACK is delivered after it
	}
	if p.L4Off != hp.L4Off || p.PayloadOff != hp.PayloadOff || p.Family != hp.Family {
		return FlushByMismatch
	}
	h := f.frame
	l3, l4 := int(p.L3Off), int(p.L4Off)
	if !eqSmall(frame[:l3], h[:l3]) {
		return FlushByMismatch
	}
	a, b := frame[l3:l4], h[l3:l4]
	if p.Family == 4 {
		if a[1] != b[1] || a[8] != b[8] || (a[6]^b[6])&0x40 != 0 {
			return FlushByMismatch
		}
	} else if binary.BigEndian.Uint32(a)^binary.BigEndian.Uint32(b) != 0 || a[7] != b[7] {
		return FlushByMismatch
	}
	t, u := frame[l4:], h[l4:]
	be := binary.BigEndian
	if be.Uint32(t[4:]) != be.Uint32(u[4:]) {
		return FlushBySeq
	}
	if be.Uint16(t[18:]) != be.Uint16(u[18:]) {
		return FlushByMismatch
	}
	if int32(be.Uint32(t[8:])-be.Uint32(u[8:])) <= 0 {
		return FlushByAck // a duplicate (or older) ACK is delivered as sent
	}
	if len(f.agg.Handles) >= g.opts.MaxSegs {
		return FlushBySize
	}
	return mergeOK
}

// lookup finds the held flow of key k, and k's hash if it computed it.
func (g *GRO) lookup(k *flows.Key) (*flow, keyHash) {
	if g.held == 0 {
		return nil, keyHash{}
	}
	if l := g.last; l != nil && keyEq(&l.key, k) {
		return l, keyHash{l.hash, true}
	}
	h := k.Hash()
	b := int(h & g.bmask)
	per := g.opts.FlowsPerBucket
	for _, i := range g.bslots[b*per : b*per+int(g.bcount[b])] {
		if f := &g.flows[i]; f.hash == h && keyEq(&f.key, k) {
			g.last = f
			return f, keyHash{h, true}
		}
	}
	return nil, keyHash{h, true}
}

// flush completes f's aggregate, queues it and takes f out of the table.
func (g *GRO) flush(f *flow, r FlushReason) {
	a := &f.agg
	count := len(a.Handles)
	a.Flags = AggCsumValidated
	a.GSOSize = f.mss
	a.Len = f.ipLen - int(a.Pkt.PayloadOff-a.Pkt.L3Off)
	if count > 1 && !f.ack { // a run of ACKs heads with the last one's headers, whole
		g.complete(f)
	}
	if f.fixedID && count > 1 {
		a.Flags |= AggFixedID
	}
	a.Reason = r
	g.unlink(f)
	g.emit(a, f.idx)
}

// complete rewrites the head's headers for the whole aggregate.
func (g *GRO) complete(f *flow) {
	a := &f.agg
	pk := &a.Pkt
	h := a.Head
	l3, l4 := int(pk.L3Off), int(pk.L4Off)
	ip := h[l3:l4]
	if pk.Family == 4 {
		binary.BigEndian.PutUint16(ip[2:], uint16(f.ipLen))
		SetIPv4HeaderChecksum(ip)
	} else {
		binary.BigEndian.PutUint16(ip[4:], uint16(f.ipLen-flows.IPv6Len))
	}
	tcp := h[l4:]
	tcp[13] |= f.flags
	pk.IPLen = uint16(f.ipLen)
	pk.PayloadLen = uint16(a.Len)
	pk.TCPFlags = tcp[13]
	segLen := f.ipLen - (l4 - l3)
	switch g.opts.CsumOut {
	case CsumFull:
		ps := f.psum
		if !f.psumOK {
			ps = 0
			odd := false
			for _, s := range a.Segs {
				x := sumLE(s)
				if odd {
					x = swapLE(x)
				}
				ps = addLE(ps, x)
				if len(s)&1 != 0 {
					odd = !odd
				}
			}
		}
		binary.BigEndian.PutUint16(tcp[tcpCsumOff:], 0)
		s := addLE(sumLE(tcp), ps)
		c := ^Add(foldLE(s), pseudoOf(ip, pk.Family, flows.ProtoTCP, segLen))
		binary.BigEndian.PutUint16(tcp[tcpCsumOff:], c)
	case CsumPartial:
		binary.BigEndian.PutUint16(tcp[tcpCsumOff:], pseudoOf(ip, pk.Family, flows.ProtoTCP, segLen))
		a.Flags |= AggCsumPartial
	}
}

// unlink takes f out of the table; retire frees it.
func (g *GRO) unlink(f *flow) {
	per := g.opts.FlowsPerBucket
	b := int(f.bucket)
	slots := g.bslots[b*per : b*per+int(g.bcount[b])]
	for j, i := range slots {
		if i == f.idx {
			slots[j] = slots[len(slots)-1]
			break
		}
	}
	g.bcount[b]--
	if f.prev >= 0 {
		g.flows[f.prev].next = f.next
	} else {
		g.oldest = f.next
	}
	if f.next >= 0 {
		g.flows[f.next].prev = f.prev
	} else {
		g.newest = f.prev
	}
	g.held--
	if g.last == f {
		g.last = nil
	}
	f.frame = nil
}

// unmergeable delivers a TCP frame that never merges, after its flow's
// held aggregate.
func (g *GRO) unmergeable(frame []byte, handle uint64, p *flows.Packet, r FlushReason, flags AggFlags) {
	if f, _ := g.lookup(&p.Key); f != nil {
		g.flush(f, FlushByUnmergeable)
	}
	g.single1(frame, handle, p, r, flags)
}

// single1 delivers one TCP frame as an aggregate of one, headers and
// payload apart, untouched.
func (g *GRO) single1(frame []byte, handle uint64, p *flows.Packet, r FlushReason, flags AggFlags) {
	a := &g.single
	po, n := int(p.PayloadOff), int(p.PayloadLen)
	a.Head = frame[:po]
	a.Segs = append(a.Segs[:0], frame[po:po+n])
	a.Handles = append(a.Handles[:0], handle)
	a.Pkt = *p
	a.GSOSize = n
	a.Len = n
	a.Flags = flags
	a.Reason = r
	g.emit(a, readySingle)
}

// passThrough delivers a frame GRO does not look into.
func (g *GRO) passThrough(frame []byte, handle uint64, p *flows.Packet) {
	a := &g.single
	a.Head = frame
	a.Segs = a.Segs[:0]
	a.Handles = append(a.Handles[:0], handle)
	a.Pkt = *p
	a.GSOSize = 0
	a.Len = 0
	a.Flags = AggPassThrough
	a.Reason = DeliverPassThrough
	g.emit(a, readySingle)
}

// emit counts aggregate a and queues it for Next; i is its flow's index,
// or readySingle.
func (g *GRO) emit(a *Aggregate, i int32) {
	g.Stats.Aggregates++
	g.Stats.Flush[a.Reason]++
	if a.Flags&AggPassThrough == 0 {
		g.Stats.SegsHist[min(bits.Len(uint(len(a.Handles)))-1, len(g.Stats.SegsHist)-1)]++
	}
	g.ready = append(g.ready, i)
}

// Next returns the next queued aggregate, in delivery order, or nil when
// none is left. The aggregate is valid until the next Receive, Flush or
// FlushOlderThan; the frames under it are the caller's again once Next has
// handed it out.
func (g *GRO) Next() *Aggregate {
	if g.taken == len(g.ready) {
		return nil
	}
	i := g.ready[g.taken]
	g.taken++
	if i == readySingle {
		return &g.single
	}
	return &g.flows[i].agg
}

// retire drops the queued aggregates, taken or not: their references to
// the frames go, and their flows return to the free list.
func (g *GRO) retire() {
	for _, i := range g.ready {
		a := &g.single
		if i != readySingle {
			f := &g.flows[i]
			a = &f.agg
			g.free = append(g.free, i)
		}
		clear(a.Segs)
		a.Head = nil
		a.Segs = a.Segs[:0]
		a.Handles = a.Handles[:0]
	}
	g.ready = g.ready[:0]
	g.taken = 0
}

// Flush queues every held aggregate, oldest first (FlushByBatchEnd). Call
// it at the end of each receive batch unless FlushTimeout is set, and take
// the aggregates with Next.
func (g *GRO) Flush() {
	if len(g.ready) != 0 {
		g.retire()
	}
	for g.oldest >= 0 {
		g.flush(&g.flows[g.oldest], FlushByBatchEnd)
	}
}

// FlushOlderThan queues the aggregates held since before now minus
// FlushTimeout (FlushByTimeout), oldest first, and stamps the flows that
// start from here on with now. now is any monotonic clock in nanoseconds,
// the same on every call. Take the aggregates with Next.
func (g *GRO) FlushOlderThan(now int64) {
	if len(g.ready) != 0 {
		g.retire()
	}
	g.now = now
	limit := now - int64(g.opts.FlushTimeout)
	for g.oldest >= 0 {
		f := &g.flows[g.oldest]
		if f.born > limit {
			return
		}
		g.flush(f, FlushByTimeout)
	}
}

// addLE adds two little-endian-domain sums with the end-around carry.
func addLE(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	return s + c
}

// eqSmall compares short byte strings (headers, TCP options) with a few
// word loads instead of a call.
func eqSmall(a, b []byte) bool {
	n := len(a)
	if n != len(b) {
		return false
	}
	le := binary.LittleEndian
	switch {
	case n >= 8 && n <= 16:
		return (le.Uint64(a)^le.Uint64(b))|(le.Uint64(a[n-8:])^le.Uint64(b[n-8:])) == 0
	case n > 16 && n <= 32:
		return (le.Uint64(a)^le.Uint64(b))|(le.Uint64(a[8:])^le.Uint64(b[8:]))|
			(le.Uint64(a[n-16:])^le.Uint64(b[n-16:]))|(le.Uint64(a[n-8:])^le.Uint64(b[n-8:])) == 0
	case n >= 4 && n < 8:
		return (le.Uint32(a)^le.Uint32(b))|(le.Uint32(a[n-4:])^le.Uint32(b[n-4:])) == 0
	case n == 0:
		return true
	}
	return string(a) == string(b)
}

// keyEq is *k == *o, in word loads.
func keyEq(k, o *flows.Key) bool {
	le := binary.LittleEndian
	return (le.Uint64(k.Src[0:])^le.Uint64(o.Src[0:]))|(le.Uint64(k.Src[8:])^le.Uint64(o.Src[8:]))|
		(le.Uint64(k.Dst[0:])^le.Uint64(o.Dst[0:]))|(le.Uint64(k.Dst[8:])^le.Uint64(o.Dst[8:])) == 0 &&
		k.SrcPort == o.SrcPort && k.DstPort == o.DstPort && k.Proto == o.Proto &&
		k.Family == o.Family && k.VLAN == o.VLAN
}
