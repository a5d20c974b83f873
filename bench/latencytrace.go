package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/config"
	"github.com/xnic/xnic/engine/stack"
	"github.com/xnic/xnic/flows"
	goffload "github.com/xnic/xnic/flows/offload"
	"github.com/xnic/xnic/umem"
	"golang.org/x/sys/unix"
)

// The latency trace (issue 12): where one small request's time goes, from
// timestamps taken at each stage of its round trip, on the wall clock
// that every process and the kernel share (see traceRecorder):
//
//   - the client in the lab's peer netns (the kernel's TCP and UDP), a
//     process of its own (latencytraceclient.go): a stamp before its Write
//     and after its read returns;
//   - an engine on the lab's host veth with the xnic guest of `xnic serve`
//     (engine.DefaultPipelineOptions: GRO on; netstack with TSO), built
//     as stack.Attach builds it but with both of the guest's handlers: its
//     Frames handler stamps the request's frame when the worker takes it
//     from the rx ring (before the pipeline), its Aggregates sink when the
//     pipeline hands it to netstack;
//   - the echo application on the guest's netstack: stamps when its Read
//     returns, before its Write and after;
//   - the stack's TxFunc, wrapped: stamps when netstack hands the answer to
//     the engine (Guest.Send) and when Send returns;
//   - the client's socket: its kernel's receive timestamp of the answer
//     (SO_TIMESTAMPNS), taken by the client's process.
//
// Each stamp is keyed by the request's sequence number, which the first 8
// bytes of its payload carry (message). Nothing in engine/ changes: the
// engine's own stages after Send (the worker's wake-up, the send path,
// the tx ring and its kick) fall in one stage with the veth, up to the
// client's kernel.

// Stamps of one traced request, in the order the request passes them.
const (
	stClientWrite    = iota // client: before Write
	stWorkerRx              // engine worker: the request's frame out of the rx ring
	stNetstackIn            // the pipeline delivers it to netstack
	stNetstackDone          // netstack's receive returns on the worker
	stServerRead            // the application's Read returns it
	stServerWrite           // the application calls Write with the answer
	stEngineSend            // netstack calls the engine's Guest.Send with it
	stEngineSent            // Guest.Send returns
	stServerWritten         // the application's Write returns
	stClientKernelRx        // the client's kernel takes the answer in (its socket's receive timestamp)
	stClientRead            // client: the answer's read returns
	numStamps
)

// stampNames are the stamps' names in reports.
var stampNames = [numStamps]string{
	"client write", "worker rx", "to netstack", "netstack returned", "server read", "server write",
	"engine send", "send returned", "write returned", "client kernel rx", "client read",
}

// traceStageDefs are the stages of the round trip, stamp to stamp: the
// chain from the client's write to its read (each stage's start is the
// previous one's end, so the stages add up to the round trip), then side
// measures that overlap the chain.
var traceStageDefs = []struct {
	from, to int
	what     string
	chain    bool
}{
	{stClientWrite, stWorkerRx, "client kernel tx, veth, XDP, AF_XDP rx ring, worker wake-up or poll", true},
	{stWorkerRx, stNetstackIn, "pipeline: parse, lookahead, context, GRO until flush", true},
	{stNetstackIn, stNetstackDone, "netstack rx on the worker (inline: IP, UDP/TCP, queue to the socket)", true},
	{stNetstackDone, stServerRead, "wake-up of the application's goroutine (and TCP's processor), Read's return", true},
	{stServerRead, stServerWrite, "the application", true},
	{stServerWrite, stEngineSend, "netstack tx (TCP: Nagle, segment building)", true},
	{stEngineSend, stClientKernelRx, "send queue, worker wake-up, send path, tx ring and kick, veth into the client's kernel", true},
	{stClientKernelRx, stClientRead, "the client's kernel receive (TCP/UDP), its wake-up and read", true},
	{stEngineSend, stEngineSent, "Guest.Send call: copy into the send queue, kick the worker", false},
	{stServerWrite, stServerWritten, "the application's Write call", false},
	{stClientWrite, stClientRead, "round trip", false},
}

