package stack

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TxPacket is one packet netstack sends: the frame as contiguous headers
// and a payload chain. It and every slice in it are valid only during the
// TxFunc call; the TxFunc copies what it needs before it returns.
type TxPacket struct {
	// Head is the headers netstack built: Ethernet, IP and, for TCP and
	// UDP, the L4 header (for TCP always the whole header with options,
	// and nothing more, as offload.Request.Head wants). For ICMP and ARP
	// part or all of the message may be in Payload instead.
	Head []byte
	// Payload is the rest of the frame, in order, as views of netstack's
	// buffers. It may be empty.
	Payload [][]byte
	// L3Off is where the IP (or ARP) header starts in Head: 14.
	L3Off int
	// L4Off is where the TCP/UDP/ICMP header starts, 0 for ARP. For TCP
	// and UDP it is in Head.
	L4Off int
	// Len is the frame's length, len(Head) plus every Payload slice.
	Len int
	// GSOSize is the MSS when the TCP payload is longer than one MSS: the
	// packet is a TSO super-segment, to be split into GSOSize-byte
	// segments (offload.Request.GSOSize). It is 0 when the packet fits
	// the MTU as it is.
	GSOSize int
	// CsumPartial says the TCP checksum field holds only the pseudo-header
	// sum (over this packet's TCP length), as netstack leaves it for a
	// device with TSO; the engine must complete it (offload.CompletePartial
	// on the frame, or offload.GSO.Segment with CsumFull, which computes
	// each segment's sum afresh). netstack sets it on every TCP segment of
	// a connection that uses TSO, whatever its size. When it is false,
	// every checksum is already complete.
	CsumPartial bool
	// FixedID says the packet is an IPv4 atomic datagram (DF set, ID 0,
	// as netstack sends TCP): segment it with offload.Request.FixedID so
	// that every segment keeps ID 0.
	FixedID bool
	// EtherType is the frame's EtherType (0x0800, 0x86dd or 0x0806).
	EtherType uint16
	// Proto is the IP protocol of the L4 header (6, 17, 1, 58), 0 for
	// ARP.
	Proto uint8
}

// TxFunc hands a packet from netstack to the engine. It is called from
// any goroutine, often several at once: the goroutines of applications
// writing to sockets, netstack's TCP processors and timers, and the
// caller of DeliverAggregate or DeliverFrame itself (the engine worker),
// inside that call, when netstack answers a packet at once (ARP, NDP,
// ICMP, TCP segments it processes inline). netstack sends the packets of
// one TCP connection in order, one call at a time (under the connection's
// lock). The TxFunc must not block for long,
// must copy what it needs before it returns (the packet's memory is
// netstack's), and must not call DeliverAggregate or DeliverFrame of any
// Stack itself: it queues, and the engine delivers later. It returns false
// when it dropped the packet (a full queue, no free frame, a bad header);
// the Stack counts that as TxDropRejected and netstack sees a packet lost
// on the wire (TCP retransmits it).
type TxFunc func(p *TxPacket) bool

// txScratch is one transmit call's working memory, pooled so that the
// transmit path allocates nothing.
type txScratch struct {
	p   TxPacket
	hdr [maxTxHead]byte
	pay [][]byte
}

// maxTxHead bounds the headers of a packet whose headers must be gathered:
// Ethernet, IPv4 with options or IPv6 with extension headers, TCP with
// options.
const maxTxHead = 256

// dispatcherRef boxes netstack's NetworkDispatcher for atomic access.
type dispatcherRef struct{ d gstack.NetworkDispatcher }

// endpoint is the NIC's link endpoint: Ethernet framing over the engine.
// Receive comes from Stack.DeliverAggregate/DeliverFrame on the engine
// worker; transmit calls the TxFunc from netstack's goroutines.
type endpoint struct {
	// Set at construction, read-only afterwards.
	mac        [6]byte
	gsoMaxSize uint32
	caps       gstack.LinkEndpointCapabilities
	c          *counters

	// Atomic: read on every packet, changed by netstack's control calls
	// (Attach, SetMTU, SetLinkAddress), Stack.SetTx and Close.
	dispatcher atomic.Pointer[dispatcherRef]
	tx         atomic.Pointer[TxFunc]
	closed     atomic.Bool
	mtu        atomic.Uint32
	linkMAC    atomic.Pointer[tcpip.LinkAddress]

	scratch sync.Pool // *txScratch
}

