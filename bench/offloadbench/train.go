package offloadbench

import (
	"encoding/binary"
	"fmt"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// Family is the IP version of the traffic.
type Family string

// The families, in the order rows come.
const (
	IPv4 Family = "ipv4"
	IPv6 Family = "ipv6"
)

// Families lists the families.
func Families() []Family { return []Family{IPv4, IPv6} }

// The shape of the traffic.
const (
	// MTU is the IP MTU of the link the sender sends on.
	MTU = 1500
	// TCPHeaderLen is a bulk sender's TCP header: 20 bytes and NOP, NOP,
	// timestamps.
	TCPHeaderLen = 32
	// FrameLen is the length of every frame of the train (Ethernet header
	// and an MTU-sized IP packet; no FCS).
	FrameLen = ethLen + MTU
	// SegsPerTSO is how many MSS-sized segments one 64 KB segment holds,
	// for both families: the IP length field bounds it.
	SegsPerTSO = 45

	ethLen = 14
)

// MSS is the TCP payload of a full frame of family f: the MTU less the IP
// and TCP headers (1448 over IPv4, 1428 over IPv6).
func MSS(f Family) int { return MTU - ipHeaderLen(f) - TCPHeaderLen }

func ipHeaderLen(f Family) int {
	if f == IPv6 {
		return 40
	}
	return 20
}

// The flow: addresses from the benchmarking ranges, a bulk transfer to
// port 5201.
var (
	srcMAC = [6]byte{0x02, 0x78, 0x6e, 0x62, 0x00, 0x02}
	dstMAC = [6]byte{0x02, 0x78, 0x6e, 0x62, 0x00, 0x01}
	src4   = [4]byte{198, 18, 0, 2}
	dst4   = [4]byte{198, 18, 0, 1}
	src6   = [16]byte{0x20, 0x01, 0x00, 0x02, 15: 2}
	dst6   = [16]byte{0x20, 0x01, 0x00, 0x02, 15: 1}
)

const (
	srcPort, dstPort = 40000, 5201
	firstSeq         = 1_000_000_000
	firstID          = 1000
	ackNum           = 12345
	window           = 502
	tsVal, tsEcr     = 1_000_001, 2_000_002
)

// fill writes the payload of the bytes at sequence numbers seq, seq+1, ...:
// a pattern that differs from byte to byte and from segment to segment.
func fill(b []byte, seq uint32) {
	for i := range b {
		x := seq + uint32(i)
		b[i] = byte(x) ^ byte(x>>7) ^ byte(x>>13)
	}
}

// bigSegment builds one large TCP segment of family f: headers with valid
// checksums and n payload bytes starting at sequence number seq, IPv4 ID id.
func bigSegment(f Family, seq uint32, id uint16, n int) ([]byte, error) {
	ipl := ipHeaderLen(f)
	hl := ethLen + ipl + TCPHeaderLen
	b := make([]byte, hl+n)
	copy(b[0:6], dstMAC[:])
	copy(b[6:12], srcMAC[:])
	ip := b[ethLen : ethLen+ipl]
	if f == IPv6 {
		binary.BigEndian.PutUint16(b[12:], flows.EtherTypeIPv6)
		binary.BigEndian.PutUint32(ip[0:], 6<<28)
		binary.BigEndian.PutUint16(ip[4:], uint16(TCPHeaderLen+n))
		ip[6], ip[7] = flows.ProtoTCP, 64
		copy(ip[8:24], src6[:])
		copy(ip[24:40], dst6[:])
	} else {
		binary.BigEndian.PutUint16(b[12:], flows.EtherTypeIPv4)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(ipl+TCPHeaderLen+n))
		binary.BigEndian.PutUint16(ip[4:], id)
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8], ip[9] = 64, flows.ProtoTCP
		copy(ip[12:16], src4[:])
		copy(ip[16:20], dst4[:])
		offload.SetIPv4HeaderChecksum(ip)
	}
	tcp := b[ethLen+ipl : hl]
	binary.BigEndian.PutUint16(tcp[0:], srcPort)
	binary.BigEndian.PutUint16(tcp[2:], dstPort)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ackNum)
	tcp[12] = TCPHeaderLen / 4 << 4
	tcp[13] = flows.TCPFlagACK
	binary.BigEndian.PutUint16(tcp[14:], window)
	copy(tcp[20:], []byte{1, 1, 8, 10}) // NOP, NOP, timestamps
	binary.BigEndian.PutUint32(tcp[24:], tsVal)
	binary.BigEndian.PutUint32(tcp[28:], tsEcr)
	fill(b[hl:], seq)

	var p flows.Packet
	flows.Parse(b, &p)
	if p.Reason != flows.ReasonOK || int(p.PayloadLen) != n {
		return nil, fmt.Errorf("build %s segment: it parses as %v with %d payload bytes", f, p.Reason, p.PayloadLen)
	}
	if !offload.SetL4Checksum(b, &p) {
		return nil, fmt.Errorf("build %s segment: no tcp checksum", f)
	}
	return b, nil
}

