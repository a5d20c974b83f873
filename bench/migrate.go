package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/config"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/stack"
)

// Migration benchmark. RunMigrate builds a two-port lab whose peer reaches
// both host ports through one bridge (a server with two NIC ports into one
// switch), runs one engine over both ports in this process, and attaches a
// guest with its own gVisor netstack, active on port 0 with port 1 as its
// standby and failover on link down. The guest streams bytes to a reader
// in the peer netns over TCP.
//
// First the download's goodput on each port alone, over one connection:
// MigrateOptions.Goodput on port 0, then, after one unmeasured move and a
// settle, on port 1. Then MigrateOptions.Reps repetitions of three events,
// each on a fresh connection (so that the loss recovery after one event
// does not stall the next), which streams for MigrateOptions.Settle to
// warm up and Settle more before the event (its goodput then is the
// event's "before"), and Settle after the event's end (its "after"):
//
//   - steady: no event at all, the control: what the peer sees of a
//     stream nobody touches, on this machine, over the same window;
//   - command: MigrateGuest to the guest's other port;
//   - link-down: the guest's active host port set down, as a pulled cable;
//     the engine's link watch moves the guest to its standby port; the
//     port is set up again after the stall window, and the event's
//     counters run until upWatch later.
//
// Command and link-down alternate their order between repetitions, so each
// moves the guest from port 0 to port 1 in one repetition and back in the
// next. An event's stall is the longest interval between two reads that
// brought payload to the peer, among the intervals that overlap the window
// from the event's start to Settle after its end (the move returned, or
// the engine recorded the failover). If the stream has not resumed by
// then, the window waits for its next payload, up to
// MigrateOptions.ResumeTimeout.

// Event kinds of the migration benchmark, in report order.
const (
	EventSteady   = "steady"
	EventCommand  = "command"
	EventLinkDown = "link-down"
)

// MigrateEvents returns the event kinds in report order.
func MigrateEvents() []string { return []string{EventSteady, EventCommand, EventLinkDown} }

// Limits of MigrateOptions.
const (
	MaxReps        = 1000
	MinSettle      = 100 * time.Millisecond
	MinGoodputTime = 200 * time.Millisecond
)

// The migrating guest: its MAC and its host index in the bridged subnet
// (198.18.0.10), and the first stream's TCP port; each event's stream
// takes the next, clear of the last one's TIME_WAIT.
var migrateGuestMAC = net.HardwareAddr{0x02, 0x78, 0x6e, 0x62, 0x00, 0x20}

const (
	migrateGuestHost  = 10
	migrateStreamPort = 5001
)

// Deep rings (ethtool -G in NIC terms), as in the migration tests: on a
// 2-core machine the worker shares its cores with the guest's stack and
// the peer's TCP, and a ring must not overflow while it waits for a core.
const (
	migrateUMEMFrames = 32768
	migrateRingSize   = 8192
)

// MigrateOptions configure RunMigrate.
type MigrateOptions struct {
	// Reps is the number of repetitions of each event.
	Reps int
	// Settle is the quiet stream after each event (its window's tail) and
	// before the next one.
	Settle time.Duration
	// Goodput is the window of the goodput measurement on each port.
	Goodput time.Duration
	// ResumeTimeout bounds how long an event's window waits for the
	// stream to resume.
	ResumeTimeout time.Duration
	// PollMs is the engine's engine.Options.PollMs: how long an idle
	// worker sleeps in poll(2); 0 spins.
	PollMs int

	// LabSlot is the lock file held while the lab is up; "" holds none.
	LabSlot string
	// LabPrefix starts the lab's name, followed by four hex digits.
	LabPrefix string
	// Log receives a line per measurement and the engine's events; nil
	// discards them.
	Log io.Writer
}

// DefaultMigrateOptions: 10 repetitions, 0.5 s of settle, 3 s of goodput
// per port, 5 s for a stream to resume, and idle workers that sleep as in
// a config file's default (config.DefaultPollMs).
func DefaultMigrateOptions() MigrateOptions {
	return MigrateOptions{
		Reps:          10,
		Settle:        500 * time.Millisecond,
		Goodput:       3 * time.Second,
		ResumeTimeout: 5 * time.Second,
		PollMs:        config.DefaultPollMs,
		LabSlot:       DefaultLabSlot,
		LabPrefix:     "xm",
	}
}

