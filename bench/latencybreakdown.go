package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"text/tabwriter"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/config"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/umem"
)

// The latency breakdown by differences (issue 12). With
// LatencyOptions.Breakdown a run adds contenders that take parts away from
// the xnic guest's round trip, so that the difference between two of them
// is the cost of the part one has and the other lacks:
//
//   - engine-echo: an engine in this process, a raw guest without a
//     netstack whose frame handler, on the worker, swaps each UDP
//     datagram's MAC and IP addresses and ports and sends it back with
//     Guest.Send: XDP, the AF_XDP receive and send paths and the worker
//     alone;
//   - engine-handoff: the same, but the handler copies the frame to a
//     channel and a goroutine swaps and sends it: the hand-off to another
//     goroutine, and the worker woken (or found spinning) to send, as an
//     application on a netstack does;
//   - each with the default engine.poll_ms and with poll_ms 0 (-busy).
//
// The kernel is the baseline; the xnic guest's UDP echo adds netstack,
// and its TCP ping-pong TCP. latencyBreakdown turns the summary into the
// steps between them.

// The breakdown's contenders, UDP echo only.
const (
	LatEngineEcho        = "engine-echo"
	LatEngineEchoBusy    = "engine-echo-busy"
	LatEngineHandoff     = "engine-handoff"
	LatEngineHandoffBusy = "engine-handoff-busy"
)

// BreakdownContenders are the contenders LatencyOptions.Breakdown adds.
func BreakdownContenders() []string {
	return []string{LatEngineEcho, LatEngineEchoBusy, LatEngineHandoff, LatEngineHandoffBusy}
}

// isEngineEcho reports whether the contender is an in-process engine echo.
func isEngineEcho(name string) bool {
	switch name {
	case LatEngineEcho, LatEngineEchoBusy, LatEngineHandoff, LatEngineHandoffBusy:
		return true
	}
	return false
}

// engineEchoQueue is the frames the hand-off's channel holds; more are
// dropped (one request is in flight at a time).
const engineEchoQueue = 64

// rawEcho is the engine echo's guest: it answers every UDP datagram with
// the same bytes, addresses and ports swapped, on the worker or from a
// goroutine.
type rawEcho struct {
	g atomic.Pointer[engine.Guest]
	// On the worker: the answer's buffer and request, reused.
	out [2048]byte
	wr  engine.WorkRequest
	// The hand-off: frames copied into bufs[i%len], their lengths on ch.
	handoff bool
	bufs    [engineEchoQueue][2048]byte
	next    int
	ch      chan int
	// Counters, read after the run.
	echoed, notUDP, dropped, sendErrs atomic.Uint64
}

// frames is the guest's engine.GuestHandler, on the worker.
func (r *rawEcho) frames(g *engine.Guest, ep *engine.Endpoint, descs []umem.Desc) {
	u := ep.Sock.UMEM()
	for _, d := range descs {
		f := u.Bytes(d)
		if r.handoff {
			b := &r.bufs[r.next%engineEchoQueue]
			n := copy(b[:], f)
			select {
			case r.ch <- n<<8 | r.next%engineEchoQueue:
				r.next++
			default:
				r.dropped.Add(1)
			}
			continue
		}
		n := copy(r.out[:], f)
		r.answer(g, r.out[:n], &r.wr)
	}
}

// sender is the hand-off's goroutine: it answers what frames queued.
func (r *rawEcho) sender() {
	var wr engine.WorkRequest
	for v := range r.ch {
		if g := r.g.Load(); g != nil {
			r.answer(g, r.bufs[v&0xff][:v>>8], &wr)
		}
	}
}

// answer sends frame back to where it came from, if it is UDP.
func (r *rawEcho) answer(g *engine.Guest, frame []byte, wr *engine.WorkRequest) {
	if !swapUDP(frame) {
		r.notUDP.Add(1)
		return
	}
	*wr = engine.WorkRequest{Head: frame}
	if err := g.Send(wr); err != nil {
		r.sendErrs.Add(1)
		return
	}
	r.echoed.Add(1)
}

// swapUDP turns an untagged Ethernet frame carrying an IPv4 or IPv6 UDP
// datagram into its echo in place: MAC addresses, IP addresses and ports
// swapped. The IP and UDP checksums stay right (their sums do not depend
// on the order of the words). It reports false, leaving the frame as it
// was, for anything else.
func swapUDP(f []byte) bool {
	var p flows.Packet
	flows.Parse(f, &p)
	if p.Reason.Malformed() || p.NumVLANs > 0 || p.Proto != flows.ProtoUDP || p.Reason != flows.ReasonOK || p.Fragment {
		return false
	}
	swap := func(a, b []byte) {
		for i := range a {
			a[i], b[i] = b[i], a[i]
		}
	}
	swap(f[0:6], f[6:12])
	ip, l4 := int(p.L3Off), int(p.L4Off)
	if p.Family == 4 {
		swap(f[ip+12:ip+16], f[ip+16:ip+20])
	} else {
		swap(f[ip+8:ip+24], f[ip+24:ip+40])
	}
	swap(f[l4:l4+2], f[l4+2:l4+4])
	return true
}

