package tests

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/engine/stack"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
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
	bulk(t, ctx, l, g, v6, 5001, n/4, n/4) // both ways at once, over IPv6
	t0 := time.Now()
	acks0, _ := e.Stats()
	bulk(t, ctx, l, g, v4, 5002, 0, n) // guest -> peer: the engine's TSO
	acks1, _ := e.Stats()
	// The peer's ACKs come in runs; the engine folds each into its last.
	if d := acks1.Pipeline.GROAcks - acks0.Pipeline.GROAcks; d == 0 {
		t.Errorf("a %d MB download coalesced no pure ACK", n>>20)
	} else {
		t.Logf("download: %d pure ACKs coalesced", d)
	}
	tx, _ := e.Stats()
	t.Logf("bulk %d MB guest -> peer in %v: engine tx %d requests (%d segmented) into %d frames, %d dropped, %d without frames; stack %+v",
		n>>20, time.Since(t0).Round(time.Millisecond), tx.Tx.Requests, tx.Tx.GSORequests, tx.Tx.Segments,
		tx.Tx.Dropped, tx.Tx.NoFrames, g.Stats())
	// The engine's own GRO output, seen through the guest's tap, carries
	// exactly the bytes the peer sent, in sequence order.
	rs := newStreamCheck(5003)
	g.SetTap(rs.tap)
	before, _ := e.Stats()
	bulk(t, ctx, l, g, v4, 5003, n, 0) // peer -> guest: the engine's GRO
	after, _ := e.Stats()
	g.SetTap(nil)
	if got, want := rs.result(); got != want || rs.bytes != n {
		t.Fatalf("GRO output: %d payload bytes in %d aggregates, sha256 match %v; want the %d bytes sent",
			rs.bytes, rs.aggs, got == want, n)
	}
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
func bulk(t *testing.T, ctx context.Context, l *lab.Lab, g *stack.Guest, addr netip.Addr, port uint16, up, down int64) {
	t.Helper()
	if err := bulkErr(ctx, l, g, addr, port, up, down); err != nil {
		t.Fatal(err)
	}
}

// bulkErr is bulk for any goroutine.
// Each call takes its own port: a closed connection keeps its port busy in
// TIME_WAIT for a while.
func bulkErr(ctx context.Context, l *lab.Lab, g *stack.Guest, addr netip.Addr, port uint16, up, down int64) error {
	// Each sender hashes what it sends as it sends it: computing the sums
	// first would cost as much CPU again as the transfer.
	var wantUp, wantDown [32]byte
	sentUp, sentDown := sha256.New(), sha256.New()
	ln, err := g.Listen("tcp", net.JoinHostPort(addr.String(), strconv.Itoa(int(port))))
	if err != nil {
		return err
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
			_, err := io.Copy(c, io.TeeReader(io.LimitReader(newRand(2), down), sentDown))
			c.(interface{ CloseWrite() error }).CloseWrite()
			copy(wantDown[:], sentDown.Sum(nil))
			sent <- err
		}()
		r := drain(c)
		if err := <-sent; err != nil && r.err == nil {
			r.err = fmt.Errorf("guest send: %w", err)
		}
		fromPeer <- r
	}()
	c, err := l.PeerDial(ctx, "tcp", net.JoinHostPort(addr.String(), strconv.Itoa(int(port))))
	if err != nil {
		return err
	}
	defer c.Close()
	go func() { fromGuest <- drain(c) }()
	if _, err := io.Copy(c, io.TeeReader(io.LimitReader(newRand(1), up), sentUp)); err != nil {
		return fmt.Errorf("peer send: %w", err)
	}
	c.(*net.TCPConn).CloseWrite()
	copy(wantUp[:], sentUp.Sum(nil))
	for _, w := range []struct {
		name string
		ch   chan result
		n    int64
		want *[32]byte
	}{{"peer -> guest", fromPeer, up, &wantUp}, {"guest -> peer", fromGuest, down, &wantDown}} {
		select {
		case r := <-w.ch:
			// Each result comes after its sender finished and summed:
			// the guest's after its send returned, the peer's after EOF,
			// which follows the guest's CloseWrite.
			if r.err != nil || r.n != w.n || r.sum != *w.want {
				return fmt.Errorf("%s %s: got %d bytes (err %v), sha256 match %v; sent %d", addr, w.name, r.n, r.err, r.sum == *w.want, w.n)
			}
		case <-ctx.Done():
			return fmt.Errorf("%s %s: timed out", addr, w.name)
		}
	}
	return nil
}

// streamCheck rebuilds one TCP direction (to port) from GRO aggregates, in
// sequence order, dropping retransmitted bytes, and hashes it.
type streamCheck struct {
	port  uint16
	h     hash.Hash
	next  uint32
	known bool
	held  map[uint32][]byte // segments after a gap
	bytes int64
	aggs  int
}

func newStreamCheck(port uint16) *streamCheck {
	return &streamCheck{port: port, h: sha256.New(), held: map[uint32][]byte{}}
}

func (s *streamCheck) tap(a *offload.Aggregate) {
	p := &a.Pkt
	if p.Proto != flows.ProtoTCP || p.Key.DstPort != s.port || a.Flags&offload.AggPassThrough != 0 {
		return
	}
	seq := binary.BigEndian.Uint32(a.Head[p.L4Off+4:])
	if p.TCPFlags&flows.TCPFlagSYN != 0 {
		s.next, s.known = seq+1, true
		return
	}
	if !s.known || a.Len == 0 {
		return
	}
	s.aggs++
	var pay []byte
	for _, sg := range a.Segs {
		pay = append(pay, sg...)
	}
	s.add(seq, pay)
}

