package replay

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/xnic/xnic/flows"
)

// A small frame builder for the tests. Checksums come from a naive 16-bit
// loop, independent of package offload.

type seg struct {
	v6           bool
	udp          bool
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	id           uint16
	opts         []byte // TCP options, a multiple of 4 bytes
	payload      []byte
	pad          int  // Ethernet padding after the IP packet
	badIP        bool // corrupt the IPv4 header checksum
	badL4        bool // corrupt the TCP/UDP checksum
	partial      bool // store the pseudo-header sum only (CHECKSUM_PARTIAL)
	noUDPCsum    bool // IPv4 UDP without a checksum (zero)
}

var (
	macA  = [6]byte{0x02, 0, 0x5e, 0, 0, 2}
	macB  = [6]byte{0x02, 0, 0x5e, 0, 0, 1}
	src4  = [4]byte{198, 18, 0, 2}
	dst4  = [4]byte{198, 18, 0, 1}
	src6  = [16]byte{0x20, 0x01, 0, 0x02, 15: 2}
	dst6  = [16]byte{0x20, 0x01, 0, 0x02, 15: 1}
	tsOpt = []byte{1, 1, 8, 10, 0, 1, 0xe2, 0x40, 0, 0x09, 0xfb, 0xf1} // NOP NOP timestamps
)

func refSum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)&1 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func refFold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// refVerifyL4 checks a TCP/UDP checksum from scratch (the frame must parse).
func refVerifyL4(f []byte) bool {
	var p flows.Packet
	flows.Parse(f, &p)
	if p.Reason != flows.ReasonOK {
		return false
	}
	l4 := f[p.L4Off : int(p.L3Off)+int(p.IPLen)]
	var ps uint32
	if p.Family == 4 {
		ps = refSum(f[p.L3Off+12:p.L3Off+20]) + uint32(p.Proto) + uint32(len(l4))
	} else {
		ps = refSum(f[p.L3Off+8:p.L3Off+40]) + uint32(p.Proto) + uint32(len(l4))
	}
	return refFold(ps+refSum(l4)) == 0xffff
}

func refVerifyIPv4(f []byte) bool {
	h := f[flows.EthernetLen : flows.EthernetLen+int(f[flows.EthernetLen]&0xf)*4]
	return refFold(refSum(h)) == 0xffff
}

func (s seg) frame() []byte {
	proto := uint8(flows.ProtoTCP)
	var l4 []byte
	if s.udp {
		proto = flows.ProtoUDP
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(s.payload)))
	} else {
		hl := 20 + len(s.opts)
		l4 = make([]byte, hl)
		binary.BigEndian.PutUint32(l4[4:], s.seq)
		binary.BigEndian.PutUint32(l4[8:], s.ack)
		l4[12] = byte(hl/4) << 4
		l4[13] = s.flags
		binary.BigEndian.PutUint16(l4[14:], 501)
		copy(l4[20:], s.opts)
	}
	binary.BigEndian.PutUint16(l4[0:], s.sport)
	binary.BigEndian.PutUint16(l4[2:], s.dport)
	l4 = append(l4, s.payload...)

	var ip []byte
	var pseudo uint32
	if s.v6 {
		ip = make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		ip[6], ip[7] = proto, 64
		copy(ip[8:], src6[:])
		copy(ip[24:], dst6[:])
		pseudo = refSum(ip[8:40]) + uint32(proto) + uint32(len(l4))
	} else {
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(ip[4:], s.id)
		ip[6] = 0x40 // DF
		ip[8], ip[9] = 64, proto
		copy(ip[12:], src4[:])
		copy(ip[16:], dst4[:])
		c := ^refFold(refSum(ip))
		if s.badIP {
			c ^= 0x0100
		}
		binary.BigEndian.PutUint16(ip[10:], c)
		pseudo = refSum(ip[12:20]) + uint32(proto) + uint32(len(l4))
	}
	off := 16
	if s.udp {
		off = 6
	}
	c := ^refFold(pseudo + refSum(l4))
	switch {
	case s.partial:
		c = refFold(pseudo)
	case s.noUDPCsum:
		c = 0
	case s.udp && c == 0:
		c = 0xffff
	}
	if s.badL4 {
		c ^= 0x0001
	}
	binary.BigEndian.PutUint16(l4[off:], c)

	f := make([]byte, 0, 14+len(ip)+len(l4)+s.pad)
	f = append(f, macB[:]...)
	f = append(f, macA[:]...)
	et := uint16(flows.EtherTypeIPv4)
	if s.v6 {
		et = flows.EtherTypeIPv6
	}
	f = binary.BigEndian.AppendUint16(f, et)
	f = append(f, ip...)
	f = append(f, l4...)
	return append(f, make([]byte, s.pad)...)
}

