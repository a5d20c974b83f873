package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// SteerStats are xnic_steer's counters for one rx queue (struct steer_stats).
// Every frame counts in RxPackets and in exactly one verdict counter.
type SteerStats = steerSteerStats

// CountStats are xnic_drop's or xnic_pass's counters for one rx queue
// (struct count_stats).
type CountStats = dropCountStats

// GenStats are xnic_gen's counters (struct gen_stats).
type GenStats = genGenStats

// Add returns the field-wise sum of s and o.
func (s SteerStats) Add(o SteerStats) SteerStats {
	return SteerStats{
		RxPackets:        s.RxPackets + o.RxPackets,
		RxBytes:          s.RxBytes + o.RxBytes,
		Redirected:       s.Redirected + o.Redirected,
		PassNonIp:        s.PassNonIp + o.PassNonIp,
		PassControl:      s.PassControl + o.PassControl,
		PassNoSocket:     s.PassNoSocket + o.PassNoSocket,
		DroppedMalformed: s.DroppedMalformed + o.DroppedMalformed,
	}
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

// adder is a stats value that sums field-wise.
type adder[T any] interface{ Add(T) T }

// readPerCPU reads every key of a per-CPU array and sums each over CPUs.
// Control plane only: it allocates.
func readPerCPU[T adder[T]](m *ebpf.Map) ([]T, error) {
	if m == nil {
		return nil, ErrClosed
	}
	out := make([]T, m.MaxEntries())
	var perCPU []T
	for key := range m.MaxEntries() {
		if err := m.Lookup(key, &perCPU); err != nil {
			return nil, fmt.Errorf("read %s key %d: %w", m, key, err)
		}
		for _, v := range perCPU {
			out[key] = out[key].Add(v)
		}
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
