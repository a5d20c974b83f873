package flows

import "encoding/binary"

// Header lengths and protocol numbers.
const (
	EthernetLen = 14
	VLANLen     = 4
	IPv4MinLen  = 20
	IPv6Len     = 40
	TCPMinLen   = 20
	UDPLen      = 8
	ICMPLen     = 8

	EtherTypeIPv4  = 0x0800
	EtherTypeIPv6  = 0x86dd
	EtherTypeARP   = 0x0806
	EtherTypeVLAN  = 0x8100 // 802.1Q
	EtherTypeQinQ  = 0x88a8 // 802.1ad
	EtherTypeQinQ2 = 0x9100 // pre-standard QinQ

	ProtoHopByHop = 0
	ProtoICMP     = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoICMPv6   = 58
	ProtoNoNext   = 59
	ProtoDestOpts = 60
)

// TCP flags.
const (
	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagPSH = 0x08
	TCPFlagACK = 0x10
	TCPFlagURG = 0x20
	TCPFlagECE = 0x40
	TCPFlagCWR = 0x80
)

// Ethernet is a view of an Ethernet II header.
type Ethernet []byte

func (e Ethernet) Dst() [6]byte          { return [6]byte(e[0:6]) }
func (e Ethernet) Src() [6]byte          { return [6]byte(e[6:12]) }
func (e Ethernet) EtherType() uint16     { return binary.BigEndian.Uint16(e[12:]) }
func (e Ethernet) SetDst(m [6]byte)      { copy(e[0:6], m[:]) }
func (e Ethernet) SetSrc(m [6]byte)      { copy(e[6:12], m[:]) }
func (e Ethernet) SetEtherType(t uint16) { binary.BigEndian.PutUint16(e[12:], t) }

// IPv4 is a view of an IPv4 header, options included.
type IPv4 []byte

func (h IPv4) Version() uint8       { return h[0] >> 4 }
func (h IPv4) HeaderLen() int       { return int(h[0]&0x0f) * 4 }
func (h IPv4) TOS() uint8           { return h[1] }
func (h IPv4) TotalLen() uint16     { return binary.BigEndian.Uint16(h[2:]) }
func (h IPv4) ID() uint16           { return binary.BigEndian.Uint16(h[4:]) }
func (h IPv4) FlagsFrag() uint16    { return binary.BigEndian.Uint16(h[6:]) }
func (h IPv4) DF() bool             { return h[6]&0x40 != 0 }
func (h IPv4) MF() bool             { return h[6]&0x20 != 0 }
func (h IPv4) FragOffset() uint16   { return binary.BigEndian.Uint16(h[6:]) & 0x1fff }
func (h IPv4) TTL() uint8           { return h[8] }
func (h IPv4) Protocol() uint8      { return h[9] }
func (h IPv4) Checksum() uint16     { return binary.BigEndian.Uint16(h[10:]) }
func (h IPv4) Src() [4]byte         { return [4]byte(h[12:16]) }
func (h IPv4) Dst() [4]byte         { return [4]byte(h[16:20]) }
func (h IPv4) SetTotalLen(n uint16) { binary.BigEndian.PutUint16(h[2:], n) }
func (h IPv4) SetID(id uint16)      { binary.BigEndian.PutUint16(h[4:], id) }
func (h IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(h[10:], c) }
func (h IPv4) IsFragment() bool     { return h.MF() || h.FragOffset() != 0 }

// IPv6 is a view of the fixed IPv6 header.
type IPv6 []byte

func (h IPv6) Version() uint8         { return h[0] >> 4 }
func (h IPv6) TrafficClass() uint8    { return h[0]<<4 | h[1]>>4 }
func (h IPv6) FlowLabel() uint32      { return binary.BigEndian.Uint32(h[0:]) & 0xfffff }
func (h IPv6) PayloadLen() uint16     { return binary.BigEndian.Uint16(h[4:]) }
func (h IPv6) NextHeader() uint8      { return h[6] }
func (h IPv6) HopLimit() uint8        { return h[7] }
func (h IPv6) Src() [16]byte          { return [16]byte(h[8:24]) }
func (h IPv6) Dst() [16]byte          { return [16]byte(h[24:40]) }
func (h IPv6) SetPayloadLen(n uint16) { binary.BigEndian.PutUint16(h[4:], n) }

// TCP is a view of a TCP header, options included.
type TCP []byte

func (h TCP) SrcPort() uint16      { return binary.BigEndian.Uint16(h[0:]) }
func (h TCP) DstPort() uint16      { return binary.BigEndian.Uint16(h[2:]) }
func (h TCP) Seq() uint32          { return binary.BigEndian.Uint32(h[4:]) }
func (h TCP) Ack() uint32          { return binary.BigEndian.Uint32(h[8:]) }
func (h TCP) DataOffset() int      { return int(h[12]>>4) * 4 }
func (h TCP) Flags() uint8         { return h[13] }
func (h TCP) Window() uint16       { return binary.BigEndian.Uint16(h[14:]) }
func (h TCP) Checksum() uint16     { return binary.BigEndian.Uint16(h[16:]) }
func (h TCP) Urgent() uint16       { return binary.BigEndian.Uint16(h[18:]) }
func (h TCP) Options() []byte      { return h[TCPMinLen:h.DataOffset()] }
func (h TCP) SetSeq(s uint32)      { binary.BigEndian.PutUint32(h[4:], s) }
func (h TCP) SetFlags(f uint8)     { h[13] = f }
func (h TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(h[16:], c) }

// UDP is a view of a UDP header.
type UDP []byte

func (h UDP) SrcPort() uint16      { return binary.BigEndian.Uint16(h[0:]) }
func (h UDP) DstPort() uint16      { return binary.BigEndian.Uint16(h[2:]) }
func (h UDP) Length() uint16       { return binary.BigEndian.Uint16(h[4:]) }
func (h UDP) Checksum() uint16     { return binary.BigEndian.Uint16(h[6:]) }
func (h UDP) SetLength(n uint16)   { binary.BigEndian.PutUint16(h[4:], n) }
func (h UDP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(h[6:], c) }
