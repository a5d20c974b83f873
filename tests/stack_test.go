package tests

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/engine/stack"
)

// stackGuest is a guest with its own stack on lab port 0, at host index
// idx of the port's subnets (198.18.0.idx, 2001:2::idx).
type stackGuestSpec struct {
	name string
	idx  byte
	gro  bool
	tso  bool
}

func startStackEngine(t *testing.T, l *lab.Lab, gro bool) *engine.Engine {
	t.Helper()
	o := engine.DefaultOptions()
	o.Ifaces = []string{l.Ports[0].Host}
	o.NoCatchAll = true // unclaimed traffic belongs to the host kernel
	o.UMEM.NumFrames = 8192
	po := engine.DefaultPipelineOptions()
	po.GRO = gro
	o.Pipeline = &po
	e, err := engine.New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	e.Start()
	return e
}

func attachStackGuest(t *testing.T, e *engine.Engine, l *lab.Lab, s stackGuestSpec) *stack.Guest {
	t.Helper()
	p := l.Ports[0]
	v4 := p.HostIPv4.As4()
	v4[3] = s.idx
	v6 := p.HostIPv6.As16()
	v6[15] = s.idx
	spec := engine.GuestSpec{
		Name: s.name, Port: p.Host,
		MAC: net.HardwareAddr{0x02, 0x78, 0x6e, 0x69, 0x63, s.idx},
		Addrs: []netip.Prefix{
			netip.PrefixFrom(netip.AddrFrom4(v4), lab.PrefixLenIPv4),
			netip.PrefixFrom(netip.AddrFrom16(v6), lab.PrefixLenIPv6),
		},
	}
	so := stack.DefaultOptions()
	if !s.tso {
		so.GSOMaxSize = 0
	}
	g, err := stack.Attach(e, spec, so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func guestAddrs(g *stack.Guest) (v4, v6 netip.Addr) {
	for _, p := range g.Options().Addrs {
		if p.Addr().Is4() {
			v4 = p.Addr()
		} else {
			v6 = p.Addr()
		}
	}
	return v4, v6
}

// TestStackGuestServesPeer: a guest with its own netstack answers ping
// (IPv4 and IPv6, so ARP and NDP work through the steering rules), serves
// HTTP to curl in the peer netns, and takes bulk TCP both ways with the
// sha256 of what arrived equal to what was sent; GRO merges the peer's MTU
// frames more than 10 to 1. After the guest closes, the frame audit is clean.
func TestStackGuestServesPeer(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	e := startStackEngine(t, l, true)
	g := attachStackGuest(t, e, l, stackGuestSpec{name: "web", idx: 10, gro: true, tso: true})
	v4, v6 := guestAddrs(g)

	ln, err := g.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from guest web, %s\n", r.URL.Path)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	peer := func(args ...string) string {
		t.Helper()
		out, err := l.PeerCommand(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	peer("ping", "-c", "3", "-i", "0.2", "-W", "2", v4.String())
	peer("ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", v6.String())
	if out := peer("curl", "-sS", "--max-time", "10", "http://"+v4.String()+"/x"); out != "hello from guest web, /x\n" {
		t.Fatalf("curl over IPv4: %q", out)
	}
	if out := peer("curl", "-sS", "--max-time", "10", "http://["+v6.String()+"]/y"); out != "hello from guest web, /y\n" {
		t.Fatalf("curl over IPv6: %q", out)
	}

	const n = 200 << 20
	bulk(t, ctx, l, g, v6, n/4, n/4) // both ways at once, over IPv6
	bulk(t, ctx, l, g, v4, 0, n)     // guest -> peer: the engine's TSO
	before, _ := e.Stats()
	bulk(t, ctx, l, g, v4, n, 0) // peer -> guest: the engine's GRO
	after, _ := e.Stats()
	segs := after.Pipeline.GROSegments - before.Pipeline.GROSegments
	var aggs uint64
	for i := range after.Pipeline.SegsHist {
		aggs += after.Pipeline.SegsHist[i] - before.Pipeline.SegsHist[i]
	}
	ratio := float64(segs) / float64(max(aggs, 1))
	t.Logf("bulk %d MB peer -> guest: GRO %d segments in %d aggregates (%.1f per aggregate); guest tx refused %d",
		n>>20, segs, aggs, ratio, g.TxRefused())
	if ratio <= 10 {
		t.Errorf("GRO ratio %.1f on the bulk stream, want above 10", ratio)
	}

	srv.Close()
	if err := g.Close(); err != nil {
		t.Fatalf("guest close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("engine close (frame audit): %v", err)
	}
}

// bulk sends n random bytes from the peer's kernel TCP to the guest and n
// from the guest back, at the same time, and checks both sha256 sums.
func bulk(t *testing.T, ctx context.Context, l *lab.Lab, g *stack.Guest, addr netip.Addr, up, down int64) {
	t.Helper()
	sum := func(seed byte, n int64) (s [32]byte) {
		h := sha256.New()
		io.Copy(h, io.LimitReader(newRand(seed), n))
		copy(s[:], h.Sum(nil))
		return s
	}
	wantUp, wantDown := sum(1, up), sum(2, down)
	ln, err := g.Listen("tcp", net.JoinHostPort(addr.String(), "5001"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	// drain hashes what c delivers until EOF.
	drain := func(c io.Reader) result {
		h := sha256.New()
		m, err := io.Copy(h, c)
		r := result{n: m, err: err}
		copy(r.sum[:], h.Sum(nil))
		return r
	}
	fromPeer, fromGuest := make(chan result, 1), make(chan result, 1)
	go func() { // the guest: send n bytes while reading what the peer sends
		c, err := ln.Accept()
		if err != nil {
			fromPeer <- result{err: err}
			return
		}
		defer c.Close()
		sent := make(chan error, 1)
		go func() {
			_, err := io.Copy(c, io.LimitReader(newRand(2), down))
			c.(interface{ CloseWrite() error }).CloseWrite()
			sent <- err
		}()
		r := drain(c)
		if err := <-sent; err != nil && r.err == nil {
			r.err = fmt.Errorf("guest send: %w", err)
		}
		fromPeer <- r
	}()
	c, err := l.PeerDial(ctx, "tcp", net.JoinHostPort(addr.String(), "5001"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() { fromGuest <- drain(c) }()
	if _, err := io.Copy(c, io.LimitReader(newRand(1), up)); err != nil {
		t.Fatalf("peer send: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	for _, w := range []struct {
		name string
		ch   chan result
		n    int64
		want [32]byte
	}{{"peer -> guest", fromPeer, up, wantUp}, {"guest -> peer", fromGuest, down, wantDown}} {
		select {
		case r := <-w.ch:
			if r.err != nil || r.n != w.n || r.sum != w.want {
				t.Fatalf("%s: got %d bytes (err %v), sha256 match %v; sent %d", w.name, r.n, r.err, r.sum == w.want, w.n)
			}
		case <-ctx.Done():
			t.Fatalf("%s: timed out", w.name)
		}
	}
}

// randReader is a fast deterministic byte source.
type randReader struct{ r *rand.ChaCha8 }

func newRand(seed byte) io.Reader { return randReader{rand.NewChaCha8([32]byte{seed})} }

func (r randReader) Read(p []byte) (int, error) { return r.r.Read(p) }