// LatencyTraceOptions configure RunLatencyTrace.
type LatencyTraceOptions struct {
	// Requests are the traced requests of each kind per idle mode, after
	// Warmup untraced ones.
	Requests, Warmup int
	// Size is the bytes of each request and of its answer.
	Size int
	// Timeout bounds one request: a TCP request not answered by then
	// fails the run; a UDP one is counted lost.
	Timeout time.Duration
	// PollMs are the engine's idle modes to trace, in order
	// (engine.poll_ms: > 0 sleeps, 0 spins).
	PollMs []int
	// Port is the guest's echo port.
	Port int
	// LabSlot is the lock file held while the lab is up; "" holds none.
	LabSlot string
	// LabPrefix starts the lab's name.
	LabPrefix string
	// Xnic is the xnic binary that runs the client, as a process of its
	// own (`xnic bench latency --trace-client`).
	Xnic string
	// Procs is this process's GOMAXPROCS while the engine runs; 0: as
	// `xnic serve` decides it without engine.gomaxprocs (config.GoMaxProcs:
	// the GOMAXPROCS environment variable, else one P per worker).
	Procs int
	// Log receives a line per run; nil discards them.
	Log io.Writer
}

// DefaultLatencyTraceOptions: 1,000 traced requests of each kind after
// 200 of warm-up, 64 bytes, a 1 s timeout, engine.poll_ms 10 then 0, one P
// per worker. Xnic must still be set.
func DefaultLatencyTraceOptions() LatencyTraceOptions {
	return LatencyTraceOptions{
		Requests: 1000, Warmup: 200, Size: 64, Timeout: time.Second,
		PollMs: []int{config.DefaultPollMs, 0}, Port: DefaultLatencyOptions().Port,
		LabSlot: DefaultLabSlot, LabPrefix: "xt",
	}
}

// Validate checks the options and returns an *OptionError naming the first
// bad field.
func (o LatencyTraceOptions) Validate() error {
	if err := validateTraceRequests(o.Requests, o.Warmup, o.Size, o.Timeout); err != nil {
		return err
	}
	if len(o.PollMs) == 0 {
		return optErr("poll ms", "at least one idle mode is needed")
	}
	for _, p := range o.PollMs {
		if p < 0 || p > 1000 {
			return optErr("poll ms", "must be 0..1000, got %d", p)
		}
	}
	if o.Port < 1 || o.Port > 65535 {
		return optErr("port", "must be 1..65535, got %d", o.Port)
	}
	if o.LabPrefix == "" || len(o.LabPrefix) > 6 {
		return optErr("lab prefix", "must be 1..6 characters, got %q", o.LabPrefix)
	}
	if o.Xnic == "" {
		return optErr("xnic", "the xnic binary that runs the client is needed")
	}
	if o.Procs < 0 || o.Procs > config.MaxGoMaxProcs {
		return optErr("gomaxprocs", "must be 0 (as xnic serve) or 1..%d, got %d", config.MaxGoMaxProcs, o.Procs)
	}
	return nil
}

// validateTraceRequests checks what the trace's requests are, for
// LatencyTraceOptions and for the client process's TraceClientSpec alike.
func validateTraceRequests(requests, warmup, size int, timeout time.Duration) error {
	if requests < 1 || requests > MaxRequests {
		return optErr("requests", "must be 1..%d, got %d", MaxRequests, requests)
	}
	if warmup < 0 || warmup > MaxRequests {
		return optErr("warmup", "must be 0..%d, got %d", MaxRequests, warmup)
	}
	if size < MinLatencySize || size > MaxLatencySize {
		return optErr("size", "must be %d..%d bytes, got %d", MinLatencySize, MaxLatencySize, size)
	}
	if timeout < time.Millisecond {
		return optErr("timeout", "must be at least 1ms, got %s", timeout)
	}
	return nil
}

// traceRecorder holds the stamps of every request, by sequence number:
// numStamps per request, each written once (the first time: a
// retransmission does not move it), from any goroutine.
//
// Its clock is the wall clock (CLOCK_REALTIME), the one clock that this
// process, the client's process and the kernel's receive timestamps
// (SO_TIMESTAMPNS) share; a trace lasts seconds, over which an NTP slew
// moves it by microseconds at most, and all the stamps alike.
type traceRecorder struct {
	epoch  int64          // wall clock, ns since 1970
	stamps []atomic.Int64 // ns since epoch, +1 (0: not seen)
	size   int            // the payload length of a request
}

