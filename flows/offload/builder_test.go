package offload

import (
	"encoding/binary"
	"testing"

	"github.com/xnic/xnic/flows"
)

// A small frame builder for the tests. Checksums come from refSum, a naive
// 16-bit loop independent of the code under test.

type seg struct {
	v6             bool
	srcMAC, dstMAC [6]byte
	vlan           uint16 // 0: untagged
	src4, dst4     [4]byte
	src6, dst6     [16]byte
	sport, dport   uint16
	seq, ack       uint32
	flags          uint8
	window         uint16
	urg            uint16
	opts           []byte // TCP options (a multiple of 4 bytes)
	payload        []byte
	ttl, tos       uint8
	id             uint16
	df             bool
	flowLabel      uint32
	ipOpts         []byte // IPv4 options (a multiple of 4 bytes)
	ext            bool   // IPv6: a destination options header
	frag           bool   // a first fragment (IPv4 MF, IPv6 fragment header with M)
	pad            int    // trailing bytes after the IP packet
	udp            bool   // a UDP datagram instead of TCP
	badTCP, badIP  bool   // corrupt a checksum
}

func tsOpts(val, ecr uint32) []byte {
	o := []byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(o[4:], val)
	binary.BigEndian.PutUint32(o[8:], ecr)
	return o
}

func baseSeg(v6 bool) seg {
	return seg{
		v6:     v6,
		srcMAC: [6]byte{0x02, 0, 0x5e, 0, 0, 2},
		dstMAC: [6]byte{0x02, 0, 0x5e, 0, 0, 1},
		src4:   [4]byte{198, 18, 0, 2},
		dst4:   [4]byte{198, 18, 0, 1},
		src6:   [16]byte{0x20, 0x01, 0, 0x02, 15: 2},
		dst6:   [16]byte{0x20, 0x01, 0, 0x02, 15: 1},
		sport:  40000, dport: 5201,
		seq: 1_000_000, ack: 7777,
		flags:  flows.TCPFlagACK,
		window: 501,
		opts:   tsOpts(123456, 654321),
		ttl:    64,
		id:     100,
		df:     true,
	}
}

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

