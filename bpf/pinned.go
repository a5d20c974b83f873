package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/cilium/ebpf"
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
	return ps, nil
}
