package corpus

import (
	"bytes"
	"testing"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// labAddrs are addresses like a lab's: the peer and a guest.
var labAddrs = Addrs{
	SrcMAC: [6]byte{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}, DstMAC: [6]byte{0x02, 0x78, 0x6e, 0x69, 0x63, 0x0a},
	SrcV4: [4]byte{198, 18, 0, 2}, DstV4: [4]byte{198, 18, 0, 10},
	SrcV6: [16]byte{0x20, 0x01, 0x00, 0x02, 15: 0x02}, DstV6: [16]byte{0x20, 0x01, 0x00, 0x02, 15: 0x0a},
}

// TestHostileCorpus: at least 100 kinds in all with distinct names, each
// hostile frame's recorded verdict is the parser's, and the hostile frames
// reach every verdict class (malformed, not IP, fragments, unknown L4, OK).
func TestHostileCorpus(t *testing.T) {
	all := HostileCorpus()
	if len(all) < 100 {
		t.Fatalf("%d kinds, want at least 100", len(all))
	}
	names := map[string]bool{}
	for _, f := range all {
		if names[f.Name] {
			t.Errorf("name %s twice", f.Name)
		}
		names[f.Name] = true
	}
	seen := map[flows.Reason]int{}
	for _, f := range Hostile() {
		var p flows.Packet
		flows.Parse(f.Frame, &p)
		if p.Reason != f.Reason || p.Family != f.Family || p.Proto != f.Proto || p.Key.VLAN != f.VLAN {
			t.Errorf("%s: recorded %s/%d/%d vlan %d, parser says %s/%d/%d vlan %d",
				f.Name, f.Reason, f.Family, f.Proto, f.VLAN, p.Reason, p.Family, p.Proto, p.Key.VLAN)
		}
		seen[p.Reason]++
	}
	for _, r := range []flows.Reason{flows.ReasonOK, flows.ReasonNonIP, flows.ReasonFragment, flows.ReasonUnknownL4,
		flows.ReasonTruncL4, flows.ReasonBadTCPOffset, flows.ReasonIPLength, flows.ReasonTooManyExtHeaders, flows.ReasonTooManyVLANs} {
		if seen[r] == 0 {
			t.Errorf("no hostile frame with verdict %s", r)
		}
	}
}

// TestRetarget: a retargeted frame parses to the same verdict, carries the
// new addresses where it had the corpus's, and keeps every checksum as good
// or as bad as it was.
func TestRetarget(t *testing.T) {
	moved := 0
	for _, f := range HostileCorpus() {
		g := Retarget(f.Frame, labAddrs)
		if len(g) != len(f.Frame) {
			t.Fatalf("%s: length %d, was %d", f.Name, len(g), len(f.Frame))
		}
		var p, q flows.Packet
		flows.Parse(f.Frame, &p)
		flows.Parse(g, &q)
		if p.Reason != q.Reason || p.Family != q.Family || p.Proto != q.Proto || p.Key.SrcPort != q.Key.SrcPort ||
			p.Key.DstPort != q.Key.DstPort || p.Key.VLAN != q.Key.VLAN || p.Fragment != q.Fragment {
			t.Errorf("%s: parsed %+v, retargeted %+v", f.Name, p, q)
			continue
		}
		if len(g) >= 12 && bytes.Equal(f.Frame[:6], MACDst[:]) && !bytes.Equal(g[:6], labAddrs.DstMAC[:]) {
			t.Errorf("%s: destination MAC not moved", f.Name)
		}
		if !bytes.Equal(f.Frame, g) {
			moved++
		}
		if p.Family == 4 && p.L3Len >= flows.IPv4MinLen && int(p.L3Off)+int(p.L3Len) <= len(g) {
			l3 := f.Frame[p.L3Off : p.L3Off+p.L3Len]
			if offload.VerifyIPv4Header(l3) != offload.VerifyIPv4Header(g[p.L3Off:p.L3Off+p.L3Len]) {
				t.Errorf("%s: IPv4 header checksum changed its verdict", f.Name)
			}
			if bytes.Equal(l3[16:20], IPv4Dst[:]) && !bytes.Equal(q.Key.Dst[12:], labAddrs.DstV4[:]) {
				t.Errorf("%s: IPv4 destination %v not moved", f.Name, q.Key.Dst)
			}
		}
		if p.Family == 6 && bytes.Equal(p.Key.Dst[:], IPv6Dst[:]) && q.Key.Dst != labAddrs.DstV6 {
			t.Errorf("%s: IPv6 destination not moved", f.Name)
		}
		if p.Reason == flows.ReasonOK && !p.Fragment && (p.Proto == flows.ProtoTCP || p.Proto == flows.ProtoUDP) {
			if a, b := offload.VerifyL4(f.Frame, &p), offload.VerifyL4(g, &q); a != b {
				t.Errorf("%s: L4 checksum good %v before, %v after", f.Name, a, b)
			}
		}
	}
	if moved < 90 {
		t.Errorf("only %d frames changed", moved)
	}
}
