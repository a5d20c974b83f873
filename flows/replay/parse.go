package replay

import (
	"encoding/binary"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// parseFrame is flows.Parse for frames of any length. Parse looks at the
// first flows.MaxFrameLen bytes only, but a GRO aggregate of a 64 KB IP
// packet plus its link header is a little longer, and must parse whole to
// be checked or segmented again. For such a frame the IP length field is
// lowered for a moment to end the packet inside the bytes Parse sees, and
// the lengths are put right afterwards: the offsets are the same.
func parseFrame(frame []byte, p *flows.Packet) {
	if len(frame) <= flows.MaxFrameLen {
		flows.Parse(frame, p)
		return
	}
	head := frame[:flows.MaxFrameLen]
	flows.Parse(head, p)
	if p.Reason != flows.ReasonIPLength {
		return
	}
	l3 := int(p.L3Off)
	var field, fixed int // the length field's offset; the bytes it leaves out
	switch p.Family {
	case 4:
		field = l3 + 2
	case 6:
		field, fixed = l3+4, flows.IPv6Len
	default:
		return
	}
	orig := binary.BigEndian.Uint16(frame[field:])
	ipLen := int(orig) + fixed
	short := flows.MaxFrameLen - l3 // the IP length that ends with head
	if ipLen > 0xffff || l3+ipLen > len(frame) || ipLen <= short || short-fixed < 0 {
		return
	}
	binary.BigEndian.PutUint16(frame[field:], uint16(short-fixed))
	flows.Parse(head, p)
	binary.BigEndian.PutUint16(frame[field:], orig)
	switch p.Reason {
	case flows.ReasonOK, flows.ReasonUnknownL4, flows.ReasonFragment:
		p.IPLen = uint16(ipLen)
		p.PayloadLen = uint16(l3 + ipLen - int(p.PayloadOff))
	default:
		// Not the same parse any more: report the original verdict.
		flows.Parse(head, p)
	}
}

// l4Sum is the state of a TCP or UDP checksum.
type l4Sum uint8

const (
	l4None    l4Sum = iota // nothing to check: not a whole, unfragmented TCP/UDP segment
	l4Good                 // the full checksum verifies (or IPv4 UDP without one)
	l4Partial              // the field holds the pseudo-header sum (CHECKSUM_PARTIAL)
	l4Bad
)

// l4Check classifies the TCP or UDP checksum of a parsed frame.
func l4Check(frame []byte, p *flows.Packet) l4Sum {
	if p.Reason != flows.ReasonOK || p.Fragment || (p.Proto != flows.ProtoTCP && p.Proto != flows.ProtoUDP) {
		return l4None
	}
	if offload.VerifyL4(frame, p) {
		return l4Good
	}
	ps, ok := offload.PseudoSum(frame, p)
	if !ok {
		return l4None
	}
	off := int(p.L4Off) + 16
	if p.Proto == flows.ProtoUDP {
		off = int(p.L4Off) + 6
	}
	if binary.BigEndian.Uint16(frame[off:]) == ps {
		return l4Partial
	}
	return l4Bad
}

// ipv4Header returns the parsed frame's IPv4 header, options included, or
// nil if it has none that is whole.
func ipv4Header(frame []byte, p *flows.Packet) []byte {
	if p.Family != 4 || p.L3Len < flows.IPv4MinLen || int(p.L3Off)+int(p.L3Len) > len(frame) {
		return nil
	}
	return frame[p.L3Off : p.L3Off+p.L3Len]
}
