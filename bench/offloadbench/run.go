package offloadbench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/bench/internal/stat"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// Stage is an offload stage.
type Stage string

// The stages, in the order rows come.
const (
	StageGRO Stage = "gro"
	StageGSO Stage = "gso"
)

// The modes of each stage.
const (
	ModeVerifyFull     = "verify+full"     // GRO: verify every checksum, write the aggregate's in full
	ModeTrustValidated = "trust+validated" // GRO: checksums vouched for, aggregate marked validated
	ModeFull           = "full"            // GSO: every checksum computed
	ModePartial        = "partial"         // GSO: pseudo-header sums only
)

// TargetRatio is issue 5's target: each stage at least this many times the
// raw receive packet rate on one core.
const TargetRatio = 5.0

// Row is one configuration measured over the rounds.
type Row struct {
	// The configuration.
	Stage    Stage  `json:"stage"`
	Family   Family `json:"family"`
	Mode     string `json:"mode"`
	MSS      int    `json:"mss"`
	FrameLen int    `json:"frame_len"` // bytes per MTU frame, no FCS
	Batch    int    `json:"batch"`     // GRO: frames per Flush; GSO: frames per 64 KB segment
	CPU      int    `json:"cpu"`       // -1: unpinned
	Rounds   int    `json:"rounds"`    // measurements the figures are over
	// Duration is the length of each measurement.
	Duration time.Duration `json:"duration_ns"`

	// Million segments per second: the median, slowest and fastest round.
	MsegPerSec float64 `json:"mseg_per_sec"`
	Min        float64 `json:"mseg_per_sec_min"`
	Max        float64 `json:"mseg_per_sec_max"`

	// SegsPerAgg is segments per delivered aggregate (GRO) or per 64 KB
	// segment (GSO), over the timed rounds.
	SegsPerAgg float64 `json:"segs_per_agg"`
}

// Target reports whether the row is one issue 5's target is about: GRO with
// every checksum verified and written, and GSO with full checksums.
func (r Row) Target() bool {
	return (r.Stage == StageGRO && r.Mode == ModeVerifyFull) || (r.Stage == StageGSO && r.Mode == ModeFull)
}

// Name is "stage family mode".
func (r Row) Name() string { return fmt.Sprintf("%s %s %s", r.Stage, r.Family, r.Mode) }

// stage is one configuration: what a timed loop runs, one batch at a time.
type stage struct {
	name         string
	stage        Stage
	family       Family
	mode         string
	mss, batch   int
	segsPerBatch uint64

	// GRO: the frames of one batch, their parses and pristine copies of
	// their heads, to undo the rewrite once an aggregate is taken.
	gro      *offload.GRO
	frames   [][]byte
	pkts     []flows.Packet
	pristine [][]byte

	// GSO: one 64 KB segment and the buffers it is split into.
	gso   *offload.GSO
	big   []byte
	bigP  flows.Packet
	out   [][]byte
	sizes []int
	err   error // the last GSO error, checked after each measurement

	// Over the timed rounds.
	rates     []float64 // million segments per second, one per round
	segs, agg uint64
}

// batchesPerClock is how many batches a timed loop runs between two clock
// reads: a few microseconds of work.
const batchesPerClock = 4

// runBatch pushes one batch through the stage. It allocates nothing.
func (s *stage) runBatch() {
	if s.gro != nil {
		for j := range s.frames {
			s.gro.Receive(s.frames[j], uint64(j), &s.pkts[j])
			s.restore()
		}
		s.gro.Flush()
		s.restore()
		return
	}
	if _, err := s.gso.SegmentFrame(s.big, &s.bigP, s.mss, false, s.out, s.sizes); err != nil {
		s.err = err
	}
}

// restore takes the aggregates GRO has ready and undoes each one's head
// rewrite, so that the same frames go round again.
func (s *stage) restore() {
	for a := s.gro.Next(); a != nil; a = s.gro.Next() {
		copy(a.Head, s.pristine[a.Handles[0]])
	}
}