// Validate checks the options and returns an *OptionError naming the first
// bad field.
func (o MigrateOptions) Validate() error {
	if o.Reps < 1 || o.Reps > MaxReps {
		return optErr("reps", "must be 1..%d, got %d", MaxReps, o.Reps)
	}
	if o.Settle < MinSettle {
		return optErr("settle", "must be at least %s, got %s", MinSettle, o.Settle)
	}
	if o.Goodput < MinGoodputTime {
		return optErr("goodput", "must be at least %s, got %s", MinGoodputTime, o.Goodput)
	}
	if o.ResumeTimeout < o.Settle {
		return optErr("resume timeout", "must be at least the settle time %s, got %s", o.Settle, o.ResumeTimeout)
	}
	if o.PollMs < 0 || o.PollMs > maxPollMs {
		return optErr("poll ms", "must be 0..%d, got %d", maxPollMs, o.PollMs)
	}
	if o.LabPrefix == "" || len(o.LabPrefix) > 6 {
		return optErr("lab prefix", "must be 1..6 characters, got %q", o.LabPrefix)
	}
	return nil
}

// upWatch is how long a link-down event keeps counting after the port is
// up again.
const upWatch = 250 * time.Millisecond

// maxPollMs is a config file's limit of engine.poll_ms.
const maxPollMs = 1000

// migrateBencher is one RunMigrate: the lab, the engine, the guest and its
// stream.
type migrateBencher struct {
	opts  MigrateOptions
	lab   *lab.Lab
	eng   *engine.Engine
	guest *stack.Guest
	log   io.Writer
	port  int // the next stream's TCP port
}

// RunMigrate builds the bridged two-port lab, runs the engine and the
// guest, measures goodput on each port and every event MigrateOptions.Reps
// times, and tears everything down. It needs root. A failed event does not
// stop the run unless the stream is gone; RunMigrate then returns the
// report with an error matching ErrFailed. On cancellation it returns the
// report so far with ctx's error.
func RunMigrate(ctx context.Context, opts MigrateOptions) (rep *MigrateReport, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	log, release, err := prepare(ctx, "bench migrate", func() error { return nil }, opts.Log, opts.LabSlot)
	if err != nil {
		return nil, err
	}
	defer release()
	l, err := upBridgedLab(opts.LabPrefix)
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("bench migrate: tear down lab: %w", derr))
		}
	}()
	b := &migrateBencher{opts: opts, lab: l, log: log, port: migrateStreamPort}
	if err := b.start(); err != nil {
		return nil, fmt.Errorf("bench migrate: %w", err)
	}
	defer func() {
		if cerr := b.stop(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("bench migrate: %w", cerr))
		}
	}()
	rep = &MigrateReport{Env: b.env()}
	start := sampleNoise()
	defer func() {
		rep.Env.Noise = noiseBetween(start, sampleNoise())
		rep.Env.LoadAvgEnd = ThisMachine(time.Now()).LoadAvg
		rep.summarize()
	}()
	fmt.Fprintf(log, "lab %s: %s and %s (host) into the bridge %s (netns %s); guest %s streams to the peer\n",
		l.Name, l.Ports[0].Host, l.Ports[1].Host, l.Bridge.Name, l.Netns, b.guestAddr())

	if err := b.measureGoodput(ctx, rep); err != nil {
		return rep, fmt.Errorf("bench migrate: %w", err)
	}
	failed := 0
	for r := 1; r <= opts.Reps; r++ {
		kinds := []string{EventSteady, EventCommand, EventLinkDown}
		if r%2 == 0 {
			kinds = []string{EventSteady, EventLinkDown, EventCommand}
		}
		for _, kind := range kinds {
			ev := b.event(ctx, r, kind)
			if ctx.Err() != nil {
				return rep, fmt.Errorf("bench migrate: rep %d, %s: %w", r, kind, ctx.Err())
			}
			rep.Events = append(rep.Events, ev)
			b.logEvent(ev)
			if ev.Err != "" {
				failed++
			}
		}
	}
	if failed > 0 {
		return rep, fmt.Errorf("bench migrate: %d of %d events: %w", failed, len(rep.Events), ErrFailed)
	}
	return rep, nil
}

// upBridgedLab builds a two-port lab whose peer ends are under one bridge,
// IPv4 only (no router or neighbour solicitations in the counts).
func upBridgedLab(prefix string) (*lab.Lab, error) {
	lo := lab.DefaultOptions()
	lo.Ports, lo.PeerBridge, lo.IPv6 = 2, true, false
	return upLabWith("bench migrate", prefix, lo)
}

