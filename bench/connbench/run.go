package connbench

import (
	"context"
	"fmt"
	"io"
	"math/bits"
	"math/rand"
	"runtime"
	"slices"
	"time"

	"github.com/xnic/xnic/bench/internal/stat"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/conn"
)

// Row is the result of one configuration (N, cache size, W).
type Row struct {
	// The configuration.
	Conns    int   `json:"conns"`    // N
	Cache    int   `json:"cache"`    // cache entries
	Ways     int   `json:"ways"`     // cache associativity
	Window   int   `json:"window"`   // lookahead window W
	Prefetch bool  `json:"prefetch"` // the processor prefetched table memory
	Batch    int   `json:"batch"`    // packets per Process call
	Model    Model `json:"model"`    // traffic model
	Burst    int   `json:"burst"`
	Spread   int   `json:"spread"`
	Packets  int   `json:"packets"` // packets per timed pass
	Rounds   int   `json:"rounds"`  // timed passes

	// Time per packet over the timed passes: the median, fastest and
	// slowest pass; Mpps is 1000/NsPerPacket.
	NsPerPacket float64 `json:"ns_per_packet"`
	NsMin       float64 `json:"ns_per_packet_min"`
	NsMax       float64 `json:"ns_per_packet_max"`
	Mpps        float64 `json:"mpps"`

	// Cache events per packet over all timed passes: contexts loaded from
	// the table (Cache.Stats().Loads()) and written back to it.
	LoadsPerPacket      float64 `json:"loads_per_packet"`
	WritebacksPerPacket float64 `json:"writebacks_per_packet"`

	// What lookahead alone gives, counted in the stream: connections per
	// window over packets, that is 1/PacketsPerConn.
	ExpectedLoads  float64 `json:"expected_loads_per_packet"`
	PacketsPerConn float64 `json:"packets_per_conn_in_window"`

	// Speedup is the baseline's NsPerPacket over this row's, for the same N
	// and cache; the baseline is the smallest window of the grid (W=1).
	Baseline int     `json:"baseline_window"`
	Speedup  float64 `json:"speedup"`
}

// config is one processor over its own table, measured pass by pass.
type config struct {
	w, batch int
	p        *conn.Processor
	now      int64

	ns                []float64 // per timed pass
	loads, writebacks uint64    // over the timed passes
	creates           uint64
}

// tableCapacity is the power of two at or above 2n (at least 1024).
func tableCapacity(n int) int {
	return 1 << bits.Len(uint(max(2*n, 1024)-1))
}

// populate inserts every connection of n into tb, in a random order.
func populate(tb *conn.Table, n int, seed int64) error {
	order := make([]uint32, n)
	for i := range order {
		order[i] = uint32(i)
	}
	shuffle(rand.New(rand.NewSource(seed)), order)
	for _, c := range order {
		k := connKey(int(c))
		if _, v := tb.Insert(&k, 1); v != conn.Inserted {
			return fmt.Errorf("populate table: connection %d: %s", c, v)
		}
	}
	return nil
}

// newConfig builds table, cache and processor for one configuration, fills
// the table and runs the warm-up pass.
func newConfig(s *stream, entries, w int, o Options) (*config, error) {
	tb, err := conn.NewTable(conn.TableOptions{Capacity: tableCapacity(s.n)})
	if err != nil {
		return nil, fmt.Errorf("build table of %d connections: %w", s.n, err)
	}
	if err := populate(tb, s.n, o.Seed+int64(s.n)); err != nil {
		return nil, err
	}
	c, err := conn.NewCache(tb, conn.CacheOptions{Entries: entries, Ways: min(o.Ways, entries)})
	if err != nil {
		return nil, fmt.Errorf("build cache of %d: %w", entries, err)
	}
	p, err := conn.NewProcessor(c, conn.ProcessorOptions{Window: w, Dir: conn.DirRX, Prefetch: o.Prefetch})
	if err != nil {
		return nil, fmt.Errorf("build processor of W=%d: %w", w, err)
	}
	cfg := &config{w: w, batch: max(o.Batch, w), p: p, now: 1, ns: make([]float64, 0, o.Rounds)}
	cfg.pass(s.pkts) // warm-up
	return cfg, nil
}

// pass pushes pkts through the processor in batches and returns how long
// it took. It allocates nothing.
func (cfg *config) pass(pkts []flows.Packet) time.Duration {
	t0 := time.Now()
	for off := 0; off < len(pkts); off += cfg.batch {
		cfg.now++
		cfg.p.Process(pkts[off:min(off+cfg.batch, len(pkts))], nil, cfg.now, nil)
	}
	return time.Since(t0)
}

