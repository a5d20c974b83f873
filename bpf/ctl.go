package bpf

import "fmt"

// updateCtl applies fn to the program's control words (struct steer_ctl)
// and writes them. s.ctl mirrors the map: this process is its only writer.
// Callers hold s.mu.
func (s *Steer) updateCtl(fn func(*steerSteerCtl)) error {
	if s.objs.Ctl == nil {
		return ErrClosed
	}
	c := s.ctl
	fn(&c)
	if err := s.objs.Ctl.Put(uint32(0), &c); err != nil {
		return fmt.Errorf("write steer ctl: %w", err)
	}
	s.ctl = c
	return nil
}

// flowsInUse tells the program to look up the flow table, before the first
// flow is installed. Until then it skips the lookup.
func (s *Steer) flowsInUse() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctl.FlowsInUse != 0 {
		return nil
	}
	return s.updateCtl(func(c *steerSteerCtl) { c.FlowsInUse = 1 })
}