// start runs one engine over both ports and attaches the guest on port 0.
func (b *migrateBencher) start() error {
	o := engine.DefaultOptions()
	o.Ifaces = []string{b.lab.Ports[0].Host, b.lab.Ports[1].Host}
	o.NoCatchAll = true
	o.PinDir = ""
	o.PollMs = b.opts.PollMs
	o.UMEM.NumFrames = migrateUMEMFrames
	o.Socket.RxSize, o.Socket.FillSize = migrateRingSize, migrateRingSize
	po := engine.DefaultPipelineOptions()
	o.Pipeline = &po
	o.Logger = slog.New(slog.NewTextHandler(b.log, nil))
	e, err := engine.New(o, nil)
	if err != nil {
		return fmt.Errorf("start the engine: %w", err)
	}
	e.Start()
	p := b.lab.Ports[0]
	spec := engine.GuestSpec{
		Name: "mover", Port: p.Host, Standby: []string{b.lab.Ports[1].Host},
		Failover: engine.FailoverPolicy{LinkDown: true},
		MAC:      migrateGuestMAC,
		Addrs:    []netip.Prefix{netip.PrefixFrom(p.AddrIPv4(migrateGuestHost), lab.PrefixLenIPv4)},
	}
	g, err := stack.Attach(e, spec, stack.DefaultOptions())
	if err != nil {
		return errors.Join(fmt.Errorf("attach the guest: %w", err), e.Close())
	}
	b.eng, b.guest = e, g
	return nil
}

// stop detaches the guest and closes the engine, whose frame audit fails
// Close if a frame went missing.
func (b *migrateBencher) stop() error {
	var errs []error
	if err := b.guest.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close the guest: %w", err))
	}
	if err := b.eng.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close the engine: %w", err))
	}
	return errors.Join(errs...)
}

// guestAddr is the guest's address.
func (b *migrateBencher) guestAddr() netip.Addr { return b.lab.Ports[0].AddrIPv4(migrateGuestHost) }

// stream starts a download on the next TCP port.
func (b *migrateBencher) stream(ctx context.Context) (*download, error) {
	addr := net.JoinHostPort(b.guestAddr().String(), strconv.Itoa(b.port))
	b.port++
	return startDownload(ctx, b.lab, b.guest, addr)
}

// active is the index of the guest's active port.
func (b *migrateBencher) active() int {
	if b.guest.EngineGuest().Port().Name == b.lab.Ports[1].Host {
		return 1
	}
	return 0
}

// measureGoodput measures the stream on port 0 alone, moves the guest to
// port 1 and, once the stream has settled, measures it there.
func (b *migrateBencher) measureGoodput(ctx context.Context, rep *MigrateReport) error {
	dl, err := b.stream(ctx)
	if err != nil {
		return err
	}
	defer dl.close()
	for i := range 2 {
		if i == 1 {
			if _, err := b.eng.MigrateGuest("mover", b.lab.Ports[1].Host); err != nil {
				return fmt.Errorf("move the guest to port 1 for its goodput: %w", err)
			}
		}
		// Past the slow start, or past the move.
		if err := sleep(ctx, b.opts.Settle, nil); err != nil {
			return err
		}
		t0, n0 := time.Now(), dl.read.Load()
		if err := sleep(ctx, b.opts.Goodput, nil); err != nil {
			return err
		}
		secs, n := time.Since(t0).Seconds(), dl.read.Load()-n0
		dl.take()
		if err := dl.failed(); err != nil {
			return fmt.Errorf("goodput on port %d: %w", i, err)
		}
		pg := PortGoodput{Port: b.lab.Ports[i].Host, Bytes: n, Seconds: secs, BitsPerSec: float64(n) * 8 / secs}
		rep.Goodput = append(rep.Goodput, pg)
		fmt.Fprintf(b.log, "goodput on %s alone: %s Gbit/s (%d MB in %.2f s)\n", pg.Port, gbps(pg.BitsPerSec), n>>20, secs)
	}
	return nil
}

// counters are the engine's and the guest's counters an event is charged
// with.
type counters struct {
	xsk, unmatched, noSocket, malformed uint64
	txRefused, txDropped, vethTxDropped uint64
	resets, retransmits, timeouts       uint64
}

func (b *migrateBencher) counters() (counters, error) {
	st, err := b.eng.Stats()
	if err != nil {
		return counters{}, fmt.Errorf("engine stats: %w", err)
	}
	tcp := b.guest.Netstack().Stats().TCP
	c := counters{
		xsk:       st.XSK.RxDropped + st.XSK.RxRingFull,
		unmatched: st.Steer.PassUnmatched, noSocket: st.Steer.PassNoSocket, malformed: st.Steer.DroppedMalformed,
		txRefused:   b.guest.TxRefused(),
		resets:      tcp.ResetsSent.Value() + tcp.ResetsReceived.Value(),
		retransmits: tcp.Retransmits.Value(), timeouts: tcp.Timeouts.Value(),
	}
	for _, w := range b.eng.Workers() {
		c.txDropped += w.Tx.Dropped.Load()
	}
	for _, p := range b.lab.Ports {
		n, err := readCounter(filepath.Join("/sys/class/net", p.Host, "statistics", "tx_dropped"))
		if err != nil {
			return counters{}, err
		}
		c.vethTxDropped += n
	}
	return c, nil
}

