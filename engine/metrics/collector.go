package metrics

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/stack"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// Options configure a Collector.
type Options struct {
	// Stacks are the guests' netstacks to read (xnic serve); none for
	// guests without one.
	Stacks []GuestStack
}

// Collector is a prometheus.Collector of a Source's counters. It reads the
// Source on every Collect and keeps nothing between scrapes.
type Collector struct {
	src    Source
	stacks []GuestStack
	all    []*family
}

var _ prometheus.Collector = (*Collector)(nil)

// family is one metric name: its Desc and its type.
type family struct {
	name string
	desc *prometheus.Desc
	typ  prometheus.ValueType
}

// Label names.
const (
	lPort   = "port"
	lQueue  = "queue"
	lGuest  = "guest"
	lClass  = "class"
	lReason = "reason"
)

// The metric families, by what they come from. Every name is listed in the
// README's Metrics section.
var (
	// Workers (Stats).
	mWorkerRxPackets   = counter("worker_rx_packets_total", "Frames the workers took from the rx rings.")
	mWorkerRxBytes     = counter("worker_rx_bytes_total", "Bytes of the frames the workers took from the rx rings.")
	mWorkerWakeups     = counter("worker_rx_wakeups_total", "Wakeups the workers sent because the kernel asked for them (need_wakeup).")
	mWorkerEmptyPasses = counter("worker_empty_passes_total", "Worker passes that found no packet on any socket.")
	mWorkerSleeps      = counter("worker_sleeps_total", "Times an idle worker slept in poll(2).")

	// Steering, per port and rx queue (QueueStats).
	mSteerRxPackets   = counter("steer_rx_packets_total", "Frames the steering program saw.", lPort, lQueue)
	mSteerRxBytes     = counter("steer_rx_bytes_total", "Bytes of the frames the steering program saw.", lPort, lQueue)
	mSteerRedirected  = counter("steer_redirected_total", "Frames redirected to an XSK socket.", lPort, lQueue)
	mSteerToClass0    = counter("steer_redirected_class0_total", "Frames redirected to class 0's socket because their class had none.", lPort, lQueue)
	mSteerPassed      = counter("steer_passed_total", "Frames passed to the host kernel, by reason (non_ip, control, unmatched, no_socket).", lPort, lQueue, lReason)
	mSteerDrops       = counter("steer_drops_total", "Frames the steering program dropped as malformed, by parser reason.", lPort, lQueue, lReason)
	mSteerFlowHits    = counter("steer_flow_hits_total", "Frames steered by an installed flow.", lPort, lQueue)
	mSteerRuleHits    = counter("steer_rule_hits_total", "Frames steered by a rule.", lPort, lQueue)
	mSteerRuleCache   = counter("steer_rule_cache_hits_total", "Rule lookups answered by the rule cache.", lPort, lQueue)
	mSteerFragments   = counter("steer_rx_fragments_total", "IP fragments seen.", lPort, lQueue)
	mSteerUnknownL4   = counter("steer_rx_unknown_l4_total", "Frames of an L4 protocol the parser does not decode.", lPort, lQueue)
	mXSKRxDropped     = counter("xsk_rx_dropped_total", "Frames the kernel dropped for an XSK socket (no room in the UMEM).", lPort, lQueue)
	mXSKRxRingFull    = counter("xsk_rx_ring_full_total", "Frames the kernel dropped because an rx ring was full.", lPort, lQueue)
	mXSKFillEmpty     = counter("xsk_fill_ring_empty_total", "Times the kernel found the fill ring empty.", lPort, lQueue)
	mXSKRxInvalid     = counter("xsk_rx_invalid_descs_total", "Invalid descriptors on the rx side.", lPort, lQueue)
	mXSKTxInvalid     = counter("xsk_tx_invalid_descs_total", "Invalid descriptors on the tx ring.", lPort, lQueue)
	mXSKTxRingEmpty   = counter("xsk_tx_ring_empty_total", "Times the kernel found a tx ring empty.", lPort, lQueue)
	mPipePackets      = counter("pipeline_packets_total", "Frames through the receive pipeline.")
	mPipeMalformed    = counter("pipeline_malformed_total", "Frames the pipeline's parser rejected and dropped.")
	mPipeCsumBad      = counter("pipeline_checksum_errors_total", "Frames the pipeline dropped for a bad checksum.")
	mPipeGroups       = counter("pipeline_groups_total", "Connection groups formed by the lookahead batcher.")
	mPipeNoConn       = counter("pipeline_no_connection_total", "Frames without a connection (non-IP, fragments).")
	mPipeTableFull    = counter("pipeline_table_full_total", "Frames of new connections a full connection table refused.")
	mPipeCacheHits    = counter("pipeline_context_cache_hits_total", "Connection contexts found in the context cache.")
	mPipeLoads        = counter("pipeline_context_loads_total", "Connection contexts loaded from the connection table into the cache.")
	mPipeEvictions    = counter("pipeline_context_evictions_total", "Connection contexts written back to make room in the cache.")
	mPipeConns        = gauge("pipeline_connections", "Live connections in the connection table.")
	mPipeAgedOut      = counter("pipeline_connections_aged_out_total", "Connections taken out after their idle timeout.")
	mPipeAggregates   = counter("pipeline_aggregates_total", "Deliveries to guests and the raw sink.")
	mGROSegments      = counter("gro_segments_total", "TCP segments through GRO's merge rules.")
	mGROMerged        = counter("gro_merged_total", "TCP segments merged into a held aggregate.")
	mGROAcks          = counter("gro_acks_coalesced_total", "Pure ACKs folded into a later one.")
	mGROFlushes       = counter("gro_flushes_total", "GRO aggregates delivered, by flush reason.", lReason)
	mGROAggSegs       = newFamily("gro_aggregate_segments", "TCP aggregates by the segments in them (sum: gro_segments_total).", prometheus.UntypedValue) // a histogram, sent with MustNewConstHistogram
	mTxRequests       = counter("tx_requests_total", "Work requests the send path took from the guests' queues.")
	mTxSegments       = counter("tx_segments_total", "Frames the send path wrote to the tx rings.")
	mTxGSORequests    = counter("tx_gso_requests_total", "Work requests the send path segmented (TSO/GSO).")
	mTxBytes          = counter("tx_bytes_total", "Bytes the send path wrote to the tx rings.")
	mTxRequestDrops   = counter("tx_request_drops_total", "Work requests not sent, by reason (malformed, link_down, spoofed).", lReason)
	mTxMSSClamped     = counter("tx_mss_clamped_total", "Work requests whose segment size was cut to the port's MTU.")
	mTxNoFrames       = counter("tx_no_frames_total", "Guests' sends given up for want of a free frame.")
	mTxQueued         = counter("tx_queued_total", "Frames the class schedulers took.")
	mTxQueueDrops     = counter("tx_queue_drops_total", "Frames the class schedulers dropped (tail, RED or policer; by class in xnic_class_tx_drops_total).")
	mTxCompleted      = counter("tx_completed_total", "Frames back from the completion rings.")
	mGuestInfo        = gauge("guest_info", "An attached guest: its id and active port (always 1).", lGuest, "id", lPort)
	mGuestRxPackets   = counter("guest_rx_packets_total", "Frames delivered to the guest.", lGuest)
	mGuestRxBytes     = counter("guest_rx_bytes_total", "Bytes of the frames delivered to the guest.", lGuest)
	mGuestWrongMAC    = counter("guest_rx_wrong_mac_total", "Frames steered to the guest but addressed to another unicast MAC, not delivered.", lGuest)
	mGuestSpoofed     = counter("guest_tx_spoofed_total", "The guest's sends refused by spoof checking, by reason.", lGuest, lReason)
	mGuestMigrations  = counter("guest_migrations_total", "The guest's moves from one port to another.", lGuest)
	mGuestGap         = gauge("guest_last_migration_gap_seconds", "How long the guest received nothing around its last move.", lGuest)
	mClassRxPackets   = counter("class_rx_packets_total", "Frames the steering program classified to the (guest, class) on the port.", lPort, lGuest, lClass)
	mClassRxBytes     = counter("class_rx_bytes_total", "Bytes of the frames classified to the (guest, class) on the port.", lPort, lGuest, lClass)
	mClassRxRedirect  = counter("class_rx_redirected_total", "Frames redirected to the class's socket.", lPort, lGuest, lClass)
	mClassRxToClass0  = counter("class_rx_redirected_class0_total", "Frames of the class sent to class 0's socket (no socket of its own).", lPort, lGuest, lClass)
	mClassRxNoSocket  = counter("class_rx_pass_no_socket_total", "Frames of the class passed to the host: no socket.", lPort, lGuest, lClass)
	mClassRxDrops     = counter("class_rx_drops_total", "Frames of the class the steering program dropped over the class's threshold (reason early).", lPort, lGuest, lClass, lReason)
	mClassRxECN       = counter("class_rx_ecn_marks_total", "Frames of the class the steering program marked CE instead of dropping.", lPort, lGuest, lClass)
	mClassTxEnqueued  = counter("class_tx_enqueued_packets_total", "Frames the class queue took (active port only).", lPort, lGuest, lClass)
	mClassTxEnqBytes  = counter("class_tx_enqueued_bytes_total", "Bytes the class queue took (active port only).", lPort, lGuest, lClass)
	mClassTxSent      = counter("class_tx_sent_packets_total", "Frames the scheduler sent from the class queue (active port only).", lPort, lGuest, lClass)
	mClassTxSentBytes = counter("class_tx_sent_bytes_total", "Bytes the scheduler sent from the class queue (active port only).", lPort, lGuest, lClass)
	mClassTxDrops     = counter("class_tx_drops_total", "Frames the class queue dropped, by reason (tail, red, policer).", lPort, lGuest, lClass, lReason)
	mClassTxECN       = counter("class_tx_ecn_marks_total", "Frames the class queue marked CE.", lPort, lGuest, lClass)
	mClassTxDepth     = gauge("class_tx_queue_depth", "Frames in the class queue now.", lPort, lGuest, lClass)
	mClassTxMaxDepth  = gauge("class_tx_queue_max_depth", "The most frames the class queue has held.", lPort, lGuest, lClass)
	mStackRxPackets   = counter("stack_rx_packets_total", "Packets handed to the guest's netstack.", lGuest)
	mStackRxBytes     = counter("stack_rx_bytes_total", "Bytes of the packets handed to the guest's netstack.", lGuest)
	mStackRxAggs      = counter("stack_rx_aggregates_total", "GRO aggregates delivered to the guest's netstack.", lGuest)
	mStackTxPackets   = counter("stack_tx_packets_total", "Packets the guest's netstack sent to the engine.", lGuest)
	mStackTxBytes     = counter("stack_tx_bytes_total", "Bytes the guest's netstack sent to the engine, before segmentation.", lGuest)
	mStackTxGSO       = counter("stack_tx_gso_packets_total", "Packets the guest's netstack sent for the engine to segment.", lGuest)
	mStackDrops       = counter("stack_drops_total", "Frames and packets dropped between the engine and the guest's netstack, by reason.", lGuest, lReason)
	mStackRetrans     = counter("stack_tcp_retransmits_total", "TCP segments the guest's netstack retransmitted.", lGuest)
	mStackCsumErrors  = counter("stack_tcp_checksum_errors_total", "TCP segments the guest's netstack found a bad checksum in.", lGuest)
	mStackIPMalformed = counter("stack_ip_malformed_total", "IP packets the guest's netstack dropped as malformed.", lGuest)
	mStackEstab       = gauge("stack_tcp_established_connections", "TCP connections of the guest's netstack in ESTABLISHED or CLOSE-WAIT.", lGuest)
)

