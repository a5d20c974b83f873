package engine

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine/qos"
	"github.com/xnic/xnic/umem"
)

// GuestHandler receives a guest's frames on the worker. It may read them;
// they go back to the fill ring when it returns.
type GuestHandler func(g *Guest, ep *Endpoint, descs []umem.Desc)

// Guest is a tenant with its own sockets (one per queue on each of its
// ports, on the queue's shared UMEM), its own steering rules, its send
// queues and its counters. The engine holds all of it, so the guest can
// move from port to port (MigrateGuest) without its stack noticing.
type Guest struct {
	ID      int
	Spec    GuestSpec
	handler GuestHandler
	sink    Sink

	// Guarded by the engine's mu.
	ports   []*guestPort // Spec.Ports(), in that order
	active  int          // index into ports
	classes []uint8      // the classes it uses, 0 first: a socket each per queue and port
	txqs    []*txQueue   // one per worker, served through the active port's endpoints

	// Read by any goroutine.
	activePort atomic.Pointer[Port]
	// sendQs is txqs for Send, which may run on any goroutine: set once
	// the guest is attached, cleared first thing on detach.
	sendQs atomic.Pointer[[]*txQueue]

	// guard checks the guest's sends; nil with Spec.NoSpoofCheck. Set at
	// attach, then only read.
	guard *guard

	// Updated by the workers once per batch.
	RxPackets atomic.Uint64
	RxBytes   atomic.Uint64
	lastRx    atomic.Int64 // monotime of the guest's last received batch
	// RxWrongMAC counts frames steered to the guest but addressed to
	// another unicast MAC: not delivered.
	RxWrongMAC atomic.Uint64
	// spoofed counts the sends refused, by reason (Spoofed).
	spoofed [numSpoofReasons]atomic.Uint64
	// gapFrom is, while a migration waits for the guest's first frame on
	// its new port, the time of its last frame before the move; else 0.
	gapFrom atomic.Int64
	gapPort atomic.Int32 // the engine port index that ends the gap

	migMu sync.Mutex // guards mig
	mig   MigrationStats
}

// guestPort is a guest's presence on one port: its sockets there, and its
// rules while the port is active (both ports' during a move).
type guestPort struct {
	port  *Port
	pi    int         // index into the engine's ports
	eps   []*Endpoint // class 0: one per worker, in worker order; the guest sends through these
	ceps  []classEP   // the other classes' sockets: receive only
	rules []bpf.RuleID
}

// classEP is a guest's socket for a class other than 0 on one worker.
type classEP struct {
	wi int
	ep *Endpoint
}

// each calls fn for every endpoint of the guest on the port, class 0's
// first, with its worker's index.
func (gp *guestPort) each(fn func(wi int, ep *Endpoint)) {
	for wi, ep := range gp.eps {
		fn(wi, ep)
	}
	for _, c := range gp.ceps {
		fn(c.wi, c.ep)
	}
}

// SendQueueFull counts the guest's sends refused because its send queue
// on a worker stayed full for TxWait (ErrTxFull).
func (g *Guest) SendQueueFull() uint64 {
	var n uint64
	for _, q := range g.txqs {
		n += q.full.Load()
	}
	return n
}

// addSendCounters adds what the guest's producers counted, before the
// workers see its requests, to s.
func (g *Guest) addSendCounters(s *TxStats) {
	for _, q := range g.txqs {
		s.SendQueueFull += q.full.Load()
		s.NoFrames += q.noFrames.Load()
		s.Dropped += q.bad.Load() + q.noFrames.Load()
		s.MSSClamped += q.clamped.Load()
	}
}

// Port is the guest's active port.
func (g *Guest) Port() *Port { return g.activePort.Load() }

