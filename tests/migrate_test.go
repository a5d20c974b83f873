package tests

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/config"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/engine/stack"
)

// A two-port lab whose peer reaches both host ports through a bridge, as a
// server with two NIC ports into one switch: a guest is reachable at the
// same address on either port.
func bridgedLab(t *testing.T) *lab.Lab {
	o := labOptions(2)
	o.PeerBridge = true
	return labtest.New(t, o)
}

// startTwoPortEngine runs one pipeline over both ports of l.
func startTwoPortEngine(t *testing.T, l *lab.Lab, opts ...func(*engine.Options)) *engine.Engine {
	t.Helper()
	o := engine.DefaultOptions()
	o.Ifaces = []string{l.Ports[0].Host, l.Ports[1].Host}
	o.NoCatchAll = true
	// Deep rings (ethtool -G, in NIC terms): on a 2-core machine the
	// worker shares its cores with the guest's stack, the peer's kernel
	// TCP and the test, and 1 GB transfers both ways must not overflow a
	// ring while it waits for a core.
	o.UMEM.NumFrames = 32768
	o.Socket.RxSize, o.Socket.FillSize = 8192, 8192
	po := engine.DefaultPipelineOptions()
	o.Pipeline = &po
	for _, f := range opts {
		f(&o)
	}
	e, err := engine.New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close: %v", err) // the frame audit included
		}
	})
	e.Start()
	return e
}

