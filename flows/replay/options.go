package replay

import (
	"fmt"
	"time"

	"github.com/xnic/xnic/flows/offload"
)

// Stage is the offload stage a replay runs.
type Stage uint8

const (
	// StageGRO merges TCP segments into aggregates (receive offload).
	StageGRO Stage = iota + 1
	// StageGSO splits large TCP segments, and UDP datagrams with
	// Options.UDPGSO, into MSS-sized frames (TSO/GSO).
	StageGSO
	// StageCsum verifies and completes checksums.
	StageCsum
)

var stageNames = [...]string{StageGRO: "gro", StageGSO: "gso", StageCsum: "csum"}

func (s Stage) String() string {
	if s >= StageGRO && s <= StageCsum {
		return stageNames[s]
	}
	return fmt.Sprintf("stage(%d)", uint8(s))
}

// ParseStage parses "gro", "gso" or "csum".
func ParseStage(name string) (Stage, error) {
	for s := StageGRO; s <= StageCsum; s++ {
		if stageNames[s] == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("stage %q: want gro, gso or csum: %w", name, ErrOptions)
}

// Limits of Options.
const (
	// MaxBatchSize bounds Options.BatchSize.
	MaxBatchSize = 4096
	// DefaultBatchSize is the engine's receive batch.
	DefaultBatchSize = 64
	// DefaultMTU is the MTU the GSO stage derives the MSS from.
	DefaultMTU = 1500
	// MinMTU and MaxMTU bound Options.MTU (IPv6's minimum MTU, and
	// the largest IP packet).
	MinMTU, MaxMTU = 1280, 0xffff
	// MaxMSS bounds Options.MSS: a segment's payload must fit the IP length.
	MaxMSS = 0xffff - 40 - 20
	// MaxSnaplen is the longest record a replay reads and the snap length
	// of the file it writes (libpcap's MAXIMUM_SNAPLEN): a 64 KB aggregate
	// and its link header fit.
	MaxSnaplen = 262144
)

// Options configure a replay. Fields a stage does not use are ignored.
type Options struct {
	// Stage is the stage to run.
	Stage Stage

	// Verify checks checksums. GRO: every TCP frame's IPv4 header and TCP
	// checksums are verified before merging and bad ones never merge (off:
	// the frames are trusted, as when a NIC checked them). GSO: a frame to
	// be segmented must have a good IPv4 header checksum and a TCP/UDP
	// checksum that is either good or the pseudo-header sum of a
	// CHECKSUM_PARTIAL frame; a bad one is written unchanged instead of
	// being given fresh checksums. The csum stage always verifies and
	// requires it on.
	Verify bool
	// CsumPartial makes GRO and GSO write the pseudo-header sum only in
	// the TCP/UDP checksum field of the packets they build
	// (CHECKSUM_PARTIAL, as Linux's tcp_gro_complete and a device with TX
	// checksum offload see it) instead of the full checksum.
	CsumPartial bool

	// GRO stage.

	// BatchSize is the frames fed to GRO between two flushes, the
	// engine's receive batch (1..MaxBatchSize). Ignored with FlushTimeout.
	BatchSize int
	// FlushTimeout, when not zero, emulates gro_flush_timeout on the
	// capture's clock instead of flushing every batch: before each frame,
	// aggregates held since longer than FlushTimeout before the frame's
	// timestamp are flushed (FlushByTimeout). Timestamps that go back are
	// taken as the latest one seen.
	FlushTimeout time.Duration
	// MaxSegs is the most frames in one aggregate (1..offload.MaxSegsLimit).
	MaxSegs int
	// CoalesceAcks folds runs of a flow's pure ACKs into the last one, as
	// the engine does for its guests (offload.GROOptions.CoalesceAcks).
	CoalesceAcks bool

	// GSO stage.

	// MSS is the payload bytes per segment: the TCP MSS, or gso_size for
	// UDP. Zero derives it per frame from MTU: MTU minus the IP header
	// (options and extension headers included) minus the TCP header with
	// its options or the 8-byte UDP header; 1448 for IPv4 TCP with
	// timestamps, 1428 for IPv6.
	MSS int
	// MTU is the IP MTU MSS is derived from when MSS is zero.
	MTU int
	// UDPGSO segments UDP datagrams too, like UDP_SEGMENT: a datagram whose
	// payload is longer than the MSS becomes datagrams of MSS payload bytes
	// each (the last one shorter), each with its own UDP header. Without
	// it UDP passes unchanged.
	UDPGSO bool
	// FixedID gives every segment of a frame the frame's IPv4 ID instead
	// of counting it up by one per segment (Linux's SKB_GSO_TCP_FIXEDID).
	// A pcap does not say which one a GRO aggregate had.
	FixedID bool

	// Checksum stage.

	// Fix rewrites bad checksums (IPv4 header, TCP, UDP) with good ones.
	// Without it a bad frame is counted and written unchanged, so that the
	// output still shows the corruption.
	Fix bool
}

// DefaultOptions are the GRO stage with the engine's batch of 64, Linux's
// 64 frames per aggregate, verification on, full checksums out, and for
// GSO an MSS derived from a 1500-byte MTU.
func DefaultOptions() Options {
	return Options{
		Stage:     StageGRO,
		Verify:    true,
		BatchSize: DefaultBatchSize,
		MaxSegs:   offload.DefaultGROOptions().MaxSegs,
		MTU:       DefaultMTU,
	}
}

func (o *Options) validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("replay options: %s %v: want %s: %w", field, v, want, ErrOptions)
	}
	switch o.Stage {
	case StageGRO:
		if o.BatchSize < 1 || o.BatchSize > MaxBatchSize {
			return bad("BatchSize", o.BatchSize, fmt.Sprintf("1..%d", MaxBatchSize))
		}
		if o.FlushTimeout < 0 {
			return bad("FlushTimeout", o.FlushTimeout, ">= 0")
		}
		if o.MaxSegs < 1 || o.MaxSegs > offload.MaxSegsLimit {
			return bad("MaxSegs", o.MaxSegs, fmt.Sprintf("1..%d", offload.MaxSegsLimit))
		}
	case StageGSO:
		if o.MSS < 0 || o.MSS > MaxMSS {
			return bad("MSS", o.MSS, fmt.Sprintf("0..%d", MaxMSS))
		}
		if o.MSS == 0 && (o.MTU < MinMTU || o.MTU > MaxMTU) {
			return bad("MTU", o.MTU, fmt.Sprintf("%d..%d", MinMTU, MaxMTU))
		}
	case StageCsum:
		if !o.Verify {
			return bad("Verify", o.Verify, "true (the csum stage always verifies)")
		}
	default:
		return bad("Stage", o.Stage, "StageGRO, StageGSO or StageCsum")
	}
	return nil
}

func (o *Options) csumOut() offload.CsumOut {
	if o.CsumPartial {
		return offload.CsumPartial
	}
	return offload.CsumFull
}
