package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Slot is an owner and a traffic class: where a flow or rule sends frames.
// On each rx queue a Slot has its own XSKMAP entry; all sockets of one
// queue share that queue's UMEM.
type Slot struct {
	Guest int // 0..SteerOptions.Guests-1
	Class int // 0..SteerOptions.Classes-1
}

func (s Slot) String() string { return fmt.Sprintf("guest %d class %d", s.Guest, s.Class) }

// SlotIndex is the XSKMAP key of (queue, guest, class):
// (queue*Guests + guest)*Classes + class. It does not check ranges.
func (o SteerOptions) SlotIndex(queue, guest, class int) uint32 {
	return uint32((queue*o.Guests+guest)*o.Classes + class)
}

// checkSlot validates guest and class, naming the field at fault.
func (s *Steer) checkSlot(sl Slot) error {
	if sl.Guest < 0 || sl.Guest >= s.opts.Guests {
		return fmt.Errorf("guest: %d outside 0..%d: %w", sl.Guest, s.opts.Guests-1, ErrInvalidOptions)
	}
	if sl.Class < 0 || sl.Class >= s.opts.Classes {
		return fmt.Errorf("class: %d outside 0..%d: %w", sl.Class, s.opts.Classes-1, ErrInvalidOptions)
	}
	return nil
}

func (s *Steer) slotKey(queue int, sl Slot) (uint32, error) {
	if s.objs.Xsks == nil {
		return 0, ErrClosed
	}
	if queue < 0 || queue >= s.opts.Queues {
		return 0, fmt.Errorf("queue: %d outside 0..%d: %w", queue, s.opts.Queues-1, ErrInvalidOptions)
	}
	if err := s.checkSlot(sl); err != nil {
		return 0, err
	}
	return s.opts.SlotIndex(queue, sl.Guest, sl.Class), nil
}

// RegisterSlot puts the AF_XDP socket fd into the slot of (guest, class) on
// rx queue, replacing any socket there. The socket must be bound to that
// queue of the interface the program is attached to, and share the UMEM of
// the queue's other sockets. Frames classified to a class without a socket
// go to the guest's class 0 socket; register class 0 first.
func (s *Steer) RegisterSlot(queue, guest, class, fd int) error {
	key, err := s.slotKey(queue, Slot{guest, class})
	if err != nil {
		return fmt.Errorf("register socket on queue %d %s: %w", queue, Slot{guest, class}, err)
	}
	if fd < 0 {
		return fmt.Errorf("register socket on queue %d %s: fd: %d: %w", queue, Slot{guest, class}, fd, ErrInvalidOptions)
	}
	if err := s.objs.Xsks.Update(key, uint32(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("register socket fd %d on queue %d %s: %w", fd, queue, Slot{guest, class}, err)
	}
	return nil
}

// UnregisterSlot empties the slot of (guest, class) on rx queue. Emptying an
// empty slot is not an error. (The kernel also empties it when the socket
// closes.)
func (s *Steer) UnregisterSlot(queue, guest, class int) error {
	key, err := s.slotKey(queue, Slot{guest, class})
	if err != nil {
		return fmt.Errorf("unregister socket on queue %d %s: %w", queue, Slot{guest, class}, err)
	}
	if err := s.objs.Xsks.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregister socket on queue %d %s: %w", queue, Slot{guest, class}, err)
	}
	return nil
}

// RegisterSocket registers the raw socket of an rx queue: the slot of
// guest 0, class 0 (RegisterSlot(queue, 0, 0, fd)). Frames reach it only
// through a flow or a rule; AddCatchAll(0, 0) steers all TCP and UDP there.
func (s *Steer) RegisterSocket(queue int, fd int) error {
	return s.RegisterSlot(queue, 0, 0, fd)
}

// UnregisterSocket is UnregisterSlot(queue, 0, 0).
func (s *Steer) UnregisterSocket(queue int) error {
	return s.UnregisterSlot(queue, 0, 0)
}