// counters are the stage's segment and aggregate counts so far.
func (s *stage) counters() (segs, agg uint64) {
	if s.gro != nil {
		return s.gro.Stats.Segments, s.gro.Stats.Aggregates
	}
	return s.gso.Stats.Segments, s.gso.Stats.Requests
}

// timed runs the stage for d, or until done closes, and returns the
// segments it pushed and the time it took. It allocates nothing.
func (s *stage) timed(d time.Duration, done <-chan struct{}) (segs uint64, elapsed time.Duration) {
	t0 := time.Now()
	end := t0.Add(d)
	for {
		for range batchesPerClock {
			s.runBatch()
		}
		segs += batchesPerClock * s.segsPerBatch
		now := time.Now()
		if !now.Before(end) {
			return segs, now.Sub(t0)
		}
		select {
		case <-done:
			return segs, now.Sub(t0)
		default:
		}
	}
}

// newGRO builds the GRO stage of family t.family over t's frames.
func newGRO(t *train, mode string, verify bool, out offload.CsumOut) (*stage, error) {
	s := &stage{stage: StageGRO, family: t.family, mode: mode, mss: t.mss, batch: len(t.frames),
		segsPerBatch: uint64(len(t.frames))}
	s.frames = make([][]byte, len(t.frames))
	s.pristine = make([][]byte, len(t.frames))
	for i, f := range t.frames {
		s.frames[i] = slices.Clone(f)
		s.pristine[i] = slices.Clone(f[:t.pkts[i].PayloadOff])
	}
	s.pkts = slices.Clone(t.pkts)
	opts := offload.DefaultGROOptions()
	opts.Verify, opts.CsumOut = verify, out
	g, err := offload.NewGRO(opts)
	if err != nil {
		return nil, fmt.Errorf("build gro %s %s: %w", t.family, mode, err)
	}
	s.gro = g
	return s, nil
}

// newGSO builds the GSO stage of family t.family over t's first 64 KB
// segment.
func newGSO(t *train, mode string, out offload.CsumOut) (*stage, error) {
	g, err := offload.NewGSO(offload.GSOOptions{CsumOut: out})
	if err != nil {
		return nil, fmt.Errorf("build gso %s %s: %w", t.family, mode, err)
	}
	s := &stage{stage: StageGSO, family: t.family, mode: mode, mss: t.mss, batch: SegsPerTSO,
		segsPerBatch: SegsPerTSO, gso: g, big: slices.Clone(t.big), bigP: t.bigPkt}
	s.out, s.sizes = buffers(SegsPerTSO)
	return s, nil
}

// newStages builds the eight configurations, by stage, family and mode.
func newStages(o Options) ([]*stage, error) {
	trains := make(map[Family]*train)
	for _, f := range Families() {
		t, err := newTrain(f, o.Batch)
		if err != nil {
			return nil, err
		}
		trains[f] = t
	}
	var stages []*stage
	for _, f := range Families() {
		for _, m := range []struct {
			mode   string
			verify bool
			out    offload.CsumOut
		}{{ModeVerifyFull, true, offload.CsumFull}, {ModeTrustValidated, false, offload.CsumMarkValidated}} {
			s, err := newGRO(trains[f], m.mode, m.verify, m.out)
			if err != nil {
				return nil, err
			}
			stages = append(stages, s)
		}
	}
	for _, f := range Families() {
		for _, m := range []struct {
			mode string
			out  offload.CsumOut
		}{{ModeFull, offload.CsumFull}, {ModePartial, offload.CsumPartial}} {
			s, err := newGSO(trains[f], m.mode, m.out)
			if err != nil {
				return nil, err
			}
			stages = append(stages, s)
		}
	}
	for _, s := range stages {
		s.name = fmt.Sprintf("%s %s %s", s.stage, s.family, s.mode)
	}
	return stages, nil
}