func newTraceRecorder(n, size int) *traceRecorder {
	return &traceRecorder{epoch: time.Now().UnixNano(), stamps: make([]atomic.Int64, n*numStamps), size: size}
}

// mark stamps seq's stage now, unless it has been stamped before.
func (r *traceRecorder) mark(seq uint64, stage int) {
	r.markWall(seq, stage, time.Now().UnixNano())
}

// markWall stamps seq's stage at wall-clock time wall (ns since 1970), as
// a socket's receive timestamp (SO_TIMESTAMPNS) or the client's process
// gives it, unless it has been stamped before.
func (r *traceRecorder) markWall(seq uint64, stage int, wall int64) {
	if seq >= uint64(len(r.stamps)/numStamps) {
		return
	}
	if d := wall - r.epoch; d >= 0 {
		r.stamps[int(seq)*numStamps+stage].CompareAndSwap(0, d+1)
	}
}

// wall is a stamp of seq's stage as wall-clock ns since 1970; 0: none.
func (r *traceRecorder) wall(seq, stage int) int64 {
	if v := r.stamps[seq*numStamps+stage].Load(); v != 0 {
		return r.epoch + v - 1
	}
	return 0
}

// markPayload stamps the request whose message starts payload, which is
// split into pieces; anything that is not a whole request's payload is
// ignored.
func (r *traceRecorder) markPayload(stage int, pieces ...[]byte) {
	total := 0
	var head [8]byte
	for _, p := range pieces {
		if total < 8 {
			copy(head[total:], p)
		}
		total += len(p)
	}
	if total != r.size {
		return
	}
	r.mark(binary.BigEndian.Uint64(head[:]), stage)
}

// samples are the stamps of requests from..to-1, as read after the run.
func (r *traceRecorder) samples(from, to int) []traceSample {
	out := make([]traceSample, 0, to-from)
	for seq := from; seq < to; seq++ {
		var s traceSample
		for i := range s {
			s[i] = r.stamps[seq*numStamps+i].Load()
		}
		out = append(out, s)
	}
	return out
}

// traceSample is one request's stamps (ns since the epoch, +1; 0: not
// seen).
type traceSample [numStamps]int64

// tracedGuest is the xnic guest of `xnic serve` with its netstack, attached
// with both handlers so that the worker's receive can be stamped.
type tracedGuest struct {
	st  *stack.Stack
	g   atomic.Pointer[engine.Guest]
	rec *traceRecorder
	// sendErrs counts the sends the engine refused.
	sendErrs atomic.Uint64
}

// frames is the guest's Frames handler, on the worker before the pipeline.
func (t *tracedGuest) frames(_ *engine.Guest, ep *engine.Endpoint, descs []umem.Desc) {
	u := ep.Sock.UMEM()
	for _, d := range descs {
		f := u.Bytes(d)
		var p flows.Packet
		flows.Parse(f, &p)
		if p.Reason == flows.ReasonOK && int(p.PayloadOff)+int(p.PayloadLen) <= len(f) {
			t.rec.markPayload(stWorkerRx, f[p.PayloadOff:int(p.PayloadOff)+int(p.PayloadLen)])
		}
	}
}

// aggregates is the guest's sink: it stamps and delivers to netstack as
// stack.Guest does (a frame passed through is parsed once more).
func (t *tracedGuest) aggregates(_ *engine.Endpoint, a *goffload.Aggregate) {
	if a.Flags&goffload.AggPassThrough != 0 {
		var payload []byte
		if p := &a.Pkt; p.Reason == flows.ReasonOK && int(p.PayloadOff)+int(p.PayloadLen) <= len(a.Head) {
			payload = a.Head[p.PayloadOff : int(p.PayloadOff)+int(p.PayloadLen)]
		}
		t.rec.markPayload(stNetstackIn, payload)
		t.st.DeliverFrame(a.Head, false) // copies the frame: payload stays as it was
		t.rec.markPayload(stNetstackDone, payload)
		return
	}
	t.rec.markPayload(stNetstackIn, a.Segs...)
	t.st.DeliverAggregate(a)
	t.rec.markPayload(stNetstackDone, a.Segs...)
}

