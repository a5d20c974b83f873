package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Names of the steering maps, which are also their file names inside a pin
// directory (see Steer.Pin and SteerOptions.PinDir).
const (
	PinXSKMap    = "xsks"            // XSKMAP: slot -> AF_XDP socket
	PinStats     = "stats"           // per-CPU SteerStats by rx queue
	PinSlotStats = "slot_stats"      // per-CPU SlotStats by guest*Classes+class
	PinRules     = "rules"           // LPM trie: destination prefix -> rule set
	PinFlows     = "flows"           // LRU hash: flow key -> slot
	PinFastFlows = "fast_flows"      // array of buckets: IPv4 flow -> slot
	PinDSCP      = "dscp_class"      // array: DSCP -> class
	PinRuleCache = "rule_cache"      // LRU hash: flow key -> cached rule outcome
	PinCtl       = "ctl"             // array[1]: rule generation, flows in use
	PinFastHead  = "fast_rules_head" // array[1]: the fast rule index's lock, counts, /0 and first exact ways
	PinFastRules = "fast_rules"      // array of buckets: exact prefixes -> their rules
	PinOccupancy = "occupancy"       // array by slot: rx ring occupancy and receive thresholds
)

// pinNames are the maps Pin and SteerOptions.PinDir pin, in pin order.
var pinNames = []string{PinXSKMap, PinStats, PinSlotStats, PinRules, PinFlows, PinFastFlows, PinDSCP, PinRuleCache, PinCtl, PinFastHead, PinFastRules, PinOccupancy}

// Hard limits of the steering program.
const (
	// MaxQueues bounds SteerOptions.Queues.
	MaxQueues = 1024
	// MaxGuests bounds SteerOptions.Guests: guest ids are 0..MaxGuests-1.
	MaxGuests = 256
	// MaxClasses bounds SteerOptions.Classes: classes are 0..MaxClasses-1.
	MaxClasses = 16
	// MaxSlots bounds Queues*Guests*Classes, the XSKMAP size.
	MaxSlots = 1 << 20
	// MaxPrefixes bounds SteerOptions.Prefixes.
	MaxPrefixes = 1 << 20
	// MaxFlows bounds SteerOptions.Flows and SteerOptions.RuleCache.
	MaxFlows = 1 << 24
	// MaxRulesPerPrefix is the number of rules one destination prefix holds
	// (XNIC_RULES_PER_PREFIX).
	MaxRulesPerPrefix = 16
	// RuleDepth is the number of prefixes the program tries for one frame,
	// most specific first (XNIC_RULE_DEPTH).
	RuleDepth = 8
	// NumDSCP is the number of DSCP values.
	NumDSCP = 64
)