// check fails if the stage saw a bad checksum or a GSO error: the loop
// would then not have measured what it claims to.
func (s *stage) check() error {
	if s.gro != nil {
		st := &s.gro.Stats
		if bad := st.Csum.BadIPv4 + st.Csum.BadTCP; bad != 0 {
			return fmt.Errorf("%s: %d bad checksums in the train", s.name, bad)
		}
		if n := st.Flush[offload.DeliverPassThrough] + st.Flush[offload.DeliverUnmergeable]; n != 0 {
			return fmt.Errorf("%s: %d frames delivered without merging", s.name, n)
		}
		return nil
	}
	if s.err != nil {
		return fmt.Errorf("%s: segment: %w", s.name, s.err)
	}
	return nil
}

// Run measures every configuration Rounds times and returns a row for each:
// GRO then GSO, IPv4 then IPv6, in the order of the modes. progress, if not
// nil, gets a line per measurement. On cancellation Run returns the rows of
// what was measured so far with the error.
func Run(ctx context.Context, o Options, progress io.Writer) ([]Row, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.CPU >= 0 {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			return nil, fmt.Errorf("offloadbench: get cpu affinity: %w", err)
		}
		if !set.IsSet(o.CPU) {
			return nil, optErr("cpu", "CPU %d is not one this process may run on", o.CPU)
		}
	}
	stages, err := newStages(o)
	if err != nil {
		return nil, fmt.Errorf("offloadbench: %w", err)
	}
	// Settle the garbage the set-up left now, not during the timed loops
	// (which allocate nothing themselves).
	runtime.GC()

	// Measure on a goroutine of its own, locked to its thread and pinned.
	// It never unlocks: the thread ends with the goroutine, and its
	// affinity with it.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- measure(ctx, stages, o, progress)
	}()
	err = <-errc

	var rows []Row
	for _, s := range stages {
		if len(s.rates) > 0 {
			rows = append(rows, s.row(o))
		}
	}
	return rows, err
}

// measure runs the warm-up and the rounds on the calling thread, pinned to
// o.CPU.
func measure(ctx context.Context, stages []*stage, o Options, progress io.Writer) error {
	if o.CPU >= 0 {
		var set unix.CPUSet
		set.Set(o.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("offloadbench: pin to cpu %d: %w", o.CPU, err)
		}
	}
	done := ctx.Done()
	warm := min(o.Duration, 50*time.Millisecond)
	for _, s := range stages {
		s.timed(warm, done)
		if err := s.check(); err != nil {
			return fmt.Errorf("offloadbench: warm-up: %w", err)
		}
	}
	for r := 1; r <= o.Rounds; r++ {
		for _, s := range stages {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("offloadbench: round %d %s: %w", r, s.name, err)
			}
			segs0, agg0 := s.counters()
			n, el := s.timed(o.Duration, done)
			segs1, agg1 := s.counters()
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("offloadbench: round %d %s: %w", r, s.name, err)
			}
			if err := s.check(); err != nil {
				return fmt.Errorf("offloadbench: round %d: %w", r, err)
			}
			if segs1-segs0 != n {
				return fmt.Errorf("offloadbench: round %d %s: the stage counted %d segments, the loop pushed %d", r, s.name, segs1-segs0, n)
			}
			rate := float64(n) / el.Seconds() / 1e6
			s.rates = append(s.rates, rate)
			s.segs += segs1 - segs0
			s.agg += agg1 - agg0
			if progress != nil {
				fmt.Fprintf(progress, "round %d/%d %-24s %7.2f Mseg/s, %.1f segs/agg\n",
					r, o.Rounds, s.name, rate, float64(segs1-segs0)/float64(agg1-agg0))
			}
		}
	}
	return nil
}

func (s *stage) row(o Options) Row {
	r := Row{
		Stage: s.stage, Family: s.family, Mode: s.mode, MSS: s.mss, FrameLen: FrameLen,
		Batch: s.batch, CPU: o.CPU, Rounds: len(s.rates), Duration: o.Duration,
		MsegPerSec: stat.Median(s.rates), Min: slices.Min(s.rates), Max: slices.Max(s.rates),
	}
	if s.agg > 0 {
		r.SegsPerAgg = float64(s.segs) / float64(s.agg)
	}
	return r
}