// registry lists every family, for Describe.
var registry []*family

func newFamily(name, help string, typ prometheus.ValueType, labels ...string) *family {
	f := &family{name: "xnic_" + name, desc: prometheus.NewDesc("xnic_"+name, help, labels, nil), typ: typ}
	registry = append(registry, f)
	return f
}

func counter(name, help string, labels ...string) *family {
	return newFamily(name, help, prometheus.CounterValue, labels...)
}

func gauge(name, help string, labels ...string) *family {
	return newFamily(name, help, prometheus.GaugeValue, labels...)
}

// New makes a Collector of src.
func New(src Source, opts Options) *Collector {
	return &Collector{src: src, stacks: opts.Stacks, all: registry}
}

// Describe sends every family's Desc.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range c.all {
		ch <- f.desc
	}
}

// emit sends one sample.
func emit(ch chan<- prometheus.Metric, f *family, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(f.desc, f.typ, float64(v), labels...)
}

// Collect reads the Source and sends its counters. A part the Source fails
// to read is sent as an invalid metric, which the HTTP handler logs; the
// other parts are still sent.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if st, err := c.src.Stats(); err != nil {
		ch <- prometheus.NewInvalidMetric(mWorkerRxPackets.desc, fmt.Errorf("read engine stats: %w", err))
	} else {
		collectStats(ch, &st)
	}
	qs, err := c.src.QueueStats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(mSteerRxPackets.desc, fmt.Errorf("read queue stats: %w", err))
	}
	for i := range qs {
		collectQueue(ch, &qs[i])
	}
	for _, g := range c.src.GuestStats() {
		collectGuest(ch, &g)
	}
	cs, err := c.src.ClassStats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(mClassRxPackets.desc, fmt.Errorf("read class stats: %w", err))
	}
	for i := range cs {
		collectClass(ch, &cs[i])
	}
	for _, s := range c.stacks {
		st := s.Stack.Stats()
		collectStack(ch, s.Guest, &st)
	}
}