// train is a bulk TCP stream of one family, parsed and verified.
type train struct {
	family Family
	mss    int
	// big is the first 64 KB segment, parsed into bigPkt: the GSO stage's
	// input.
	big    []byte
	bigPkt flows.Packet
	// frames are the first MTU frames of the stream, consecutive segments
	// made from as many 64 KB segments as it takes; pkts are their parses.
	frames [][]byte
	pkts   []flows.Packet
}

// newTrain builds the first n MTU frames of a bulk stream of family f by
// segmenting 64 KB segments with GSO, and checks every one: it parses as a
// full-sized TCP segment, its checksums verify and it continues the
// sequence.
func newTrain(f Family, n int) (*train, error) {
	t := &train{family: f, mss: MSS(f)}
	g, err := offload.NewGSO(offload.DefaultGSOOptions())
	if err != nil {
		return nil, fmt.Errorf("build %s train: %w", f, err)
	}
	out, sizes := buffers(SegsPerTSO)
	seq, id := uint32(firstSeq), uint16(firstID)
	for len(t.frames) < n || t.big == nil {
		seg, err := bigSegment(f, seq, id, SegsPerTSO*t.mss)
		if err != nil {
			return nil, err
		}
		var p flows.Packet
		flows.Parse(seg, &p)
		if t.big == nil {
			t.big, t.bigPkt = seg, p
		}
		k, err := g.SegmentFrame(seg, &p, t.mss, false, out, sizes)
		if err != nil {
			return nil, fmt.Errorf("build %s train: segment: %w", f, err)
		}
		if k != SegsPerTSO {
			return nil, fmt.Errorf("build %s train: 64 KB segment made %d frames, want %d", f, k, SegsPerTSO)
		}
		for i := 0; i < k && len(t.frames) < n; i++ {
			t.frames = append(t.frames, append([]byte(nil), out[i][:sizes[i]]...))
		}
		seq += uint32(SegsPerTSO * t.mss)
		id += SegsPerTSO
	}
	t.pkts = make([]flows.Packet, len(t.frames))
	var cs offload.CsumStats
	next := uint32(firstSeq)
	for i, fr := range t.frames {
		p := &t.pkts[i]
		flows.Parse(fr, p)
		if p.Reason != flows.ReasonOK || p.Proto != flows.ProtoTCP || int(p.PayloadLen) != t.mss || len(fr) != FrameLen {
			return nil, fmt.Errorf("build %s train: frame %d: %d bytes, parses as %v with %d payload bytes", f, i, len(fr), p.Reason, p.PayloadLen)
		}
		if !cs.Verify(fr, p) {
			return nil, fmt.Errorf("build %s train: frame %d: bad checksum (%+v)", f, i, cs)
		}
		if s := p.TCP(fr).Seq(); s != next {
			return nil, fmt.Errorf("build %s train: frame %d: sequence %d, want %d", f, i, s, next)
		}
		next += uint32(t.mss)
	}
	return t, nil
}

// buffers makes n output buffers for GSO, each big enough for a frame.
func buffers(n int) ([][]byte, []int) {
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, 2048)
	}
	return out, make([]int, n)
}
