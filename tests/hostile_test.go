package tests

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/engine/stack"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/corpus"
	"github.com/xnic/xnic/flows/offload"
)

// TestHostileFramesDuringDownload is issue 15's hostile-frame corpus from
// the peer: while the peer downloads 192 MB over HTTP from a guest's stack,
// an AF_PACKET socket in the peer's netns sends every kind of
// corpus.HostileCorpus (lying and truncated headers, bad checksums, TCP
// flags and options, IPv6 extension chains, fragments, stacked tags,
// ARP/NDP garbage, runts, MTU-sized and misaddressed frames) retargeted at
// the guest, plus frames into the live download's 4-tuple (out-of-window
// RST, SYN, FIN and data, an ACK of unsent data, a bad checksum at the
// right sequence number), many times over. The download must hash right
// and every frame must be accounted for:
//   - a tap on the peer's veth counts every frame the peer sent (kernel
//     and injected), and the host port's steering program saw exactly the
//     ones the veth forwarded (the veth's own drops are counted);
//   - each XDP verdict (dropped as malformed by reason, to the kernel as
//     non-IP, control or unmatched) moved by exactly the number of injected
//     frames the Go parser and the guest's rules give it, and redirected
//     by the injected ones plus the peer kernel's own frames;
//   - of the redirected, the engine counted exactly the expected frames to
//     another MAC and with a bad TCP checksum, none malformed, none lost
//     in an XSK ring;
//   - afterwards the guest still serves and the frame audit is clean.
func TestHostileFramesDuringDownload(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	e := startStackEngine(t, l, true)
	g := attachStackGuest(t, e, l, stackGuestSpec{name: "web", idx: 10, gro: true, tso: true})
	v4, v6 := guestAddrs(g)
	gmac := g.Options().MAC
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The peer knows the guest statically, so its kernel sends no ARP or
	// NDP of its own; its frames are then TCP, ICMP and replies.
	for _, a := range []netip.Addr{v4, v6} {
		if out, err := l.PeerCommand(ctx, "ip", "neigh", "replace", a.String(), "lladdr", gmac.String(),
			"dev", p.Peer, "nud", "permanent").CombinedOutput(); err != nil {
			t.Fatalf("static neighbour %s: %v: %s", a, err, out)
		}
	}

	const size = 192 << 20
	var served [32]byte
	ln, err := g.Listen("tcp", net.JoinHostPort(v4.String(), "80"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		w.Header().Set("Content-Length", fmt.Sprint(size))
		io.Copy(w, io.TeeReader(io.LimitReader(newRand(7), size), h))
		copy(served[:], h.Sum(nil))
	})}
	go srv.Serve(ln)
	defer srv.Close()

	// The tap learns the download's 4-tuple and the peer's sequence and
	// acknowledgement numbers from an ACK the engine delivers.
	type live struct{ sport, seq, ack uint32 }
	var learned atomic.Pointer[live]
	g.SetTap(func(a *offload.Aggregate) {
		if learned.Load() != nil {
			return
		}
		var pk flows.Packet
		flows.Parse(a.Head, &pk)
		if pk.Reason != flows.ReasonOK || pk.Proto != flows.ProtoTCP || pk.Family != 4 || pk.Key.DstPort != 80 ||
			pk.TCPFlags&flows.TCPFlagACK == 0 || pk.TCPFlags&flows.TCPFlagSYN != 0 {
			return
		}
		tcp := a.Head[pk.L4Off:]
		learned.Store(&live{uint32(pk.Key.SrcPort), binary.BigEndian.Uint32(tcp[4:]), binary.BigEndian.Uint32(tcp[8:])})
	})
	defer g.SetTap(nil)

	tap := newOutTap(t, l, 0, v4, v6)
	before := hostileCounters(t, e, g, l, tap)

	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		client := &http.Client{Transport: &http.Transport{DialContext: l.PeerDial}}
		resp, err := client.Get("http://" + v4.String() + "/blob")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		var r result
		r.n, r.err = n, err
		copy(r.sum[:], h.Sum(nil))
		done <- r
	}()
	for learned.Load() == nil {
		if ctx.Err() != nil {
			t.Fatal("the download's first ACK never reached the guest")
		}
		time.Sleep(time.Millisecond)
	}
	lv := learned.Load()

	// The kinds: the corpus moved onto the lab, and frames into the live
	// connection built with the corpus builders.
	addrs := corpus.Addrs{SrcV4: p.PeerIPv4.As4(), DstV4: v4.As4(), SrcV6: p.PeerIPv6.As16(), DstV6: v6.As16()}
	copy(addrs.SrcMAC[:], p.PeerMAC)
	copy(addrs.DstMAC[:], gmac)
	var kinds []corpus.Frame
	for _, f := range corpus.HostileCorpus() {
		if len(f.Frame) < flows.EthernetLen {
			continue // AF_PACKET refuses what is not even an Ethernet header
		}
		f.Frame = corpus.Retarget(f.Frame, addrs)
		kinds = append(kinds, f)
	}
	liveSeg := func(name string, flags uint8, seq, ack uint32, payload []byte, bad bool) {
		s := corpus.TCP(uint16(lv.sport), 80, flags, nil, payload)
		binary.BigEndian.PutUint32(s[4:], seq)
		binary.BigEndian.PutUint32(s[8:], ack)
		f := corpus.Retarget(append(corpus.Eth(flows.EtherTypeIPv4), corpus.V4{Proto: flows.ProtoTCP}.Bytes(s)...), addrs)
		if bad {
			f[14+20+16] ^= 0x77
		}
		kinds = append(kinds, corpus.Frame{Name: name, Frame: f, Reason: flows.ReasonOK})
	}
	far := lv.seq + 1<<31 // as far from the window as sequence space allows
	liveSeg("live-rst-out-of-window", flows.TCPFlagRST, far, 0, nil, false)
	liveSeg("live-syn-in-established", flows.TCPFlagSYN, far, 0, nil, false)
	liveSeg("live-fin-out-of-window", flows.TCPFlagFIN|flows.TCPFlagACK, far, lv.ack, nil, false)
	liveSeg("live-data-out-of-window", flows.TCPFlagACK|flows.TCPFlagPSH, far, lv.ack, make([]byte, 100), false)
	liveSeg("live-ack-of-unsent", flows.TCPFlagACK, lv.seq, lv.ack+1<<30, nil, false)
	liveSeg("live-rst-bad-csum-in-window", flows.TCPFlagRST, lv.seq, 0, nil, true)

	tap.mu.Lock()
	tap.injected = map[string]bool{}
	for _, k := range kinds {
		tap.injected[string(k.Frame)] = true
	}
	tap.mu.Unlock()

	// Send every kind reps times, interleaved, in paced bursts so that
	// the veth's ring keeps up (its drops are counted all the same).
	const reps = 40
	s := newPeerSender(t, l, 0)
	sent := make([]int, len(kinds))
	refused := map[string]error{}
	sa := &unix.SockaddrLinklayer{Ifindex: s.ifindex, Halen: 6}
	injected, burst := 0, 0
	for r := 0; r < reps; r++ {
		for i, k := range kinds {
			if err := unix.Sendto(s.fd, k.Frame, 0, sa); err != nil {
				refused[k.Name] = err
				continue
			}
			sent[i]++
			injected++
			if burst++; burst == 32 {
				burst = 0
				time.Sleep(500 * time.Microsecond)
			}
		}
	}
	for name, err := range refused {
		t.Errorf("the peer's socket refused %s: %v", name, err)
	}
	var res result
	select {
	case res = <-done:
		t.Errorf("the download ended before the %d hostile frames were sent; make it bigger", injected)
	default:
		res = <-done
	}
	if res.err != nil || res.n != size || res.sum != served {
		t.Fatalf("download: %d of %d bytes, %v, sha256 match %v", res.n, size, res.err, res.sum == served)
	}
	after := hostileCounters(t, e, g, l, tap)
	d := after.sub(before)

	// What each frame must have been counted as.
	want := map[string]uint64{}
	var wantRedirected, wantWrongMAC, wantCsumBad uint64
	for i, k := range kinds {
		v := steerVerdict(k.Frame, v4, v6)
		want[v] += uint64(sent[i])
		if v != "redirected" {
			continue
		}
		wantRedirected += uint64(sent[i])
		if dst := k.Frame[:6]; dst[0]&1 == 0 && string(dst) != string(gmac) {
			wantWrongMAC += uint64(sent[i])
		} else if groCsumBad(k.Frame) {
			wantCsumBad += uint64(sent[i])
		}
	}

	// The peer's frames, all of them seen by the steering program.
	kernel := d.tapped - uint64(injected)
	if d.tapped < uint64(injected) {
		t.Fatalf("the peer's tap saw %d frames, fewer than the %d injected", d.tapped, injected)
	}
	if d.vethTx+d.vethDropped != d.tapped {
		t.Errorf("peer veth: %d forwarded + %d dropped, tap saw %d", d.vethTx, d.vethDropped, d.tapped)
	}
	if d.steer.RxPackets != d.vethTx {
		t.Errorf("the steering program saw %d frames, the peer's veth forwarded %d", d.steer.RxPackets, d.vethTx)
	}
	if v := d.steer.Verdicts(); v != d.steer.RxPackets {
		t.Errorf("verdicts sum to %d, frames %d", v, d.steer.RxPackets)
	}
	got := map[string]uint64{
		"redirected":        d.steer.Redirected,
		"pass_non_ip":       d.steer.PassNonIp,
		"pass_control":      d.steer.PassControl,
		"pass_unmatched":    d.steer.PassUnmatched,
		"pass_no_socket":    d.steer.PassNoSocket,
		"dropped_malformed": d.steer.DroppedMalformed,
	}
	for r := range flows.Reason(flows.NumReasons) {
		if r.Malformed() {
			got["drop:"+r.String()] = d.steer.Dropped(r)
		}
	}
	if tap.drops > 0 {
		t.Fatalf("the peer's tap dropped %d frames: the peer kernel's frames are not all classified", tap.drops)
	}
	kv := d.kernel
	var kn uint64
	for v, n := range kv {
		want[v] += n
		kn += n
	}
	if kn != kernel {
		t.Errorf("the tap classified %d frames of the peer kernel, counted %d", kn, kernel)
	}
	t.Logf("the peer kernel's frames by verdict: %v", kv)
	for k, n := range want {
		if strings.HasPrefix(k, "drop:") {
			want["dropped_malformed"] += n
		}
	}
	exact := d.vethDropped == 0 // which frames the veth dropped is unknown
	var rows []string
	for k := range got {
		if got[k] != 0 || want[k] != 0 {
			rows = append(rows, k)
		}
	}
	sort.Strings(rows)
	t.Logf("hostile corpus: %d kinds x %d = %d frames injected during a %d MB download; the peer's kernel sent %d more; the veth dropped %d",
		len(kinds), reps, injected, size>>20, kernel, d.vethDropped)
	t.Logf("%-32s %10s %10s", "steering verdict / reason", "expected", "counted")
	for _, k := range rows {
		mark := ""
		if got[k] != want[k] {
			mark = "  MISMATCH"
			if exact {
				t.Errorf("%s: counted %d, expected %d", k, got[k], want[k])
			}
		}
		t.Logf("%-32s %10d %10d%s", k, want[k], got[k], mark)
	}
	if !exact && (d.steer.RxPackets+d.vethDropped != uint64(injected)+kernel) {
		t.Errorf("frames: %d steered + %d veth drops != %d injected + %d kernel", d.steer.RxPackets, d.vethDropped, injected, kernel)
	}

	// The engine's side of the redirected frames.
	xsk := d.xskDrops
	engineRows := []struct {
		name      string
		want, got uint64
	}{
		{"redirected, received by workers", d.steer.Redirected - xsk, d.worker.RxPackets},
		{"lost in an XSK ring", 0, xsk},
		{"to another MAC (rx_wrong_mac)", wantWrongMAC, d.worker.RxWrongMAC},
		{"bad checksum (csum_bad)", wantCsumBad, d.worker.Pipeline.CsumBad},
		{"malformed in the pipeline", 0, d.worker.Pipeline.Malformed},
	}
	t.Logf("%-32s %10s %10s", "engine counter", "expected", "counted")
	for _, r := range engineRows {
		mark := ""
		if r.got != r.want {
			mark = "  MISMATCH"
			t.Errorf("%s: counted %d, expected %d", r.name, r.got, r.want)
		}
		t.Logf("%-32s %10d %10d%s", r.name, r.want, r.got, mark)
	}
	toStack := wantRedirected - wantWrongMAC - wantCsumBad
	t.Logf("injected frames delivered to the guest's stack: %d; its drops: malformed %d, bad checksum %d, unsupported (VLAN) %d; netstack: %d IP malformed, %d TCP checksum errors",
		toStack, d.stack.Drops[stack.RxDropMalformed], d.stack.Drops[stack.RxDropCsumBad], d.stack.Drops[stack.RxDropUnsupported],
		d.stack.IPMalformed, d.stack.TCPChecksumErrors)

	// The guest still serves, and nothing leaked.
	if out, err := l.PeerCommand(ctx, "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
		"-r", "0-99", "http://"+v4.String()+"/blob").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "20") {
		t.Errorf("curl after the corpus: %v %s", err, out)
	}
	srv.Close()
	if err := g.Close(); err != nil {
		t.Fatalf("guest close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("engine close (frame audit): %v", err)
	}
}