// send is the stack's TxFunc: the engine's Send, stamped around.
func (t *tracedGuest) send(p *stack.TxPacket) bool {
	g := t.g.Load()
	if g == nil {
		return false
	}
	t.rec.markPayload(stEngineSend, p.Payload...)
	wr := engine.WorkRequest{Head: p.Head, Payload: p.Payload, GSOSize: p.GSOSize, CsumPartial: p.CsumPartial, FixedID: p.FixedID}
	err := g.Send(&wr)
	t.rec.markPayload(stEngineSent, p.Payload...)
	if err != nil {
		t.sendErrs.Add(1)
		return false
	}
	return true
}

// RunLatencyTrace builds a lab and, for each idle mode, runs an engine
// with a traced guest in this process and traces TCP ping-pong and UDP
// echo against it, from a client process in the lab's peer netns. It
// needs root.
func RunLatencyTrace(ctx context.Context, opts LatencyTraceOptions) (rep *LatencyTraceReport, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	log, release, err := prepare(ctx, "bench latency --trace", func() error { return nil }, opts.Log, opts.LabSlot)
	if err != nil {
		return nil, err
	}
	defer release()
	l, err := upLab("bench latency --trace", opts.LabPrefix, false)
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("bench latency --trace: tear down lab: %w", derr))
		}
	}()
	srv := &serverLab{lab: l, port: l.Ports[0]}
	rep = &LatencyTraceReport{Env: LatencyTraceEnv{
		Machine: ThisMachine(time.Now()), Lab: l.Name, Requests: opts.Requests, Warmup: opts.Warmup, Size: opts.Size,
		Client: "Go in the lab's peer netns, a process of its own (xnic bench latency --trace-client), " +
			"over the kernel's TCP (TCP_NODELAY) and UDP, one request in flight",
		Server: "an engine in this process on the host veth, queue 0, default pipeline (GRO on), with " + procsOf(opts.Procs) +
			"; the xnic guest " + TCPGuestIPv4.String() + " on its own netstack (TSO on) with a TCP and a UDP echo; nothing pinned",
		Stamps: stampNames[:],
	}}
	fmt.Fprintf(log, "lab %s: %s (host) <-> %s (netns %s)\n", l.Name, srv.port.Host, srv.port.Peer, l.Netns)
	for _, pollMs := range opts.PollMs {
		runs, err := traceMode(ctx, srv, opts, pollMs, log)
		rep.Runs = append(rep.Runs, runs...)
		if err != nil {
			return rep, fmt.Errorf("bench latency --trace: poll_ms %d: %w", pollMs, err)
		}
	}
	return rep, nil
}

// procsOf says what GOMAXPROCS the engine's process runs with.
func procsOf(procs int) string {
	if procs == 0 {
		return "GOMAXPROCS as xnic serve sets it (the environment's, else one P per worker)"
	}
	return fmt.Sprintf("GOMAXPROCS %d", procs)
}

// traceMode runs the engine with one idle mode and traces both kinds.
func traceMode(ctx context.Context, srv *serverLab, o LatencyTraceOptions, pollMs int, log io.Writer) (runs []TraceRun, err error) {
	if out, err := srv.lab.PeerCommand(ctx, "ip", "neigh", "flush", "dev", srv.port.Peer).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("flush the peer's neighbours: %w: %s", err, strings.TrimSpace(string(out)))
	}
	eo := engine.DefaultOptions()
	eo.Ifaces = []string{srv.port.Host}
	eo.NoCatchAll = true
	eo.PinDir = ""
	eo.PollMs = pollMs
	eo.UMEM.NumFrames = 8192
	po := engine.DefaultPipelineOptions()
	eo.Pipeline = &po
	eo.Logger = slog.New(slog.NewTextHandler(log, nil))
	e, err := engine.New(eo, nil)
	if err != nil {
		return nil, fmt.Errorf("start the engine: %w", err)
	}
	defer func() {
		if cerr := e.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close the engine: %w", cerr))
		}
	}()
	procs, _ := config.GoMaxProcs(o.Procs, len(e.Workers()), os.Getenv("GOMAXPROCS"))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	e.Start()
	n := o.Warmup + o.Requests
	for _, kind := range LatencyKinds() {
		tg := &tracedGuest{rec: newTraceRecorder(n, o.Size)}
		run, err := traceKind(ctx, srv, e, tg, o, kind)
		run.PollMs = pollMs
		if err == nil {
			fmt.Fprintf(log, "poll_ms %d %s: %d of %d requests traced whole, round trip p50 %s µs, %.2f worker sleeps per request\n",
				pollMs, kind, run.Complete, run.Requests, us(run.Total.P50Us), run.SleepsPerRequest)
		}
		runs = append(runs, run)
		if err != nil {
			return runs, fmt.Errorf("%s: %w", kind, err)
		}
	}
	return runs, nil
}