// StandbyPorts are the guest's other ports, in order of preference.
func (g *Guest) StandbyPorts() []*Port {
	a := g.activePort.Load()
	var out []*Port
	for _, gp := range g.ports {
		if gp.port != a {
			out = append(out, gp.port)
		}
	}
	return out
}

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
	var gps []*guestPort
	for _, name := range spec.Ports() {
		pi := e.portIndex(name)
		if pi < 0 {
			return nil, fmt.Errorf("engine: attach guest %s: no port %q", spec.Name, name)
		}
		for _, gp := range gps {
			if gp.pi == pi {
				return nil, fmt.Errorf("engine: attach guest %s: port %q listed twice", spec.Name, name)
			}
		}
		gps = append(gps, &guestPort{port: e.ports[pi], pi: pi})
	}
	if spec.MAC != nil && (len(spec.MAC) != 6 || spec.MAC[0]&1 != 0) {
		return nil, fmt.Errorf("engine: attach guest %s: mac %s: want a unicast Ethernet address", spec.Name, spec.MAC)
	}
	for _, g := range e.guests {
		if g == nil {
			continue
		}
		if g.Spec.Name == spec.Name {
			return nil, fmt.Errorf("engine: attach guest %s: a guest of that name is attached", spec.Name)
		}
		if o, ok := FindOverlap(spec, g.Spec); ok {
			return nil, fmt.Errorf("engine: attach guest %s: %s: %w", spec.Name, o.Describe(spec, g.Spec), ErrGuestOverlap)
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
	g := &Guest{ID: id, Spec: spec, handler: o.Frames, sink: o.Aggregates, ports: gps, classes: e.opts.guestClasses(spec)}
	for _, c := range g.classes {
		if int(c) >= e.opts.Steer.Classes {
			return nil, fmt.Errorf("engine: attach guest %s: class %d: want 0..%d (steer classes)", spec.Name, c, e.opts.Steer.Classes-1)
		}
	}
	if !spec.NoSpoofCheck {
		g.guard = newGuard(spec)
	}
	g.activePort.Store(gps[0].port)
	defer func() {
		if err != nil {
			e.detachLocked(g)
		}
	}()
	// Sockets on every port of the guest, standby ports included, so a
	// later move binds nothing. The guest's send queue on each worker is
	// served through its active port's endpoint.
	cfg, shaped := e.opts.schedConfig(spec)
	for _, w := range e.workers {
		if e.opts.Pipeline != nil {
			q := newTxQueue(w.UMEM(), &w.tid, w.idle)
			q.reclaim = w.reclaimTx
			if shaped {
				if q.sched, err = qos.NewScheduler(cfg, monotime()); err != nil {
					return nil, fmt.Errorf("engine: attach guest %s: classes: %w", spec.Name, err)
				}
			}
			g.txqs = append(g.txqs, q)
		}
	}
	for i, gp := range gps {
		hw, err := endpointMAC(spec, gp.port)
		if err != nil {
			return nil, fmt.Errorf("engine: attach guest %s: %w", spec.Name, err)
		}
		for wi, w := range e.workers {
			q := e.opts.Queues[wi]
			for _, c := range g.classes {
				// The port's raw socket on this queue owns the fill ring;
				// the guest's sockets share it and the worker's UMEM.
				s, err := umem.NewSocket(w.UMEM(), gp.port.Ifindex, q, e.opts.Socket)
				if err != nil {
					return nil, fmt.Errorf("engine: attach guest %s: port %s class %d: %w", spec.Name, gp.port.Name, c, err)
				}
				ep := &Endpoint{Sock: s, Port: gp.pi, Guest: id, Class: int(c), Owner: g, mtu: gp.port.MTU, hw: hw, link: &gp.port.up}
				if c == 0 {
					if i == 0 && g.txqs != nil {
						ep.tx = g.txqs[wi]
						ep.tx.setPort(ep)
					}
					gp.eps = append(gp.eps, ep)
				} else {
					gp.ceps = append(gp.ceps, classEP{wi: wi, ep: ep})
				}
				if cs := e.opts.class(c); cs.RxThreshold > 0 {
					// Early drop in the steering program once the class's
					// ring holds RxThreshold frames: the worker publishes
					// the ring's occupancy.
					if err := gp.port.steer.SetClassThreshold(q, id, int(c), uint32(cs.RxThreshold), cs.ECN); err != nil {
						return nil, fmt.Errorf("engine: attach guest %s: port %s class %d: %w", spec.Name, gp.port.Name, c, err)
					}
					ep.occ = gp.port.steer.OccupancyBoard()
					ep.slot = ep.occ.Slot(q, id, int(c))
				}
				w.AddEndpoint(ep)
				if err := gp.port.steer.RegisterSlot(q, id, int(c), s.FD()); err != nil {
					return nil, fmt.Errorf("engine: attach guest %s: port %s class %d: %w", spec.Name, gp.port.Name, c, err)
				}
			}
		}
	}
	if err := e.addRules(g, gps[0]); err != nil {
		return nil, err
	}
	e.guests[id] = g
	qs := g.txqs
	g.sendQs.Store(&qs)
	return g, nil
}

// addRules puts the guest's rules on gp's port. On error it takes out the
// ones it put.
func (e *Engine) addRules(g *Guest, gp *guestPort) error {
	for _, r := range append(e.opts.classRules(g.Spec), g.Spec.Rules...) {
		rid, err := gp.port.steer.AddRule(bpf.Rule{Prefix: r.Dst, Proto: bpf.Proto(r.Proto), PortLo: r.PortLo, PortHi: r.PortHi,
			Guest: g.ID, Class: int(r.Class), ClassFromDSCP: r.ClassFromDSCP})
		if err != nil {
			err = fmt.Errorf("engine: guest %s: port %s: rule %s: %w", g.Spec.Name, gp.port.Name, r.Dst, err)
			return errors.Join(err, e.deleteRules(g, gp))
		}
		gp.rules = append(gp.rules, rid)
	}
	return nil
}

// deleteRules takes the guest's rules out of gp's port.
func (e *Engine) deleteRules(g *Guest, gp *guestPort) error {
	var errs []error
	for _, id := range gp.rules {
		if err := gp.port.steer.DeleteRule(id); err != nil {
			errs = append(errs, err)
		}
	}
	gp.rules = nil
	return errors.Join(errs...)
}

// portIndex is the index of the port named name, or -1.
func (e *Engine) portIndex(name string) int {
	for i, p := range e.ports {
		if p.Name == name {
			return i
		}
	}
	return -1
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
	g.sendQs.Store(nil)
	var errs []error
	for _, gp := range g.ports {
		if err := e.deleteRules(g, gp); err != nil {
			errs = append(errs, err)
		}
	}
	for _, gp := range g.ports {
		gp.each(func(wi int, ep *Endpoint) {
			if err := gp.port.steer.UnregisterSlot(e.opts.Queues[wi], g.ID, ep.Class); err != nil {
				errs = append(errs, err)
			}
			if ep.occ != nil && !gp.port.gone.Load() {
				if err := gp.port.steer.SetClassThreshold(e.opts.Queues[wi], g.ID, ep.Class, 0, false); err != nil {
					errs = append(errs, err)
				}
			}
		})
	}
	if len(g.ports) > 0 && len(g.ports[0].eps) > 0 {
		time.Sleep(detachGrace)
	}
	for _, q := range g.txqs {
		q.shut.Store(true)
		q.freed() // a producer waiting for room sees shut at once
	}
	for _, gp := range g.ports {
		gp.each(func(wi int, ep *Endpoint) {
			e.workers[wi].RemoveEndpoint(ep)
			if err := ep.Sock.Close(); err != nil {
				errs = append(errs, err)
			}
		})
		gp.eps, gp.ceps = nil, nil
	}
	// The frames the guest's queues and schedulers still hold go back to
	// the free lists; the workers no longer serve its queues.
	for wi, q := range g.txqs {
		w := e.workers[wi]
		w.Do(func() {
			q.release(w.u)
			if q.sched != nil {
				q.sched.Flush(func(it qos.Item) { w.u.Release(it.Addr) })
			}
		})
	}
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
