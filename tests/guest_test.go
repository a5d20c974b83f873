package tests

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/umem"
)

// frameTo builds a tagged UDP frame from the peer to dst, carrying tag (the
// guest it is meant for) and seq.
func frameTo(t testing.TB, p lab.Port, dst netip.Addr, tag int, seq uint32) []byte {
	t.Helper()
	payload := make([]byte, 16)
	binary.BigEndian.PutUint32(payload[0:], magic)
	binary.BigEndian.PutUint32(payload[4:], uint32(tag))
	binary.BigEndian.PutUint32(payload[8:], seq)
	f, err := gen.BuildUDP(gen.FrameOptions{Size: 96, SrcMAC: p.PeerMAC, DstMAC: p.HostMAC,
		SrcIP: p.PeerIPv4, DstIP: dst, SrcPort: 30000 + uint16(seq%4096), DstPort: 7000, Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// guestLog records, per guest id, the tags and sequences it received. It is
// written by the worker and read after Stop or under mu.
type guestLog struct {
	mu    sync.Mutex
	seen  map[int]map[[2]uint32]int // guest id -> (tag, seq) -> times
	total map[int]int
}

func (l *guestLog) handler(g *engine.Guest, ep *engine.Endpoint, descs []umem.Desc) {
	u := ep.Sock.UMEM()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range descs {
		_, seq, _, ok := parseTagged(u.Bytes(d))
		tag := -1
		if ok {
			tag = int(binary.BigEndian.Uint32(u.Bytes(d)[gen.PayloadOffset(false)+4:]))
		}
		if l.seen[g.ID] == nil {
			l.seen[g.ID] = map[[2]uint32]int{}
		}
		l.seen[g.ID][[2]uint32{uint32(tag), seq}]++
		l.total[g.ID]++
	}
}

func (l *guestLog) count() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, v := range l.total {
		n += v
	}
	return uint64(n)
}

// TestGuestsReceiveOnlyTheirOwn: three guests on one port, each steered by
// its address, plus host traffic (ARP, ping, TCP to the host address) that
// must still reach the kernel. Then a fourth guest is attached and detached
// repeatedly under load: the others lose and receive nothing they should not.
func TestGuestsReceiveOnlyTheirOwn(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	o := engine.DefaultOptions()
	o.Ifaces = []string{p.Host}
	o.NoCatchAll = true
	e, err := engine.New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	e.Start()

	log := &guestLog{seen: map[int]map[[2]uint32]int{}, total: map[int]int{}}
	addrs := []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12")}
	ids := map[int]int{} // tag -> guest id
	for i, a := range addrs {
		g, err := e.AttachGuest(engine.GuestSpec{Name: "g" + string(rune('a'+i)), Port: p.Host,
			Rules: []engine.RuleSpec{{Dst: netip.PrefixFrom(a, 32), PortHi: 65535}}}, log.handler)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = g.ID
	}

	// Host traffic meanwhile: a TCP connection to the host's own address.
	ln, err := net.Listen("tcp4", net.JoinHostPort(p.HostIPv4.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("host"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := l.PeerDial(ctx, "tcp4", ln.Addr().String())
	if err != nil {
		t.Fatalf("TCP to the host address with guests attached: %v", err)
	}
	buf := make([]byte, 4)
	if _, err := conn.Read(buf); err != nil || string(buf) != "host" {
		t.Fatalf("TCP to the host: %q %v", buf, err)
	}
	conn.Close()
	if out, err := l.PeerCommand(ctx, "ping", "-c", "2", "-i", "0.2", "-W", "2", p.HostIPv4.String()).CombinedOutput(); err != nil {
		t.Fatalf("ping the host: %v\n%s", err, out)
	}
	neigh, _ := l.PeerCommand(ctx, "ip", "neigh", "show", p.HostIPv4.String()).CombinedOutput()
	if !strings.Contains(string(neigh), p.HostMAC.String()) {
		t.Fatalf("ARP for the host failed: %s", neigh)
	}

	// Phase 1: interleaved traffic to the three guests.
	s := newPeerSender(t, l, 0)
	const K = 3000
	var frames [][]byte
	for i := 0; i < K; i++ {
		for tag, a := range addrs {
			frames = append(frames, frameTo(t, p, a, tag, uint32(i)))
		}
	}
	sendPaced(t, s, frames, 96, log.count)

	// Phase 2: a fourth guest comes and goes while the three keep receiving.
	extra := netip.MustParseAddr("198.18.0.13")
	stop := make(chan struct{})
	churnErr := make(chan error, 1)
	var cycles atomic.Int64
	go func() {
		for n := 0; ; n++ {
			cycles.Store(int64(n))
			select {
			case <-stop:
				churnErr <- nil
				return
			default:
			}
			g, err := e.AttachGuest(engine.GuestSpec{Name: "churn", Port: p.Host,
				Rules: []engine.RuleSpec{{Dst: netip.PrefixFrom(extra, 32), PortHi: 65535}}}, log.handler)
			if err != nil {
				churnErr <- err
				return
			}
			time.Sleep(2 * time.Millisecond)
			if err := e.DetachGuest(g); err != nil {
				churnErr <- err
				return
			}
		}
	}()
	frames = frames[:0]
	for i := K; i < 2*K; i++ {
		for tag, a := range addrs {
			frames = append(frames, frameTo(t, p, a, tag, uint32(i)))
		}
		frames = append(frames, frameTo(t, p, extra, 3, uint32(i)))
	}
	// Frames for the churning guest may go to the kernel while it is away,
	// so pace on the three steady guests only.
	var sent int
	for i := 0; i < len(frames); i += 128 {
		end := min(i+128, len(frames))
		for _, f := range frames[i:end] {
			s.send(t, f)
		}
		sent = end
		deadline := time.Now().Add(5 * time.Second)
		for {
			log.mu.Lock()
			steady := log.total[ids[0]] + log.total[ids[1]] + log.total[ids[2]]
			log.mu.Unlock()
			if steady >= sent*3/4 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		time.Sleep(time.Millisecond) // spread the load over many attach/detach cycles
	}
	close(stop)
	if err := <-churnErr; err != nil {
		t.Fatalf("attach/detach under load: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	e.Stop()

	for tag := 0; tag < 3; tag++ {
		id := ids[tag]
		got := log.seen[id]
		if len(got) != 2*K || log.total[id] != 2*K {
			t.Errorf("guest %d (tag %d) received %d frames (%d distinct), want %d", id, tag, log.total[id], len(got), 2*K)
		}
		for k := range got {
			if int(k[0]) != tag {
				t.Fatalf("guest %d received a frame tagged for %d: leakage", id, k[0])
			}
		}
	}
	// The churn really happened, and the churning guest got some of its
	// frames; whatever it received was its own.
	churned := 0
	for id, n := range log.total {
		if id != ids[0] && id != ids[1] && id != ids[2] {
			churned += n
		}
	}
	if cycles.Load() < 5 || churned == 0 {
		t.Fatalf("churn: %d attach/detach cycles, %d frames to the churning guest; the test did not exercise it", cycles.Load(), churned)
	}
	t.Logf("churn: %d attach/detach cycles, %d of %d frames reached the churning guest", cycles.Load(), churned, K)
	for id, got := range log.seen {
		if id == ids[0] || id == ids[1] || id == ids[2] {
			continue
		}
		for k := range got {
			if k[0] != 3 {
				t.Fatalf("the churning guest (id %d) received a frame tagged %d", id, k[0])
			}
		}
	}
	if len(e.Guests()) != 3 {
		t.Fatalf("%d guests attached after the churn, want 3", len(e.Guests()))
	}
	if err := e.Close(); err != nil {
		t.Fatalf("close with guests (audit included): %v", err)
	}
}
