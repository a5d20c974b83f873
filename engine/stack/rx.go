package stack

import (
	"gvisor.dev/gvisor/pkg/buffer"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// DeliverAggregate posts one GRO aggregate to netstack. It copies a.Head
// and every a.Segs payload once, into one netstack buffer, and keeps no
// reference to a or to the frames behind it: the caller may recycle them as
// soon as it returns. It is meant to be called from the GRO deliver
// callback on the engine worker, but is safe from any goroutine.
//
//   - AggCsumBad: dropped and counted (RxDropCsumBad).
//   - VLAN-tagged: dropped and counted (RxDropUnsupported), as DeliverFrame
//     does.
//   - AggPassThrough: handled as DeliverFrame(a.Head, validated) with
//     validated = AggCsumValidated (GRO leaves it unset), reusing a.Pkt.
//   - AggCsumValidated: netstack does not verify the checksums again when
//     RxChecksumOffload is on; without it, the checksums are verified here
//     first.
//   - AggCsumPartial with RxChecksumOffload off: the TCP checksum is
//     completed in the copy, so that netstack's verification passes.
func (s *Stack) DeliverAggregate(a *offload.Aggregate) {
	c := &s.c
	c.rxAggregates.Add(1)
	c.rxFrames.Add(uint64(max(len(a.Handles), 1)))
	if a.Flags&offload.AggPassThrough != 0 {
		s.deliverParsed(a.Head, &a.Pkt, a.Flags&offload.AggCsumValidated != 0)
		return
	}
	if s.ep.closed.Load() {
		c.drop(RxDropClosed)
		return
	}
	if a.Flags&offload.AggCsumBad != 0 {
		c.drop(RxDropCsumBad)
		return
	}
	if len(a.Head) < EthernetHeaderLen || a.Pkt.Reason.Malformed() {
		c.drop(RxDropMalformed)
		return
	}
	// As for a single frame: netstack's link endpoint knows no VLAN tags,
	// and would read the tag as the EtherType.
	if a.Pkt.NumVLANs > 0 {
		c.drop(RxDropUnsupported)
		return
	}
	n := 0
	for _, seg := range a.Segs {
		n += len(seg)
	}
	rxOffload := s.ep.caps&gstack.CapabilityRXChecksumOffload != 0
	verify := a.Flags&offload.AggCsumValidated == 0 && rxOffload
	complete := a.Flags&offload.AggCsumPartial != 0 && !rxOffload
	buf, frame, ok := gather(a.Head, a.Segs, n, verify || complete)
	if !ok {
		c.drop(RxDropMalformed)
		return
	}
	if complete && !offload.CompletePartial(frame, &a.Pkt) {
		buf.Release()
		c.drop(RxDropMalformed)
		return
	}
	if verify {
		var cs offload.CsumStats
		if !cs.Verify(frame, &a.Pkt) {
			buf.Release()
			c.drop(RxDropCsumBad)
			return
		}
		c.rxVerified.Add(1)
	}
	s.post(buf, len(a.Head)+n)
}

// DeliverFrame posts one whole Ethernet frame that did not go through GRO
// (ARP, NDP, ICMP, UDP, or anything GRO passed through) to netstack. It
// copies the frame once and keeps no reference to it. validated says the
// engine verified its IPv4 header and TCP/UDP checksums; when it did not
// and RxChecksumOffload is on, they are verified here (netstack would
// skip them). Malformed frames (flows.Reason.Malformed), frames with VLAN
// tags or an EtherType other than IPv4, IPv6 and ARP, and frames with bad
// checksums are counted and dropped.
func (s *Stack) DeliverFrame(frame []byte, validated bool) {
	s.c.rxFrames.Add(1)
	var p flows.Packet
	flows.Parse(frame, &p)
	s.deliverParsed(frame, &p, validated)
}

// deliverPassedThrough is DeliverFrame for a frame the engine's pipeline
// passed through (offload.AggPassThrough): a.Head is the whole frame and
// a.Pkt its parse, which is not done again.
func (s *Stack) deliverPassedThrough(a *offload.Aggregate) {
	s.c.rxFrames.Add(1)
	s.deliverParsed(a.Head, &a.Pkt, false)
}

// deliverParsed is DeliverFrame after the parse.
func (s *Stack) deliverParsed(frame []byte, p *flows.Packet, validated bool) {
	c := &s.c
	if s.ep.closed.Load() {
		c.drop(RxDropClosed)
		return
	}
	if len(frame) < EthernetHeaderLen || p.Reason.Malformed() {
		c.drop(RxDropMalformed)
		return
	}
	if p.NumVLANs > 0 {
		c.drop(RxDropUnsupported)
		return
	}
	switch p.EtherType {
	case flows.EtherTypeIPv4, flows.EtherTypeIPv6, flows.EtherTypeARP:
	default:
		c.drop(RxDropUnsupported)
		return
	}
	if !validated && p.Family != 0 && s.ep.caps&gstack.CapabilityRXChecksumOffload != 0 {
		var cs offload.CsumStats
		if !cs.Verify(frame, p) {
			c.drop(RxDropCsumBad)
			return
		}
		c.rxVerified.Add(1)
	}
	buf, _, ok := gather(frame, nil, 0, false)
	if !ok {
		c.drop(RxDropMalformed)
		return
	}
	s.post(buf, len(frame))
}

// post wraps buf, a whole frame of n bytes, in a packet and hands it to
// netstack.
func (s *Stack) post(buf buffer.Buffer, n int) {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buf})
	if s.ep.deliver(pkt) {
		s.c.rxPackets.Add(1)
		s.c.rxBytes.Add(uint64(n))
	} else {
		s.c.drop(RxDropClosed)
	}
	pkt.DecRef()
}

// splitAbove is the packet size from which gather puts the headers and the
// payload in views of their own.
const splitAbove = 2048

// gather copies head and then segs (n bytes in all) into a new netstack
// buffer. A small packet is one pooled view; a larger one (an aggregate)
// gets a view for the headers and one for the payload. That matters:
// netstack's IPv4 receive holds a reference to the network header's view
// while it reads the header again (with HandleLocal), and reading a shared
// view clones its whole chunk: with one view per aggregate, a clear and
// copy of up to 64 KB per aggregate on the worker. contiguous forces one
// view and returns it as frame too.
func gather(head []byte, segs [][]byte, n int, contiguous bool) (buf buffer.Buffer, frame []byte, ok bool) {
	total := len(head) + n
	if contiguous || total <= splitAbove {
		v := buffer.NewViewSize(total)
		b := v.AsSlice()
		o := copy(b, head)
		for _, s := range segs {
			o += copy(b[o:], s)
		}
		return buffer.MakeWithView(v), b, true
	}
	hv := buffer.NewViewSize(len(head))
	copy(hv.AsSlice(), head)
	pv := buffer.NewViewSize(n)
	b := pv.AsSlice()
	o := 0
	for _, s := range segs {
		o += copy(b[o:], s)
	}
	buf = buffer.MakeWithView(hv)
	if err := buf.Append(pv); err != nil {
		pv.Release()
		buf.Release()
		return buffer.Buffer{}, nil, false
	}
	return buf, nil, true
}