func collectStats(ch chan<- prometheus.Metric, st *engine.Stats) {
	emit(ch, mWorkerRxPackets, st.RxPackets)
	emit(ch, mWorkerRxBytes, st.RxBytes)
	emit(ch, mWorkerWakeups, st.RxWakeups)
	emit(ch, mWorkerEmptyPasses, st.EmptyPasses)
	emit(ch, mWorkerSleeps, st.Sleeps)

	p := &st.Pipeline
	emit(ch, mPipePackets, p.Packets)
	emit(ch, mPipeMalformed, p.Malformed)
	emit(ch, mPipeCsumBad, p.CsumBad)
	emit(ch, mPipeGroups, p.Groups)
	emit(ch, mPipeNoConn, p.NoConn)
	emit(ch, mPipeTableFull, p.TableFull)
	emit(ch, mPipeCacheHits, p.CacheHits)
	emit(ch, mPipeLoads, p.CacheLoads)
	emit(ch, mPipeEvictions, p.Evictions)
	emit(ch, mPipeConns, p.Conns)
	emit(ch, mPipeAgedOut, p.AgedOut)
	emit(ch, mPipeAggregates, p.Aggregates)
	emit(ch, mGROSegments, p.GROSegments)
	emit(ch, mGROMerged, p.GROMerged)
	emit(ch, mGROAcks, p.GROAcks)
	for r, n := range p.GROFlush {
		emit(ch, mGROFlushes, n, offload.FlushReason(r).String())
	}
	ch <- groHistogram(p)

	t := &st.Tx
	emit(ch, mTxRequests, t.Requests)
	emit(ch, mTxSegments, t.Segments)
	emit(ch, mTxGSORequests, t.GSORequests)
	emit(ch, mTxBytes, t.Bytes)
	// Dropped counts the link_down drops too; the rest are malformed or
	// too big. Spoofed requests are counted apart.
	emit(ch, mTxRequestDrops, t.Dropped-min(t.LinkDown, t.Dropped), "malformed")
	emit(ch, mTxRequestDrops, t.LinkDown, "link_down")
	emit(ch, mTxRequestDrops, t.Spoofed, "spoofed")
	emit(ch, mTxMSSClamped, t.MSSClamped)
	emit(ch, mTxNoFrames, t.NoFrames)
	emit(ch, mTxQueued, t.Queued)
	emit(ch, mTxQueueDrops, t.QueueDrops)
	emit(ch, mTxCompleted, t.Completed)
}