func (s *streamCheck) add(seq uint32, pay []byte) {
	if d := int32(s.next - seq); d > 0 { // starts before next: drop the old part
		if int(d) >= len(pay) {
			return
		}
		pay, seq = pay[d:], s.next
	}
	if seq != s.next {
		s.held[seq] = pay
		return
	}
	s.h.Write(pay)
	s.bytes += int64(len(pay))
	s.next += uint32(len(pay))
	for {
		found := false
		for q, hp := range s.held {
			if int32(s.next-q) >= 0 {
				delete(s.held, q)
				if int32(s.next-q) < int32(len(hp)) {
					s.add(q, hp)
				}
				found = true
				break
			}
		}
		if !found {
			return
		}
	}
}

// result returns the hash of the rebuilt stream and of what bulk sends up.
func (s *streamCheck) result() (got, want [32]byte) {
	copy(got[:], s.h.Sum(nil))
	h := sha256.New()
	io.Copy(h, io.LimitReader(newRand(1), s.bytes))
	copy(want[:], h.Sum(nil))
	return got, want
}

// randReader is a fast deterministic byte source.
type randReader struct{ r *rand.ChaCha8 }

func newRand(seed byte) io.Reader { return randReader{rand.NewChaCha8([32]byte{seed})} }

func (r randReader) Read(p []byte) (int, error) { return r.r.Read(p) }

// TestStackTwoGuestsIsolated: two guests with their own stacks on one
// port, each with live connections at the same time, never see each other's
// traffic: every frame a guest's stack receives is addressed to it (or is
// ARP/NDP for it), and each transfer arrives intact.
func TestStackTwoGuestsIsolated(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	e := startStackEngine(t, l, true)
	a := attachStackGuest(t, e, l, stackGuestSpec{name: "a", idx: 10, gro: true, tso: true})
	b := attachStackGuest(t, e, l, stackGuestSpec{name: "b", idx: 11, gro: true, tso: true})
	av4, _ := guestAddrs(a)
	bv4, bv6 := guestAddrs(b)
	foreign := map[string]*atomic.Uint64{"a": {}, "b": {}}
	for _, g := range []*stack.Guest{a, b} {
		own := map[netip.Addr]bool{}
		for _, p := range g.Options().Addrs {
			own[p.Addr()] = true
		}
		name := g.Options().Name
		g.SetTap(func(agg *offload.Aggregate) {
			pk := &agg.Pkt
			if pk.Family == 0 {
				return // ARP: its target was checked by the steering rule
			}
			dst := netip.AddrFrom16(pk.Key.Dst).Unmap()
			if !own[dst] && !dst.IsMulticast() {
				foreign[name].Add(1)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	done := make(chan error, 3)
	go func() { done <- bulkErr(ctx, l, a, av4, 5001, 32<<20, 32<<20) }()
	go func() { done <- bulkErr(ctx, l, b, bv4, 5001, 32<<20, 32<<20) }()
	go func() { done <- bulkErr(ctx, l, b, bv6, 5002, 16<<20, 0) }()
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if fa, fb := foreign["a"].Load(), foreign["b"].Load(); fa != 0 || fb != 0 {
		t.Fatalf("guests saw each other's traffic: a %d frames, b %d", fa, fb)
	}
	if sa, sb := a.Stats(), b.Stats(); sa.RxBytes < 32<<20 || sb.RxBytes < 48<<20 {
		t.Fatalf("stacks received %d and %d bytes", sa.RxBytes, sb.RxBytes)
	}
}

// TestStackGuestWithoutOffloads: with GRO and TSO off the guest still
// moves bulk TCP both ways intact, one MTU frame at a time.
func TestStackGuestWithoutOffloads(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	e := startStackEngine(t, l, false)
	g := attachStackGuest(t, e, l, stackGuestSpec{name: "plain", idx: 12})
	v4, _ := guestAddrs(g)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bulk(t, ctx, l, g, v4, 5001, 32<<20, 32<<20)
	st, _ := e.Stats()
	if st.Pipeline.GROSegments != 0 {
		t.Fatalf("GRO off, yet %d segments went through it", st.Pipeline.GROSegments)
	}
	if s := g.Stats(); s.TxGSOPackets != 0 {
		t.Fatalf("TSO off, yet the stack sent %d TSO packets", s.TxGSOPackets)
	}
	if tx := e.Workers()[0].Tx.GSORequests.Load(); tx != 0 {
		t.Fatalf("TSO off, yet the engine segmented %d requests", tx)
	}
}

// TestExampleGuest builds examples/guest and drives it as its doc says: curl
// from the peer reaches the guest's net/http server, and the guest's own
// http.Client (dialling through its stack) fetches a page from the peer.
func TestExampleGuest(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	bin := filepath.Join(t.TempDir(), "guest")
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/guest").CombinedOutput(); err != nil {
		t.Fatalf("build examples/guest: %v\n%s", err, out)
	}
	ln, err := l.PeerListen("tcp", net.JoinHostPort(l.Ports[0].PeerIPv4.String(), "8000"))
	if err != nil {
		t.Fatal(err)
	}
	psrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "peer page")
	})}
	go psrv.Serve(ln)
	defer psrv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--iface", l.Ports[0].Host, "--addr", "198.18.0.10/24",
		"--dial", net.JoinHostPort(l.Ports[0].PeerIPv4.String(), "8000"))
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), "the guest fetched"); {
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("the example never fetched from the peer:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out.String(), `200 OK "peer page"`) {
		t.Fatalf("the guest's fetch: %s", out.String())
	}
	got, err := l.PeerCommand(ctx, "curl", "-sS", "--max-time", "10", "http://198.18.0.10:8080/").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(got), "hello from a guest of xnic") {
		t.Fatalf("curl the example: %v %q", err, got)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("example exit: %v\n%s", err, out.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