// event runs one event of kind and measures it. A failure is in the
// result's Err.
func (b *migrateBencher) event(ctx context.Context, rep int, kind string) MigrateEvent {
	ev := MigrateEvent{Rep: rep, Kind: kind}
	dl, err := b.stream(ctx)
	if err != nil {
		ev.Err = err.Error()
		return ev
	}
	down, err := b.runEvent(ctx, dl, &ev)
	if down >= 0 {
		// The event failed with the cable out: it goes back in.
		if uerr := b.lab.SetLinkUp(down, lab.HostEnd); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}
	if serr := dl.failed(); serr != nil && err == nil {
		err = fmt.Errorf("the stream is gone: %w", serr)
	}
	// Closing the stream resets it (the peer closes with data unread):
	// after this event's counters, and done before the next event's.
	dl.close()
	if err != nil {
		ev.Err = err.Error()
	}
	return ev
}

// runEvent runs and measures ev on the fresh stream dl; down is the port
// it left down, or -1. A link-down event sets the port up again after its
// stall window and charges what is lost until upWatch later to itself:
// the old port's frames that leave when it comes back belong to the
// failover.
func (b *migrateBencher) runEvent(ctx context.Context, dl *download, ev *MigrateEvent) (down int, err error) {
	down = -1
	g := b.guest.EngineGuest()
	from := b.active()
	ev.From = b.lab.Ports[from].Host
	// Past the slow start, then the goodput before the event.
	if err := sleep(ctx, b.opts.Settle, nil); err != nil {
		return down, err
	}
	tb, nb := time.Now(), dl.read.Load()
	if err := sleep(ctx, b.opts.Settle, nil); err != nil {
		return down, err
	}
	// The stream must be flowing when the event starts.
	if err := dl.waitArrivalAfter(ctx, time.Now().Add(-50*time.Millisecond).UnixNano(), b.opts.ResumeTimeout); err != nil {
		return down, fmt.Errorf("before the event: %w", err)
	}
	before, err := b.counters()
	if err != nil {
		return down, err
	}
	count := g.Migrations().Count
	dl.take()
	t0, n0 := time.Now(), dl.read.Load()
	ev.BeforeBitsPerSec = float64(n0-nb) * 8 / t0.Sub(tb).Seconds()
	var end time.Time
	switch ev.Kind {
	case EventSteady:
		end = t0
	case EventCommand:
		if _, err := b.eng.MigrateGuest("mover", b.lab.Ports[1-from].Host); err != nil {
			return down, err
		}
		end = time.Now()
	case EventLinkDown:
		// SetLinkDown may fail after the link went down: restore it
		// anyway.
		down = from
		if err := b.lab.SetLinkDown(from, lab.HostEnd); err != nil {
			return down, err
		}
		for deadline := time.Now().Add(b.opts.ResumeTimeout); g.Migrations().Count == count; {
			if time.Now().After(deadline) {
				return down, fmt.Errorf("no failover %s after %s went down", b.opts.ResumeTimeout, ev.From)
			}
			if err := sleep(ctx, 200*time.Microsecond, nil); err != nil {
				return down, err
			}
		}
		end = time.Now()
	}
	nEnd := dl.read.Load()
	tEnd := end.Add(b.opts.Settle)
	if err := sleep(ctx, time.Until(tEnd), nil); err != nil {
		return down, err
	}
	ev.AfterBitsPerSec = float64(dl.read.Load()-nEnd) * 8 / time.Since(end).Seconds()
	if err := dl.waitArrivalAfter(ctx, tEnd.UnixNano(), b.opts.ResumeTimeout); err != nil {
		return down, fmt.Errorf("after the event: %w", err)
	}
	arrivals := dl.take()
	gap, at, ok := longestGap(arrivals, t0.UnixNano(), tEnd.UnixNano())
	if !ok {
		return down, errors.New("no payload around the event")
	}
	if down >= 0 {
		if err := b.lab.SetLinkUp(down, lab.HostEnd); err != nil {
			return down, err
		}
		down = -1
		if err := sleep(ctx, upWatch, nil); err != nil {
			return down, err
		}
	}
	after, err := b.counters()
	if err != nil {
		return down, err
	}
	ev.StallMs, ev.StallStartMs = ms(gap), ms(time.Duration(at-t0.UnixNano()))
	ev.XSKLost = after.xsk - before.xsk
	ev.Unmatched = after.unmatched - before.unmatched
	ev.NoSocket = after.noSocket - before.noSocket
	ev.Malformed = after.malformed - before.malformed
	ev.TxRefused = after.txRefused - before.txRefused
	ev.TxDropped = after.txDropped - before.txDropped
	ev.VethTxDropped = after.vethTxDropped - before.vethTxDropped
	ev.Resets = after.resets - before.resets
	ev.Retransmits = after.retransmits - before.retransmits
	ev.Timeouts = after.timeouts - before.timeouts
	ev.To = b.guest.EngineGuest().Port().Name
	if ev.Kind == EventSteady {
		return down, nil
	}
	mig := g.Migrations()
	if mig.Count != count+1 || mig.Last == nil {
		return down, fmt.Errorf("%d migrations during the event, want 1", mig.Count-count)
	}
	m := mig.Last
	ev.Reason = m.Reason
	ev.EngineTookMs = ms(m.Took)
	ev.EngineStartMs = ms(m.At.Sub(t0))
	if mig.GapSeen {
		v := ms(mig.LastGap)
		ev.EngineGapMs = &v
	}
	if ev.To == ev.From {
		return down, fmt.Errorf("the guest is still on %s", ev.From)
	}
	return down, nil
}