// groBounds are the upper bounds of PipelineStats.SegsHist's buckets:
// [1], [2,3], [4,7] ... [128,255]; the last, [256], is +Inf's.
var groBounds = [...]float64{1, 3, 7, 15, 31, 63, 127, 255}

// groHistogram is PipelineStats.SegsHist as a histogram of segments per
// TCP aggregate, with GROSegments as its sum.
func groHistogram(p *engine.PipelineStats) prometheus.Metric {
	buckets := make(map[float64]uint64, len(groBounds))
	var cum uint64
	for i, le := range groBounds {
		cum += p.SegsHist[i]
		buckets[le] = cum
	}
	count := cum + p.SegsHist[len(p.SegsHist)-1]
	return prometheus.MustNewConstHistogram(mGROAggSegs.desc, count, float64(p.GROSegments), buckets)
}

// steerPass are SteerStats' pass verdicts, by reason.
var steerPass = []struct {
	reason string
	n      func(*QueueStats) uint64
}{
	{"non_ip", func(q *QueueStats) uint64 { return q.Steer.PassNonIp }},
	{"control", func(q *QueueStats) uint64 { return q.Steer.PassControl }},
	{"unmatched", func(q *QueueStats) uint64 { return q.Steer.PassUnmatched }},
	{"no_socket", func(q *QueueStats) uint64 { return q.Steer.PassNoSocket }},
}