// steerVerdict is where the steering program must count a frame sent to a
// stack guest at v4 and v6 (stack.OwnRules): "drop:<reason>" for a
// malformed frame, "redirected" for IP to the guest's addresses, ICMPv6 to
// its solicited-node group and ARP for its IPv4 address, else the pass_*
// counter.
func steerVerdict(f []byte, v4, v6 netip.Addr) string {
	var p flows.Packet
	flows.Parse(f, &p)
	if p.Reason.Malformed() {
		return "drop:" + p.Reason.String()
	}
	if p.Family == 0 {
		if p.EtherType == flows.EtherTypeARP {
			arp := f[14+4*int(p.NumVLANs):]
			a4 := v4.As4()
			if len(arp) >= 28 && binary.BigEndian.Uint16(arp[0:]) == 1 && binary.BigEndian.Uint16(arp[2:]) == flows.EtherTypeIPv4 &&
				arp[4] == 6 && arp[5] == 4 && string(arp[24:28]) == string(a4[:]) {
				return "redirected"
			}
		}
		return "pass_non_ip"
	}
	dst := netip.AddrFrom16(p.Key.Dst).Unmap()
	sn := stack.OwnRules([]netip.Prefix{netip.PrefixFrom(v6, 128)})[1].Dst.Addr()
	if dst == v4 || dst == v6 || dst == sn && p.Proto == flows.ProtoICMPv6 {
		return "redirected"
	}
	if p.Proto == flows.ProtoICMP || p.Proto == flows.ProtoICMPv6 {
		return "pass_control"
	}
	return "pass_unmatched"
}