// readCounter reads a counter file of sysfs.
func readCounter(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read counter: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read counter %s: %w", path, err)
	}
	return n, nil
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// env describes the machine and this run's set-up.
func (b *migrateBencher) env() MigrateEnv {
	return MigrateEnv{
		Machine: ThisMachine(time.Now()),
		Lab:     b.lab.Name, Ports: []string{b.lab.Ports[0].Host, b.lab.Ports[1].Host},
		Reps: b.opts.Reps, SettleSec: b.opts.Settle.Seconds(), GoodputSec: b.opts.Goodput.Seconds(),
		Setup: fmt.Sprintf("one engine in this process over both host ports (one worker, queue 0, %d UMEM frames, rx and fill rings of %d, "+
			"idle sleep in poll(2) up to %d ms), "+
			"a guest with its own gVisor netstack at %s, active on %s with %s as standby and failover on link down; "+
			"the peer's kernel TCP reads in the lab's netns behind a Linux bridge over both peer ends (MTU 1500, peer offloads off)",
			migrateUMEMFrames, migrateRingSize, b.opts.PollMs, b.lab.Ports[0].AddrIPv4(migrateGuestHost), b.lab.Ports[0].Host, b.lab.Ports[1].Host),
		Stream: fmt.Sprintf("a fresh TCP connection for each event (one for the goodput): the guest writes 128 KB chunks without end; "+
			"the peer reads into a 128 KB buffer and notes the time of every read that brought payload; "+
			"%gs of warm-up, %gs before the event (goodput before), the event, %gs after its end (goodput after)",
			b.opts.Settle.Seconds(), b.opts.Settle.Seconds(), b.opts.Settle.Seconds()),
		Stall: "the longest interval between two reads with payload at the peer, among those overlapping the window " +
			"from the event's start to the settle time after its end (the move returned, or the engine recorded the failover)",
	}
}

func (b *migrateBencher) logEvent(ev MigrateEvent) {
	line := fmt.Sprintf("rep %d/%d %-9s", ev.Rep, b.opts.Reps, ev.Kind)
	if ev.Err != "" {
		fmt.Fprintf(b.log, "%s FAILED: %s\n", line, ev.Err)
		return
	}
	move := ""
	if ev.Kind != EventSteady {
		gap := "-"
		if ev.EngineGapMs != nil {
			gap = fmt.Sprintf("%.1f ms", *ev.EngineGapMs)
		}
		move = fmt.Sprintf(" %s -> %s, engine took %.1f ms, gap %s;", ev.From, ev.To, ev.EngineTookMs, gap)
	}
	fmt.Fprintf(b.log, "%s%s peer stall %.1f ms; %s Gbit/s before, %s after; lost %d, resets %d, retransmits %d, RTOs %d\n",
		line, move, ev.StallMs, gbps(ev.BeforeBitsPerSec), gbps(ev.AfterBitsPerSec), ev.Lost(), ev.Resets, ev.Retransmits, ev.Timeouts)
}
