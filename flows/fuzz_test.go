package flows_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/corpus"
)

// FuzzParse feeds Parse arbitrary frames, seeded with the shared corpus
// (plus testdata/fuzz/FuzzParse), and checks what must hold of any result.
func FuzzParse(f *testing.F) {
	for _, c := range corpus.Frames() {
		f.Add(c.Frame)
	}
	f.Add(fullIPv6TCP())
	f.Fuzz(func(t *testing.T, frame []byte) {
		var p flows.Packet
		flows.Parse(frame, &p)
		checkInvariants(t, frame, &p)

		// Deterministic, and independent of what p held before.
		q := flows.Packet{Reason: flows.ReasonTooManyVLANs, Fragment: true, L4Len: 9, Key: flows.Key{SrcPort: 1}}
		flows.Parse(frame, &q)
		if p != q {
			t.Fatalf("parse into a used Packet differs:\n%+v\n%+v", p, q)
		}
	})
}

// checkInvariants asserts what holds of every Parse result.
func checkInvariants(t testing.TB, frame []byte, p *flows.Packet) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("frame % x\npacket %+v\n"+format, append([]any{frame, *p}, args...)...)
	}
	n := len(frame)
	if n > flows.MaxFrameLen {
		n = flows.MaxFrameLen
	}
	r := p.Reason
	if int(r) >= flows.NumReasons {
		fail("reason %d out of range", r)
	}

	// Offsets stay inside the frame, and views never panic.
	if int(p.L3Off)+int(p.L3Len) > n || int(p.L3Off)+int(p.IPLen) > n ||
		int(p.L4Off)+int(p.L4Len) > n || int(p.PayloadOff)+int(p.PayloadLen) > n {
		fail("offsets past the end of the frame (%d bytes)", n)
	}
	_ = p.Payload(frame)
	switch p.Family {
	case 0:
		if p.Key.Src != ([16]byte{}) || p.Key.Dst != ([16]byte{}) || p.L3Len != 0 || p.IPLen != 0 {
			fail("IP fields set without an IP family")
		}
	case 4:
		_ = p.IPv4(frame)
		if p.EtherType != flows.EtherTypeIPv4 || !netip.AddrFrom16(p.Key.Src).Is4In6() {
			fail("IPv4 packet with EtherType %#x or unmapped address", p.EtherType)
		}
	case 6:
		_ = p.IPv6(frame)
		if p.EtherType != flows.EtherTypeIPv6 || p.L3Len < flows.IPv6Len {
			fail("IPv6 packet with EtherType %#x or L3Len %d", p.EtherType, p.L3Len)
		}
	default:
		fail("family %d", p.Family)
	}
	if p.Key.Family != p.Family || p.Key.Proto != p.Proto {
		fail("key family/proto disagree with packet")
	}

	// Link layer.
	if p.NumVLANs > flows.MaxVLANs || p.Key.VLAN != p.VLANs[0] ||
		(p.NumVLANs < 2 && p.VLANs[1] != 0) || (p.NumVLANs == 0 && p.VLANs[0] != 0) {
		fail("vlans inconsistent")
	}
	if p.VLANs[0] > 0x0fff || p.VLANs[1] > 0x0fff {
		fail("vlan id wider than 12 bits")
	}
	if r <= flows.ReasonTooManyVLANs && r != flows.ReasonOK && r != flows.ReasonNonIP && p.L3Off != 0 {
		fail("L3Off set though the link layer is not whole")
	}
	if p.L3Off != 0 && int(p.L3Off) != flows.EthernetLen+flows.VLANLen*int(p.NumVLANs) {
		fail("L3Off %d with %d tags", p.L3Off, p.NumVLANs)
	}

	// Ports only with ReasonOK; Proto only once the IP layer is whole.
	if r != flows.ReasonOK && (p.Key.SrcPort != 0 || p.Key.DstPort != 0) {
		fail("ports set with reason %s", r)
	}
	l4Known := r == flows.ReasonOK || r == flows.ReasonUnknownL4 || r == flows.ReasonFragment || r == flows.ReasonTruncL4 || r == flows.ReasonBadTCPOffset
	if !l4Known && p.Proto != 0 {
		fail("proto set with reason %s", r)
	}
	if r == flows.ReasonFragment && (!p.Fragment || p.FirstFrag) {
		fail("non-first fragment not flagged")
	}
	if p.FirstFrag && !p.Fragment {
		fail("first fragment without fragment")
	}
	if p.ExtHeaders > flows.MaxExtHeaders || (p.ExtHeaders != 0 && p.Family != 6) {
		fail("ext headers %d", p.ExtHeaders)
	}
	if p.IPOptions && p.Family != 4 {
		fail("IP options on family %d", p.Family)
	}

	switch r {
	case flows.ReasonOK:
		if p.Family == 0 || p.L4Off != p.L3Off+p.L3Len || p.PayloadOff != p.L4Off+p.L4Len ||
			p.PayloadOff+p.PayloadLen != p.L3Off+p.IPLen {
			fail("ok packet with inconsistent layout")
		}
		switch {
		case p.Proto == flows.ProtoTCP:
			h := p.TCP(frame)
			if p.L4Len < flows.TCPMinLen || h.DataOffset() != int(p.L4Len) || h.SrcPort() != p.Key.SrcPort ||
				h.DstPort() != p.Key.DstPort || h.Flags() != p.TCPFlags {
				fail("tcp view disagrees")
			}
		case p.Proto == flows.ProtoUDP:
			h := p.UDP(frame)
			if p.L4Len != flows.UDPLen || h.SrcPort() != p.Key.SrcPort || h.DstPort() != p.Key.DstPort {
				fail("udp view disagrees")
			}
		case p.Proto == flows.ProtoICMP && p.Family == 4, p.Proto == flows.ProtoICMPv6 && p.Family == 6:
			if p.L4Len != flows.ICMPLen {
				fail("icmp L4Len %d", p.L4Len)
			}
		default:
			fail("ok with proto %d on family %d", p.Proto, p.Family)
		}
		if p.Proto != flows.ProtoTCP && p.TCPFlags != 0 {
			fail("tcp flags on proto %d", p.Proto)
		}
	case flows.ReasonNonIP:
		if p.Family != 0 || p.EtherType == flows.EtherTypeIPv4 || p.EtherType == flows.EtherTypeIPv6 {
			fail("non-IP with an IP EtherType")
		}
	case flows.ReasonUnknownL4, flows.ReasonFragment:
		if p.PayloadOff != p.L3Off+p.L3Len || p.PayloadOff+p.PayloadLen != p.L3Off+p.IPLen {
			fail("%s payload does not cover the IP payload", r)
		}
	}
	if r != flows.ReasonOK && (p.L4Len != 0 || p.TCPFlags != 0) {
		fail("L4 header fields set with reason %s", r)
	}

	// IPv4 header fields agree with the frame.
	if p.Family == 4 && p.L3Len != 0 {
		h := p.IPv4(frame)
		if h.HeaderLen() != int(p.L3Len) || h.TTL() != p.TTL || h.TOS() != p.TOS {
			fail("ipv4 view disagrees")
		}
		if p.IPLen != 0 && (h.TotalLen() != p.IPLen || p.Fragment != h.IsFragment()) {
			fail("ipv4 length/fragment disagree")
		}
	}
	if p.Family == 6 && p.IPLen != 0 && int(p.IPLen) != flows.IPv6Len+int(binary.BigEndian.Uint16(frame[p.L3Off+4:])) {
		fail("ipv6 length disagrees")
	}
}
