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

// flowsInUse tells the program to look up the LRU flow table, before the
// first flow goes there. Until then it skips the lookup.
func (s *Steer) flowsInUse() error {
	return s.ctlSet(func(c *steerSteerCtl) *uint32 { return &c.FlowsInUse }, 1)
}

// fastInUse tells the program to look in the fast flow table, before the
// first flow goes there; ClearFlows turns it off again.
func (s *Steer) fastInUse() error {
	return s.ctlSet(func(c *steerSteerCtl) *uint32 { return &c.FastInUse }, 1)
}

// ctlSet sets the control word that word picks to v, writing the map only
// when that changes it.
func (s *Steer) ctlSet(word func(*steerSteerCtl) *uint32, v uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *word(&s.ctl) == v {
		return nil
	}
	return s.updateCtl(func(c *steerSteerCtl) { *word(c) = v })
}
