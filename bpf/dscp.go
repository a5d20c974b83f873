package bpf

import "fmt"

// SetDSCPClass maps a DSCP value (0..63) to a class, for rules with
// ClassFromDSCP. Every DSCP maps to class 0 until set.
func (s *Steer) SetDSCPClass(dscp uint8, class int) error {
	if s.objs.DscpClass == nil {
		return fmt.Errorf("set dscp class: %w", ErrClosed)
	}
	if dscp >= NumDSCP {
		return fmt.Errorf("set dscp class: dscp: %d outside 0..%d: %w", dscp, NumDSCP-1, ErrInvalidOptions)
	}
	if class < 0 || class >= s.opts.Classes {
		return fmt.Errorf("set dscp %d class: class: %d outside 0..%d: %w", dscp, class, s.opts.Classes-1, ErrInvalidOptions)
	}
	if err := s.objs.DscpClass.Put(uint32(dscp), uint32(class)); err != nil {
		return fmt.Errorf("set dscp %d class %d: %w", dscp, class, err)
	}
	return nil
}

// DSCPClasses returns the class of every DSCP value.
func (s *Steer) DSCPClasses() ([NumDSCP]int, error) {
	var out [NumDSCP]int
	if s.objs.DscpClass == nil {
		return out, fmt.Errorf("read dscp classes: %w", ErrClosed)
	}
	for d := range uint32(NumDSCP) {
		var c uint32
		if err := s.objs.DscpClass.Lookup(d, &c); err != nil {
			return out, fmt.Errorf("read dscp %d class: %w", d, err)
		}
		out[d] = int(c)
	}
	return out, nil
}
