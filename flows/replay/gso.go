package replay

import (
	"github.com/gopacket/gopacket"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// segment is the GSO stage for one frame: a TCP segment (or, with UDPGSO,
// a UDP datagram) whose payload is longer than the MSS is split into
// frames with full (or partial) checksums; any other frame is written as
// it is, except that a CHECKSUM_PARTIAL sum is completed.
func (r *replayer) segment(frame []byte, ci gopacket.CaptureInfo) error {
	p := &r.pkt
	g := &r.gsoRep
	mss, over := r.mssFor(p)
	if !over {
		if l4Check(frame, p) == l4Partial && offload.CompletePartial(frame, p) {
			g.Completed++
		}
		return r.emit(ci, frame)
	}
	if mss <= 0 || p.Fragment {
		g.Refused++
		return r.emit(ci, frame)
	}
	sum := l4Check(frame, p)
	if r.opts.Verify {
		if h := ipv4Header(frame, p); (h != nil && !offload.VerifyIPv4Header(h)) || sum == l4Bad {
			g.BadCsum++
			return r.emit(ci, frame)
		}
	}

	po, n := int(p.PayloadOff), int(p.PayloadLen)
	r.payload[0] = frame[po : po+n]
	req := offload.Request{
		Head:    frame[:po],
		L3Off:   int(p.L3Off),
		Payload: r.payload[:],
		GSOSize: mss,
		FixedID: r.opts.FixedID,
	}
	segs := offload.Segments(n, mss)
	r.growSegBufs(segs, po+mss)
	k, err := r.gso.Segment(&req, r.segBufs[:segs], r.sizes[:segs])
	r.payload[0] = nil
	if err != nil {
		g.Refused++
		return r.emit(ci, frame)
	}
	g.Segmented++
	if sum == l4Partial {
		g.PartialIn++
	}
	for i := range k {
		b := r.segBufs[i][:r.sizes[i]]
		if err := r.emit(built(ci.Timestamp, len(b)), b); err != nil {
			return err
		}
	}
	return nil
}

// mssFor returns the MSS for the parsed frame and whether the frame is
// one to segment: TCP, or UDP with UDPGSO, whose payload is longer than
// the MSS. A derived MSS that leaves no room for payload is <= 0.
func (r *replayer) mssFor(p *flows.Packet) (mss int, over bool) {
	if p.Reason != flows.ReasonOK || (p.Family != 4 && p.Family != 6) {
		return 0, false
	}
	switch p.Proto {
	case flows.ProtoTCP:
	case flows.ProtoUDP:
		if !r.opts.UDPGSO {
			return 0, false
		}
	default:
		return 0, false
	}
	mss = r.opts.MSS
	if mss == 0 {
		mss = r.opts.MTU - int(p.L3Len) - int(p.L4Len)
	}
	return mss, int(p.PayloadLen) > max(mss, 0)
}

// growSegBufs makes sure there are n segment buffers of size bytes, cut
// from one arena reused from frame to frame: an MSS of 1 makes 65,000
// small segments, not 65,000 frame-sized buffers.
func (r *replayer) growSegBufs(n, size int) {
	if need := n * size; cap(r.segArena) < need {
		r.segArena = make([]byte, need)
	}
	if cap(r.segBufs) < n {
		r.segBufs = make([][]byte, n)
		r.sizes = make([]int, n)
	}
	r.segBufs, r.sizes = r.segBufs[:n], r.sizes[:n]
	for i := range n {
		r.segBufs[i] = r.segArena[i*size : (i+1)*size : (i+1)*size]
	}
}