// SteerOptions configure LoadSteer. The sizes become map sizes and
// read-only data of the program: changing them means loading again, and
// pinned maps of other sizes cannot be reused.
type SteerOptions struct {
	// Queues is the number of rx queues covered, 1..MaxQueues. Frames on
	// higher queues go to the kernel uncounted.
	Queues int
	// Guests is the number of guest ids, 1..MaxGuests.
	Guests int
	// Classes is the number of traffic classes per guest, 1..MaxClasses.
	Classes int
	// Prefixes is the number of destination prefixes the rule table holds
	// (each with up to MaxRulesPerPrefix rules), 1..MaxPrefixes. The trie
	// allocates per entry, so a large value costs nothing until used; the
	// fast rule index in front of it (fastrules.go) takes 128 bytes per
	// prefix, rounded up to a power of two, preallocated (2 MB for the
	// default 16384).
	Prefixes int
	// Flows sizes the exact flow table, 1..MaxFlows. The table is two
	// maps: a fast table for IPv4 flows with a way for each of Flows
	// flows, rounded up to a power of two of 64-byte buckets of 4 (16
	// bytes a flow), and an LRU hash of Flows entries, preallocated, about
	// 100 bytes each. An IPv4 flow goes to the fast table while one of its
	// two buckets has a free way; the fast table never evicts. IPv6 flows
	// and the overflow go to the LRU hash, where installing into a full
	// table evicts the least recently used flow.
	Flows int
	// RuleCache is the size of the rule cache, 0..MaxFlows; 0 turns it off.
	// The program remembers the outcome of a rule lookup that walks the
	// trie (a rule's target, or no match) per flow key in an LRU hash, so
	// the next frames of a flow skip the walk: a hash lookup instead of one
	// to RuleDepth trie lookups. Lookups the fast rule index answers (exact
	// and /0 prefixes, see fastrules.go) never use it. Every rule change
	// invalidates the whole cache at once (a generation number), so a
	// cached outcome is never older than the rules. It is used only while
	// the rule table has at least RuleCacheMinPrefixes prefixes and some
	// lookups walk the trie. About 100 bytes per entry, preallocated. Off
	// by default: each flow's entry is cold state, read (and on a miss
	// written) per frame, while the trie's upper nodes are shared by all
	// flows and stay cached, so it pays only for few flows whose frames
	// walk several prefixes (docs/benchmarks.md, steering).
	RuleCache int
	// PinDir, when set, pins every map by name under PinDir (created if
	// missing) and reuses the maps already pinned there: a restarted
	// process finds its rules, flows, DSCP classes and counters again.
	// Close keeps these pins; Unpin removes them.
	PinDir string
}

// DefaultSteerOptions: 64 queues, 64 guests, 8 classes (32768 XSKMAP
// slots), 16384 prefixes, 131072 flows, no rule cache, nothing pinned.
func DefaultSteerOptions() SteerOptions {
	return SteerOptions{Queues: 64, Guests: 64, Classes: 8, Prefixes: 16384, Flows: 131072}
}

// Slots is the XSKMAP size: Queues * Guests * Classes.
func (o SteerOptions) Slots() int { return o.Queues * o.Guests * o.Classes }

// Validate checks every field against its bound and names the one at
// fault.
func (o SteerOptions) Validate() error {
	check := func(field string, v, hi int) error {
		if v < 1 || v > hi {
			return fmt.Errorf("steer %s: must be 1..%d, got %d: %w", field, hi, v, ErrInvalidOptions)
		}
		return nil
	}
	if err := errors.Join(
		check("queues", o.Queues, MaxQueues),
		check("guests", o.Guests, MaxGuests),
		check("classes", o.Classes, MaxClasses),
		check("prefixes", o.Prefixes, MaxPrefixes),
		check("flows", o.Flows, MaxFlows),
	); err != nil {
		return err
	}
	if o.RuleCache < 0 || o.RuleCache > MaxFlows {
		return fmt.Errorf("steer rule cache: must be 0..%d, got %d: %w", MaxFlows, o.RuleCache, ErrInvalidOptions)
	}
	if o.Slots() > MaxSlots {
		return fmt.Errorf("steer queues*guests*classes: %d*%d*%d = %d passes %d: %w",
			o.Queues, o.Guests, o.Classes, o.Slots(), MaxSlots, ErrInvalidOptions)
	}
	return nil
}

// Steer is the loaded xnic_steer program with its maps: the XSKMAP of
// (queue, guest, class) slots, the rule table, the flow table, the DSCP
// classes and the counters. Its methods are control plane, not for hot
// paths; they may be called concurrently, except Close. One process should
// write a given set of (pinned) maps at a time.
type Steer struct {
	opts  SteerOptions
	objs  steerObjects
	links attachments

	// mu guards the pin state, the rule index and ctl, and serializes the
	// read-modify-write of rule sets and the writes of the ctl map.
	mu          sync.Mutex
	pinDir      string   // "" when not pinned
	pinMade     bool     // the pinning created pinDir, so unpinning removes it
	pinKeep     bool     // pinned through SteerOptions.PinDir: Close keeps the pins
	reused      []string // maps found pinned in PinDir and reused
	ruleAt      map[RuleID]ruleKey
	prefixRules map[ruleKey]int     // rules per prefix
	portRules   map[RuleID]struct{} // rules with a port range (ctl.rule_ports)
	nextRule    RuleID
	ctl         steerSteerCtl   // the ctl map's value
	fastRules   *fastRules      // the mmap'ed fast rule index; nil where unsupported
	occ         *OccupancyBoard // the mmap'ed occupancy map; nil once closed
	thresholds  int             // slots with a receive threshold (ctl.cong_on while > 0)

	// flowMu serializes the writes of the flow tables and guards fast.
	flowMu sync.Mutex
	fast   *fastTable // the mmap'ed fast flow table; nil where unsupported
}

