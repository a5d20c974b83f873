package bpf

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Receive congestion (issue 14, "on receive"): xnic_steer drops a frame,
// or marks it CE, before the kernel copies it into UMEM, when the rx ring
// of the (guest, class) socket that would take it is over a threshold.
//
// The map occupancy has one struct occ_slot per XSKMAP slot, at the same
// index (SteerOptions.SlotIndex): pub, count and limit. Who writes what:
//   - count: the program, the frames it let into the slot (modulo 2^32),
//     with a plain add: it is the only writer;
//   - pub: the worker that polls the slot's socket, OccupancyBoard.Publish:
//     the rx ring occupancy it read and, as the mark, the count it reads
//     then, in one 64-bit atomic store, so the program never sees one
//     without the other;
//   - limit: the control plane, SetClassThreshold (under Steer.mu), the
//     threshold and occLimitECN in one 32-bit atomic store.
//
// Between two publishes the program takes the ring to hold occ + (count -
// mark) frames. A frame let in after the worker read its ring and before
// Publish read count is in neither figure: the ring looks at most that
// many frames emptier than it is. The program admits a frame while the
// threshold is 0 or the depth is below it; at or over it, with ECN on and
// an ECN-capable frame (ECT(0), ECT(1) or CE) it sets CE and lets it in
// (ecn_marked), else it drops it (early_drops). A frame whose class has no
// socket and goes to the guest's class 0 is admitted by class 0's slot.
// The whole check is skipped while no slot has a threshold (ctl.cong_on),
// so it costs nothing unless used.

// Bits of occ_slot.limit: XNIC_CONG_ECN and XNIC_CONG_THRESH.
const (
	occLimitECN    = 0x80000000
	occLimitThresh = 0x7fffffff
)

// MaxClassThreshold bounds SetClassThreshold's thresh.
const MaxClassThreshold = occLimitThresh

// OccupancyBoard is the mmap'ed occupancy map: where the workers publish
// their sockets' rx ring occupancy for xnic_steer, without a system call.
// Publish and the readers may be called from any goroutine; each slot
// should have one publisher, the worker that polls its socket. A board
// stays valid after its Steer is closed (the mapping lives until the board
// is unreachable); publishing to it then has no effect on any program.
type OccupancyBoard struct {
	slots                   []steerOccSlot // the mapping, one per XSKMAP slot
	queues, guests, classes int
}

// mapOccupancy mmaps the occupancy map (fd) of slots entries, read and
// write. The mapping is unmapped when the board becomes unreachable, so no
// holder of a board can touch unmapped memory.
func mapOccupancy(fd int, o SteerOptions) (*OccupancyBoard, error) {
	size := o.Slots() * int(unsafe.Sizeof(steerOccSlot{}))
	page := unix.Getpagesize()
	mem, err := unix.Mmap(fd, 0, (size+page-1)/page*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap occupancy: %w", err)
	}
	b := &OccupancyBoard{
		slots:  unsafe.Slice((*steerOccSlot)(unsafe.Pointer(&mem[0])), o.Slots()),
		queues: o.Queues, guests: o.Guests, classes: o.Classes,
	}
	runtime.AddCleanup(b, func(mem []byte) { unix.Munmap(mem) }, mem)
	return b, nil
}

// Len is the number of slots, SteerOptions.Slots().
func (b *OccupancyBoard) Len() int { return len(b.slots) }

// Slot is the index of (queue, guest, class) for Publish and the readers
// (the XSKMAP key, SteerOptions.SlotIndex), or -1 when one is out of range.
func (b *OccupancyBoard) Slot(queue, guest, class int) int {
	if uint(queue) >= uint(b.queues) || uint(guest) >= uint(b.guests) || uint(class) >= uint(b.classes) {
		return -1
	}
	return (queue*b.guests+guest)*b.classes + class
}

// Publish stores the occupancy of slot's socket rx ring (frames the worker
// has not consumed yet, as read just before), and restarts the program's
// count of frames let in since. It reports false, and does nothing, for a
// slot outside the board. Hot path: no allocation, no system call, no
// lock: a load and a store.
func (b *OccupancyBoard) Publish(slot int, occ uint32) bool {
	if uint(slot) >= uint(len(b.slots)) {
		return false
	}
	s := &b.slots[slot]
	atomic.StoreUint64(&s.Pub, uint64(occ)|uint64(atomic.LoadUint32(&s.Count))<<32)
	return true
}

// Threshold is slot's threshold (0: off) and whether ECN marking is on:
// a worker may publish only the slots that have one.
func (b *OccupancyBoard) Threshold(slot int) (thresh uint32, ecn bool) {
	if uint(slot) >= uint(len(b.slots)) {
		return 0, false
	}
	l := atomic.LoadUint32(&b.slots[slot].Limit)
	return l & occLimitThresh, l&occLimitECN != 0
}