// malformedReasons are the parser's reasons the steering program counts
// drops by (SteerStats.Dropped).
var malformedReasons = func() []flows.Reason {
	var out []flows.Reason
	for r := flows.ReasonTruncEthernet; r <= flows.ReasonBadTCPOffset; r++ {
		if r.Malformed() {
			out = append(out, r)
		}
	}
	return out
}()

func collectQueue(ch chan<- prometheus.Metric, q *QueueStats) {
	port, queue := q.Port, strconv.Itoa(q.Queue)
	s := &q.Steer
	emit(ch, mSteerRxPackets, s.RxPackets, port, queue)
	emit(ch, mSteerRxBytes, s.RxBytes, port, queue)
	emit(ch, mSteerRedirected, s.Redirected, port, queue)
	emit(ch, mSteerToClass0, s.RedirectedClass0, port, queue)
	for _, p := range steerPass {
		emit(ch, mSteerPassed, p.n(q), port, queue, p.reason)
	}
	for _, r := range malformedReasons {
		emit(ch, mSteerDrops, s.Dropped(r), port, queue, r.String())
	}
	emit(ch, mSteerFlowHits, s.FlowHits, port, queue)
	emit(ch, mSteerRuleHits, s.RuleHits, port, queue)
	emit(ch, mSteerRuleCache, s.RuleCacheHits, port, queue)
	emit(ch, mSteerFragments, s.RxFragments, port, queue)
	emit(ch, mSteerUnknownL4, s.RxUnknownL4, port, queue)
	x := &q.XSK
	emit(ch, mXSKRxDropped, x.RxDropped, port, queue)
	emit(ch, mXSKRxRingFull, x.RxRingFull, port, queue)
	emit(ch, mXSKFillEmpty, x.RxFillRingEmptyDescs, port, queue)
	emit(ch, mXSKRxInvalid, x.RxInvalidDescs, port, queue)
	emit(ch, mXSKTxInvalid, x.TxInvalidDescs, port, queue)
	emit(ch, mXSKTxRingEmpty, x.TxRingEmptyDescs, port, queue)
}

