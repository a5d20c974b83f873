package engine

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The engine watches its ports' links through rtnetlink, as bonding's
// active-backup mode watches its slaves, but by event rather than by
// polling every miimon milliseconds: a port that loses its carrier or goes
// administratively down moves its guests with FailoverPolicy.LinkDown to
// their first standby port that is up; a port that comes back takes back
// the guests with FailoverPolicy.Failback whose first port it is; a port
// that is deleted moves every guest that has a standby port up, and its
// sockets leave the workers' poll sets, so no worker spins on a dead ring.

// watchLinks subscribes to link events. Close stops it.
func (e *Engine) watchLinks() error {
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			select {
			case <-done: // the subscription's socket closing under Close
			default:
				e.logf("link events: %v: link failover no longer works", err)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("engine: watch links: %w", err)
	}
	for _, p := range e.ports {
		p.up.Store(e.portUp(p))
	}
	e.linksDone = done
	e.linksWG.Add(1)
	go func() {
		defer e.linksWG.Done()
		for u := range ch {
			e.linkEvent(u)
		}
	}()
	return nil
}

// stopWatchingLinks ends watchLinks and waits for its goroutine.
func (e *Engine) stopWatchingLinks() {
	if e.linksDone != nil {
		close(e.linksDone)
		e.linksDone = nil
		e.linksWG.Wait()
	}
}

func (e *Engine) linkEvent(u netlink.LinkUpdate) {
	var p *Port
	pi := -1
	for i, x := range e.ports {
		if x.Ifindex == int(u.Index) {
			p, pi = x, i
		}
	}
	if p == nil || p.gone.Load() {
		return
	}
	if u.Header.Type == unix.RTM_DELLINK {
		e.portGone(p, pi)
		return
	}
	up := u.Flags&unix.IFF_UP != 0 && u.Flags&unix.IFF_RUNNING != 0
	if p.up.Swap(up) == up {
		return
	}
	if up {
		e.logf("port %s is up", p.Name)
		e.failback(p)
		return
	}
	e.logf("port %s is down", p.Name)
	e.failover(p, ReasonLinkDown, false)
}

// failover moves the guests active on p to their first standby port that
// is up: those with FailoverPolicy.LinkDown, or all of them with all set.
func (e *Engine) failover(p *Port, reason string, all bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	for _, g := range e.guests {
		if g == nil || g.ports[g.active].port != p {
			continue
		}
		if !all && !g.Spec.Failover.LinkDown {
			e.logf("guest %s stays on %s: its failover on link down is off", g.Spec.Name, p.Name)
			continue
		}
		ti := -1
		for i, gp := range g.ports {
			if i != g.active && e.portUp(gp.port) {
				ti = i
				break
			}
		}
		if ti < 0 {
			e.logf("guest %s stays on %s: none of its standby ports is up", g.Spec.Name, p.Name)
			continue
		}
		if _, err := e.moveLocked(g, ti, reason); err != nil {
			e.logf("guest %s: failover: %v", g.Spec.Name, err)
		}
	}
}

// failback moves back to p the guests with FailoverPolicy.Failback whose
// first port p is, and announces again from their active port the other
// guests that have p as a standby port.
func (e *Engine) failback(p *Port) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	for _, g := range e.guests {
		if g == nil {
			continue
		}
		if g.active != 0 && g.ports[0].port == p && g.Spec.Failover.Failback {
			if _, err := e.moveLocked(g, 0, ReasonFailback); err != nil {
				e.logf("guest %s: failback: %v", g.Spec.Name, err)
			}
			continue
		}
		// Frames the guest queued on p before its link went down leave
		// now, from the guest's MAC, and teach the switch the wrong port:
		// once they are out, tell it again where the guest is.
		for i, gp := range g.ports {
			if gp.port == p && i != g.active {
				e.waitTxEmpty(gp, g, false)
				e.announce(g)
			}
		}
	}
}

// portGone handles the deletion of port p (index pi): its guests move
// where they can, and its sockets, unbound by the kernel, leave the
// workers after their rx rings are drained.
func (e *Engine) portGone(p *Port, pi int) {
	p.gone.Store(true)
	p.up.Store(false)
	e.logf("port %s was deleted: its guests move to a standby port where they have one; its sockets are retired", p.Name)
	e.failover(p, ReasonPortGone, true)
	for _, w := range e.workers {
		w.retirePort(pi)
	}
	for _, x := range e.ports {
		if !x.gone.Load() {
			return
		}
	}
	e.logf("port %s was the engine's last port: the engine stops", p.Name)
	e.finish(fmt.Errorf("engine: port %s was deleted and no port is left", p.Name))
}