// Occupancy is what the program sees of slot: the occupancy last published
// and the frames it let in since.
func (b *OccupancyBoard) Occupancy(slot int) (occ, since uint32) {
	if uint(slot) >= uint(len(b.slots)) {
		return 0, 0
	}
	s := &b.slots[slot]
	pub := atomic.LoadUint64(&s.Pub)
	return uint32(pub), atomic.LoadUint32(&s.Count) - uint32(pub>>32)
}

// setThreshold sets slot's limit; when the slot had no threshold, it first
// restarts the count since the last publish, which ran on while the slot
// was off. It returns the previous threshold.
func (b *OccupancyBoard) setThreshold(slot int, thresh uint32, ecn bool) uint32 {
	s := &b.slots[slot]
	old := atomic.LoadUint32(&s.Limit) & occLimitThresh
	if old == 0 {
		occ, _ := b.Occupancy(slot)
		b.Publish(slot, occ)
	}
	l := thresh & occLimitThresh
	if ecn {
		l |= occLimitECN
	}
	atomic.StoreUint32(&s.Limit, l)
	return old
}

// reset forgets the occupancy published by an earlier process (a pinned
// map reused): its workers are gone. It returns the number of slots with
// a threshold.
func (b *OccupancyBoard) reset() int {
	n := 0
	for i := range b.slots {
		b.Publish(i, 0)
		if atomic.LoadUint32(&b.slots[i].Limit)&occLimitThresh != 0 {
			n++
		}
	}
	return n
}

// OccupancyBoard is the handle the workers publish their rx rings'
// occupancy through (see OccupancyBoard), or nil once the Steer is closed.
func (s *Steer) OccupancyBoard() *OccupancyBoard {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.occ
}

// SetClassThreshold sets the receive threshold of (guest, class) on rx
// queue: once the slot's socket holds thresh frames (as its worker
// publishes them, see OccupancyBoard, plus the frames let in since),
// xnic_steer drops its frames before the copy into UMEM, or, with ecn, lets
// ECN-capable frames (ECT(0), ECT(1), CE) in with CE set (RFC 3168) and
// drops the rest. thresh 0 turns the slot's check off; with no threshold
// anywhere the program skips the check altogether. thresh is at most
// MaxClassThreshold. Control plane.
func (s *Steer) SetClassThreshold(queue, guest, class int, thresh uint32, ecn bool) error {
	key, err := s.slotKey(queue, Slot{guest, class})
	if err != nil {
		return fmt.Errorf("set threshold on queue %d %s: %w", queue, Slot{guest, class}, err)
	}
	if thresh > MaxClassThreshold {
		return fmt.Errorf("set threshold on queue %d %s: threshold: %d passes %d: %w",
			queue, Slot{guest, class}, thresh, MaxClassThreshold, ErrInvalidOptions)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.occ == nil {
		return fmt.Errorf("set threshold on queue %d %s: %w", queue, Slot{guest, class}, ErrClosed)
	}
	// Turn the check on before the first threshold, off after the last.
	on := s.thresholds
	if thresh != 0 {
		on++
	}
	if t, _ := s.occ.Threshold(int(key)); t != 0 {
		on--
	}
	if on > 0 && s.ctl.CongOn == 0 {
		if err := s.updateCtl(func(c *steerSteerCtl) { c.CongOn = 1 }); err != nil {
			return fmt.Errorf("set threshold on queue %d %s: %w", queue, Slot{guest, class}, err)
		}
	}
	s.occ.setThreshold(int(key), thresh, ecn)
	s.thresholds = on
	if on == 0 && s.ctl.CongOn != 0 {
		if err := s.updateCtl(func(c *steerSteerCtl) { c.CongOn = 0 }); err != nil {
			return fmt.Errorf("set threshold on queue %d %s: %w", queue, Slot{guest, class}, err)
		}
	}
	return nil
}

// ClassThreshold is the threshold of (guest, class) on rx queue and
// whether ECN marking is on.
func (s *Steer) ClassThreshold(queue, guest, class int) (uint32, bool, error) {
	key, err := s.slotKey(queue, Slot{guest, class})
	if err != nil {
		return 0, false, fmt.Errorf("threshold on queue %d %s: %w", queue, Slot{guest, class}, err)
	}
	b := s.OccupancyBoard()
	if b == nil {
		return 0, false, fmt.Errorf("threshold on queue %d %s: %w", queue, Slot{guest, class}, ErrClosed)
	}
	t, ecn := b.Threshold(int(key))
	return t, ecn, nil
}
