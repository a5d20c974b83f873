package bpf

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/xnic/xnic/bpf/bpftest"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/corpus"
)

// parseDiff compares the C parser's result with flows.Parse's and describes
// every difference ("" when they agree).
func parseDiff(frame []byte, c bpftest.TestprogsXnicPkt, p *flows.Packet) string {
	var d []string
	diff := func(field string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			d = append(d, fmt.Sprintf("%s: C %v, Go %v", field, got, want))
		}
	}
	diff("reason", flows.Reason(c.Reason), p.Reason)
	ck := keyOfFlow(steerFlowKey{Src: c.Key.Src, Dst: c.Key.Dst, Sport: c.Key.Sport, Dport: c.Key.Dport,
		Proto: c.Key.Proto, Family: c.Key.Family, Vlan: c.Key.Vlan})
	diff("key.family", ck.Family, p.Key.Family)
	diff("key.proto", ck.Proto, p.Key.Proto)
	diff("key.sport", ck.SrcPort, p.Key.SrcPort)
	diff("key.dport", ck.DstPort, p.Key.DstPort)
	diff("key.vlan", ck.VLAN, p.Key.VLAN)
	diff("key.src", ck.Src, p.Key.Src)
	diff("key.dst", ck.Dst, p.Key.Dst)
	diff("ethertype", c.Ethertype, p.EtherType)
	diff("num_vlans", c.NumVlans, p.NumVLANs)
	diff("l3_off", c.L3Off, p.L3Off)
	diff("l4_off", c.L4Off, p.L4Off)
	diff("tos", c.Tos, p.TOS)
	diff("ext_headers", c.ExtHeaders, p.ExtHeaders)
	diff("fragment", c.Frag&1 != 0, p.Fragment)
	diff("first_frag", c.Frag&2 != 0, p.FirstFrag)
	ipEnd := uint16(0)
	if p.IPLen != 0 {
		ipEnd = p.L3Off + p.IPLen
	}
	diff("ip_end", c.IpEnd, ipEnd)
	// ARP is parsed only in C: check it against the frame itself.
	wantARP := p.Reason == flows.ReasonNonIP && p.EtherType == flows.EtherTypeARP &&
		len(frame) >= int(p.L3Off)+28 &&
		binary.BigEndian.Uint32(frame[p.L3Off:]) == 0x00010800 &&
		binary.BigEndian.Uint16(frame[p.L3Off+4:]) == 0x0604
	diff("arp", c.Arp == 1, wantARP)
	if wantARP {
		var tpa [4]byte
		binary.BigEndian.PutUint32(tpa[:], binary.BigEndian.Uint32(frame[p.L3Off+24:]))
		got := [4]byte{}
		binary.LittleEndian.PutUint32(got[:], c.ArpTpa)
		diff("arp_tpa", got, tpa)
	}
	return strings.Join(d, "; ")
}

// TestParseAgreesWithGo runs every frame of corpus.Frames() through the C
// parser (xnic_parse_check, built from include/parse.h like xnic_steer)
// and through flows.Parse, and requires the same reason, family, protocol,
// ports, VLAN, addresses and offsets.
func TestParseAgreesWithGo(t *testing.T) {
	objs := loadTestprogsT(t)
	frames := corpus.Frames()
	if len(frames) < 40 {
		t.Fatalf("corpus.Frames() has %d frames, want at least 40", len(frames))
	}
	reasons := map[flows.Reason]int{}
	for _, cf := range frames {
		var p flows.Packet
		flows.Parse(cf.Frame, &p)
		if p.Reason != cf.Reason || p.Key.Family != cf.Family || p.Key.Proto != cf.Proto ||
			p.Key.SrcPort != cf.SrcPort || p.Key.DstPort != cf.DstPort || p.Key.VLAN != cf.VLAN {
			t.Errorf("%s: flows.Parse disagrees with the corpus: %+v", cf.Name, p)
		}
		if len(cf.Frame) < flows.EthernetLen {
			continue // BPF_PROG_RUN refuses frames shorter than Ethernet
		}
		c := cParse(t, objs, cf.Frame)
		if d := parseDiff(cf.Frame, c, &p); d != "" {
			t.Errorf("%s: C and Go parsers disagree: %s", cf.Name, d)
		}
		reasons[p.Reason]++
	}
	// Every reason but trunc_ethernet (too short to run) is covered.
	for r := flows.Reason(0); int(r) < flows.NumReasons; r++ {
		if r != flows.ReasonTruncEthernet && reasons[r] == 0 {
			t.Errorf("reason %s not covered by the corpus frames run in C", r)
		}
	}
}

// TestParseAgreesOnMutations compares the C and Go parsers on corpus frames
// with random bytes changed, cut short or extended: a deterministic
// differential fuzz (FuzzParseAgreement explores further).
func TestParseAgreesOnMutations(t *testing.T) {
	objs := loadTestprogsT(t)
	frames := corpus.Frames()
	rng := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	fails := 0
	for i := 0; i < n && fails < 10; i++ {
		frame := mutate(rng, frames[rng.IntN(len(frames))].Frame)
		if len(frame) < flows.EthernetLen {
			continue
		}
		var p flows.Packet
		flows.Parse(frame, &p)
		if d := parseDiff(frame, cParse(t, objs, frame), &p); d != "" {
			t.Errorf("mutation %d (%x): %s", i, frame, d)
			fails++
		}
	}
}