// LoadSteer loads xnic_steer and creates its maps, or, with opts.PinDir,
// reuses the maps pinned there. On error nothing stays loaded and no pin
// this call made is left behind.
func LoadSteer(opts SteerOptions) (_ *Steer, err error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("load steer: %w", err)
	}
	removeMemlock()
	spec, err := loadSteer()
	if err != nil {
		return nil, fmt.Errorf("load steer spec: %w", err)
	}
	if err := directMaps(spec); err != nil {
		return nil, fmt.Errorf("load steer spec: %w", err)
	}
	sizes := map[string]int{
		steerMapXsks:      opts.Slots(),
		steerMapOccupancy: opts.Slots(),
		steerMapStats:     opts.Queues,
		steerMapSlotStats: opts.Guests * opts.Classes,
		steerMapRules:     opts.Prefixes,
		steerMapFlows:     opts.Flows,
		steerMapRuleCache: max(opts.RuleCache, 1),
		steerMapFastFlows: fastBucketsFor(opts.Flows),
		steerMapFastRules: rulesBucketsFor(opts.Prefixes),
	}
	for name, n := range sizes {
		spec.Maps[name].MaxEntries = uint32(n)
	}
	for name, v := range map[string]int{
		steerVarCfgQueues:     opts.Queues,
		steerVarCfgGuests:     opts.Guests,
		steerVarCfgClasses:    opts.Classes,
		steerVarCfgQueueSlots: opts.Guests * opts.Classes,
		steerVarCfgRuleCache:  min(opts.RuleCache, 1),
		steerVarCfgFastMask:   fastBucketsFor(opts.Flows) - 1,
		steerVarCfgRulesShift: rulesShift(rulesBucketsFor(opts.Prefixes)),
	} {
		if err := spec.Variables[name].Set(uint32(v)); err != nil {
			return nil, fmt.Errorf("load steer: set %s: %w", name, err)
		}
	}

	s := &Steer{opts: opts, ruleAt: map[RuleID]ruleKey{}, prefixRules: map[ruleKey]int{}, portRules: map[RuleID]struct{}{}, nextRule: 1}
	var colOpts *ebpf.CollectionOptions
	var existed map[string]bool
	made := false
	if opts.PinDir != "" {
		if made, err = makePinDir(opts.PinDir); err != nil {
			return nil, fmt.Errorf("load steer: %w", err)
		}
		existed = map[string]bool{}
		for _, name := range pinNames {
			spec.Maps[name].Pinning = ebpf.PinByName
			if _, err := os.Stat(filepath.Join(opts.PinDir, name)); err == nil {
				existed[name] = true
			}
		}
		colOpts = &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: opts.PinDir}}
		defer func() {
			if err != nil {
				// Remove what this call pinned, keep what was there.
				for _, name := range pinNames {
					if !existed[name] {
						os.Remove(filepath.Join(opts.PinDir, name))
					}
				}
				if made {
					os.Remove(opts.PinDir)
				}
			}
		}()
	}
	if err := spec.LoadAndAssign(&s.objs, colOpts); err != nil {
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("load steer program: maps pinned in %s were made with other options (remove them or load with the same sizes): %w",
				opts.PinDir, err)
		}
		return nil, fmt.Errorf("load steer program: %w", err)
	}
	if opts.PinDir != "" {
		s.pinDir, s.pinMade, s.pinKeep = opts.PinDir, made, true
		for _, name := range pinNames {
			if existed[name] {
				s.reused = append(s.reused, name)
			}
		}
		if err := s.loadRuleIndex(); err != nil {
			s.objs.Close()
			return nil, fmt.Errorf("load steer: %w", err)
		}
		if err := s.objs.Ctl.Lookup(uint32(0), &s.ctl); err != nil {
			s.objs.Close()
			return nil, fmt.Errorf("load steer: read pinned ctl: %w", err)
		}
		// The rule memo's port flag follows the rules found; this
		// program is not attached yet, so one write will do.
		if want := s.rulePorts(); s.ctl.RulePorts != want {
			if err := s.updateCtl(func(c *steerSteerCtl) { c.RulePorts = want; c.RuleGen++ }); err != nil {
				s.objs.Close()
				return nil, fmt.Errorf("load steer: %w", err)
			}
		}
	}
	if s.occ, err = mapOccupancy(s.objs.Occupancy.FD(), opts); err != nil {
		s.objs.Close()
		return nil, fmt.Errorf("load steer: %w", err)
	}
	// Thresholds survive in a pinned map; occupancy published by an
	// earlier process does not.
	if s.thresholds = s.occ.reset(); s.thresholds > 0 && s.ctl.CongOn == 0 {
		if err = s.updateCtl(func(c *steerSteerCtl) { c.CongOn = 1 }); err != nil {
			s.objs.Close()
			return nil, fmt.Errorf("load steer: %w", err)
		}
	}
	if fastSupported {
		// The trie is the reference: the index is rebuilt from it, pinned
		// or not, and only then turned on.
		if s.fastRules, err = mapFastRules(s.objs.FastRulesHead.FD(), s.objs.FastRules.FD(), rulesBucketsFor(opts.Prefixes)); err != nil {
			s.objs.Close()
			return nil, fmt.Errorf("load steer: %w", err)
		}
		sets, err := s.allSets()
		if err != nil {
			s.fastRules.close()
			s.objs.Close()
			return nil, fmt.Errorf("load steer: read pinned rules: %w", err)
		}
		s.fastRules.rebuild(sets)
		if s.fast, err = mapFast(s.objs.FastFlows.FD(), int(s.objs.FastFlows.MaxEntries()), true); err != nil {
			s.fastRules.close()
			s.objs.Close()
			return nil, fmt.Errorf("load steer: %w", err)
		}
		if slices.Contains(s.reused, PinFastFlows) {
			// Ways the last writer deleted may still be read by a
			// program run that began before: treat them as quarantined.
			if err := s.fast.grace(); err != nil {
				s.fast.close()
				s.fastRules.close()
				s.objs.Close()
				return nil, fmt.Errorf("load steer: %w", err)
			}
		}
	}
	return s, nil
}

