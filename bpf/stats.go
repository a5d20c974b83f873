package bpf

import (
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/xnic/xnic/flows"
)

// SteerStats are xnic_steer's counters for one rx queue (struct
// steer_stats). Every frame counts in RxPackets and in exactly one verdict
// counter: Redirected, PassNonIp, PassControl, PassUnmatched, PassNoSocket,
// DroppedMalformed or EarlyDrops (see Verdicts). FlowHits, RuleHits,
// RedirectedClass0, RxFragments and RxUnknownL4 say how frames were
// matched; the Drop* counters split DroppedMalformed by flows.Reason.
// EarlyDrops are frames dropped because the slot that would take them was
// over its receive threshold (SetClassThreshold), EcnMarked frames let in
// over it with CE (also in Redirected).
type SteerStats = steerSteerStats

// SlotStats are the counters of one (guest, class) over all rx queues
// (struct steer_slot_stats): frames classified to it, and where they went:
// Packets = Redirected + RedirectedClass0 + PassNoSocket + EarlyDrops.
// EarlyDrops and EcnMarked count the frames over the receive threshold of
// the slot that would take them (its own, or its guest's class 0 for
// RedirectedClass0 frames).
type SlotStats = steerSteerSlotStats

// CountStats are xnic_drop's or xnic_pass's counters for one rx queue
// (struct count_stats).
type CountStats = dropCountStats

// GenStats are xnic_gen's counters (struct gen_stats).
type GenStats = genGenStats

// addU64s adds two structs made only of uint64 counters, field by field.
func addU64s[T any](a, b T) T {
	n := int(unsafe.Sizeof(a) / 8)
	x := unsafe.Slice((*uint64)(unsafe.Pointer(&a)), n)
	y := unsafe.Slice((*uint64)(unsafe.Pointer(&b)), n)
	for i := range x {
		x[i] += y[i]
	}
	return a
}

// Add returns the field-wise sum of s and o.
func (s SteerStats) Add(o SteerStats) SteerStats { return addU64s(s, o) }

// Add returns the field-wise sum of s and o.
func (s SlotStats) Add(o SlotStats) SlotStats { return addU64s(s, o) }

// Verdicts is the sum of the verdict counters; it equals RxPackets.
func (s SteerStats) Verdicts() uint64 {
	return s.Redirected + s.PassNonIp + s.PassControl + s.PassUnmatched + s.PassNoSocket + s.DroppedMalformed + s.EarlyDrops
}

// Dropped returns the frames dropped as malformed for reason r; 0 for the
// reasons that are not malformed.
func (s SteerStats) Dropped(r flows.Reason) uint64 {
	first := flows.ReasonTruncEthernet
	if !r.Malformed() || r < first || r > flows.ReasonBadTCPOffset {
		return 0
	}
	by := unsafe.Slice(&s.DropTruncEthernet, int(flows.ReasonBadTCPOffset-first)+1)
	return by[r-first]
}

// Add returns the field-wise sum of s and o.
func (s CountStats) Add(o CountStats) CountStats {
	return CountStats{RxPackets: s.RxPackets + o.RxPackets, RxBytes: s.RxBytes + o.RxBytes}
}

// Add returns the field-wise sum of s and o.
func (s GenStats) Add(o GenStats) GenStats {
	return GenStats{
		FramesGenerated: s.FramesGenerated + o.FramesGenerated,
		BytesGenerated:  s.BytesGenerated + o.BytesGenerated,
		FramesTooShort:  s.FramesTooShort + o.FramesTooShort,
	}
}

// Stats returns the counters of every rx queue, summed over CPUs, indexed by
// queue.
func (s *Steer) Stats() ([]SteerStats, error) {
	st, err := readPerCPU[SteerStats](s.objs.Stats)
	if err != nil {
		return nil, fmt.Errorf("steer stats: %w", err)
	}
	return st, nil
}

// TotalStats returns the counters summed over queues and CPUs.
func (s *Steer) TotalStats() (SteerStats, error) {
	st, err := s.Stats()
	return sum(st), err
}

// SlotStats returns the counters of (guest, class), summed over CPUs.
func (s *Steer) SlotStats(guest, class int) (SlotStats, error) {
	if s.objs.SlotStats == nil {
		return SlotStats{}, fmt.Errorf("slot stats: %w", ErrClosed)
	}
	if err := s.checkSlot(Slot{guest, class}); err != nil {
		return SlotStats{}, fmt.Errorf("slot stats: %w", err)
	}
	st, err := lookupPerCPU[SlotStats](s.objs.SlotStats, uint32(guest*s.opts.Classes+class))
	if err != nil {
		return SlotStats{}, fmt.Errorf("slot stats of %s: %w", Slot{guest, class}, err)
	}
	return st, nil
}

// AllSlotStats returns the counters of every slot that counted something.
func (s *Steer) AllSlotStats() (map[Slot]SlotStats, error) {
	all, err := readPerCPU[SlotStats](s.objs.SlotStats)
	if err != nil {
		return nil, fmt.Errorf("slot stats: %w", err)
	}
	out := map[Slot]SlotStats{}
	for i, st := range all {
		if st != (SlotStats{}) {
			out[Slot{Guest: i / s.opts.Classes, Class: i % s.opts.Classes}] = st
		}
	}
	return out, nil
}

// adder is a stats value that sums field-wise.
type adder[T any] interface{ Add(T) T }

// lookupPerCPU reads one key of a per-CPU array, summed over CPUs.
func lookupPerCPU[T adder[T]](m *ebpf.Map, key uint32) (T, error) {
	var out T
	var perCPU []T
	if err := m.Lookup(key, &perCPU); err != nil {
		return out, fmt.Errorf("read %s key %d: %w", m, key, err)
	}
	for _, v := range perCPU {
		out = out.Add(v)
	}
	return out, nil
}

// readPerCPU reads every key of a per-CPU array and sums each over CPUs.
// Control plane only: it allocates.
func readPerCPU[T adder[T]](m *ebpf.Map) ([]T, error) {
	if m == nil {
		return nil, ErrClosed
	}
	out := make([]T, m.MaxEntries())
	for key := range m.MaxEntries() {
		v, err := lookupPerCPU[T](m, key)
		if err != nil {
			return nil, err
		}
		out[key] = v
	}
	return out, nil
}

// sum adds up per-queue values.
func sum[T adder[T]](vals []T) T {
	var total T
	for _, v := range vals {
		total = total.Add(v)
	}
	return total
}