// mutate returns a changed copy of frame: header bytes set to random or
// interesting values, the frame cut or extended.
func mutate(rng *rand.Rand, frame []byte) []byte {
	b := append([]byte(nil), frame...)
	for range 1 + rng.IntN(4) {
		switch rng.IntN(6) {
		case 0, 1, 2: // a byte in the first 100: where the headers are
			if len(b) > 0 {
				i := rng.IntN(min(len(b), 100))
				b[i] = []byte{0, 1, 4, 5, 6, 0x11, 0x2c, 0x3a, 0x3b, 0x3c, 0x45, 0x4f, 0x60, 0x81, 0xff, byte(rng.Uint32())}[rng.IntN(16)]
			}
		case 3: // cut
			if len(b) > 1 {
				b = b[:rng.IntN(len(b))]
			}
		case 4: // extend (padding)
			b = append(b, make([]byte, rng.IntN(64))...)
		case 5: // an EtherType at the start of a VLAN tag or the L3 header
			if len(b) >= 18 {
				binary.BigEndian.PutUint16(b[12+4*rng.IntN(2):], []uint16{0x0800, 0x86dd, 0x8100, 0x88a8, 0x9100, 0x0806}[rng.IntN(6)])
			}
		}
	}
	return b
}

// FuzzParseAgreement: the C parser (through BPF_PROG_RUN) and flows.Parse
// agree on any frame. Needs root; the seed corpus is corpus.Frames().
func FuzzParseAgreement(f *testing.F) {
	for _, cf := range corpus.Frames() {
		f.Add(cf.Frame)
	}
	objs := loadTestprogsT(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < flows.EthernetLen || len(frame) > 3000 {
			return
		}
		var p flows.Packet
		flows.Parse(frame, &p)
		if d := parseDiff(frame, cParse(t, objs, frame), &p); d != "" {
			t.Errorf("%x: %s", frame, d)
		}
	})
}

// TestSteerCorpus runs every corpus frame through xnic_steer in raw mode
// (AddCatchAll(0, 0)) and checks that the verdict and counters follow
// flows.Parse's verdict: malformed frames are dropped under their reason;
// for every IP frame, a flow installed from flows.Parse's key is hit, which
// proves the C key equals the Go key byte for byte.
func TestSteerCorpus(t *testing.T) {
	s := loadSteerOptsT(t, smallSteerOptions())
	slotSockets(t, s, Slot{0, 0}, Slot{1, 0})
	if _, err := s.AddCatchAll(0, 0); err != nil {
		t.Fatal(err)
	}
	for _, cf := range corpus.Frames() {
		if len(cf.Frame) < flows.EthernetLen {
			continue
		}
		var p flows.Packet
		flows.Parse(cf.Frame, &p)
		name := cf.Name
		info := ""
		switch p.Reason {
		case flows.ReasonFragment:
			info = "fragment"
		case flows.ReasonUnknownL4:
			info = "unknown_l4"
		}
		switch {
		case p.Reason.Malformed():
			before := snap(t, s)
			if v := runProg(t, s.Program(), cf.Frame); v != xdpDrop {
				t.Errorf("%s: verdict %d, want XDP_DROP", name, v)
			}
			d := subStats(snap(t, s).total, before.total)
			if d.DroppedMalformed != 1 || d.Dropped(p.Reason) != 1 || d.Verdicts() != 1 {
				t.Errorf("%s: reason %s: counters moved by %+v", name, p.Reason, d)
			}
		case p.Reason == flows.ReasonNonIP:
			checkFrame(t, s, name, cf.Frame, want{verdict: xdpPass, queue: "pass_non_ip"})
		default:
			// The flow table, keyed by the Go parser's key.
			if err := s.InstallFlow(p.Key, Slot{1, 0}); err != nil {
				t.Fatalf("%s: InstallFlow(%s): %v", name, p.Key, err)
			}
			checkFrame(t, s, name+"/flow", cf.Frame,
				want{verdict: xdpRedirect, slot: Slot{1, 0}, how: "redirected", queue: "redirected", hit: "flow", info: info})
			if err := s.DeleteFlow(p.Key); err != nil {
				t.Fatal(err)
			}
			// Then the catch-all rules.
			w := want{verdict: xdpPass, queue: "pass_unmatched", info: info}
			switch p.Key.Proto {
			case flows.ProtoTCP, flows.ProtoUDP:
				w = want{verdict: xdpRedirect, slot: Slot{0, 0}, how: "redirected", queue: "redirected", hit: "rule", info: info}
			case flows.ProtoICMP, flows.ProtoICMPv6:
				w.queue = "pass_control"
			}
			checkFrame(t, s, name+"/rules", cf.Frame, w)
		}
	}
}
