package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/flows"
)

// PinnedMap describes one map pinned by a Steer, as `xnic maps` lists it.
type PinnedMap struct {
	Port       string `json:"port"` // the pin directory's name: the interface
	Name       string `json:"name"`
	Path       string `json:"path"`
	ID         uint32 `json:"id"`
	Type       string `json:"type"`
	KeySize    uint32 `json:"key_size"`
	ValueSize  uint32 `json:"value_size"`
	MaxEntries uint32 `json:"max_entries"`
}

// ListPinned lists the steering maps pinned under root, one directory per
// port (the engine's layout: root/<iface>/<map>). A missing root is not an
// error: nothing is pinned.
func ListPinned(root string) ([]PinnedMap, error) {
	ports, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list pinned maps: %w", err)
	}
	var out []PinnedMap
	for _, p := range ports {
		if !p.IsDir() {
			continue
		}
		for _, name := range pinNames {
			path := filepath.Join(root, p.Name(), name)
			m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("open pinned map %s: %w", path, err)
			}
			pm := PinnedMap{Port: p.Name(), Name: name, Path: path, Type: m.Type().String(),
				KeySize: m.KeySize(), ValueSize: m.ValueSize(), MaxEntries: m.MaxEntries()}
			if info, err := m.Info(); err == nil {
				if id, ok := info.ID(); ok {
					pm.ID = uint32(id)
				}
			}
			m.Close()
			out = append(out, pm)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out, nil
}

// PinnedStats are the counters of one port read from its pinned maps.
type PinnedStats struct {
	Port   string             `json:"port"`
	Total  SteerStats         `json:"total"`
	Queues map[int]SteerStats `json:"queues"` // queues that counted something
	Slots  map[int]SlotStats  `json:"slots"`  // slot index guest*classes+class, those that counted something
	Flows  PinnedFlows        `json:"flows"`
}

// PinnedFlows is how full the exact flow table is.
type PinnedFlows struct {
	Fast     int `json:"fast"`      // flows in the fast table
	FastWays int `json:"fast_ways"` // its capacity
	LRU      int `json:"lru"`       // flows in the LRU hash
	LRUSize  int `json:"lru_size"`  // its max_entries
}

// readPinnedFlows counts the flows in the pinned flow tables of dir. Maps
// pinned by a version without the fast table count as empty.
func readPinnedFlows(dir string) (PinnedFlows, error) {
	var pf PinnedFlows
	opts := &ebpf.LoadPinOptions{ReadOnly: true}
	lru, err := ebpf.LoadPinnedMap(filepath.Join(dir, PinFlows), opts)
	if err != nil {
		return pf, fmt.Errorf("open flows of %s: %w", dir, err)
	}
	defer lru.Close()
	pf.LRUSize = int(lru.MaxEntries())
	var k steerFlowKey
	var v steerFlowTarget
	it := lru.Iterate()
	for it.Next(&k, &v) {
		pf.LRU++
	}
	if err := it.Err(); err != nil {
		return pf, fmt.Errorf("count flows of %s: %w", dir, err)
	}
	// A read-only fd cannot be mmap'ed shared (the kernel drops VM_SHARED
	// for files not open for writing): open it read-write, map it PROT_READ.
	fm, err := ebpf.LoadPinnedMap(filepath.Join(dir, PinFastFlows), nil)
	if errors.Is(err, os.ErrNotExist) {
		return pf, nil
	}
	if err != nil {
		return pf, fmt.Errorf("open fast flows of %s: %w", dir, err)
	}
	defer fm.Close()
	buckets := int(fm.MaxEntries())
	pf.FastWays = buckets * fastWays
	t, err := mapFast(fm.FD(), buckets, false)
	if err != nil {
		return pf, fmt.Errorf("read fast flows of %s: %w", dir, err)
	}
	defer t.close()
	pf.Fast = t.count()
	return pf, nil
}

// ReadPinnedStats sums the per-CPU counters of the port pinned in dir.
func ReadPinnedStats(dir string) (PinnedStats, error) {
	ps := PinnedStats{Port: filepath.Base(dir), Queues: map[int]SteerStats{}, Slots: map[int]SlotStats{}}
	opts := &ebpf.LoadPinOptions{ReadOnly: true}
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, PinStats), opts)
	if err != nil {
		return ps, fmt.Errorf("open stats of %s: %w", dir, err)
	}
	defer m.Close()
	qs, err := readPerCPU[SteerStats](m)
	if err != nil {
		return ps, fmt.Errorf("read stats of %s: %w", dir, err)
	}
	for q, st := range qs {
		if st != (SteerStats{}) {
			ps.Queues[q] = st
			ps.Total = ps.Total.Add(st)
		}
	}
	sm, err := ebpf.LoadPinnedMap(filepath.Join(dir, PinSlotStats), opts)
	if err != nil {
		return ps, fmt.Errorf("open slot stats of %s: %w", dir, err)
	}
	defer sm.Close()
	slots, err := readPerCPU[SlotStats](sm)
	if err != nil {
		return ps, fmt.Errorf("read slot stats of %s: %w", dir, err)
	}
	for i, st := range slots {
		if st != (SlotStats{}) {
			ps.Slots[i] = st
		}
	}
	if ps.Flows, err = readPinnedFlows(dir); err != nil {
		return ps, err
	}
	return ps, nil
}

// HasPins reports whether dir holds any of the steering maps' pins.
func HasPins(dir string) bool {
	for _, name := range pinNames {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// RemovePinned removes the steering maps pinned in dir, and dir when it is
// empty then; it returns how many pins it removed. Files of other names are
// left alone.
func RemovePinned(dir string) (int, error) {
	n := 0
	for _, name := range pinNames {
		err := os.Remove(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("remove pin %s: %w", filepath.Join(dir, name), err)
		}
		n++
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		return n, fmt.Errorf("remove pin dir %s: %w", dir, err)
	}
	return n, nil
}

// DropGuests removes every rule and flow whose target guest keep refuses,
// and returns how many of each it removed. An engine that reuses maps
// pinned by one that is gone calls it before its guests attach, so that no
// rule or flow of a guest of the old engine steers traffic to whichever
// guest gets that id next.
func (s *Steer) DropGuests(keep func(guest int) bool) (rules, flowsDropped int, err error) {
	all, err := s.Rules()
	if err != nil {
		return 0, 0, fmt.Errorf("drop guests: %w", err)
	}
	for _, r := range all {
		if keep(r.Guest) {
			continue
		}
		if err := s.DeleteRule(r.ID); err != nil {
			return rules, 0, fmt.Errorf("drop guests: %w", err)
		}
		rules++
	}
	var keys []flows.Key
	if err := s.walkFlows(func(k flows.Key, to Slot) bool {
		if !keep(to.Guest) {
			keys = append(keys, k)
		}
		return true
	}); err != nil {
		return rules, 0, fmt.Errorf("drop guests: %w", err)
	}
	for _, k := range keys {
		if err := s.DeleteFlow(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return rules, flowsDropped, fmt.Errorf("drop guests: %w", err)
		}
		flowsDropped++
	}
	return rules, flowsDropped, nil
}