// traceKind attaches a traced guest, serves one kind of echo on it, runs
// the client and summarizes the stamps.
func traceKind(ctx context.Context, srv *serverLab, e *engine.Engine, tg *tracedGuest, o LatencyTraceOptions, kind string) (run TraceRun, err error) {
	run = TraceRun{Kind: kind}
	so := stack.DefaultOptions()
	so.MAC, so.Addrs, so.Name = TCPGuestMAC, nil, "trace"
	spec := engine.GuestSpec{Name: "trace", Port: srv.port.Host, MAC: TCPGuestMAC, Addrs: []netip.Prefix{TCPGuestIPv4}}
	so.Addrs = spec.Addrs
	spec.Rules = stack.OwnRules(spec.Addrs)
	st, err := stack.New(so, tg.send)
	if err != nil {
		return run, fmt.Errorf("start the guest's stack: %w", err)
	}
	tg.st = st
	g, err := e.AttachGuestWith(spec, engine.GuestOptions{Frames: tg.frames, Aggregates: tg.aggregates})
	if err != nil {
		st.Close()
		return run, fmt.Errorf("attach the guest: %w", err)
	}
	tg.g.Store(g)
	defer func() {
		cerr := st.Close()
		tg.g.Store(nil)
		if derr := e.DetachGuest(g); derr != nil {
			cerr = errors.Join(cerr, derr)
		}
		if cerr != nil {
			err = errors.Join(err, fmt.Errorf("detach the guest: %w", cerr))
		}
	}()
	addr := guestTarget(o.Port).String()
	stopServer, err := traceServer(st, kind, addr, o.Size, tg.rec)
	if err != nil {
		return run, err
	}
	defer stopServer()
	cs := TraceClientSpec{Kind: kind, Addr: addr, Size: o.Size, Warmup: o.Warmup, Requests: o.Requests, Timeout: o.Timeout}
	sleeps0 := e.Workers()[0].Stats().Sleeps
	lost, err := runTraceClient(ctx, srv, o.Xnic, cs, tg.rec)
	run.Procs = runtime.GOMAXPROCS(0) // as the run had it
	sleeps := e.Workers()[0].Stats().Sleeps - sleeps0
	run.Requests, run.Lost = o.Requests, lost
	run.SleepsPerRequest = float64(sleeps) / float64(o.Requests+o.Warmup)
	run.SendErrors = tg.sendErrs.Load()
	run.Stages, run.Total, run.Complete = traceStages(tg.rec.samples(o.Warmup, o.Warmup+o.Requests))
	return run, err
}

// traceServer serves kind's echo on the stack at addr, stamping the
// application's Read and Write; stop ends it.
func traceServer(st *stack.Stack, kind, addr string, size int, rec *traceRecorder) (stop func(), err error) {
	var wg sync.WaitGroup
	buf := make([]byte, size+1)
	seqOf := func(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
	if kind == KindUDP {
		pc, err := st.ListenPacket("udp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen udp %s on the guest: %w", addr, err)
		}
		wg.Go(func() {
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if n == size {
					rec.mark(seqOf(buf), stServerRead)
					rec.mark(seqOf(buf), stServerWrite)
				}
				_, err = pc.WriteTo(buf[:n], from)
				if n == size {
					rec.mark(seqOf(buf), stServerWritten)
				}
				if err != nil {
					return
				}
			}
		})
		return func() { pc.Close(); wg.Wait() }, nil
	}
	ln, err := st.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen tcp %s on the guest: %w", addr, err)
	}
	var mu sync.Mutex
	var conn net.Conn
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		conn = c
		mu.Unlock()
		for {
			if _, err := io.ReadFull(c, buf[:size]); err != nil {
				return
			}
			seq := seqOf(buf)
			rec.mark(seq, stServerRead)
			rec.mark(seq, stServerWrite)
			_, err := c.Write(buf[:size])
			rec.mark(seq, stServerWritten)
			if err != nil {
				return
			}
		}
	})
	return func() {
		ln.Close()
		mu.Lock()
		if conn != nil {
			conn.Close()
		}
		mu.Unlock()
		wg.Wait()
	}, nil
}