// attachMover attaches a stack guest at host index idx of the bridged
// subnet, active on port active of l with the other port as standby.
func attachMover(t *testing.T, e *engine.Engine, l *lab.Lab, name string, idx byte, active int, fo engine.FailoverPolicy) *stack.Guest {
	t.Helper()
	p := l.Ports[active]
	spec := engine.GuestSpec{
		Name: name, Port: p.Host, Standby: []string{l.Ports[1-active].Host}, Failover: fo,
		MAC: net.HardwareAddr{0x02, 0x78, 0x6e, 0x69, 0x63, idx},
		Addrs: []netip.Prefix{
			netip.PrefixFrom(p.AddrIPv4(idx), lab.PrefixLenIPv4),
			netip.PrefixFrom(p.AddrIPv6(idx), lab.PrefixLenIPv6),
		},
	}
	g, err := stack.Attach(e, spec, stack.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// resets counts the RSTs a guest's stack sent and received.
func resets(g *stack.Guest) uint64 {
	tcp := g.Netstack().Stats().TCP
	return tcp.ResetsSent.Value() + tcp.ResetsReceived.Value()
}

// drops are the frames lost on the way to a guest: steered to a socket
// that had no room or no frame (XSK statistics), dropped as malformed, or
// passed to the kernel because no rule claimed them on the port they
// arrived on (a move that left a gap between its rules).
type drops struct{ xsk, malformed, unmatched uint64 }

func dropsOf(t *testing.T, e *engine.Engine) drops {
	t.Helper()
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return drops{st.XSK.RxDropped + st.XSK.RxRingFull, st.Steer.DroppedMalformed, st.Steer.PassUnmatched}
}

// checkNoDrops fails if the engine lost a frame on either port, not
// counting the rx-ring overflows (XSK) of before, which a starved worker
// has on a loaded 2-core machine whether or not a guest moves.
func checkNoDrops(t *testing.T, e *engine.Engine, before drops) {
	t.Helper()
	d := dropsOf(t, e)
	if d.malformed != 0 || d.unmatched != 0 || d.xsk != before.xsk {
		t.Errorf("drops: xsk rx dropped or ring full %d (before the moves %d), steering malformed %d, unmatched %d; want none",
			d.xsk, before.xsk, d.malformed, d.unmatched)
		for _, w := range e.Workers() {
			for _, ep := range w.Endpoints() {
				x, _ := ep.Sock.Statistics()
				t.Logf("port %s guest %d: %+v", e.Ports()[ep.Port].Name, ep.Guest, x)
			}
		}
	}
}

// during runs an upload and a download of size bytes between the peer and
// g at addr, calls move once the transfer is under way, and checks the
// sha256 of both directions, no RST, and (with lossless) no drop around
// the move.
func during(t *testing.T, l *lab.Lab, e *engine.Engine, g *stack.Guest, addr netip.Addr, port uint16, size int64, lossless bool, move func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rst := resets(g)
	done := make(chan error, 1)
	go func() { done <- bulkErr(ctx, l, g, addr, port, size, size) }()
	// Once some megabytes have arrived, the transfer is in full flow.
	eg := g.EngineGuest()
	for start := eg.RxBytes.Load(); eg.RxBytes.Load()-start < 64<<20; {
		select {
		case err := <-done:
			t.Fatalf("transfer ended before the move: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	before := dropsOf(t, e)
	move()
	// Frames in flight around the move have landed a few ms after it.
	time.Sleep(100 * time.Millisecond)
	if lossless {
		checkNoDrops(t, e, before)
	}
	if err := <-done; err != nil {
		t.Fatalf("%v\nthe guest's TCP endpoints: %s", err, tcpInfo(g))
	}
	if n := resets(g) - rst; n != 0 {
		t.Errorf("%d RSTs sent or received during the transfer", n)
	}
	// A guest's large send (a 64 KB retransmission among them) waits for
	// frames the tx ring is about to give back rather than being dropped.
	if st, err := e.Stats(); err != nil || st.Tx.NoFrames != 0 {
		t.Errorf("sends dropped for want of a free frame: %d (%v)", st.Tx.NoFrames, err)
	}
	if d := dropsOf(t, e); d.xsk != 0 {
		t.Logf("%d frames overflowed a socket's rx ring over the whole transfer (the worker starved)", d.xsk)
	}
}

// TestMigrateOnCommand: a guest moves from port 0 to port 1 in the middle
// of a 1 GB upload and a 1 GB download over IPv4; both arrive whole, no
// connection is reset, nothing is dropped, and the guest's stats say where
// it is and that traffic stopped only briefly.
func TestMigrateOnCommand(t *testing.T) {
	l := bridgedLab(t)
	e := startTwoPortEngine(t, l)
	g := attachMover(t, e, l, "web", 10, 0, engine.FailoverPolicy{})
	v4, _ := guestAddrs(g)
	var m engine.Migration
	during(t, l, e, g, v4, 7001, 1<<30, true, func() {
		var err error
		if m, err = e.MigrateGuest("web", l.Ports[1].Host); err != nil {
			t.Errorf("migrate: %v", err)
		}
	})
	eg := g.EngineGuest()
	if eg.Port().Name != l.Ports[1].Host || m.From != l.Ports[0].Host || m.To != l.Ports[1].Host || m.Announced != 2 {
		t.Errorf("after the move: port %s, migration %+v", eg.Port().Name, m)
	}
	ms := eg.Migrations()
	if ms.Count != 1 || ms.Last == nil || ms.Last.Reason != engine.ReasonCommand || !ms.GapSeen || ms.LastGap > time.Second {
		t.Errorf("migration stats: %+v", ms)
	}
	t.Logf("migration took %s; traffic stopped %s", m.Took, ms.LastGap)
	// The new port is the one the guest uses now: its steering counts the
	// guest's traffic after the move.
	st1, err := e.Ports()[1].Steer().TotalStats()
	if err != nil || st1.Redirected == 0 {
		t.Errorf("port 1 redirected %d frames (err %v), want the transfer's second half", st1.Redirected, err)
	}
}

// TestMigrateErrors: a move to a port the guest does not list, to the port
// it is on, to a port that is down, or of a guest that does not exist, is
// refused by name and changes nothing.
func TestMigrateErrors(t *testing.T) {
	l := bridgedLab(t)
	e := startTwoPortEngine(t, l)
	g := attachMover(t, e, l, "web", 10, 0, engine.FailoverPolicy{})
	eg := g.EngineGuest()
	cases := []struct {
		guest, to string
		want      error
	}{
		{"nobody", l.Ports[1].Host, engine.ErrNoGuest},
		{"web", "eth9", engine.ErrNotGuestPort},
		{"web", l.Ports[0].Host, engine.ErrAlreadyThere},
	}
	for _, c := range cases {
		if _, err := e.MigrateGuest(c.guest, c.to); !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.guest) {
			t.Errorf("migrate %s to %s: %v, want %v naming the guest", c.guest, c.to, err, c.want)
		}
	}
	if err := l.SetLinkDown(1, lab.PeerEnd); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "port 1 to lose its carrier", func() bool { return !linkRunning(l.Ports[1].Host) })
	if _, err := e.MigrateGuest("web", l.Ports[1].Host); !errors.Is(err, engine.ErrPortDown) {
		t.Errorf("migrate to a port without carrier: %v, want ErrPortDown", err)
	}
	if eg.Port().Name != l.Ports[0].Host || eg.Migrations().Count != 0 {
		t.Errorf("refused moves changed the guest: port %s, %d migrations", eg.Port().Name, eg.Migrations().Count)
	}
	// Still served where it was.
	v4, _ := guestAddrs(g)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bulkErr(ctx, l, g, v4, 7002, 1<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
}

// TestFailoverLinkDown: the cable of the guest's active port is pulled at
// the switch (the peer end set down, so the host port loses its carrier)
// in the middle of a 256 MB transfer each way over IPv6; the engine moves the guest
// to its standby port at once and the transfer completes whole. With
// failback, the guest returns when the port is up again.
func TestFailoverLinkDown(t *testing.T) {
	l := bridgedLab(t)
	e := startTwoPortEngine(t, l)
	g := attachMover(t, e, l, "web", 10, 0, engine.FailoverPolicy{LinkDown: true, Failback: true})
	_, v6 := guestAddrs(g)
	eg := g.EngineGuest()
	// A pulled cable loses the frames in flight and those the switch
	// floods to the standby port before the engine has moved the guest
	// (a few ms): netstack recovers them by retransmission, and after an
	// RTO its recovery crawls (one or two segments per RTO), so a 1 GB
	// transfer can outlast any sane timeout. 256 MB each way.
	during(t, l, e, g, v6, 7003, 256<<20, false, func() {
		if err := l.SetLinkDown(0, lab.PeerEnd); err != nil {
			t.Error(err)
		}
		waitFor(t, "the failover", func() bool { return eg.Migrations().Count == 1 })
	})
	ms := eg.Migrations()
	if eg.Port().Name != l.Ports[1].Host || ms.Last.Reason != engine.ReasonLinkDown {
		t.Errorf("after link down: %+v", ms)
	}
	t.Logf("failover: control plane %s, traffic stopped %s", ms.Last.Took, ms.LastGap)
	if err := l.SetLinkUp(0, lab.PeerEnd); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failback", func() bool { return eg.Migrations().Count == 2 })
	if ms := eg.Migrations(); eg.Port().Name != l.Ports[0].Host || ms.Last.Reason != engine.ReasonFailback {
		t.Errorf("after link up: %+v", ms)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bulkErr(ctx, l, g, v6, 7004, 8<<20, 8<<20); err != nil {
		t.Fatalf("after the failback: %v", err)
	}
}

// TestMigrateBackAndForth: twenty moves, one every 50 ms, under traffic
// both ways on IPv4 and IPv6 at once; every byte arrives.
func TestMigrateBackAndForth(t *testing.T) {
	l := bridgedLab(t)
	e := startTwoPortEngine(t, l)
	g := attachMover(t, e, l, "web", 10, 0, engine.FailoverPolicy{})
	v4, v6 := guestAddrs(g)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errs := make(chan error, 2)
	for i, a := range []netip.Addr{v4, v6} {
		go func() { errs <- bulkErr(ctx, l, g, a, uint16(7010+i), 256<<20, 256<<20) }()
	}
	rst := resets(g)
	time.Sleep(500 * time.Millisecond) // past the slow start's first bursts
	before := dropsOf(t, e)
	for i := range 20 {
		time.Sleep(50 * time.Millisecond)
		if _, err := e.MigrateGuest("web", l.Ports[(i+1)%2].Host); err != nil {
			t.Fatalf("move %d: %v", i+1, err)
		}
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := g.EngineGuest().Migrations().Count; n != 20 {
		t.Errorf("%d migrations, want 20", n)
	}
	if n := resets(g) - rst; n != 0 {
		t.Errorf("%d RSTs", n)
	}
	checkNoDrops(t, e, before)
}

// TestTwoGuestsTwoPorts: one pipeline serves two guests, one on each port,
// at the same time; each serves HTTP to the peer.
func TestTwoGuestsTwoPorts(t *testing.T) {
	l := bridgedLab(t)
	e := startTwoPortEngine(t, l)
	a := attachMover(t, e, l, "a", 10, 0, engine.FailoverPolicy{})
	b := attachMover(t, e, l, "b", 11, 1, engine.FailoverPolicy{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make(chan error, 2)
	for i, g := range []*stack.Guest{a, b} {
		v4, _ := guestAddrs(g)
		go func() { errs <- bulkErr(ctx, l, g, v4, uint16(7020+i), 64<<20, 64<<20) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	checkNoDrops(t, e, drops{xsk: dropsOf(t, e).xsk})
	for i, g := range []*stack.Guest{a, b} {
		st, err := e.Ports()[i].Steer().TotalStats()
		if err != nil || st.Redirected == 0 || g.EngineGuest().Port() != e.Ports()[i] {
			t.Errorf("guest %d: port %s redirected %d (err %v)", i, e.Ports()[i].Name, st.Redirected, err)
		}
	}
}

// TestPortDeletedUnderLoad: the port of one guest is deleted while both
// guests take traffic; the guest with a standby port moves, the guest on
// the other port carries on, and the engine stays responsive.
func TestPortDeletedUnderLoad(t *testing.T) {
	l := bridgedLab(t)
	e := startTwoPortEngine(t, l)
	a := attachMover(t, e, l, "a", 10, 0, engine.FailoverPolicy{})
	b := attachMover(t, e, l, "b", 11, 1, engine.FailoverPolicy{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bv4, _ := guestAddrs(b)
	done := make(chan error, 1)
	go func() { done <- bulkErr(ctx, l, b, bv4, 7030, 256<<20, 256<<20) }()
	time.Sleep(200 * time.Millisecond)
	if err := l.DeletePort(0); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the guest on the other port: %v", err)
	}
	waitFor(t, "guest a to move off the deleted port", func() bool { return a.EngineGuest().Migrations().Count == 1 })
	if ms := a.EngineGuest().Migrations(); ms.Last == nil || ms.Last.Reason != engine.ReasonPortGone {
		t.Errorf("guest a: %+v", ms)
	}
	av4, _ := guestAddrs(a)
	if err := bulkErr(ctx, l, a, av4, 7031, 8<<20, 8<<20); err != nil {
		t.Fatalf("guest a after its port went: %v", err)
	}
	if _, err := e.Stats(); err != nil {
		t.Errorf("stats after a port went: %v", err)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// linkRunning reports whether an interface is up with a carrier.
func linkRunning(name string) bool {
	ifi, err := net.InterfaceByName(name)
	return err == nil && ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagRunning != 0
}

// TestFailoverHostPortDown: the host's own port is set administratively
// down (ip link set xnic0 down) in the middle of a 1 GB transfer each way
// over IPv6; the guest moves to its standby port, the transfer completes
// whole, IPv4 works on the standby port, and the idle engine sleeps
// although the guest's frames wait in the dead port's tx ring.
func TestFailoverHostPortDown(t *testing.T) {
	l := bridgedLab(t)
	// Idle workers sleep, as with a config's default poll_ms.
	e := startTwoPortEngine(t, l, func(o *engine.Options) { o.PollMs = config.DefaultPollMs })
	g := attachMover(t, e, l, "web", 10, 0, engine.FailoverPolicy{LinkDown: true})
	v4, v6 := guestAddrs(g)
	eg := g.EngineGuest()
	during(t, l, e, g, v6, 7005, 1<<30, false, func() {
		if err := l.SetLinkDown(0, lab.HostEnd); err != nil {
			t.Error(err)
		}
		waitFor(t, "the failover", func() bool { return eg.Migrations().Count == 1 })
	})
	if ms := eg.Migrations(); eg.Port().Name != l.Ports[1].Host || ms.Last.Reason != engine.ReasonLinkDown {
		t.Errorf("after link down: %+v", ms)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bulkErr(ctx, l, g, v4, 7006, 8<<20, 8<<20); err != nil {
		t.Fatalf("after the failover, on the standby port: %v", err)
	}
	// Frames the guest queued on the port that went down stay in its tx
	// ring until it comes back: an idle engine must still sleep rather
	// than kick that ring forever.
	sleeps := func() uint64 {
		st, err := e.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st.Sleeps
	}
	time.Sleep(100 * time.Millisecond)
	s0 := sleeps()
	time.Sleep(500 * time.Millisecond)
	if n := sleeps() - s0; n < 10 {
		t.Errorf("idle workers slept %d times in 500 ms with poll_ms %d; want them asleep, not spinning", n, config.DefaultPollMs)
	}
}

// tcpInfo describes the guest's TCP endpoints for a failed transfer: a
// sender with a congestion window of 0 and nothing in flight never sends
// again (gVisor's CUBIC could cut the window to 0 on ACKs after repeated
// losses, until its RFC 9438 clamp), which reads as a stalled transfer.
func tcpInfo(g *stack.Guest) string {
	var b strings.Builder
	for _, ep := range g.Netstack().RegisteredEndpoints() {
		te, ok := ep.(*tcp.Endpoint)
		if !ok {
			continue
		}
		info, ok := te.Info().(*gstack.TransportEndpointInfo)
		var ti tcpip.TCPInfoOption
		if !ok || te.GetSockOpt(&ti) != nil {
			continue
		}
		id := info.ID
		fmt.Fprintf(&b, "\n  %s:%d <- %s:%d state %v cwnd %d ssthresh %d rtt %s rto %s",
			id.LocalAddress, id.LocalPort, id.RemoteAddress, id.RemotePort, ti.State, ti.SndCwnd, ti.SndSsthresh, ti.RTT, ti.RTO)
	}
	return b.String()
}
