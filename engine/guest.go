package engine

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/umem"
)

// GuestHandler receives a guest's frames on the worker. It may read them;
// they go back to the fill ring when it returns.
type GuestHandler func(g *Guest, ep *Endpoint, descs []umem.Desc)

// Guest is a tenant with its own sockets (one per queue of its port, on the
// queue's shared UMEM), its own steering rules and its own counters. The
// engine holds all of it.
type Guest struct {
	ID      int
	Spec    GuestSpec
	port    *Port
	handler GuestHandler
	sink    Sink
	eps     []*Endpoint // one per worker, in worker order
	// sendEps is eps for Send, which may run on any goroutine: set once
	// the guest is attached, cleared first thing on detach.
	sendEps atomic.Pointer[[]*Endpoint]
	rules   []bpf.RuleID

	// Updated by the workers once per batch.
	RxPackets atomic.Uint64
	RxBytes   atomic.Uint64
}

// Port is the port the guest is attached to.
func (g *Guest) Port() *Port { return g.port }

// detachGrace is how long a detach waits between taking a guest's sockets
// out of the XSKMAP and draining them: longer than any XDP redirect batch in
// flight (one NAPI poll).
const detachGrace = 10 * time.Millisecond

// AttachGuest gives a guest its sockets and then its rules, in that order,
// so the first frame a rule steers finds a socket polled by a worker. Until
// its rules exist, nothing goes to the guest; other guests are never
// touched. It is safe to call while traffic flows.
func (e *Engine) AttachGuest(spec GuestSpec, h GuestHandler) (*Guest, error) {
	return e.AttachGuestWith(spec, GuestOptions{Frames: h})
}

// GuestOptions say where a guest's traffic goes.
type GuestOptions struct {
	// Frames sees every received batch of the guest, raw, before the
	// pipeline.
	Frames GuestHandler
	// Aggregates takes the pipeline's output for the guest (with
	// Options.Pipeline set): GRO aggregates and frames passed through.
	Aggregates Sink
}

// AttachGuestWith is AttachGuest with both of a guest's handlers.
func (e *Engine) AttachGuestWith(spec GuestSpec, o GuestOptions) (_ *Guest, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errors.New("engine: attach guest: engine closed")
	}
	var port *Port
	pi := -1
	for i, p := range e.ports {
		if p.Name == spec.Port {
			port, pi = p, i
		}
	}
	if port == nil {
		return nil, fmt.Errorf("engine: attach guest %s: no port %q", spec.Name, spec.Port)
	}
	for _, g := range e.guests {
		if g != nil && g.Spec.Name == spec.Name {
			return nil, fmt.Errorf("engine: attach guest %s: a guest of that name is attached", spec.Name)
		}
	}
	id := 0
	for i := 1; i < len(e.guests); i++ {
		if e.guests[i] == nil {
			id = i
			break
		}
	}
	if id == 0 {
		return nil, fmt.Errorf("engine: attach guest %s: all %d guest ids in use", spec.Name, len(e.guests)-1)
	}
	g := &Guest{ID: id, Spec: spec, port: port, handler: o.Frames, sink: o.Aggregates}
	defer func() {
		if err != nil {
			e.detachLocked(g)
		}
	}()
	for wi, w := range e.workers {
		q := e.opts.Queues[wi]
		// The port's raw socket on this queue owns the fill ring; the
		// guest's socket shares it and the worker's UMEM.
		s, err := umem.NewSocket(w.UMEM(), port.Ifindex, q, e.opts.Socket)
		if err != nil {
			return nil, fmt.Errorf("engine: attach guest %s: %w", spec.Name, err)
		}
		ep := &Endpoint{Sock: s, Port: pi, Guest: id, Owner: g}
		if e.opts.Pipeline != nil {
			ep.tx = newTxQueue(&w.tid, w.idle)
			ep.mtu = port.MTU
		}
		g.eps = append(g.eps, ep)
		w.AddEndpoint(ep)
		if err := port.steer.RegisterSlot(q, id, 0, s.FD()); err != nil {
			return nil, fmt.Errorf("engine: attach guest %s: %w", spec.Name, err)
		}
	}
	for _, r := range spec.Rules {
		rid, err := port.steer.AddRule(bpf.Rule{Prefix: r.Dst, Proto: bpf.Proto(r.Proto), PortLo: r.PortLo, PortHi: r.PortHi,
			Guest: id, Class: int(r.Class), ClassFromDSCP: r.ClassFromDSCP})
		if err != nil {
			return nil, fmt.Errorf("engine: attach guest %s: rule %s: %w", spec.Name, r.Dst, err)
		}
		g.rules = append(g.rules, rid)
	}
	e.guests[id] = g
	eps := g.eps
	g.sendEps.Store(&eps)
	return g, nil
}

// DetachGuest removes a guest in the reverse order: rules first, so nothing
// new is steered to it; then its XSKMAP slots; then, after the frames in
// flight have landed, its sockets are drained (the handler still sees those
// frames) and closed. Its id is free again afterwards.
func (e *Engine) DetachGuest(g *Guest) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.guests[g.ID] != g {
		return fmt.Errorf("engine: detach guest %s: not attached", g.Spec.Name)
	}
	err := e.detachLocked(g)
	e.guests[g.ID] = nil
	return err
}

func (e *Engine) detachLocked(g *Guest) error {
	g.sendEps.Store(nil)
	var errs []error
	for _, id := range g.rules {
		if err := g.port.steer.DeleteRule(id); err != nil {
			errs = append(errs, err)
		}
	}
	g.rules = nil
	for wi := range g.eps {
		if err := g.port.steer.UnregisterSlot(e.opts.Queues[wi], g.ID, 0); err != nil {
			errs = append(errs, err)
		}
	}
	if len(g.eps) > 0 {
		time.Sleep(detachGrace)
	}
	for wi, ep := range g.eps {
		if ep.tx != nil {
			ep.tx.shut.Store(true)
			ep.tx.freed() // a producer waiting for room sees shut at once
		}
		e.workers[wi].RemoveEndpoint(ep)
		if err := ep.Sock.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	g.eps = nil
	if len(errs) > 0 {
		return fmt.Errorf("engine: detach guest %s: %w", g.Spec.Name, errors.Join(errs...))
	}
	return nil
}

// Guests are the attached guests.
func (e *Engine) Guests() []*Guest {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*Guest
	for _, g := range e.guests {
		if g != nil {
			out = append(out, g)
		}
	}
	return out
}