func (s seg) frame() []byte {
	var l4 []byte
	proto := uint8(flows.ProtoTCP)
	if s.udp {
		proto = flows.ProtoUDP
		l4 = make([]byte, 8, 8+len(s.payload))
		binary.BigEndian.PutUint16(l4[0:], s.sport)
		binary.BigEndian.PutUint16(l4[2:], s.dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(s.payload)))
	} else {
		hl := 20 + len(s.opts)
		l4 = make([]byte, hl, hl+len(s.payload))
		binary.BigEndian.PutUint16(l4[0:], s.sport)
		binary.BigEndian.PutUint16(l4[2:], s.dport)
		binary.BigEndian.PutUint32(l4[4:], s.seq)
		binary.BigEndian.PutUint32(l4[8:], s.ack)
		l4[12] = byte(hl/4) << 4
		l4[13] = s.flags
		binary.BigEndian.PutUint16(l4[14:], s.window)
		binary.BigEndian.PutUint16(l4[18:], s.urg)
		copy(l4[20:], s.opts)
	}
	l4 = append(l4, s.payload...)

	var ip []byte
	var pseudo uint32
	if !s.v6 {
		ihl := 20 + len(s.ipOpts)
		ip = make([]byte, ihl)
		ip[0] = 0x40 | byte(ihl/4)
		ip[1] = s.tos
		binary.BigEndian.PutUint16(ip[2:], uint16(ihl+len(l4)))
		binary.BigEndian.PutUint16(ip[4:], s.id)
		var ff uint16
		if s.df {
			ff |= 0x4000
		}
		if s.frag {
			ff |= 0x2000
		}
		binary.BigEndian.PutUint16(ip[6:], ff)
		ip[8] = s.ttl
		ip[9] = proto
		copy(ip[12:], s.src4[:])
		copy(ip[16:], s.dst4[:])
		copy(ip[20:], s.ipOpts)
		c := ^refFold(refSum(ip))
		if s.badIP {
			c ^= 0x0100
		}
		binary.BigEndian.PutUint16(ip[10:], c)
		pseudo = refSum(s.src4[:]) + refSum(s.dst4[:]) + uint32(proto) + uint32(len(l4))
	} else {
		var ext []byte
		next := proto
		if s.frag {
			ext = append(ext, next, 0, 0, 1, 0, 0, 0x12, 0x34) // offset 0, M
			next = flows.ProtoFragment
		}
		if s.ext {
			ext = append([]byte{next, 0, 1, 4, 0, 0, 0, 0}, ext...) // PadN
			next = flows.ProtoDestOpts
		}
		ip = make([]byte, 40, 40+len(ext))
		binary.BigEndian.PutUint32(ip[0:], 6<<28|uint32(s.tos)<<20|s.flowLabel&0xfffff)
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ext)+len(l4)))
		ip[6] = next
		ip[7] = s.ttl
		copy(ip[8:], s.src6[:])
		copy(ip[24:], s.dst6[:])
		ip = append(ip, ext...)
		pseudo = refSum(s.src6[:]) + refSum(s.dst6[:]) + uint32(proto) + uint32(len(l4))
	}
	off := 16
	if s.udp {
		off = 6
	}
	c := ^refFold(pseudo + refSum(l4))
	if s.udp && c == 0 {
		c = 0xffff
	}
	if s.badTCP {
		c ^= 0x0001
	}
	binary.BigEndian.PutUint16(l4[off:], c)

	f := make([]byte, 0, 18+len(ip)+len(l4)+s.pad)
	f = append(f, s.dstMAC[:]...)
	f = append(f, s.srcMAC[:]...)
	et := uint16(flows.EtherTypeIPv4)
	if s.v6 {
		et = flows.EtherTypeIPv6
	}
	if s.vlan != 0 {
		f = binary.BigEndian.AppendUint16(f, flows.EtherTypeVLAN)
		f = binary.BigEndian.AppendUint16(f, s.vlan)
	}
	f = binary.BigEndian.AppendUint16(f, et)
	f = append(f, ip...)
	f = append(f, l4...)
	f = append(f, make([]byte, s.pad)...)
	return f
}

// payloadOf fills n bytes that differ from one segment to the next.
func payloadOf(seq uint32, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		x := seq + uint32(i)
		b[i] = byte(x ^ x>>8 ^ x>>16)
	}
	return b
}

// train builds consecutive segments from base with the given payload
// lengths: sequence numbers follow, IPv4 IDs increase by one.
func train(base seg, lens []int) []seg {
	out := make([]seg, len(lens))
	seq := base.seq
	for i, n := range lens {
		s := base
		s.seq = seq
		s.id = base.id + uint16(i)
		s.payload = payloadOf(seq, n)
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

func frames(segs []seg) [][]byte {
	out := make([][]byte, len(segs))
	for i, s := range segs {
		out[i] = s.frame()
	}
	return out
}

func parse(t testing.TB, f []byte) flows.Packet {
	t.Helper()
	var p flows.Packet
	flows.Parse(f, &p)
	return p
}

func TestBuilderFramesParse(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		s := baseSeg(v6)
		s.payload = payloadOf(1, 333)
		f := s.frame()
		p := parse(t, f)
		if p.Reason != flows.ReasonOK || p.Proto != flows.ProtoTCP || int(p.PayloadLen) != 333 {
			t.Fatalf("v6=%v: parse %+v", v6, p)
		}
		if !VerifyL4(f, &p) {
			t.Fatalf("v6=%v: builder checksum does not verify", v6)
		}
		if !v6 && !VerifyIPv4Header(f[p.L3Off:p.L4Off]) {
			t.Fatal("builder IPv4 header checksum does not verify")
		}
	}
}