// groCsumBad reports whether the engine's GRO drops f for a bad checksum:
// a whole TCP segment without fragments or extension headers whose IPv4
// header or TCP checksum is wrong (offload.GRO.Receive's checks).
func groCsumBad(f []byte) bool {
	var p flows.Packet
	flows.Parse(f, &p)
	if p.Reason != flows.ReasonOK || p.Proto != flows.ProtoTCP || (p.Family != 4 && p.Family != 6) ||
		int(p.L3Off)+int(p.IPLen) > len(f) || int(p.PayloadOff)+int(p.PayloadLen) > len(f) ||
		int(p.L4Off)+int(p.L4Len) != int(p.PayloadOff) || p.Fragment || p.ExtHeaders != 0 {
		return false
	}
	if p.Family == 4 && !offload.VerifyIPv4Header(f[p.L3Off:p.L4Off]) {
		return true
	}
	return !offload.VerifyL4(f, &p)
}

// outTap reads every frame a lab port's peer end sends (PACKET_OUTGOING
// only, by a socket filter), whoever sends them, and classifies those
// that are not injected (the peer kernel's own) by steerVerdict. The
// kernel's PACKET_STATISTICS count what it queued and dropped.
type outTap struct {
	fd       int
	total    uint64 // frames the kernel counted so far (queued and dropped)
	drops    uint64
	read     atomic.Uint64
	mu       sync.Mutex
	injected map[string]bool // frames the test sends; set before they go out
	kernel   map[string]uint64
	stop     atomic.Bool
	done     chan struct{}
}

