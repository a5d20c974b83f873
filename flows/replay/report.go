package replay

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// Report says what a replay did. Bytes count captured record bytes;
// payload bytes are the TCP and UDP payloads of the frames that parse to
// their end (flows.ReasonOK), which every stage must keep: PayloadIn ==
// PayloadOut unless a frame was refused.
type Report struct {
	Stage      string `json:"stage"`
	Format     string `json:"format"`    // of the input: pcap or pcapng, +gzip
	LinkType   string `json:"link_type"` // of the input; the output is Ethernet
	FramesIn   uint64 `json:"frames_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	PayloadIn  uint64 `json:"payload_in"`
	PayloadOut uint64 `json:"payload_out"`

	// Malformed counts the frames flows.Parse found broken (and cooked
	// records shorter than their header, as "trunc_cooked"), by reason;
	// they are written unchanged.
	Malformed   uint64            `json:"malformed"`
	MalformedBy map[string]uint64 `json:"malformed_by,omitempty"`
	// SnapTruncated counts records captured shorter than the packet was.
	SnapTruncated uint64 `json:"snap_truncated"`
	// TruncatedTail: the file ends inside a record, which was dropped.
	TruncatedTail bool `json:"truncated_tail"`

	GRO  *GROReport  `json:"gro,omitempty"`
	GSO  *GSOReport  `json:"gso,omitempty"`
	Csum *CsumReport `json:"csum,omitempty"`

	malformed [flows.NumReasons + 1]uint64 // the last one: trunc_cooked
}

// GROReport is what the GRO stage did.
type GROReport struct {
	BatchSize    int    `json:"batch_size"`              // 0 with a flush timeout
	FlushTimeout string `json:"flush_timeout,omitempty"` // as time.Duration prints it
	// Segments is the TCP segments that went through the merge rules and
	// Merged those merged into a held aggregate.
	Segments uint64 `json:"segments"`
	Merged   uint64 `json:"merged"`
	// AcksCoalesced is the pure ACKs folded into a later one
	// (Options.CoalesceAcks).
	AcksCoalesced uint64 `json:"acks_coalesced"`
	// Aggregates is every delivery, single frames and pass-through
	// included: the packets written.
	Aggregates uint64 `json:"aggregates"`
	// Ratio is frames in per packet out (0 without packets).
	Ratio float64 `json:"ratio"`
	// Flush counts deliveries by offload.FlushReason name; zeros left out.
	Flush map[string]uint64 `json:"flush"`
	// SegsHist counts TCP aggregates by frame count, in buckets "1",
	// "2-3", "4-7" ... "128-255", "256"; empty buckets left out.
	SegsHist []HistBucket `json:"segs_hist"`
	// BadIPv4 and BadTCP are the checksum failures Verify found.
	BadIPv4 uint64 `json:"bad_ipv4_csum"`
	BadTCP  uint64 `json:"bad_tcp_csum"`
}

// HistBucket is one bucket of GROReport.SegsHist.
type HistBucket struct {
	Segs       string `json:"segs"`
	Aggregates uint64 `json:"aggregates"`
}

// GSOReport is what the GSO stage did.
type GSOReport struct {
	MSS int `json:"mss"` // 0: derived per frame from MTU
	MTU int `json:"mtu,omitempty"`
	// Segmented is the frames split, and Segments the frames they became.
	Segmented uint64 `json:"segmented"`
	Segments  uint64 `json:"segments"`
	// PartialIn counts segmented frames whose TCP/UDP checksum held the
	// pseudo-header sum only (a TSO send as the sender's tcpdump shows it).
	PartialIn uint64 `json:"partial_in"`
	// Completed counts frames not segmented whose CHECKSUM_PARTIAL sum was
	// completed, as a device with TX checksum offload does on sending.
	Completed uint64 `json:"completed"`
	// BadCsum counts frames over the MSS with a bad checksum (Verify),
	// and Refused those GSO cannot segment (IPv4 fragments, IPv6 extension
	// headers, an MSS too small for the headers); both pass unchanged.
	BadCsum uint64 `json:"bad_csum"`
	Refused uint64 `json:"refused"`
}

// CsumReport is what the checksum stage found. Every frame with a sum to
// check (an IPv4 header, or a TCP or UDP segment that is not a fragment)
// is counted once in Good, Partial or Bad; the others (non-IP, ICMP,
// IPv6 without TCP/UDP, malformed frames) in Unchecked.
type CsumReport struct {
	Good uint64 `json:"good"`
	// Partial: the IP header is good and the TCP/UDP field holds only the
	// pseudo-header sum (CHECKSUM_PARTIAL).
	Partial uint64 `json:"partial"`
	Bad     uint64 `json:"bad"`
	BadIPv4 uint64 `json:"bad_ipv4"`
	BadTCP  uint64 `json:"bad_tcp"`
	BadUDP  uint64 `json:"bad_udp"`
	// Completed counts partial sums completed; Fixed bad frames rewritten
	// (Options.Fix).
	Completed uint64 `json:"completed"`
	Fixed     uint64 `json:"fixed"`
	Unchecked uint64 `json:"unchecked"`
}

// truncCooked is the Report.malformed index of cooked records shorter
// than their header.
const truncCooked = flows.NumReasons

func (r *Report) countMalformed(i int) {
	r.Malformed++
	r.malformed[i]++
}

// finish fills the maps from the counters.
func (r *Report) finish() {
	r.MalformedBy = nil
	for i, n := range r.malformed {
		if n == 0 {
			continue
		}
		if r.MalformedBy == nil {
			r.MalformedBy = map[string]uint64{}
		}
		r.MalformedBy[malformedName(i)] = n
	}
}

func malformedName(i int) string {
	if i == truncCooked {
		return "trunc_cooked"
	}
	return flows.Reason(i).String()
}

var histNames = [...]string{"1", "2-3", "4-7", "8-15", "16-31", "32-63", "64-127", "128-255", "256"}

func groReport(st *offload.GROStats, o *Options, rep *Report) *GROReport {
	g := &GROReport{
		BatchSize:     o.BatchSize,
		Segments:      st.Segments,
		Merged:        st.Merged,
		AcksCoalesced: st.AcksCoalesced,
		Aggregates:    st.Aggregates,
		Flush:         map[string]uint64{},
		SegsHist:      []HistBucket{},
		BadIPv4:       st.Csum.BadIPv4,
		BadTCP:        st.Csum.BadTCP,
	}
	if rep.PacketsOut > 0 {
		g.Ratio = float64(rep.FramesIn) / float64(rep.PacketsOut)
	}
	if o.FlushTimeout > 0 {
		g.BatchSize, g.FlushTimeout = 0, o.FlushTimeout.String()
	}
	for i, n := range st.Flush {
		if n != 0 {
			g.Flush[offload.FlushReason(i).String()] = n
		}
	}
	for i, n := range st.SegsHist {
		if n != 0 && i < len(histNames) {
			g.SegsHist = append(g.SegsHist, HistBucket{histNames[i], n})
		}
	}
	return g
}

// PayloadKept reports whether the output carries the input's TCP and UDP
// payload bytes, as many as went in.
func (r *Report) PayloadKept() bool { return r.PayloadIn == r.PayloadOut }

// JSON returns the report as one line of JSON.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	return b, nil
}

// WriteText writes the report for a human.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	line := func(label, format string, a ...any) {
		fmt.Fprintf(&b, "  %-10s", label)
		fmt.Fprintf(&b, format, a...)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "replay %s: %s, %s\n", r.Stage, r.Format, r.LinkType)
	line("in", "%d frames, %d bytes", r.FramesIn, r.BytesIn)
	line("out", "%d packets, %d bytes", r.PacketsOut, r.BytesOut)
	kept := "kept"
	if !r.PayloadKept() {
		kept = "CHANGED"
	}
	line("payload", "%d bytes in, %d out (%s)", r.PayloadIn, r.PayloadOut, kept)
	var mal strings.Builder
	for i, n := range r.malformed {
		if n != 0 {
			fmt.Fprintf(&mal, " %s=%d", malformedName(i), n)
		}
	}
	line("malformed", "%d%s (written unchanged)", r.Malformed, mal.String())
	if r.SnapTruncated != 0 {
		line("snapped", "%d records captured shorter than their packet", r.SnapTruncated)
	}
	if r.TruncatedTail {
		line("warning", "the file ends inside its last record, which was dropped")
	}
	if g := r.GRO; g != nil {
		mode := fmt.Sprintf("flush per batch of %d", g.BatchSize)
		if g.FlushTimeout != "" {
			mode = "flush timeout " + g.FlushTimeout
		}
		acks := ""
		if g.AcksCoalesced > 0 {
			acks = fmt.Sprintf("; %d pure ACKs coalesced", g.AcksCoalesced)
		}
		line("gro", "%d aggregates, %.2f frames per packet; %d of %d TCP segments merged%s (%s)",
			g.Aggregates, g.Ratio, g.Merged, g.Segments, acks, mode)
		var fl strings.Builder
		for i := range offload.NumFlushReasons {
			name := offload.FlushReason(i).String()
			if n := g.Flush[name]; n != 0 {
				fmt.Fprintf(&fl, " %s=%d", name, n)
			}
		}
		line("flush", "%s", strings.TrimSpace(fl.String()))
		var h strings.Builder
		for _, x := range g.SegsHist {
			fmt.Fprintf(&h, " [%s]=%d", x.Segs, x.Aggregates)
		}
		line("segs/agg", "%s", strings.TrimSpace(h.String()))
		if g.BadIPv4+g.BadTCP != 0 {
			line("bad csum", "ipv4=%d tcp=%d (not merged, written unchanged)", g.BadIPv4, g.BadTCP)
		}
	}
	if g := r.GSO; g != nil {
		mss := fmt.Sprint(g.MSS)
		if g.MSS == 0 {
			mss = fmt.Sprintf("MTU %d minus headers", g.MTU)
		}
		line("gso", "%d frames segmented into %d at mss %s; %d of them had partial checksums",
			g.Segmented, g.Segments, mss, g.PartialIn)
		line("passed", "%d partial checksums completed; unchanged: %d bad checksums, %d refused",
			g.Completed, g.BadCsum, g.Refused)
	}
	if c := r.Csum; c != nil {
		line("csum", "good=%d partial=%d bad=%d (ipv4=%d tcp=%d udp=%d) unchecked=%d",
			c.Good, c.Partial, c.Bad, c.BadIPv4, c.BadTCP, c.BadUDP, c.Unchecked)
		line("rewrote", "completed=%d fixed=%d", c.Completed, c.Fixed)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
