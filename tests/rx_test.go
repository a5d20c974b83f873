package tests

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/umem"
)

// received collects what the engine's stage saw, per port. It is written by
// the worker and read by the test only after Engine.Stop.
type received struct {
	u       []*umem.UMEM
	seen    []map[uint32]int
	corrupt int
	foreign int // frames without the test's tag
	wrong   int // tagged for another port
}

func newReceived(ports int) *received {
	r := &received{}
	for i := 0; i < ports; i++ {
		r.seen = append(r.seen, map[uint32]int{})
	}
	return r
}

func (r *received) stage() engine.RxFunc {
	return func(ep *engine.Endpoint, descs []umem.Desc) {
		port := ep.Port
		u := ep.Sock.UMEM()
		for _, d := range descs {
			p, seq, intact, ok := parseTagged(u.Bytes(d))
			switch {
			case !ok:
				r.foreign++
			case p != port:
				r.wrong++
			default:
				r.seen[port][seq]++
				if !intact {
					r.corrupt++
				}
			}
		}
	}
}

func startEngine(t *testing.T, l *lab.Lab, ports []int, r *received) *engine.Engine {
	t.Helper()
	o := engine.DefaultOptions()
	for _, i := range ports {
		o.Ifaces = append(o.Ifaces, l.Ports[i].Host)
	}
	e, err := engine.New(o, r.stage())
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			e.Close()
		}
	})
	e.Start()
	_ = closed
	return e
}

// TestReceiveExactlyK sends K distinct sequence-numbered frames and checks
// that exactly those K arrive, once each, with their contents intact, and
// that every frame is back where it belongs after close.
func TestReceiveExactlyK(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	const K = 20000
	r := newReceived(1)
	e := startEngine(t, l, []int{0}, r)

	frames := make([][]byte, K)
	for i := range frames {
		frames[i] = taggedFrame(t, l.Ports[0], 0, uint32(i), 64+i%1400)
	}
	s := newPeerSender(t, l, 0)
	w := e.Workers()[0]
	sendPaced(t, s, frames, 128, rxPackets(w))
	e.Stop()

	if len(r.seen[0]) != K {
		t.Fatalf("received %d distinct frames, want %d", len(r.seen[0]), K)
	}
	for seq, n := range r.seen[0] {
		if n != 1 || seq >= K {
			t.Fatalf("frame %d received %d times", seq, n)
		}
	}
	if r.corrupt != 0 || r.foreign != 0 || r.wrong != 0 {
		t.Fatalf("corrupt %d, foreign %d, misdirected %d; want none", r.corrupt, r.foreign, r.wrong)
	}
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RxPackets != K || st.Steer.Redirected != K || st.Drops() != 0 {
		t.Fatalf("stats: rx %d redirected %d drops %d, want %d %d 0", st.RxPackets, st.Steer.Redirected, st.Drops(), K, K)
	}
	// Every frame is in the fill ring, kernel or free list now; none leaked.
	u := w.UMEM()
	a, err := u.Audit()
	if err != nil {
		t.Fatalf("audit under a live socket: %v", err)
	}
	if a.Engine != 0 || a.Total() != int(a.Frames) {
		t.Fatalf("audit: %s", a)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("close (with its idle audit): %v", err)
	}
}

// TestSharedUMEMTwoPorts binds two sockets on one UMEM to two different
// veths (XDP_SHARED_UMEM, each with its own fill and completion ring); each
// must receive exactly its own traffic.
func TestSharedUMEMTwoPorts(t *testing.T) {
	l := labtest.New(t, labOptions(2))
	r := newReceived(2)
	e := startEngine(t, l, []int{0, 1}, r)
	w := e.Workers()[0]
	eps := w.Endpoints()
	socks := []*umem.Socket{eps[0].Sock, eps[1].Sock}
	if len(socks) != 2 || socks[0].UMEM() != socks[1].UMEM() {
		t.Fatal("the two ports' sockets do not share one UMEM")
	}
	if !socks[0].OwnsRings() || !socks[1].OwnsRings() {
		t.Fatal("sockets on different interfaces must each have their own fill and completion rings")
	}
	const K = 3000
	for port := 0; port < 2; port++ {
		frames := make([][]byte, K)
		for i := range frames {
			frames[i] = taggedFrame(t, l.Ports[port], port, uint32(i), 128)
		}
		sendPaced(t, newPeerSender(t, l, port), frames, 64, rxPackets(w))
	}
	e.Stop()
	for port := 0; port < 2; port++ {
		if len(r.seen[port]) != K {
			t.Errorf("port %d received %d distinct frames, want %d", port, len(r.seen[port]), K)
		}
	}
	if r.wrong != 0 || r.foreign != 0 || r.corrupt != 0 {
		t.Fatalf("misdirected %d, foreign %d, corrupt %d; want none", r.wrong, r.foreign, r.corrupt)
	}
	if socks[0].Counters.RxPackets != K || socks[1].Counters.RxPackets != K {
		t.Fatalf("per-socket counts %d and %d, want %d each", socks[0].Counters.RxPackets, socks[1].Counters.RxPackets, K)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestHostTrafficWhileAttached checks that ARP, ICMP and ICMPv6 (ping, NDP)
// still reach the host stack while the program is attached and a socket is
// receiving on the queue.
func TestHostTrafficWhileAttached(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	r := newReceived(1)
	e := startEngine(t, l, []int{0}, r)
	p := l.Ports[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	peer := func(args ...string) string {
		out, err := l.PeerCommand(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	peer("ip", "neigh", "flush", "dev", p.Peer)
	peer("ping", "-c", "3", "-i", "0.2", "-W", "2", p.HostIPv4.String())
	peer("ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", p.HostIPv6.String())
	neigh := peer("ip", "neigh", "show", p.HostIPv4.String(), "dev", p.Peer)
	if !strings.Contains(neigh, p.HostMAC.String()) {
		t.Fatalf("ARP did not resolve %s to %s: %q", p.HostIPv4, p.HostMAC, neigh)
	}
	// UDP still goes to the socket meanwhile.
	frames := [][]byte{taggedFrame(t, p, 0, 1, 100), taggedFrame(t, p, 0, 2, 100)}
	sendPaced(t, newPeerSender(t, l, 0), frames, 2, rxPackets(e.Workers()[0]))
	e.Stop()
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Steer.PassNonIp == 0 {
		t.Errorf("no ARP passed to the kernel: %+v", st.Steer)
	}
	if st.Steer.PassControl < 6 {
		t.Errorf("pass_control %d, want at least the 6 echo requests", st.Steer.PassControl)
	}
	if len(r.seen[0]) != 2 || r.foreign != 0 {
		t.Fatalf("socket received %d tagged and %d other frames, want 2 and 0", len(r.seen[0]), r.foreign)
	}
}