func newOutTap(t *testing.T, l *lab.Lab, port int, v4, v6 netip.Addr) *outTap {
	t.Helper()
	tp := &outTap{fd: -1, kernel: map[string]uint64{}, done: make(chan struct{})}
	proto := uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8
	err := l.InPeer(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("af_packet socket: %w", err)
		}
		tp.fd = fd
		const skfAdPkttype = 0xfffff000 + 4 // SKF_AD_OFF + SKF_AD_PKTTYPE
		filter := []unix.SockFilter{
			{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdPkttype},
			{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.PACKET_OUTGOING},
			{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},
			{Code: unix.BPF_RET | unix.BPF_K, K: 0},
		}
		prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			return fmt.Errorf("attach outgoing filter: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20); err != nil {
			return fmt.Errorf("tap rcvbuf: %w", err)
		}
		tv := unix.NsecToTimeval((20 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: l.Ports[port].PeerIfindex})
	})
	if err != nil {
		if tp.fd >= 0 {
			unix.Close(tp.fd)
		}
		t.Fatal(err)
	}
	go func() {
		defer close(tp.done)
		buf := make([]byte, 65536)
		for !tp.stop.Load() {
			n, _, err := unix.Recvfrom(tp.fd, buf, 0)
			if err != nil {
				continue
			}
			tp.mu.Lock()
			if !tp.injected[string(buf[:n])] {
				tp.kernel[steerVerdict(buf[:n], v4, v6)]++
			}
			tp.mu.Unlock()
			tp.read.Add(1)
		}
	}()
	t.Cleanup(func() {
		tp.stop.Store(true)
		<-tp.done
		unix.Close(tp.fd)
	})
	return tp
}

