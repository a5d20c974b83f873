package bpf

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/xnic/xnic/bpf/bpftest"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/flows"
)

// pkt describes a test frame for the steering tests. Checksums are left
// zero: the program does not look at them.
type pkt struct {
	src, dst     netip.Addr // family from dst; src defaults to 198.18.0.2 / 2001:2::2
	proto        uint8
	sport, dport uint16
	tos          uint8
	vlan         uint16 // outer 802.1Q tag when non-zero
	fragOff      uint16 // IPv4 fragment offset in 8-byte units
}

func (p pkt) frame() []byte {
	var l4 []byte
	switch p.proto {
	case flows.ProtoTCP:
		l4 = make([]byte, 20+8)
		l4[12] = 5 << 4
		l4[13] = flows.TCPFlagACK
	case flows.ProtoUDP:
		l4 = make([]byte, 8+18)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	default:
		l4 = []byte{8, 0, 0, 0, 0, 1, 0, 1, 'p', 'i', 'n', 'g'}
	}
	if p.proto == flows.ProtoTCP || p.proto == flows.ProtoUDP {
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
	}
	var b []byte
	b = append(b, testDstMAC...)
	b = append(b, testSrcMAC...)
	if p.vlan != 0 {
		b = binary.BigEndian.AppendUint16(b, flows.EtherTypeVLAN)
		b = binary.BigEndian.AppendUint16(b, p.vlan)
	}
	if p.dst.Is4() {
		src := p.src
		if !src.IsValid() {
			src = testSrc4
		}
		b = binary.BigEndian.AppendUint16(b, flows.EtherTypeIPv4)
		h := make([]byte, 20)
		h[0], h[1] = 0x45, p.tos
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(h[6:], p.fragOff)
		h[8], h[9] = 64, p.proto
		s4, d4 := src.As4(), p.dst.As4()
		copy(h[12:], s4[:])
		copy(h[16:], d4[:])
		return append(append(b, h...), l4...)
	}
	src := p.src
	if !src.IsValid() {
		src = testSrc6
	}
	b = binary.BigEndian.AppendUint16(b, flows.EtherTypeIPv6)
	h := make([]byte, 40)
	binary.BigEndian.PutUint32(h[0:], 6<<28|uint32(p.tos)<<20)
	binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
	h[6], h[7] = p.proto, 64
	s16, d16 := src.As16(), p.dst.As16()
	copy(h[8:], s16[:])
	copy(h[24:], d16[:])
	return append(append(b, h...), l4...)
}

// key is the flows.Key the frame parses to.
func (p pkt) key(t testing.TB) flows.Key {
	t.Helper()
	var pp flows.Packet
	flows.Parse(p.frame(), &pp)
	if pp.Reason != flows.ReasonOK {
		t.Fatalf("test frame %+v parses with reason %s", p, pp.Reason)
	}
	return pp.Key
}

// arpFrame is an ARP request for target, optionally VLAN tagged.
func arpFrame(target netip.Addr, vlan uint16) []byte {
	var b []byte
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, testSrcMAC...)
	if vlan != 0 {
		b = binary.BigEndian.AppendUint16(b, flows.EtherTypeVLAN)
		b = binary.BigEndian.AppendUint16(b, vlan)
	}
	b = binary.BigEndian.AppendUint16(b, flows.EtherTypeARP)
	b = append(b, 0, 1, 0x08, 0x00, 6, 4, 0, 1)
	b = append(b, testSrcMAC...)
	s4, t4 := testSrc4.As4(), target.As4()
	b = append(b, s4[:]...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	return append(b, t4[:]...)
}

func loadSteerOptsT(t testing.TB, opts SteerOptions) *Steer {
	t.Helper()
	labtest.RequireRoot(t, "load xnic_steer")
	s, err := LoadSteer(opts)
	if err != nil {
		t.Fatalf("LoadSteer(%+v): %+v", opts, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close steer: %v", err)
		}
	})
	return s
}

// run runs xnic_steer once over frame (rx queue 0) and returns the verdict.
func runProg(t testing.TB, prog *ebpf.Program, frame []byte) uint32 {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("run %s: %v", prog, err)
	}
	return ret
}

// snapshot is every counter of a Steer at one moment.
type snapshot struct {
	total SteerStats
	slots map[Slot]SlotStats
}

func snap(t testing.TB, s *Steer) snapshot {
	t.Helper()
	total, err := s.TotalStats()
	if err != nil {
		t.Fatal(err)
	}
	slots, err := s.AllSlotStats()
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{total, slots}
}

// subStats returns a - b field by field (counters only grow).
func subStats[T any](a, b T) T {
	x, y := asU64s(&a), asU64s(&b)
	for i := range x {
		x[i] -= y[i]
	}
	return a
}

func asU64s[T any](p *T) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(p)), unsafe.Sizeof(*p)/8)
}

// loadTestprogsT loads bpftest's testprogs.bpf.c (xnic_parse_check and
// xnic_raw).
func loadTestprogsT(t testing.TB) *bpftest.TestprogsObjects {
	t.Helper()
	labtest.RequireRoot(t, "load the test programs")
	removeMemlock()
	var objs bpftest.TestprogsObjects
	if err := bpftest.LoadTestprogsObjects(&objs, nil); err != nil {
		t.Fatalf("load testprogs: %+v", err)
	}
	t.Cleanup(func() { objs.Close() })
	return &objs
}

// cParse runs xnic_parse_check over frame and returns what the C parser
// found.
func cParse(t testing.TB, objs *bpftest.TestprogsObjects, frame []byte) bpftest.TestprogsXnicPkt {
	t.Helper()
	if ret := runProg(t, objs.XnicParseCheck, frame); ret != xdpPass {
		t.Fatalf("xnic_parse_check returned %d", ret)
	}
	var out bpftest.TestprogsXnicPkt
	if err := objs.ParseResult.Lookup(uint32(0), &out); err != nil {
		t.Fatalf("read parse_result: %v", err)
	}
	return out
}