// measureEngineEcho measures an engine echo contender: an engine on the
// lab's host veth in this process, the raw guest with the xnic guest's
// MAC and IPv4 address (the peer has a static neighbour entry for it,
// since nothing answers ARP), and the UDP echo client against it.
func (b *latBencher) measureEngineEcho(ctx context.Context, name string, res *LatencyResult) (err error) {
	o := b.opts
	res.TCP.NotRun = true
	eo := engine.DefaultOptions()
	eo.Ifaces = []string{b.srv.port.Host}
	eo.NoCatchAll = true
	eo.PinDir = ""
	eo.PollMs = config.DefaultPollMs
	if name == LatEngineEchoBusy || name == LatEngineHandoffBusy {
		eo.PollMs = 0
	}
	po := engine.DefaultPipelineOptions()
	eo.Pipeline = &po
	eo.Logger = slog.New(slog.NewTextHandler(b.log, nil))
	s0 := sampleNoise()
	e, err := engine.New(eo, nil)
	if err != nil {
		return fmt.Errorf("start the engine: %w", err)
	}
	defer func() {
		if cerr := e.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close the engine: %w", cerr))
		}
		res.Noise = noiseBetween(s0, sampleNoise())
	}()
	e.Start()
	r := &rawEcho{handoff: name == LatEngineHandoff || name == LatEngineHandoffBusy}
	if r.handoff {
		r.ch = make(chan int, engineEchoQueue)
		go r.sender()
		defer close(r.ch)
	}
	addr := TCPGuestIPv4.Addr()
	g, err := e.AttachGuest(engine.GuestSpec{
		Name: "echo", Port: b.srv.port.Host, MAC: TCPGuestMAC,
		Addrs: []netip.Prefix{TCPGuestIPv4},
		Rules: []engine.RuleSpec{{Dst: netip.PrefixFrom(addr, 32), Proto: flows.ProtoUDP}},
	}, r.frames)
	if err != nil {
		return fmt.Errorf("attach the echo guest: %w", err)
	}
	r.g.Store(g)
	defer func() {
		r.g.Store(nil)
		if derr := e.DetachGuest(g); derr != nil {
			err = errors.Join(err, fmt.Errorf("detach the echo guest: %w", derr))
		}
	}()
	neigh := []string{"neigh", "replace", addr.String(), "lladdr", TCPGuestMAC.String(), "dev", b.srv.port.Peer, "nud", "permanent"}
	if out, err := b.srv.lab.PeerCommand(ctx, "ip", neigh...).CombinedOutput(); err != nil {
		return fmt.Errorf("add the echo guest's neighbour entry on the peer: %w: %s", err, strings.TrimSpace(string(out)))
	}
	defer func() {
		// Another contender answers ARP itself, maybe with another MAC.
		if out, derr := b.srv.lab.PeerCommand(context.WithoutCancel(ctx), "ip", "neigh", "del", addr.String(),
			"dev", b.srv.port.Peer).CombinedOutput(); derr != nil {
			err = errors.Join(err, fmt.Errorf("delete the echo guest's neighbour entry: %w: %s", derr, strings.TrimSpace(string(out))))
		}
	}()
	c := &pingClient{dial: b.srv.dial, addr: guestTarget(o.Port).String(), size: o.Size, warmup: o.Warmup,
		requests: o.Requests, timeout: o.Timeout}
	var s []float64
	res.UDP, s = c.echo(ctx)
	b.keep(name, KindUDP, s)
	res.Server = map[string]any{"echoed": r.echoed.Load(), "not_udp": r.notUDP.Load(),
		"handoff_dropped": r.dropped.Load(), "send_errors": r.sendErrs.Load()}
	return ctx.Err()
}