// traced runs kind's client with stamps before each write and after each
// answer; it returns the UDP requests lost.
func (c *pingClient) traced(ctx context.Context, kind string, rec *traceRecorder) (lost int, err error) {
	network := "tcp"
	if kind == KindUDP {
		network = "udp"
	}
	conn, err := c.dial(ctx, network, c.addr)
	if err != nil {
		return 0, fmt.Errorf("dial %s %s: %w", network, c.addr, err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		if err := tc.SetNoDelay(true); err != nil {
			return 0, fmt.Errorf("set TCP_NODELAY: %w", err)
		}
	}
	rd, err := newStampedReader(conn)
	if err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	req, resp := make([]byte, c.size), make([]byte, c.size+1)
	for i := range c.warmup + c.requests {
		seq := uint64(i)
		message(req, seq)
		if err := conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
			return lost, err
		}
		rec.mark(seq, stClientWrite)
		if _, err := conn.Write(req); err != nil {
			return lost, fmt.Errorf("request %d: %w", i, err)
		}
		if kind == KindTCP {
			if _, err := io.ReadFull(rd, resp[:c.size]); err != nil {
				return lost, fmt.Errorf("request %d: %w", i, err)
			}
			rec.mark(seq, stClientRead)
			rec.markWall(seq, stClientKernelRx, rd.wall)
			if !bytes.Equal(req, resp[:c.size]) {
				return lost, fmt.Errorf("tcp request %d: the answer is not the request", i)
			}
			continue
		}
		for {
			n, err := rd.Read(resp)
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				lost++
				break
			}
			if err != nil {
				return lost, fmt.Errorf("request %d: %w", i, err)
			}
			if n >= 8 && binary.BigEndian.Uint64(resp) < seq {
				continue // a late echo
			}
			rec.mark(seq, stClientRead)
			rec.markWall(seq, stClientKernelRx, rd.wall)
			if n != c.size || !bytes.Equal(req, resp[:n]) {
				return lost, fmt.Errorf("udp request %d: the answer is not the request", i)
			}
			break
		}
	}
	return lost, ctx.Err()
}

// stampedReader reads a socket with recvmsg(2) and keeps the kernel's
// receive timestamp (SO_TIMESTAMPNS) of what it read last: for TCP, of the
// last segment the read took data from.
type stampedReader struct {
	rc   syscall.RawConn
	oob  []byte
	wall int64 // the last read's receive timestamp, ns since 1970; 0: none
}

func newStampedReader(conn net.Conn) (*stampedReader, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("receive timestamps: %T has no file descriptor", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("receive timestamps: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return nil, fmt.Errorf("receive timestamps: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("receive timestamps: set SO_TIMESTAMPNS: %w", serr)
	}
	return &stampedReader{rc: rc, oob: make([]byte, unix.CmsgSpace(16))}, nil
}

// Read reads into b with one recvmsg, waiting as conn's deadline allows;
// io.EOF when the peer closed. It is an io.Reader, so io.ReadFull reads a
// whole TCP answer, and wall is then the timestamp of its last piece.
func (r *stampedReader) Read(b []byte) (int, error) {
	var n, oobn int
	var rerr error
	err := r.rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), b, r.oob, 0)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, err
	}
	if n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	r.wall = 0
	if msgs, perr := unix.ParseSocketControlMessage(r.oob[:oobn]); perr == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
				// struct timespec: seconds and nanoseconds, 64 bits each.
				sec, nsec := int64(binary.NativeEndian.Uint64(m.Data)), int64(binary.NativeEndian.Uint64(m.Data[8:]))
				r.wall = sec*1e9 + nsec
			}
		}
	}
	return n, nil
}
