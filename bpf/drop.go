package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Verdict is what a counting program does with a frame after counting it.
type Verdict int

const (
	// VerdictDrop is xnic_drop: count and XDP_DROP.
	VerdictDrop Verdict = iota
	// VerdictPass is xnic_pass: count and XDP_PASS.
	VerdictPass
)

func (v Verdict) String() string {
	switch v {
	case VerdictDrop:
		return "drop"
	case VerdictPass:
		return "pass"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Counter is a loaded xnic_drop or xnic_pass program with its own per-queue
// counters. Its methods may be called concurrently, except Close.
type Counter struct {
	verdict Verdict
	prog    *ebpf.Program
	counts  *ebpf.Map
	links   attachments
}

// counterDropObjects and counterPassObjects receive one program of
// drop.bpf.c and its map, so loading xnic_drop does not load xnic_pass and
// each program gets its own counters.
type counterDropObjects struct {
	Prog   *ebpf.Program `ebpf:"xnic_drop"`
	Counts *ebpf.Map     `ebpf:"counts"`
}

type counterPassObjects struct {
	Prog   *ebpf.Program `ebpf:"xnic_pass"`
	Counts *ebpf.Map     `ebpf:"counts"`
}

// LoadDrop loads xnic_drop: count every frame, then XDP_DROP.
func LoadDrop() (*Counter, error) { return loadCounter(VerdictDrop) }

// LoadPass loads xnic_pass: count every frame, then XDP_PASS.
func LoadPass() (*Counter, error) { return loadCounter(VerdictPass) }

// LoadCounter loads the counting program for v.
func LoadCounter(v Verdict) (*Counter, error) { return loadCounter(v) }

func loadCounter(v Verdict) (*Counter, error) {
	removeMemlock()
	spec, err := loadDrop()
	if err != nil {
		return nil, fmt.Errorf("load %s spec: %w", v, err)
	}
	c := &Counter{verdict: v}
	switch v {
	case VerdictDrop:
		var o counterDropObjects
		err = spec.LoadAndAssign(&o, nil)
		c.prog, c.counts = o.Prog, o.Counts
	case VerdictPass:
		var o counterPassObjects
		err = spec.LoadAndAssign(&o, nil)
		c.prog, c.counts = o.Prog, o.Counts
	default:
		return nil, fmt.Errorf("load counter: verdict %s: %w", v, ErrInvalidOptions)
	}
	if err != nil {
		return nil, fmt.Errorf("load xnic_%s program: %w", v, err)
	}
	return c, nil
}

// Verdict is what the program returns after counting.
func (c *Counter) Verdict() Verdict { return c.verdict }

// Program is the loaded xnic_drop or xnic_pass program.
func (c *Counter) Program() *ebpf.Program { return c.prog }

// CountsMap is the per-CPU array of CountStats keyed by rx queue.
func (c *Counter) CountsMap() *ebpf.Map { return c.counts }

// Attach links the program to an interface; Close on the result or on the
// Counter detaches it.
func (c *Counter) Attach(ifindex int, mode AttachMode) (*Attachment, error) {
	if c.prog == nil {
		return nil, fmt.Errorf("attach xnic_%s: %w", c.verdict, ErrClosed)
	}
	return c.links.attach(c.prog, ifindex, mode)
}

// Stats returns the counters of every rx queue, summed over CPUs.
func (c *Counter) Stats() ([]CountStats, error) {
	st, err := readPerCPU[CountStats](c.counts)
	if err != nil {
		return nil, fmt.Errorf("xnic_%s stats: %w", c.verdict, err)
	}
	return st, nil
}

// TotalStats returns the counters summed over queues and CPUs.
func (c *Counter) TotalStats() (CountStats, error) {
	st, err := c.Stats()
	return sum(st), err
}

// Close detaches every attachment and frees the program and its map.
func (c *Counter) Close() error {
	errs := []error{c.links.closeAll()}
	if c.prog != nil {
		if err := c.prog.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close xnic_%s: %w", c.verdict, err))
		}
		c.prog = nil
	}
	if c.counts != nil {
		if err := c.counts.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close xnic_%s counts: %w", c.verdict, err))
		}
		c.counts = nil
	}
	return errors.Join(errs...)
}
