package conn

import (
	"encoding/binary"
	"testing"

	"github.com/xnic/xnic/flows"
)

// testKey is connection i's receive-direction key: a distinct IPv4 source
// (198.18.0.0/15) and port per i, one destination.
func testKey(i int, proto uint8) flows.Key {
	return flows.Key{
		Src:     flows.MapIPv4([4]byte{198, 18 + byte(i>>24&1), byte(i >> 16), byte(i >> 8)}),
		Dst:     flows.MapIPv4([4]byte{198, 19, 255, 1}),
		SrcPort: 1024 + uint16(i&0xff),
		DstPort: 5201,
		Proto:   proto,
		Family:  4,
	}
}

// udpPacket is what Parse would say of an IPv4 UDP frame with payload
// bytes of payload.
func udpPacket(k flows.Key, payload int) flows.Packet {
	return flows.Packet{
		Reason: flows.ReasonOK, EtherType: flows.EtherTypeIPv4, Family: 4,
		L3Off: 14, L3Len: 20, IPLen: uint16(28 + payload), TTL: 64,
		Proto: flows.ProtoUDP, L4Off: 34, L4Len: 8, PayloadOff: 42, PayloadLen: uint16(payload),
		Key: k,
	}
}

// tcpSeg is one TCP segment of a generated stream.
type tcpSeg struct {
	seq, ack uint32
	win      uint16
	flags    uint8
	plen     uint16
}

// tcpPacket builds the parsed packet and the frame (headers only: Apply
// reads no payload) of a segment.
func tcpPacket(k flows.Key, s tcpSeg, frame []byte) (flows.Packet, []byte) {
	frame = frame[:54]
	clear(frame)
	tcp := frame[34:]
	binary.BigEndian.PutUint16(tcp[0:], k.SrcPort)
	binary.BigEndian.PutUint16(tcp[2:], k.DstPort)
	binary.BigEndian.PutUint32(tcp[4:], s.seq)
	binary.BigEndian.PutUint32(tcp[8:], s.ack)
	tcp[12] = 5 << 4
	tcp[13] = s.flags
	binary.BigEndian.PutUint16(tcp[14:], s.win)
	p := flows.Packet{
		Reason: flows.ReasonOK, EtherType: flows.EtherTypeIPv4, Family: 4,
		L3Off: 14, L3Len: 20, IPLen: 40 + s.plen, TTL: 64,
		Proto: flows.ProtoTCP, L4Off: 34, L4Len: 20, PayloadOff: 54, PayloadLen: s.plen,
		TCPFlags: s.flags, Key: k,
	}
	return p, frame
}

func mustTable(t testing.TB, capacity int) *Table {
	t.Helper()
	tb, err := NewTable(TableOptions{Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func mustCache(t testing.TB, tb *Table, entries, ways int) *Cache {
	t.Helper()
	c, err := NewCache(tb, CacheOptions{Entries: entries, Ways: ways})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustProcessor(t testing.TB, c *Cache, opts ProcessorOptions) *Processor {
	t.Helper()
	p, err := NewProcessor(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// state is a context without the table's and cache's bookkeeping, for
// comparing with a reference model.
func state(c Context) Context {
	c.flags = 0
	c.gen = 0
	return c
}