// BreakdownStep is one part of the round trip: the difference between the
// summary medians of two contender-kinds that differ by that part.
type BreakdownStep struct {
	// Part names what To has and From lacks.
	Part string `json:"part"`
	// Mode is the engine's idle mode of both sides: "poll_ms 10",
	// "poll_ms 0", or "" when it does not apply (the kernel).
	Mode string `json:"mode,omitempty"`
	// From and To are "contender kind".
	From string `json:"from"`
	To   string `json:"to"`
	// FromP50Us … are the two sides' median p50 and p99, and P50Us, P99Us
	// To's minus From's; nil when either side was not measured.
	FromP50Us *float64 `json:"from_p50_us,omitempty"`
	ToP50Us   *float64 `json:"to_p50_us,omitempty"`
	P50Us     *float64 `json:"p50_us,omitempty"`
	P99Us     *float64 `json:"p99_us,omitempty"`
}

// latencyBreakdown derives the steps from the summary, for each idle mode:
// the kernel's UDP echo to the engine echo (XDP, AF_XDP and the worker in
// place of veth's kernel path and its sockets), to the hand-off (a second
// goroutine and the worker's wake-up), to the xnic guest's UDP echo
// (netstack), to its TCP ping-pong (TCP); and the kernel's own TCP over
// UDP, for comparison.
func latencyBreakdown(sums []LatencySummary) []BreakdownStep {
	type side struct{ name, kind string }
	step := func(part, mode string, from, to side) BreakdownStep {
		st := BreakdownStep{Part: part, Mode: mode, From: from.name + " " + from.kind, To: to.name + " " + to.kind}
		f, t := findLatencySummary(sums, from.name), findLatencySummary(sums, to.name)
		if f == nil || t == nil {
			return st
		}
		fk, tk := f.kind(from.kind), t.kind(to.kind)
		if fk.P50.Rounds == 0 || tk.P50.Rounds == 0 {
			return st
		}
		d50, d99 := tk.P50.Median-fk.P50.Median, tk.P99.Median-fk.P99.Median
		f50, t50 := fk.P50.Median, tk.P50.Median
		st.FromP50Us, st.ToP50Us, st.P50Us, st.P99Us = &f50, &t50, &d50, &d99
		return st
	}
	var out []BreakdownStep
	for _, m := range []struct{ mode, echo, handoff, xnic string }{
		{fmt.Sprintf("poll_ms %d", config.DefaultPollMs), LatEngineEcho, LatEngineHandoff, LatXnic},
		{"poll_ms 0", LatEngineEchoBusy, LatEngineHandoffBusy, LatXnicBusy},
	} {
		out = append(out,
			step("XDP + AF_XDP rx/tx + worker, in place of the kernel's UDP", m.mode,
				side{LatKernel, KindUDP}, side{m.echo, KindUDP}),
			step("hand-off to a goroutine + worker wake-up", m.mode, side{m.echo, KindUDP}, side{m.handoff, KindUDP}),
			step("netstack UDP + the application's goroutine", m.mode, side{m.handoff, KindUDP}, side{m.xnic, KindUDP}),
			step("TCP on netstack over UDP", m.mode, side{m.xnic, KindUDP}, side{m.xnic, KindTCP}))
	}
	return append(out, step("TCP over UDP in the kernel (reference)", "", side{LatKernel, KindUDP}, side{LatKernel, KindTCP}))
}

// signedUs formats a difference in microseconds with its sign, "-" when
// not measured.
func signedUs(v *float64) string {
	if v == nil {
		return "-"
	}
	if *v >= 0 {
		return "+" + us(*v)
	}
	return "-" + us(-*v)
}

// plainUs is us, "-" when not measured.
func plainUs(v *float64) string {
	if v == nil {
		return "-"
	}
	return us(*v)
}

// writeBreakdownTable appends the steps as an aligned table, nothing
// without steps.
func writeBreakdownTable(b *strings.Builder, steps []BreakdownStep) {
	if len(steps) == 0 {
		return
	}
	b.WriteString("\nbreakdown by differences (median p50 and p99 of To minus From, µs):\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "part\tmode\tfrom\tto\tfrom p50\tto p50\tΔp50\tΔp99\t")
	for _, s := range steps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Part, orDash(s.Mode), s.From, s.To,
			plainUs(s.FromP50Us), plainUs(s.ToP50Us), signedUs(s.P50Us), signedUs(s.P99Us))
	}
	tw.Flush()
}

// writeBreakdownMarkdown appends the steps as a Markdown table.
func writeBreakdownMarkdown(b *strings.Builder, steps []BreakdownStep) {
	if len(steps) == 0 {
		return
	}
	b.WriteString("\n| part | mode | from | to | from p50 µs | to p50 | Δp50 | Δp99 |\n|---|---|---|---|---:|---:|---:|---:|\n")
	for _, s := range steps {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", s.Part, orDash(s.Mode), s.From, s.To,
			plainUs(s.FromP50Us), plainUs(s.ToP50Us), signedUs(s.P50Us), signedUs(s.P99Us))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