var (
	_ gstack.LinkEndpoint = (*endpoint)(nil)
	_ gstack.GSOEndpoint  = (*endpoint)(nil)
)

func newEndpoint(o *Options, tx TxFunc, c *counters) *endpoint {
	e := &endpoint{
		mac:  [6]byte(o.MAC),
		c:    c,
		caps: gstack.CapabilityResolutionRequired,
	}
	e.mtu.Store(uint32(o.MTU))
	e.SetLinkAddress(tcpip.LinkAddress(o.MAC))
	if o.GSOMaxSize > 0 {
		e.gsoMaxSize = uint32(o.GSOMaxSize)
	}
	if o.RxChecksumOffload {
		e.caps |= gstack.CapabilityRXChecksumOffload
	}
	e.tx.Store(&tx)
	e.scratch.New = func() any { return &txScratch{pay: make([][]byte, 0, 64)} }
	return e
}

// MTU implements stack.LinkEndpoint: the IP MTU.
func (e *endpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.
func (e *endpoint) SetMTU(mtu uint32) { e.mtu.Store(mtu) }

// MaxHeaderLength implements stack.LinkEndpoint: the Ethernet header.
func (*endpoint) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.
func (e *endpoint) LinkAddress() tcpip.LinkAddress { return *e.linkMAC.Load() }

// SetLinkAddress implements stack.LinkEndpoint. The address frames are
// accepted for (PacketHost) stays the one the Stack was made with.
func (e *endpoint) SetLinkAddress(addr tcpip.LinkAddress) { e.linkMAC.Store(&addr) }

// Capabilities implements stack.LinkEndpoint.
func (e *endpoint) Capabilities() gstack.LinkEndpointCapabilities { return e.caps }

// Attach implements stack.LinkEndpoint.
func (e *endpoint) Attach(d gstack.NetworkDispatcher) {
	if d == nil {
		e.dispatcher.Store(nil)
		return
	}
	e.dispatcher.Store(&dispatcherRef{d: d})
}

// IsAttached implements stack.LinkEndpoint.
func (e *endpoint) IsAttached() bool { return e.dispatcher.Load() != nil }

// Wait implements stack.LinkEndpoint: the endpoint has no goroutines.
func (*endpoint) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.
func (*endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint: it pushes the Ethernet header.
func (e *endpoint) AddHeader(pkt *gstack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	src := pkt.EgressRoute.LocalLinkAddress
	if len(src) != 6 {
		src = tcpip.LinkAddress(e.mac[:])
	}
	eth.Encode(&header.EthernetFields{
		SrcAddr: src,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

// ParseHeader implements stack.LinkEndpoint: it consumes the Ethernet
// header.
func (*endpoint) ParseHeader(pkt *gstack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// Close implements stack.LinkEndpoint. netstack calls it when it removes
// the NIC; from then on nothing is sent or delivered.
func (e *endpoint) Close() { e.closed.Store(true) }

// SetOnCloseAction implements stack.LinkEndpoint. The endpoint never goes
// away on its own (only Stack.Close removes it), so there is no action to
// run, as with gVisor's fdbased and xdp endpoints.
func (*endpoint) SetOnCloseAction(func()) {}

// GSOMaxSize implements stack.GSOEndpoint.
func (e *endpoint) GSOMaxSize() uint32 { return e.gsoMaxSize }

// SupportedGSO implements stack.GSOEndpoint: host GSO (the engine segments
// and completes the checksums) when GSOMaxSize is set.
func (e *endpoint) SupportedGSO() gstack.SupportedGSO {
	if e.gsoMaxSize > 0 {
		return gstack.HostGSOSupported
	}
	return gstack.GSONotSupported
}

// deliver hands a received frame, whole in pkt, to netstack: it consumes
// the Ethernet header, classifies the destination like a NIC's filter and
// dispatches by EtherType. It reports false if nothing is attached.
func (e *endpoint) deliver(pkt *gstack.PacketBuffer) bool {
	d := e.dispatcher.Load()
	if d == nil {
		return false
	}
	h, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	if !ok {
		return false
	}
	// Compare bytes: tcpip.LinkAddress is a string and would allocate.
	switch dst := h[:6]; {
	case dst[0]&1 == 0 && [6]byte(dst) == e.mac:
		pkt.PktType = tcpip.PacketHost
	case [6]byte(dst) == [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}:
		pkt.PktType = tcpip.PacketBroadcast
	case dst[0]&1 != 0:
		pkt.PktType = tcpip.PacketMulticast
	default:
		pkt.PktType = tcpip.PacketOtherHost
	}
	d.d.DeliverNetworkPacket(tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(h[12:14])), pkt)
	return true
}

// WritePackets implements stack.LinkWriter: it hands every packet to the
// TxFunc. A packet the TxFunc drops is lost on the wire, as far as
// netstack knows: it is counted, and still reported as written. The caller
// keeps its references to the packets.
func (e *endpoint) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	if e.closed.Load() {
		e.c.drops[TxDropClosed].Add(uint64(pkts.Len()))
		return 0, &tcpip.ErrClosedForSend{}
	}
	tx := *e.tx.Load()
	sc := e.scratch.Get().(*txScratch)
	for _, pkt := range pkts.AsSlice() {
		if sc.build(pkt) {
			p := &sc.p
			if tx(p) {
				e.c.txPackets.Add(1)
				e.c.txBytes.Add(uint64(p.Len))
				if p.GSOSize > 0 {
					e.c.txGSOPackets.Add(1)
				}
				if p.CsumPartial {
					e.c.txCsumPartial.Add(1)
				}
			} else {
				e.c.drop(TxDropRejected)
			}
		} else {
			e.c.drop(TxDropMalformed)
		}
		clear(sc.pay) // keep no references to netstack's buffers
		sc.pay = sc.pay[:0]
		sc.p = TxPacket{}
	}
	e.scratch.Put(sc)
	return pkts.Len(), nil
}

// build lays pkt out as sc.p: the headers as Head and the rest as
// Payload. Headers netstack pushes into the buffer it reserved for them are
// contiguous, and Head is a view of them; a packet built from parsed
// headers (an ICMP echo reply reuses the request's) has them in several
// views, and they are gathered into sc.hdr.
func (sc *txScratch) build(pkt *gstack.PacketBuffer) bool {
	linkLen := len(pkt.LinkHeader().Slice())
	netLen := len(pkt.NetworkHeader().Slice())
	tLen := len(pkt.TransportHeader().Slice())
	hl := pkt.HeaderSize()
	if linkLen != header.EthernetMinimumSize || hl != linkLen+netLen+tLen {
		return false
	}
	var head []byte
	gathered := 0 // header bytes copied into sc.hdr so far
	need := hl
	total := 0
	vl, off := pkt.AsViewList()
	for v := vl.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		b = b[off:]
		off = 0
		total += len(b)
		if need > 0 {
			if gathered == 0 && len(b) >= need {
				head, b = b[:need], b[need:]
			} else {
				c := min(need, len(b))
				if gathered+c > len(sc.hdr) {
					return false
				}
				copy(sc.hdr[gathered:], b[:c])
				gathered += c
				b = b[c:]
				if gathered == hl {
					head = sc.hdr[:hl]
				}
			}
			need = hl - max(len(head), gathered)
		}
		if len(b) > 0 {
			sc.pay = append(sc.pay, b)
		}
	}
	if head == nil {
		return false
	}
	p := &sc.p
	p.Head = head
	p.Payload = sc.pay
	p.L3Off = linkLen
	p.Len = total
	p.EtherType = uint16(pkt.NetworkProtocolNumber)
	p.Proto = uint8(pkt.TransportProtocolNumber)
	if p.EtherType == uint16(header.IPv4ProtocolNumber) || p.EtherType == uint16(header.IPv6ProtocolNumber) {
		p.L4Off = linkLen + netLen
	}
	if p.EtherType == uint16(header.IPv4ProtocolNumber) && netLen >= header.IPv4MinimumSize {
		ip := head[linkLen:]
		p.FixedID = ip[6]&0x40 != 0 && ip[4] == 0 && ip[5] == 0
	}
	switch g := &pkt.GSOOptions; g.Type {
	case gstack.GSOTCPv4, gstack.GSOTCPv6:
		if pkt.TransportProtocolNumber != header.TCPProtocolNumber || tLen < header.TCPMinimumSize {
			return false
		}
		p.CsumPartial = g.NeedsCsum
		if pkt.Data().Size() > int(g.MSS) && g.MSS > 0 {
			p.GSOSize = int(g.MSS)
		}
	}
	return true
}

// setTx swaps the TxFunc.
func (e *endpoint) setTx(tx TxFunc) { e.tx.Store(&tx) }