// directSections are the data sections of steer.bpf.c that stand for
// the value of a one-entry array map: the program reads that map's value
// as global data (xnic_ctl, xnic_head), one load from a constant address
// per field instead of a lookup.
var directSections = map[string]string{
	".data.ctl":             steerMapCtl,
	".data.fast_rules_head": steerMapFastRulesHead,
}

// directMaps points the program's references to each directSections
// section at its map, which the kernel allows for an array of one entry
// (a direct value load, as for global data), and drops the sections'
// own maps. The maps stay what they were, pinned and read by name, and
// user space writes them as before.
func directMaps(spec *ebpf.CollectionSpec) error {
	for sec, name := range directSections {
		m, ok := spec.Maps[name]
		if !ok || m.Type != ebpf.Array || m.MaxEntries != 1 {
			return fmt.Errorf("map %s: not an array of one entry", name)
		}
		d, ok := spec.Maps[sec]
		if !ok {
			return fmt.Errorf("section %s: missing", sec)
		}
		if d.ValueSize != m.ValueSize {
			return fmt.Errorf("section %s: %d bytes, map %s values %d", sec, d.ValueSize, name, m.ValueSize)
		}
		delete(spec.Maps, sec)
	}
	for _, p := range spec.Programs {
		for i, ins := range p.Instructions {
			if name, ok := directSections[ins.Reference()]; ok {
				p.Instructions[i] = ins.WithReference(name)
			}
		}
	}
	return nil
}

