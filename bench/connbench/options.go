package connbench

import (
	"errors"
	"fmt"
	"slices"

	"github.com/xnic/xnic/flows/conn"
)

// Model is a traffic model: how the packets of a connection's burst mix
// with those of other connections (see the package documentation).
type Model string

// The traffic models.
const (
	ModelBlocks  Model = "blocks"  // bursts shuffled together in aligned blocks of Spread packets
	ModelOverlap Model = "overlap" // overlapping bursts, each spread over Spread packets from a random start
)

// Models lists the traffic models.
func Models() []Model { return []Model{ModelBlocks, ModelOverlap} }

// Limits of the options.
const (
	MaxConns     = 1 << 22 // connections: the table gets 2N slots of 128 bytes
	MaxCache     = 1 << 20 // cache entries
	MaxPackets   = 1 << 24 // packets per pass: the stream costs about 80 bytes a packet
	MinPackets   = 1 << 10
	MaxRounds    = 1000
	MaxSpread    = 1 << 16
	MaxBatch     = conn.MaxWindow
	defaultBatch = 64
)

// Options configure a run: the grid (Conns × CacheSizes × Windows), the
// traffic and the measurement.
type Options struct {
	// The grid.
	Conns      []int // connection counts N, 1..MaxConns
	CacheSizes []int // cache entries, powers of two, 1..MaxCache
	Windows    []int // lookahead windows W, 1..conn.MaxWindow; the smallest is the speedup baseline
	Ways       int   // cache associativity, a power of two 1..64 (a smaller cache is fully associative)
	Prefetch   bool  // let processors with W > 1 prefetch the table memory of their misses

	// The traffic (see the package documentation).
	Model  Model // ModelBlocks or ModelOverlap
	Burst  int   // packets per connection per burst, 1..Spread
	Spread int   // packets a burst is spread over, 1..MaxSpread; with ModelBlocks a multiple of Burst

	// The measurement.
	Batch   int   // packets per Process call (an rx batch), 1..MaxBatch; a larger W uses batches of W
	Packets int   // packets per timed pass, MinPackets..MaxPackets
	Rounds  int   // timed passes per configuration, 1..MaxRounds; rows show the median
	Seed    int64 // seed of the traffic and of the table's insertion order
}

// DefaultOptions is the grid of the issue: N = 16, 1k, 100k and 1M
// connections, caches of 64 and 512 contexts (8-way), W = 1 against W = 64
// with prefetch, bursts of 4 packets shuffled in 64-packet blocks (so a
// 64-window holds 4 packets per connection), rx batches of 64, 4M packets per
// pass (a burst of each of 1M connections), median of 7 passes.
func DefaultOptions() Options {
	return Options{
		Conns:      []int{16, 1000, 100_000, 1_000_000},
		CacheSizes: []int{64, 512},
		Windows:    []int{1, 64},
		Ways:       8,
		Prefetch:   true,
		Model:      ModelBlocks,
		Burst:      4,
		Spread:     64,
		Batch:      defaultBatch,
		Packets:    1 << 22,
		Rounds:     7,
		Seed:       1,
	}
}

// ErrOptions matches every invalid option (errors.Is).
var ErrOptions = errors.New("invalid options")

// OptionError names the option that failed validation. Field is the name of
// the option as `xnic bench conns` spells its flag: "conns", "cache",
// "window", "ways", "model", "burst", "spread", "batch", "packets", "rounds".
type OptionError struct {
	Field string
	Msg   string
}

func (e *OptionError) Error() string { return "connbench: " + e.Field + ": " + e.Msg }

// Is makes errors.Is(err, ErrOptions) true.
func (e *OptionError) Is(target error) bool { return target == ErrOptions }

func optErr(field, format string, a ...any) error {
	return &OptionError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

// checkList checks that a list is not empty, that every value is in lo..hi
// (and a power of two if pow2), and that no value repeats.
func checkList(field string, vs []int, lo, hi int, pow2 bool) error {
	if len(vs) == 0 {
		return optErr(field, "must name at least one value")
	}
	for i, v := range vs {
		if v < lo || v > hi {
			return optErr(field, "must be %d..%d, got %d", lo, hi, v)
		}
		if pow2 && !isPow2(v) {
			return optErr(field, "must be a power of two, got %d", v)
		}
		if slices.Contains(vs[:i], v) {
			return optErr(field, "%d given twice", v)
		}
	}
	return nil
}

// Validate checks the options and names the first bad one.
func (o Options) Validate() error {
	if err := checkList("conns", o.Conns, 1, MaxConns, false); err != nil {
		return err
	}
	if err := checkList("cache", o.CacheSizes, 1, MaxCache, true); err != nil {
		return err
	}
	if err := checkList("window", o.Windows, 1, conn.MaxWindow, false); err != nil {
		return err
	}
	if o.Ways < 1 || o.Ways > 64 || !isPow2(o.Ways) {
		return optErr("ways", "must be a power of two 1..64, got %d", o.Ways)
	}
	if !slices.Contains(Models(), o.Model) {
		return optErr("model", "must be %q or %q, got %q", ModelBlocks, ModelOverlap, o.Model)
	}
	if o.Spread < 1 || o.Spread > MaxSpread {
		return optErr("spread", "must be 1..%d, got %d", MaxSpread, o.Spread)
	}
	if o.Burst < 1 || o.Burst > o.Spread {
		return optErr("burst", "must be 1..spread (%d), got %d", o.Spread, o.Burst)
	}
	if o.Model == ModelBlocks && o.Spread%o.Burst != 0 {
		return optErr("spread", "must be a multiple of burst (%d) with model %s, got %d", o.Burst, ModelBlocks, o.Spread)
	}
	if o.Batch < 1 || o.Batch > MaxBatch {
		return optErr("batch", "must be 1..%d, got %d", MaxBatch, o.Batch)
	}
	if o.Packets < MinPackets || o.Packets > MaxPackets {
		return optErr("packets", "must be %d..%d, got %d", MinPackets, MaxPackets, o.Packets)
	}
	if o.Rounds < 1 || o.Rounds > MaxRounds {
		return optErr("rounds", "must be 1..%d, got %d", MaxRounds, o.Rounds)
	}
	return nil
}
