package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/xnic/xnic/flows"
)

// The exact flow table maps flows.Key (addresses, ports, protocol,
// family, outer VLAN) to a Slot. The program looks it up before the rules,
// so an installed flow overrides them. It is two maps (see fastflows.go):
// IPv4 flows go to the fast table while their bucket has room, the rest to
// an LRU hash. Until the first flow goes to a map the program skips that
// map, and ClearFlows makes it skip the fast table again. Installing into a full LRU hash evicts its
// least recently used flow; so may, rarely, the kernel's per-CPU LRU lists
// before the table is quite full. The fast table never evicts. Non-first
// fragments carry no ports and so never hit a flow with ports: rules steer
// them.

// flowKeyOf converts a flows.Key (the layouts are the same) after checking
// it is one the program can produce.
func flowKeyOf(k flows.Key) (steerFlowKey, error) {
	switch k.Family {
	case 4:
		if !netipMapped(k.Src) || !netipMapped(k.Dst) {
			return steerFlowKey{}, fmt.Errorf("flow key %s: family 4 needs IPv4-mapped addresses (flows.MapIPv4): %w", k, ErrInvalidOptions)
		}
	case 6:
	default:
		return steerFlowKey{}, fmt.Errorf("flow key: family: %d, want 4 or 6: %w", k.Family, ErrInvalidOptions)
	}
	return steerFlowKey{
		Src: k.Src, Dst: k.Dst, Sport: k.SrcPort, Dport: k.DstPort,
		Proto: k.Proto, Family: k.Family, Vlan: k.VLAN,
	}, nil
}

func netipMapped(a [16]byte) bool {
	for _, b := range a[:10] {
		if b != 0 {
			return false
		}
	}
	return a[10] == 0xff && a[11] == 0xff
}

func keyOfFlow(k steerFlowKey) flows.Key {
	return flows.Key{Src: k.Src, Dst: k.Dst, SrcPort: k.Sport, DstPort: k.Dport, Proto: k.Proto, Family: k.Family, VLAN: k.Vlan}
}

// InstallFlow steers the flow k (one direction, as flows.Parse keys a
// received frame) to slot to, replacing any entry for k.
func (s *Steer) InstallFlow(k flows.Key, to Slot) error {
	if s.objs.Flows == nil {
		return fmt.Errorf("install flow: %w", ErrClosed)
	}
	fk, err := flowKeyOf(k)
	if err != nil {
		return fmt.Errorf("install flow: %w", err)
	}
	if err := s.checkSlot(to); err != nil {
		return fmt.Errorf("install flow %s: %w", k, err)
	}
	v := steerFlowTarget{Guest: uint8(to.Guest), Class: uint8(to.Class)}
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	if f, ok := s.fastKey(fk); ok {
		p, err := s.fastInstall(f, &fk, v, true)
		if err != nil {
			return fmt.Errorf("install flow %s: %w", k, err)
		}
		if p.in() {
			return nil
		}
	}
	if err := s.flowsInUse(); err != nil {
		return fmt.Errorf("install flow %s: %w", k, err)
	}
	if err := s.objs.Flows.Update(&fk, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("install flow %s: %w", k, err)
	}
	return nil
}

// fastKey is fk's fast form, and whether the fast table can take it here.
func (s *Steer) fastKey(fk steerFlowKey) (fastKey, bool) {
	f, ok := fastKeyOf(fk)
	return f, ok && s.fast != nil
}

// fastInstall steers f (fk) to v in the fast table, with put, or with
// tryPut when it may not wait for a grace period. A flow newly placed
// there may have an older entry in the LRU hash, which goes: from now on
// the program finds it in the fast table first. Callers hold s.flowMu.
func (s *Steer) fastInstall(f fastKey, fk *steerFlowKey, v steerFlowTarget, wait bool) (placement, error) {
	if err := s.fastInUse(); err != nil {
		return fastFull, err
	}
	var p placement
	if wait {
		p = s.fast.put(f, v)
	} else {
		p = s.fast.tryPut(f, v)
	}
	if p == fastPlaced {
		if err := s.lruDelete(fk); err != nil {
			return p, err
		}
	}
	return p, nil
}