// makePinDir creates dir when missing and says whether it did.
func makePinDir(dir string) (bool, error) {
	if _, err := os.Stat(dir); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("pin dir %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("create pin dir %s: %w", dir, err)
	}
	return true, nil
}

// Options are the options the Steer was loaded with.
func (s *Steer) Options() SteerOptions { return s.opts }

// Reused names the maps that LoadSteer found pinned in SteerOptions.PinDir
// and reused, rather than created.
func (s *Steer) Reused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reused...)
}

// Program is the loaded xnic_steer program.
func (s *Steer) Program() *ebpf.Program { return s.objs.XnicSteer }

// XSKMap is the XSKMAP of (queue, guest, class) slots; see SlotIndex.
func (s *Steer) XSKMap() *ebpf.Map { return s.objs.Xsks }

// StatsMap is the per-CPU array of SteerStats keyed by rx queue.
func (s *Steer) StatsMap() *ebpf.Map { return s.objs.Stats }

// SlotStatsMap is the per-CPU array of SlotStats keyed by
// guest*Classes+class.
func (s *Steer) SlotStatsMap() *ebpf.Map { return s.objs.SlotStats }

// RulesMap is the LPM trie of rule sets. Read it; change rules through
// AddRule and DeleteRule, which keep the fast rule index in line with it.
func (s *Steer) RulesMap() *ebpf.Map { return s.objs.Rules }

// FlowsMap is the LRU hash of the exact flow table.
func (s *Steer) FlowsMap() *ebpf.Map { return s.objs.Flows }

// FastFlowsMap is the array of fast flow buckets (IPv4 flows, in front of
// FlowsMap).
func (s *Steer) FastFlowsMap() *ebpf.Map { return s.objs.FastFlows }

// DSCPMap is the DSCP to class array.
func (s *Steer) DSCPMap() *ebpf.Map { return s.objs.DscpClass }

// FastRulesMap is the hashed part of the fast rule index in front of
// RulesMap: an array of buckets of two ways of exact prefixes (see
// fastrules.go; FastRulesHeadMap is the rest).
func (s *Steer) FastRulesMap() *ebpf.Map { return s.objs.FastRules }

// FastRulesHeadMap is the head of the fast rule index: its sequence lock,
// counts, the /0 ways and the first exact ways.
func (s *Steer) FastRulesHeadMap() *ebpf.Map { return s.objs.FastRulesHead }

// OccupancyMap is the array of receive thresholds and rx ring occupancy
// by slot (see OccupancyBoard).
func (s *Steer) OccupancyMap() *ebpf.Map { return s.objs.Occupancy }

// RuleCacheMap is the LRU hash of cached rule outcomes.
func (s *Steer) RuleCacheMap() *ebpf.Map { return s.objs.RuleCache }

// Maps returns every steering map by its pin name.
func (s *Steer) Maps() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		PinXSKMap: s.objs.Xsks, PinStats: s.objs.Stats, PinSlotStats: s.objs.SlotStats,
		PinRules: s.objs.Rules, PinFlows: s.objs.Flows, PinFastFlows: s.objs.FastFlows, PinDSCP: s.objs.DscpClass,
		PinRuleCache: s.objs.RuleCache, PinCtl: s.objs.Ctl, PinFastHead: s.objs.FastRulesHead, PinFastRules: s.objs.FastRules,
		PinOccupancy: s.objs.Occupancy,
	}
}

// Attach links xnic_steer to an interface; Close on the result or on the
// Steer detaches it.
func (s *Steer) Attach(ifindex int, mode AttachMode) (*Attachment, error) {
	if s.objs.XnicSteer == nil {
		return nil, fmt.Errorf("attach steer: %w", ErrClosed)
	}
	return s.links.attach(s.objs.XnicSteer, ifindex, mode)
}