// poll adds what the kernel counted since the last call (reading resets
// its counters) and returns the frames new since then.
func (tp *outTap) poll(t *testing.T) uint64 {
	st, err := unix.GetsockoptTpacketStats(tp.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		t.Fatalf("packet statistics: %v", err)
	}
	tp.total += uint64(st.Packets)
	tp.drops += uint64(st.Drops)
	return uint64(st.Packets)
}

// kernelVerdicts are the peer kernel's frames by steering verdict, once
// the reader has caught up with what the kernel counted.
func (tp *outTap) kernelVerdicts(t *testing.T) map[string]uint64 {
	for end := time.Now().Add(5 * time.Second); tp.read.Load()+tp.drops < tp.total; {
		if time.Now().After(end) {
			t.Fatalf("the tap read %d frames of %d counted (%d dropped)", tp.read.Load(), tp.total, tp.drops)
		}
		time.Sleep(10 * time.Millisecond)
		tp.poll(t)
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return maps.Clone(tp.kernel)
}

// hostileCount is a snapshot of every counter the hostile test reads.
type hostileCount struct {
	kernel                      map[string]uint64 // the peer kernel's frames by verdict (outTap)
	tapped, vethTx, vethDropped uint64
	steer                       engine.Stats
	worker                      engine.WorkerStats
	xskDrops                    uint64
	stack                       stack.Stats
}

// hostileCounters waits until the port is quiet (no frame for 300 ms on
// the tap or at the steering program), then reads every counter.
func hostileCounters(t *testing.T, e *engine.Engine, g *stack.Guest, l *lab.Lab, tp *outTap) (c hostileCount) {
	t.Helper()
	var last uint64
	for quiet := 0; quiet < 3; {
		time.Sleep(100 * time.Millisecond)
		st, err := e.Stats()
		if err != nil {
			t.Fatal(err)
		}
		n := tp.poll(t)
		if n == 0 && st.Steer.RxPackets == last {
			quiet++
		} else {
			quiet = 0
		}
		last = st.Steer.RxPackets
	}
	c.tapped = tp.total
	c.kernel = tp.kernelVerdicts(t)
	err := l.InPeer(func() error {
		link, err := netlink.LinkByName(l.Ports[0].Peer)
		if err != nil {
			return err
		}
		s := link.Attrs().Statistics
		c.vethTx, c.vethDropped = s.TxPackets, s.TxDropped
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.Stats()
	if err != nil {
		t.Fatal(err)
	}
	c.steer = st
	for _, w := range e.Workers() {
		ws := w.Stats()
		c.worker.RxPackets += ws.RxPackets
		c.worker.RxWrongMAC += ws.RxWrongMAC
		c.worker.Pipeline.CsumBad += ws.Pipeline.CsumBad
		c.worker.Pipeline.Malformed += ws.Pipeline.Malformed
	}
	c.xskDrops = st.Drops()
	c.stack = g.Stats()
	return c
}

// hostileDelta is the difference of two hostileCounts.
type hostileDelta struct {
	kernel                      map[string]uint64
	tapped, vethTx, vethDropped uint64
	steer                       bpf.SteerStats
	worker                      engine.WorkerStats
	xskDrops                    uint64
	stack                       stack.Stats
}

// subSteer is a - b, field by field (every field is a uint64 counter).
func subSteer(a, b bpf.SteerStats) bpf.SteerStats {
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(b)
	for i := range va.NumField() {
		if va.Field(i).Kind() != reflect.Uint64 {
			continue // structs.HostLayout
		}
		va.Field(i).SetUint(va.Field(i).Uint() - vb.Field(i).Uint())
	}
	return a
}

// sub is c - o, counter by counter, for what the test compares.
func (c hostileCount) sub(o hostileCount) (d hostileDelta) {
	d.kernel = map[string]uint64{}
	for v, n := range c.kernel {
		if n > o.kernel[v] {
			d.kernel[v] = n - o.kernel[v]
		}
	}
	d.tapped, d.vethTx, d.vethDropped = c.tapped-o.tapped, c.vethTx-o.vethTx, c.vethDropped-o.vethDropped
	d.steer = subSteer(c.steer.Steer, o.steer.Steer)
	d.worker.RxPackets = c.worker.RxPackets - o.worker.RxPackets
	d.worker.RxWrongMAC = c.worker.RxWrongMAC - o.worker.RxWrongMAC
	d.worker.Pipeline.CsumBad = c.worker.Pipeline.CsumBad - o.worker.Pipeline.CsumBad
	d.worker.Pipeline.Malformed = c.worker.Pipeline.Malformed - o.worker.Pipeline.Malformed
	d.xskDrops = c.xskDrops - o.xskDrops
	d.stack.Drops = c.stack.Drops
	for i := range d.stack.Drops {
		d.stack.Drops[i] -= o.stack.Drops[i]
	}
	d.stack.IPMalformed = c.stack.IPMalformed - o.stack.IPMalformed
	d.stack.TCPChecksumErrors = c.stack.TCPChecksumErrors - o.stack.TCPChecksumErrors
	return d
}