// fill returns n payload bytes that differ from one segment to the next.
func fill(seq uint32, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		x := seq + uint32(i)
		b[i] = byte(x ^ x>>8 ^ x>>16)
	}
	return b
}

func baseSeg(v6 bool) seg {
	return seg{v6: v6, sport: 40000, dport: 5201, seq: 1_000_000, ack: 7777,
		flags: flows.TCPFlagACK, id: 100, opts: tsOpt}
}

// train builds consecutive segments of base's flow with the given payload
// lengths: sequence numbers follow, IPv4 IDs count up.
func train(base seg, lens ...int) []seg {
	out := make([]seg, len(lens))
	seq := base.seq
	for i, n := range lens {
		s := base
		s.seq, s.id, s.payload = seq, base.id+uint16(i), fill(seq, n)
		out[i] = s
		seq += uint32(n)
	}
	return out
}

func repeat(n, v int) []int {
	l := make([]int, n)
	for i := range l {
		l[i] = v
	}
	return l
}

func frames(segs ...seg) [][]byte {
	out := make([][]byte, len(segs))
	for i, s := range segs {
		out[i] = s.frame()
	}
	return out
}

// t0 is the capture time of the first frame the tests write.
var t0 = time.Date(2025, 5, 3, 12, 0, 0, 0, time.UTC)

// stamp is frame i's capture time: one every 10 µs.
func stamp(i int) time.Time { return t0.Add(time.Duration(i) * 10 * time.Microsecond) }

// pcapOf writes frames into an Ethernet pcap with stamp(i) timestamps.
func pcapOf(t testing.TB, fs [][]byte) []byte {
	t.Helper()
	return pcapLink(t, layers.LinkTypeEthernet, fs)
}

func pcapLink(t testing.TB, link layers.LinkType, fs [][]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	if err := w.WriteFileHeader(MaxSnaplen, link); err != nil {
		t.Fatal(err)
	}
	for i, f := range fs {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: stamp(i), CaptureLength: len(f), Length: len(f)}, f); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// record is a packet read back from a pcap.
type record struct {
	data []byte
	ci   gopacket.CaptureInfo
}

func readPcap(t testing.TB, b []byte) []record {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("output is not a pcap: %v", err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Fatalf("output link type %v", r.LinkType())
	}
	var out []record
	for {
		d, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		out = append(out, record{d, ci})
	}
	return out
}

// payloadStream concatenates the TCP (or UDP) payloads of the frames.
func payloadStream(t testing.TB, fs [][]byte) []byte {
	t.Helper()
	var out []byte
	for _, f := range fs {
		var p flows.Packet
		flows.Parse(f, &p)
		if p.Reason == flows.ReasonOK {
			out = append(out, p.Payload(f)...)
		}
	}
	return out
}

func datas(rs []record) [][]byte {
	out := make([][]byte, len(rs))
	for i, r := range rs {
		out[i] = r.data
	}
	return out
}

func TestBuilderFramesVerify(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, udp := range []bool{false, true} {
			s := baseSeg(v6)
			s.udp = udp
			s.payload = fill(1, 333)
			f := s.frame()
			var p flows.Packet
			flows.Parse(f, &p)
			if p.Reason != flows.ReasonOK || int(p.PayloadLen) != 333 {
				t.Fatalf("v6=%v udp=%v: parse %v len %d", v6, udp, p.Reason, p.PayloadLen)
			}
			if !refVerifyL4(f) || (!v6 && !refVerifyIPv4(f)) {
				t.Fatalf("v6=%v udp=%v: builder checksums do not verify", v6, udp)
			}
		}
	}
}
