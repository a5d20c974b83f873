package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Sentinel errors of MigrateGuest. Test them with errors.Is.
var (
	// ErrNoGuest: no guest of that name is attached.
	ErrNoGuest = errors.New("no such guest")
	// ErrNotGuestPort: the guest does not list that port (GuestSpec.Port
	// and GuestSpec.Standby).
	ErrNotGuestPort = errors.New("port is not one of the guest's")
	// ErrPortDown: the port is down, has no carrier or is gone.
	ErrPortDown = errors.New("port is down")
	// ErrAlreadyThere: the guest is already active on that port.
	ErrAlreadyThere = errors.New("guest is already on that port")
)

// Reasons a migration gives.
const (
	ReasonCommand  = "command"   // MigrateGuest, `xnic migrate`
	ReasonLinkDown = "link-down" // the active port lost its link (FailoverPolicy.LinkDown)
	ReasonPortGone = "port-gone" // the active port was deleted
	ReasonFailback = "failback"  // the first port is up again (FailoverPolicy.Failback)
)

// Migration is one move of a guest from a port to another.
type Migration struct {
	Guest  string    `json:"guest"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Took is the control plane's time for the move: rules in on the new
	// port, sends switched, rules out of the old port, the old port's
	// rings drained, the announcements queued.
	Took time.Duration `json:"took_ns"`
	// Announced counts the gratuitous ARPs and unsolicited neighbour
	// advertisements queued on the new port.
	Announced int `json:"announced"`
}

// MigrationStats are a guest's migrations so far.
type MigrationStats struct {
	Count uint64     `json:"count"`
	Last  *Migration `json:"last,omitempty"`
	// LastGap is how long the guest received nothing around its last move:
	// from its last frame on the old port to its first on the new one, to
	// the resolution of a worker's pass (0: both in one pass). GapSeen says
	// whether a frame has arrived on the new port yet.
	LastGap time.Duration `json:"last_gap_ns"`
	GapSeen bool          `json:"gap_seen"`
}

// GuestStats is what `xnic stats --guests` shows of a guest.
type GuestStats struct {
	Name       string         `json:"name"`
	ID         int            `json:"id"`
	Port       string         `json:"port"`    // active
	Standby    []string       `json:"standby"` // in order of preference
	Failover   FailoverPolicy `json:"failover"`
	RxPackets  uint64         `json:"rx_packets"`
	RxBytes    uint64         `json:"rx_bytes"`
	Migrations MigrationStats `json:"migrations"`
	// Isolation: whether the guest's sends are spoof-checked, the sends
	// refused by reason, and the frames steered to it but addressed to
	// another MAC.
	SpoofCheck bool        `json:"spoof_check"`
	TxSpoofed  SpoofCounts `json:"tx_spoofed"`
	RxWrongMAC uint64      `json:"rx_wrong_mac"`
	// TxQueueFull: sends refused because the guest's send queue stayed
	// full (Guest.SendQueueFull).
	TxQueueFull uint64 `json:"tx_queue_full"`
}

// GuestStats describes every attached guest.
func (e *Engine) GuestStats() []GuestStats {
	out := []GuestStats{}
	for _, g := range e.Guests() {
		st := GuestStats{Name: g.Spec.Name, ID: g.ID, Port: g.Port().Name, Standby: []string{}, Failover: g.Spec.Failover,
			RxPackets: g.RxPackets.Load(), RxBytes: g.RxBytes.Load(), Migrations: g.Migrations(),
			SpoofCheck: g.SpoofCheck(), TxSpoofed: g.Spoofed(), RxWrongMAC: g.RxWrongMAC.Load(),
			TxQueueFull: g.SendQueueFull()}
		for _, p := range g.StandbyPorts() {
			st.Standby = append(st.Standby, p.Name)
		}
		out = append(out, st)
	}
	return out
}

// Migrations are the guest's migrations so far.
func (g *Guest) Migrations() MigrationStats {
	g.migMu.Lock()
	defer g.migMu.Unlock()
	m := g.mig
	if m.Last != nil {
		l := *m.Last
		m.Last = &l
	}
	return m
}

// closeGap ends the measurement of a move's gap at now, on the worker that
// received the guest's first frame on its new port (ep).
func (g *Guest) noteRx(ep *Endpoint, now int64) {
	g.lastRx.Store(now)
	from := g.gapFrom.Load()
	if from == 0 {
		return
	}
	if int32(ep.Port) != g.gapPort.Load() {
		g.gapFrom.CompareAndSwap(from, now) // still arriving on the old port
		return
	}
	if g.gapFrom.CompareAndSwap(from, 0) {
		g.migMu.Lock()
		g.mig.LastGap = time.Duration(max(now-from, 0))
		g.mig.GapSeen = true
		g.migMu.Unlock()
	}
}

// MigrateGuest moves the named guest to port to, make before break, and
// loses nothing on the way:
//   - the guest's sockets on to exist since it was attached;
//   - its rules go in on to before they come out of its old port;
//   - its send queues switch to to's sockets between two worker passes;
//   - after its old rules are gone and the frames in flight have landed, the
//     old port's rx rings are drained through the pipeline (GRO holds
//     nothing past a batch);
//   - a gratuitous ARP for each IPv4 address and an unsolicited neighbour
//     advertisement for each IPv6 address leave from to, so that a switch
//     learns where the guest's MAC is now.
//
// The guest's stack, connections, connection contexts and counters are
// not touched. Errors (ErrNoGuest, ErrNotGuestPort, ErrPortDown,
// ErrAlreadyThere) change nothing.
func (e *Engine) MigrateGuest(name, to string) (Migration, error) {
	return e.migrate(name, to, ReasonCommand)
}

func (e *Engine) migrate(name, to, reason string) (Migration, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return Migration{}, fmt.Errorf("engine: migrate guest %s: engine closed", name)
	}
	var g *Guest
	for _, x := range e.guests {
		if x != nil && x.Spec.Name == name {
			g = x
		}
	}
	if g == nil {
		return Migration{}, fmt.Errorf("engine: migrate guest %s: %w", name, ErrNoGuest)
	}
	ti := -1
	for i, gp := range g.ports {
		if gp.port.Name == to {
			ti = i
		}
	}
	if ti < 0 {
		return Migration{}, fmt.Errorf("engine: migrate guest %s to %s: %w (its ports: %s)",
			name, to, ErrNotGuestPort, strings.Join(g.Spec.Ports(), ", "))
	}
	if ti == g.active {
		return Migration{}, fmt.Errorf("engine: migrate guest %s to %s: %w", name, to, ErrAlreadyThere)
	}
	if !e.portUp(g.ports[ti].port) {
		return Migration{}, fmt.Errorf("engine: migrate guest %s to %s: %w", name, to, ErrPortDown)
	}
	return e.moveLocked(g, ti, reason)
}

// moveLocked moves g to its port ti. Called with e.mu held.
func (e *Engine) moveLocked(g *Guest, ti int, reason string) (Migration, error) {
	start := time.Now()
	op, np := g.ports[g.active], g.ports[ti]
	m := Migration{Guest: g.Spec.Name, From: op.port.Name, To: np.port.Name, Reason: reason, At: start}
	// Make: from here the guest's traffic is steered to it on both ports.
	if err := e.addRules(g, np); err != nil {
		return m, fmt.Errorf("engine: migrate guest %s to %s: %w", g.Spec.Name, np.port.Name, err)
	}
	g.migMu.Lock()
	g.mig.LastGap, g.mig.GapSeen = 0, false
	g.migMu.Unlock()
	g.gapPort.Store(int32(np.pi))
	g.gapFrom.Store(max(g.lastRx.Load(), 1))
	// Sends leave from the new port from each worker's next pass. The
	// old endpoints keep being polled (their completions come back
	// through the port's ring owner).
	for wi, w := range e.workers {
		if g.txqs == nil {
			break
		}
		oep, nep, q := op.eps[wi], np.eps[wi], g.txqs[wi]
		w.Do(func() {
			oep.tx = nil
			nep.tx = q
			q.setPort(nep)
		})
	}
	g.active = ti
	g.activePort.Store(np.port)
	// The switch learns where the guest's MAC is from the last frame it
	// sent: let the old port's tx rings empty, then announce from the new
	// port, and let the announcements leave, before the old rules go.
	// Until then, frames the switch still sends to the old port are
	// steered to the guest there.
	e.waitTxEmpty(op, g, false)
	m.Announced = e.announce(g)
	e.waitTxEmpty(np, g, true)
	time.Sleep(detachGrace)
	// Break: nothing more is steered to the old port's sockets.
	var errs []error
	if err := e.deleteRules(g, op); err != nil {
		errs = append(errs, err)
	}
	// Frames redirected before the rules went land within one NAPI poll;
	// then whatever the old rings hold goes through the pipeline.
	time.Sleep(detachGrace)
	op.each(func(wi int, ep *Endpoint) {
		w := e.workers[wi]
		w.Do(func() { w.drain(ep) })
	})
	m.Took = time.Since(start)
	g.migMu.Lock()
	g.mig.Count++
	g.mig.Last = &m
	g.migMu.Unlock()
	e.logf("guest %s migrated from %s to %s (%s) in %s, %d announcements", m.Guest, m.From, m.To, reason, m.Took.Round(time.Microsecond), m.Announced)
	if len(errs) > 0 {
		return m, fmt.Errorf("engine: migrate guest %s: %w", g.Spec.Name, errors.Join(errs...))
	}
	return m, nil
}

// txDrainWait bounds how long a move waits for a tx ring to empty: a port
// without carrier may never take its frames.
const txDrainWait = 50 * time.Millisecond

// waitTxEmpty waits, up to txDrainWait, until the guest's tx rings on gp
// hold no frame (and, with queues, its send queues hold no request). A
// port without link empties nothing: it does not wait for one.
func (e *Engine) waitTxEmpty(gp *guestPort, g *Guest, queues bool) {
	if g.txqs == nil || gp.port.gone.Load() || !gp.port.up.Load() {
		return
	}
	for end := time.Now().Add(txDrainWait); time.Now().Before(end); time.Sleep(200 * time.Microsecond) {
		busy := false
		for wi, w := range e.workers {
			ep, q := gp.eps[wi], g.txqs[wi]
			w.Do(func() { busy = busy || ep.Sock.TxPending() || queues && q.pending() })
		}
		if !busy {
			return
		}
	}
}

// portUp reports whether p is administratively up with a carrier.
func (e *Engine) portUp(p *Port) bool {
	if p.gone.Load() {
		return false
	}
	ifi, err := net.InterfaceByIndex(p.Ifindex)
	if err != nil || ifi.Name != p.Name {
		return false
	}
	return ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagRunning != 0
}

// announce queues, on the guest's send path (now its new port), a
// gratuitous ARP for each IPv4 address and an unsolicited neighbour
// advertisement for each IPv6 address. It returns how many it queued.
func (e *Engine) announce(g *Guest) int {
	mac := g.Spec.MAC
	if len(mac) != 6 || g.txqs == nil {
		return 0
	}
	n := 0
	for _, p := range g.Spec.Addrs {
		a := p.Addr()
		var f []byte
		if a.Is4() {
			f = GratuitousARP(mac, a)
		} else {
			f = UnsolicitedNA(mac, a)
		}
		if err := g.Send(&WorkRequest{Head: f}); err != nil {
			e.logf("guest %s: announce %s: %v", g.Spec.Name, a, err)
			continue
		}
		n++
	}
	return n
}

// GratuitousARP is an ARP announcement (RFC 5227): a request from mac for
// addr with addr as both sender and target, broadcast.
func GratuitousARP(mac net.HardwareAddr, addr netip.Addr) []byte {
	f := make([]byte, 0, 60)
	f = append(f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	f = append(f, mac...)
	f = binary.BigEndian.AppendUint16(f, 0x0806)
	f = append(f, 0, 1, 0x08, 0x00, 6, 4, 0, 1) // Ethernet, IPv4, request
	a := addr.As4()
	f = append(f, mac...)
	f = append(f, a[:]...)
	f = append(f, 0, 0, 0, 0, 0, 0)
	f = append(f, a[:]...)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

// UnsolicitedNA is a neighbour advertisement (RFC 4861 §7.2.6) from addr
// to all nodes, with the override flag and mac as the target link-layer
// address.
func UnsolicitedNA(mac net.HardwareAddr, addr netip.Addr) []byte {
	const icmpLen = 32
	f := make([]byte, 14+40+icmpLen)
	copy(f, []byte{0x33, 0x33, 0, 0, 0, 1})
	copy(f[6:], mac)
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	ip := f[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], icmpLen)
	ip[6], ip[7] = 58, 255 // ICMPv6, hop limit 255 (RFC 4861 §7.1.2)
	src := addr.As16()
	copy(ip[8:], src[:])
	dst := [16]byte{0xff, 0x02, 15: 1}
	copy(ip[24:], dst[:])
	icmp := ip[40:]
	icmp[0] = 136                                    // neighbour advertisement
	binary.BigEndian.PutUint32(icmp[4:], 0x20000000) // override
	copy(icmp[8:], src[:])
	icmp[24], icmp[25] = 2, 1 // target link-layer address, 8 bytes
	copy(icmp[26:], mac)
	// The checksum covers the pseudo-header: addresses, length, next header.
	var s uint32
	for i := 8; i < 40; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	s += icmpLen + 58
	for i := 0; i < icmpLen; i += 2 {
		s += uint32(binary.BigEndian.Uint16(icmp[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	binary.BigEndian.PutUint16(icmp[2:], ^uint16(s))
	return f
}