func collectGuest(ch chan<- prometheus.Metric, g *engine.GuestStats) {
	emit(ch, mGuestInfo, 1, g.Name, strconv.Itoa(g.ID), g.Port)
	emit(ch, mGuestRxPackets, g.RxPackets, g.Name)
	emit(ch, mGuestRxBytes, g.RxBytes, g.Name)
	emit(ch, mGuestWrongMAC, g.RxWrongMAC, g.Name)
	sp := &g.TxSpoofed
	for _, r := range []struct {
		reason string
		n      uint64
	}{{"src_mac", sp.SrcMAC}, {"src_ip", sp.SrcIP}, {"arp", sp.ARP}, {"ndp", sp.NDP}, {"vlan", sp.VLAN}, {"ethertype", sp.EtherType}} {
		emit(ch, mGuestSpoofed, r.n, g.Name, r.reason)
	}
	emit(ch, mGuestMigrations, g.Migrations.Count, g.Name)
	if g.Migrations.GapSeen {
		ch <- prometheus.MustNewConstMetric(mGuestGap.desc, mGuestGap.typ, g.Migrations.LastGap.Seconds(), g.Name)
	}
}

// collectClass sends a (port, guest, class)'s counters. The send side
// lives on the guest's active port: a standby port's row has no send
// counters, and sending zeros there would look like a counter reset each
// time the guest moves, so only the active row sends them.
func collectClass(ch chan<- prometheus.Metric, c *engine.ClassStats) {
	l := []string{c.Port, c.Guest, c.Name}
	if c.Name == "" {
		l[2] = strconv.Itoa(int(c.Class))
	}
	emit(ch, mClassRxPackets, c.RxPackets, l...)
	emit(ch, mClassRxBytes, c.RxBytes, l...)
	emit(ch, mClassRxRedirect, c.RxRedirected, l...)
	emit(ch, mClassRxToClass0, c.RxToClass0, l...)
	emit(ch, mClassRxNoSocket, c.RxPassNoSocket, l...)
	emit(ch, mClassRxDrops, c.RxEarlyDrops, append(l, "early")...)
	emit(ch, mClassRxECN, c.RxECNMarked, l...)
	if !c.Active {
		return
	}
	emit(ch, mClassTxEnqueued, c.Enqueued, l...)
	emit(ch, mClassTxEnqBytes, c.EnqueuedBytes, l...)
	emit(ch, mClassTxSent, c.Sent, l...)
	emit(ch, mClassTxSentBytes, c.SentBytes, l...)
	emit(ch, mClassTxDrops, c.DropTail, append(l, "tail")...)
	emit(ch, mClassTxDrops, c.DropRED, append(l, "red")...)
	emit(ch, mClassTxDrops, c.DropPolicer, append(l, "policer")...)
	emit(ch, mClassTxECN, c.ECNMarks, l...)
	emit(ch, mClassTxDepth, c.Depth, l...)
	emit(ch, mClassTxMaxDepth, c.MaxDepth, l...)
}

func collectStack(ch chan<- prometheus.Metric, guest string, s *stack.Stats) {
	emit(ch, mStackRxPackets, s.RxPackets, guest)
	emit(ch, mStackRxBytes, s.RxBytes, guest)
	emit(ch, mStackRxAggs, s.RxAggregates, guest)
	emit(ch, mStackTxPackets, s.TxPackets, guest)
	emit(ch, mStackTxBytes, s.TxBytes, guest)
	emit(ch, mStackTxGSO, s.TxGSOPackets, guest)
	for r := range stack.DropReason(stack.NumDropReasons) {
		emit(ch, mStackDrops, s.Drop(r), guest, r.String())
	}
	emit(ch, mStackRetrans, s.TCPRetransmits, guest)
	emit(ch, mStackCsumErrors, s.TCPChecksumErrors, guest)
	emit(ch, mStackIPMalformed, s.IPMalformed, guest)
	emit(ch, mStackEstab, s.TCPCurrentEstab, guest)
}