// timedPass runs one timed pass and books its time and cache events.
func (cfg *config) timedPass(pkts []flows.Packet) {
	before := cfg.p.Cache().Stats()
	d := cfg.pass(pkts)
	after := cfg.p.Cache().Stats()
	cfg.ns = append(cfg.ns, float64(d.Nanoseconds())/float64(len(pkts)))
	cfg.loads += after.Loads() - before.Loads()
	cfg.writebacks += after.Evictions - before.Evictions
	cfg.creates += after.Creates - before.Creates
}

// Run measures every configuration of the grid and returns a row for each,
// by N, cache size and window in the order of the options. progress, if not
// nil, gets a line per stream and per row as they finish. On cancellation
// Run returns the rows measured so far with the error.
func Run(ctx context.Context, o Options, progress io.Writer) ([]Row, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	logf := func(format string, a ...any) {
		if progress != nil {
			fmt.Fprintf(progress, format+"\n", a...)
		}
	}
	var rows []Row
	for _, n := range o.Conns {
		if err := ctx.Err(); err != nil {
			return rows, fmt.Errorf("measure N=%d: %w", n, err)
		}
		t0 := time.Now()
		s, err := buildStream(n, o)
		if err != nil {
			return rows, err
		}
		seen := make([]uint32, n)
		expected := make(map[int]float64, len(o.Windows))
		for _, w := range o.Windows {
			expected[w] = s.expectedLoads(w, max(o.Batch, w), seen)
		}
		logf("N=%d: %d packets of %s traffic (bursts of %d over %d) built in %s",
			n, len(s.pkts), o.Model, o.Burst, o.Spread, time.Since(t0).Round(time.Millisecond))
		for _, entries := range o.CacheSizes {
			group, err := measureGroup(ctx, s, entries, o, expected)
			rows = append(rows, group...)
			for _, r := range group {
				logf("N=%d cache=%d W=%d: %.1f ns/pkt (%.1f..%.1f), %.2f Mpps, %.3f loads/pkt (lookahead alone %.3f), x%.2f",
					r.Conns, r.Cache, r.Window, r.NsPerPacket, r.NsMin, r.NsMax, r.Mpps,
					r.LoadsPerPacket, r.ExpectedLoads, r.Speedup)
			}
			if err != nil {
				return rows, err
			}
			runtime.GC() // give the tables back before the next group builds its own
		}
	}
	return rows, nil
}

// measureGroup measures the windows of one (N, cache) side by side, pass
// by pass, and returns their rows.
func measureGroup(ctx context.Context, s *stream, entries int, o Options, expected map[int]float64) ([]Row, error) {
	cfgs := make([]*config, len(o.Windows))
	for i, w := range o.Windows {
		cfg, err := newConfig(s, entries, w, o)
		if err != nil {
			return nil, fmt.Errorf("measure N=%d cache=%d W=%d: %w", s.n, entries, w, err)
		}
		cfgs[i] = cfg
	}
	// Finish any garbage collection the stream and the tables set off now,
	// not during the timed passes (which allocate nothing themselves).
	runtime.GC()
	for range o.Rounds {
		for _, cfg := range cfgs {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("measure N=%d cache=%d W=%d: %w", s.n, entries, cfg.w, err)
			}
			cfg.timedPass(s.pkts)
		}
	}
	base := 0
	for i, cfg := range cfgs {
		if cfg.w < cfgs[base].w {
			base = i
		}
	}
	rows := make([]Row, len(cfgs))
	for i, cfg := range cfgs {
		if cfg.creates != 0 {
			return nil, fmt.Errorf("measure N=%d cache=%d W=%d: %d contexts created in timed passes, want 0", s.n, entries, cfg.w, cfg.creates)
		}
		rows[i] = cfg.row(s, entries, o, expected[cfg.w])
	}
	for i := range rows {
		rows[i].Baseline = rows[base].Window
		rows[i].Speedup = rows[base].NsPerPacket / rows[i].NsPerPacket
	}
	return rows, nil
}

func (cfg *config) row(s *stream, entries int, o Options, expected float64) Row {
	pkts := float64(len(s.pkts) * len(cfg.ns))
	ns := stat.Median(cfg.ns)
	return Row{
		Conns: s.n, Cache: entries, Ways: min(o.Ways, entries), Window: cfg.w,
		Prefetch: o.Prefetch && cfg.w > 1, Batch: cfg.batch,
		Model: o.Model, Burst: o.Burst, Spread: o.Spread,
		Packets: len(s.pkts), Rounds: len(cfg.ns),
		NsPerPacket: ns, NsMin: slices.Min(cfg.ns), NsMax: slices.Max(cfg.ns), Mpps: 1000 / ns,
		LoadsPerPacket:      float64(cfg.loads) / pkts,
		WritebacksPerPacket: float64(cfg.writebacks) / pkts,
		ExpectedLoads:       expected,
		PacketsPerConn:      1 / expected,
	}
}
