package stack

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
)

// DropReason says why a frame or packet did not make it into netstack or
// out to the TxFunc.
type DropReason uint8

const (
	RxDropMalformed   DropReason = iota // a frame the parser calls malformed (truncated, bad lengths), or shorter than an Ethernet header
	RxDropCsumBad                       // an aggregate with AggCsumBad, or a checksum that failed verification here
	RxDropUnsupported                   // an EtherType netstack does not take (VLAN tags, LLDP, ...)
	RxDropClosed                        // delivered after Close
	TxDropRejected                      // the TxFunc returned false
	TxDropMalformed                     // a netstack packet with headers this endpoint cannot lay out (never expected)
	TxDropClosed                        // written after Close
	numDropReasons
)

// NumDropReasons is the number of DropReason values, for counter arrays.
const NumDropReasons = int(numDropReasons)

var dropReasonNames = [numDropReasons]string{
	"rx_malformed", "rx_csum_bad", "rx_unsupported", "rx_closed",
	"tx_rejected", "tx_malformed", "tx_closed",
}

func (r DropReason) String() string {
	if r < numDropReasons {
		return dropReasonNames[r]
	}
	return "drop_reason(?)"
}

// DropCounts are drops by DropReason. In JSON they are an object keyed by
// the reasons' names: {"rx_malformed": 0, "rx_csum_bad": 2, ...}.
type DropCounts [NumDropReasons]uint64

// MarshalJSON writes every reason, in DropReason order.
func (d DropCounts) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for r, n := range d {
		if r > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, DropReason(r).String())
		b = append(b, ':')
		b = strconv.AppendUint(b, n, 10)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads what MarshalJSON wrote; an unknown reason is an error.
func (d *DropCounts) UnmarshalJSON(b []byte) error {
	var m map[string]uint64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*d = DropCounts{}
next:
	for k, n := range m {
		for r := range numDropReasons {
			if r.String() == k {
				d[r] = n
				continue next
			}
		}
		return fmt.Errorf("decode drops: unknown reason %q", k)
	}
	return nil
}

// Stats is a snapshot of a Stack's counters.
type Stats struct {
	// Receive: what DeliverAggregate and DeliverFrame were given.
	RxAggregates uint64 `json:"rx_aggregates"` // DeliverAggregate calls
	RxFrames     uint64 `json:"rx_frames"`     // wire frames behind them: Count() per aggregate, one per DeliverFrame
	RxPackets    uint64 `json:"rx_packets"`    // packets handed to netstack
	RxBytes      uint64 `json:"rx_bytes"`      // bytes of those packets, Ethernet header included
	RxVerified   uint64 `json:"rx_verified"`   // packets whose checksums were verified here (not validated by the engine)

	// Transmit: what netstack handed to the TxFunc.
	TxPackets     uint64 `json:"tx_packets"`      // packets the TxFunc accepted
	TxBytes       uint64 `json:"tx_bytes"`        // their bytes, headers included, before segmentation
	TxGSOPackets  uint64 `json:"tx_gso_packets"`  // of TxPackets, those with GSOSize > 0 (to be segmented)
	TxCsumPartial uint64 `json:"tx_csum_partial"` // of TxPackets, those with CsumPartial

	Drops DropCounts `json:"drops"`

	// From netstack's own counters.
	TCPRetransmits     uint64 `json:"tcp_retransmits"`       // TCP segments retransmitted
	TCPChecksumErrors  uint64 `json:"tcp_checksum_errors"`   // TCP segments netstack found a bad checksum in
	IPMalformed        uint64 `json:"ip_malformed"`          // IP packets netstack dropped as malformed
	TCPCurrentEstab    uint64 `json:"tcp_current_estab"`     // connections in ESTABLISHED or CLOSE-WAIT
	NetstackTxDropsNIC uint64 `json:"netstack_tx_drops_nic"` // packets netstack's NIC dropped on transmit (no buffer space)
}

// Drop returns the count of one drop reason.
func (s *Stats) Drop(r DropReason) uint64 {
	if r < numDropReasons {
		return s.Drops[r]
	}
	return 0
}

// counters are the live atomic counters behind Stats. They are updated from
// the engine worker (receive) and from any netstack goroutine (transmit).
type counters struct {
	rxAggregates  atomic.Uint64
	rxFrames      atomic.Uint64
	rxPackets     atomic.Uint64
	rxBytes       atomic.Uint64
	rxVerified    atomic.Uint64
	txPackets     atomic.Uint64
	txBytes       atomic.Uint64
	txGSOPackets  atomic.Uint64
	txCsumPartial atomic.Uint64
	drops         [numDropReasons]atomic.Uint64
}

func (c *counters) drop(r DropReason) { c.drops[r].Add(1) }

func (c *counters) snapshot(s *Stats) {
	s.RxAggregates = c.rxAggregates.Load()
	s.RxFrames = c.rxFrames.Load()
	s.RxPackets = c.rxPackets.Load()
	s.RxBytes = c.rxBytes.Load()
	s.RxVerified = c.rxVerified.Load()
	s.TxPackets = c.txPackets.Load()
	s.TxBytes = c.txBytes.Load()
	s.TxGSOPackets = c.txGSOPackets.Load()
	s.TxCsumPartial = c.txCsumPartial.Load()
	for i := range c.drops {
		s.Drops[i] = c.drops[i].Load()
	}
}