// lruDelete removes fk from the LRU hash, if the hash was ever used.
// Callers hold s.flowMu.
func (s *Steer) lruDelete(fk *steerFlowKey) error {
	s.mu.Lock()
	used := s.ctl.FlowsInUse != 0
	s.mu.Unlock()
	if !used {
		return nil
	}
	if err := s.objs.Flows.Delete(fk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// InstallFlows installs keys[i] -> to[i] in bulk: every key and slot is
// checked first; then the flows the fast table takes are written to it,
// and the rest go to the LRU hash in batches (one syscall per batch).
// Unlike InstallFlow, it makes room in the fast table for a flow whose two
// buckets are full by moving another flow to its other bucket, at the
// cost of one RCU grace period (some milliseconds) for the whole call. It
// returns how many flows were installed; on error, n of them were (not
// necessarily the first n).
func (s *Steer) InstallFlows(keys []flows.Key, to []Slot) (int, error) {
	if s.objs.Flows == nil {
		return 0, fmt.Errorf("install flows: %w", ErrClosed)
	}
	if len(keys) != len(to) {
		return 0, fmt.Errorf("install flows: %d keys, %d slots: %w", len(keys), len(to), ErrInvalidOptions)
	}
	fks := make([]steerFlowKey, len(keys))
	vs := make([]steerFlowTarget, len(keys))
	for i := range keys {
		fk, err := flowKeyOf(keys[i])
		if err != nil {
			return 0, fmt.Errorf("install flows: key %d: %w", i, err)
		}
		if err := s.checkSlot(to[i]); err != nil {
			return 0, fmt.Errorf("install flows: slot %d: %w", i, err)
		}
		fks[i], vs[i] = fk, steerFlowTarget{Guest: uint8(to[i].Guest), Class: uint8(to[i].Class)}
	}
	s.flowMu.Lock()
	defer s.flowMu.Unlock()

	done := 0
	var lru []int      // indexes of the keys for the LRU hash
	var deferred []int // keys waiting for ways to leave quarantine
	for i := range fks {
		f, ok := s.fastKey(fks[i])
		if !ok {
			lru = append(lru, i)
			continue
		}
		p, err := s.fastInstall(f, &fks[i], vs[i], false)
		switch {
		case err != nil:
			return done, fmt.Errorf("install flows: %s: %w", keys[i], err)
		case p.in():
			done++
		case s.fast.relocate(f) || p == fastWaiting:
			deferred = append(deferred, i)
		default:
			lru = append(lru, i)
		}
	}
	// The first of these puts waits for one grace period, which frees
	// every quarantined way.
	for _, i := range deferred {
		f, _ := s.fastKey(fks[i])
		p, err := s.fastInstall(f, &fks[i], vs[i], true)
		switch {
		case err != nil:
			return done, fmt.Errorf("install flows: %s: %w", keys[i], err)
		case p.in():
			done++
		default:
			lru = append(lru, i)
		}
	}
	if len(lru) == 0 {
		return done, nil
	}
	if err := s.flowsInUse(); err != nil {
		return done, fmt.Errorf("install flows: %w", err)
	}
	const batch = 4096
	ks := make([]steerFlowKey, 0, min(batch, len(lru)))
	ts := make([]steerFlowTarget, 0, min(batch, len(lru)))
	for j := 0; j < len(lru); j += batch {
		ks, ts = ks[:0], ts[:0]
		for _, i := range lru[j:min(j+batch, len(lru))] {
			ks = append(ks, fks[i])
			ts = append(ts, vs[i])
		}
		n, err := s.objs.Flows.BatchUpdate(ks, ts, &ebpf.BatchOptions{ElemFlags: uint64(ebpf.UpdateAny)})
		done += n
		if err != nil {
			return done, fmt.Errorf("install flows: batch at %d: %w", j, err)
		}
	}
	return done, nil
}

// DeleteFlow removes the flow k. A flow that is not there (never
// installed, or evicted) is not an error.
func (s *Steer) DeleteFlow(k flows.Key) error {
	if s.objs.Flows == nil {
		return fmt.Errorf("delete flow: %w", ErrClosed)
	}
	fk, err := flowKeyOf(k)
	if err != nil {
		return fmt.Errorf("delete flow: %w", err)
	}
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	if f, ok := s.fastKey(fk); ok {
		s.fast.delete(f)
	}
	if err := s.lruDelete(&fk); err != nil {
		return fmt.Errorf("delete flow %s: %w", k, err)
	}
	return nil
}

// LookupFlow returns the slot of flow k, and false when it is not installed.
func (s *Steer) LookupFlow(k flows.Key) (Slot, bool, error) {
	if s.objs.Flows == nil {
		return Slot{}, false, fmt.Errorf("lookup flow: %w", ErrClosed)
	}
	fk, err := flowKeyOf(k)
	if err != nil {
		return Slot{}, false, fmt.Errorf("lookup flow: %w", err)
	}
	if f, ok := s.fastKey(fk); ok {
		s.flowMu.Lock()
		v, ok := s.fast.lookup(f)
		s.flowMu.Unlock()
		if ok {
			return Slot{Guest: int(v.Guest), Class: int(v.Class)}, true, nil
		}
	}
	var v steerFlowTarget
	err = s.objs.Flows.Lookup(&fk, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return Slot{}, false, nil
	}
	if err != nil {
		return Slot{}, false, fmt.Errorf("lookup flow %s: %w", k, err)
	}
	return Slot{Guest: int(v.Guest), Class: int(v.Class)}, true, nil
}

// FlowCount counts the installed flows by walking the tables.
func (s *Steer) FlowCount() (int, error) {
	n := 0
	err := s.walkFlows(func(flows.Key, Slot) bool { n++; return true })
	return n, err
}

// FastFlowCount counts the flows in the fast table (a part of FlowCount).
func (s *Steer) FastFlowCount() (int, error) {
	if s.objs.FastFlows == nil {
		return 0, fmt.Errorf("count fast flows: %w", ErrClosed)
	}
	if s.fast == nil {
		return 0, nil
	}
	return s.fast.count(), nil
}

// Flows calls fn for every installed flow until fn returns false. The table
// may change meanwhile; a flow may then be missed or seen twice.
func (s *Steer) Flows(fn func(k flows.Key, to Slot) bool) error {
	return s.walkFlows(fn)
}

func (s *Steer) walkFlows(fn func(flows.Key, Slot) bool) error {
	if s.objs.Flows == nil {
		return fmt.Errorf("walk flows: %w", ErrClosed)
	}
	if s.fast != nil && !s.fast.walk(func(f fastKey, tg steerFlowTarget) bool {
		return fn(keyOfFlow(f.steerKey()), Slot{Guest: int(tg.Guest), Class: int(tg.Class)})
	}) {
		return nil
	}
	const batch = 4096
	ks := make([]steerFlowKey, batch)
	vs := make([]steerFlowTarget, batch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := s.objs.Flows.BatchLookup(&cursor, ks, vs, nil)
		for i := range n {
			if !fn(keyOfFlow(ks[i]), Slot{Guest: int(vs[i].Guest), Class: int(vs[i].Class)}) {
				return nil
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("walk flows: %w", err)
		}
	}
}

// ClearFlows removes every flow.
func (s *Steer) ClearFlows() error {
	var keys []flows.Key
	if err := s.walkFlows(func(k flows.Key, _ Slot) bool { keys = append(keys, k); return true }); err != nil {
		return fmt.Errorf("clear flows: %w", err)
	}
	for _, k := range keys {
		if err := s.DeleteFlow(k); err != nil {
			return fmt.Errorf("clear flows: %w", err)
		}
	}
	// An empty fast table need not be read: frames of flows not installed
	// (rule-steered traffic) would pay its misses for nothing.
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	if s.fast != nil && s.fast.count() == 0 {
		if err := s.ctlSet(func(c *steerSteerCtl) *uint32 { return &c.FastInUse }, 0); err != nil {
			return fmt.Errorf("clear flows: %w", err)
		}
	}
	return nil
}