// Pin pins every steering map (PinXSKMap, PinStats, PinSlotStats, PinRules,
// PinFlows, PinFastFlows, PinDSCP, PinRuleCache, PinCtl, PinFastHead,
// PinFastRules, PinOccupancy) under dir on bpffs, creating dir when missing, so that
// bpftool, `xnic maps` or another process (a C peer in a benchmark) can
// open them. A pin left by a crashed process makes Pin fail with an error
// matching os.ErrExist; remove it first. Close unpins what Pin pinned. To
// keep maps across restarts, load with SteerOptions.PinDir instead.
func (s *Steer) Pin(dir string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objs.Xsks == nil {
		return fmt.Errorf("pin steer maps: %w", ErrClosed)
	}
	if s.pinDir != "" {
		return fmt.Errorf("pin steer maps in %s: already pinned in %s: %w", dir, s.pinDir, os.ErrExist)
	}
	made, err := makePinDir(dir)
	if err != nil {
		return fmt.Errorf("pin steer maps: %w", err)
	}
	maps := s.Maps()
	var done []*ebpf.Map
	for _, name := range pinNames {
		path := filepath.Join(dir, name)
		if err := maps[name].Pin(path); err != nil {
			for _, m := range done {
				m.Unpin()
			}
			if made {
				os.Remove(dir)
			}
			return fmt.Errorf("pin %s map at %s: %w", name, path, err)
		}
		done = append(done, maps[name])
	}
	s.pinDir, s.pinMade, s.pinKeep = dir, made, false
	return nil
}

// PinDir is the directory the maps are pinned in, or "".
func (s *Steer) PinDir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pinDir
}

// Unpin removes the pins (made by Pin or SteerOptions.PinDir), and then
// the directory: for Pin, if Pin created it; for SteerOptions.PinDir, if it
// is empty.
func (s *Steer) Unpin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unpinLocked()
}

func (s *Steer) unpinLocked() error {
	if s.pinDir == "" {
		return nil
	}
	var errs []error
	for _, name := range pinNames {
		path := filepath.Join(s.pinDir, name)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin %s: %w", path, err))
		}
	}
	if s.pinKeep && len(errs) == 0 {
		// The PinDir is the Steer's own: remove it when it is empty now,
		// whoever made it (the engine's restarts share it).
		if err := os.Remove(s.pinDir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
			errs = append(errs, fmt.Errorf("remove pin dir %s: %w", s.pinDir, err))
		}
	} else if s.pinMade && len(errs) == 0 {
		if err := os.Remove(s.pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pin dir %s: %w", s.pinDir, err))
		}
	}
	if len(errs) == 0 {
		s.pinDir, s.pinMade, s.pinKeep = "", false, false
	}
	return errors.Join(errs...)
}

// Close detaches every attachment, unpins the maps pinned by Pin (but keeps
// those of SteerOptions.PinDir) and frees the program and maps. The Steer
// is unusable afterwards.
func (s *Steer) Close() error {
	errs := []error{s.links.closeAll()}
	s.flowMu.Lock()
	if err := s.fast.close(); err != nil {
		errs = append(errs, fmt.Errorf("unmap fast flow table: %w", err))
	}
	s.fast = nil
	s.flowMu.Unlock()
	s.mu.Lock()
	if err := s.fastRules.close(); err != nil {
		errs = append(errs, fmt.Errorf("unmap fast rule index: %w", err))
	}
	s.fastRules = nil
	// Workers may still hold the board: it unmaps itself when dropped.
	s.occ = nil
	if s.objs.Xsks != nil {
		if !s.pinKeep {
			errs = append(errs, s.unpinLocked())
		}
		if err := s.objs.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close steer objects: %w", err))
		}
		s.objs = steerObjects{}
	}
	s.mu.Unlock()
	return errors.Join(errs...)
}
