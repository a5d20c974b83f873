package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/xnic/xnic/flows"
)

// The exact flow table: an LRU hash from flows.Key (addresses, ports,
// protocol, family, outer VLAN) to a Slot. The program looks it up before
// the rules, so an installed flow overrides them. Until the first flow is
// installed (ever, in these maps) the program skips the lookup. Installing into a full
// table evicts the least recently used flow; so may, rarely, the kernel's
// per-CPU LRU lists before the table is quite full. Non-first fragments
// carry no ports and so never hit a flow with ports: rules steer them.

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
	if err := s.flowsInUse(); err != nil {
		return fmt.Errorf("install flow %s: %w", k, err)
	}
	v := steerFlowTarget{Guest: uint8(to.Guest), Class: uint8(to.Class)}
	if err := s.objs.Flows.Update(&fk, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("install flow %s: %w", k, err)
	}
	return nil
}

// InstallFlows installs keys[i] -> to[i] in batches (one syscall per
// batch), for bulk loads. It returns how many were installed; on error the
// first n were.
func (s *Steer) InstallFlows(keys []flows.Key, to []Slot) (int, error) {
	if s.objs.Flows == nil {
		return 0, fmt.Errorf("install flows: %w", ErrClosed)
	}
	if len(keys) != len(to) {
		return 0, fmt.Errorf("install flows: %d keys, %d slots: %w", len(keys), len(to), ErrInvalidOptions)
	}
	if err := s.flowsInUse(); err != nil {
		return 0, fmt.Errorf("install flows: %w", err)
	}
	const batch = 4096
	ks := make([]steerFlowKey, 0, min(batch, len(keys)))
	vs := make([]steerFlowTarget, 0, min(batch, len(keys)))
	done := 0
	for i := 0; i < len(keys); i += batch {
		ks, vs = ks[:0], vs[:0]
		for j := i; j < min(i+batch, len(keys)); j++ {
			fk, err := flowKeyOf(keys[j])
			if err != nil {
				return done, fmt.Errorf("install flows: key %d: %w", j, err)
			}
			if err := s.checkSlot(to[j]); err != nil {
				return done, fmt.Errorf("install flows: slot %d: %w", j, err)
			}
			ks = append(ks, fk)
			vs = append(vs, steerFlowTarget{Guest: uint8(to[j].Guest), Class: uint8(to[j].Class)})
		}
		n, err := s.objs.Flows.BatchUpdate(ks, vs, &ebpf.BatchOptions{ElemFlags: uint64(ebpf.UpdateAny)})
		done += n
		if err != nil {
			return done, fmt.Errorf("install flows: batch at %d: %w", i, err)
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
	if err := s.objs.Flows.Delete(&fk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
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

// FlowCount counts the installed flows by walking the table.
func (s *Steer) FlowCount() (int, error) {
	n := 0
	err := s.walkFlows(func(flows.Key, Slot) bool { n++; return true })
	return n, err
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
	return nil
}
