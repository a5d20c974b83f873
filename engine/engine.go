package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/internal/portlock"
	"github.com/xnic/xnic/internal/safedir"
	"github.com/xnic/xnic/umem"
)

// Options configure an Engine.
type Options struct {
	// Ifaces are the ports, by interface name. At least one.
	Ifaces []string
	// Queues are the rx queue ids to serve on every port. One worker, with
	// its own UMEM, serves each queue id across all ports. Default [0].
	Queues []int
	// UMEM configures each worker's UMEM.
	UMEM umem.Options
	// Socket configures every XSK socket.
	Socket umem.SocketOptions
	// Attach is the XDP attach mode for the steering program.
	Attach bpf.AttachMode
	// Steer sizes every port's steering program. Its Queues, Guests and
	// Classes are also the engine's limits: queue ids are below
	// Steer.Queues, guest ids below Steer.Guests (0 is the raw socket's),
	// class ids below Steer.Classes. Its PinDir is set per port from PinDir.
	Steer bpf.SteerOptions
	// Batch is the ring batch size.
	Batch int
	// PollMs > 0 lets idle workers sleep in poll(2); 0 spins.
	PollMs int
	// PinDir pins each port's maps under PinDir/<iface>/ while the engine
	// runs, for bpftool, `xnic maps` and `xnic stats`. "" pins nothing.
	PinDir string
	// NoCatchAll leaves out the catch-all TCP/UDP rules that send all
	// unclaimed traffic to the raw socket: with guests, unclaimed traffic
	// belongs to the host kernel.
	NoCatchAll bool
	// KeepPins leaves the maps pinned at Close, so the next engine on the
	// same port reuses its rules and flows (`--pin`). Rules and flows of
	// guests are dropped when the next engine starts (its guests attach
	// anew); those of the raw socket (guest 0) are kept.
	KeepPins bool
	// ReusePins lets New take over the pins of an engine that died (was
	// killed, crashed) without stopping cleanly: it removes them, or with
	// KeepPins reuses them without the dead engine's guests, and logs it.
	// Without it New refuses such a port with a *StalePinsError (errors.Is
	// ErrStalePins) and leaves the pins for `xnic clean`. Pins an engine
	// left on purpose (KeepPins, a clean stop) are taken either way.
	ReusePins bool
	// LockDir holds the port locks (owner.go); "" is DefaultLockDir.
	LockDir string
	// Pipeline, when not nil, makes every worker run the receive pipeline
	// (parse, lookahead, connection contexts, GRO) on every batch and
	// deliver the result to the guests' sinks and to RawSink.
	Pipeline *PipelineOptions
	// RawSink takes the pipeline's output for the raw (guestless) sockets.
	RawSink Sink
	// Classes configure the traffic classes (classes.go). Without them
	// every guest has class 0 only, unshaped.
	Classes []ClassSpec
	// Logger gets the engine's events: migrations, links going down or
	// away. nil: slog.Default().
	Logger *slog.Logger
}

// loadSteer loads a port's steering program; tests make it fail.
var loadSteer = bpf.LoadSteer

// DefaultPinDir is where the engine pins its maps: one directory per port.
const DefaultPinDir = "/sys/fs/bpf/xnic"

// DefaultOptions: queue 0, 4096 frames of 2048 bytes per worker, the default
// socket rings, native-or-generic attach, batch 64, busy polling.
func DefaultOptions() Options {
	return Options{
		Queues: []int{0},
		UMEM:   umem.DefaultOptions(),
		Socket: umem.DefaultSocketOptions(),
		Steer:  bpf.DefaultSteerOptions(),
		Batch:  DefaultBatch,
		PinDir: DefaultPinDir,
	}
}

// Validate checks the options and names the field at fault.
func (o Options) Validate() error {
	if len(o.Ifaces) == 0 {
		return errors.New("engine: ifaces: at least one interface is needed")
	}
	if len(o.Queues) == 0 {
		return errors.New("engine: queues: at least one queue is needed")
	}
	if err := o.Steer.Validate(); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if o.Steer.Guests < 2 {
		return fmt.Errorf("engine: steer guests: must be at least 2 (id 0 is the raw socket's), got %d", o.Steer.Guests)
	}
	seen := map[int]bool{}
	for _, q := range o.Queues {
		if q < 0 || q >= o.Steer.Queues {
			return fmt.Errorf("engine: queues: queue %d outside 0..%d (steer queues)", q, o.Steer.Queues-1)
		}
		if seen[q] {
			return fmt.Errorf("engine: queues: queue %d listed twice", q)
		}
		seen[q] = true
	}
	if o.Batch < 1 || o.Batch > 4096 {
		return fmt.Errorf("engine: batch: must be 1..4096, got %d", o.Batch)
	}
	if err := o.UMEM.Validate(); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if o.Pipeline != nil {
		if err := o.Pipeline.Validate(); err != nil {
			return err
		}
	}
	return o.validateClasses()
}

// Port is one interface served by the engine, with its steering program.
type Port struct {
	Name    string
	Ifindex int
	MTU     int // the interface's MTU: sends are segmented to fit it
	steer   *bpf.Steer
	attach  *bpf.Attachment
	// gone is set once the interface has been deleted: its sockets are
	// dead, and the workers stop polling them.
	gone atomic.Bool
	up   atomic.Bool // last link state seen: up with a carrier

	// What New put in the port's maps, so a failing New takes out that
	// and nothing else: the catch-all rules it added (not those it found
	// pinned) and the queues whose slot 0 it registered.
	addedRules []bpf.RuleID
	registered []int
}

// Steer is the port's steering program, for its maps and counters.
func (p *Port) Steer() *bpf.Steer { return p.steer }

// AttachMode is the XDP mode the steering program runs in.
func (p *Port) AttachMode() bpf.AttachMode { return p.attach.Mode() }

// Engine is the running data path: ports, and one worker per queue id.
type Engine struct {
	opts    Options
	ports   []*Port
	workers []*Worker
	umems   []*umem.UMEM

	wg      sync.WaitGroup
	started bool

	// mu serialises the control plane: guests, close.
	mu     sync.Mutex
	guests []*Guest // by id, Options.Steer.Guests of them; 0 is the raw socket's
	closed bool

	// rates: the previous ClassStats's sent bytes by (guest, class), for
	// the rate now. Guarded by mu.
	rates map[[2]int]classRate
	// The link watcher (links.go).
	linksDone chan struct{}
	linksWG   sync.WaitGroup
	// The drop watcher (dropwatch.go), while the workers run.
	dropsStop chan struct{}
	dropsWG   sync.WaitGroup

	// locks are the ports' locks (owner.go), held until teardown ends.
	locks []*portlock.Lock

	// done is closed when the engine stops on its own: its last port is
	// gone. doneErr says why; doneOnce guards both.
	done     chan struct{}
	doneErr  error
	doneOnce sync.Once
}

// New attaches the steering program to every port, makes a UMEM per queue id
// with a socket on each port, primes the fill rings and registers the
// sockets. fn receives the raw sockets' batches (nil drops them).
// On error it undoes what it did.
func New(opts Options, fn RxFunc) (_ *Engine, err error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{opts: opts, guests: make([]*Guest, opts.Steer.Guests), done: make(chan struct{})}
	// Nothing of a port is touched before its lock is held: a second
	// engine on a port stops here, having changed nothing.
	gone, err := e.lockPorts()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.teardown(true)
		}
	}()
	if opts.PinDir != "" {
		if err := safedir.Ensure(opts.PinDir); err != nil {
			return nil, fmt.Errorf("engine: pin dir: %w", err)
		}
	}
	for _, name := range opts.Ifaces {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("engine: port %s: %w", name, err)
		}
		so := opts.Steer
		so.PinDir = ""
		if opts.PinDir != "" {
			// Maps already pinned there by an engine that stopped with
			// KeepPins are reused; those of an engine that died are refused
			// unless ReusePins (owner.go).
			so.PinDir = filepath.Join(opts.PinDir, name)
			if err := e.claimPins(name, ifi.Index, so.PinDir, gone[name]); err != nil {
				return nil, err
			}
		}
		st, err := loadSteer(so)
		if err != nil {
			if so.PinDir != "" {
				// claimPins made the port's directory, and LoadSteer
				// removed what it pinned: the directory goes unless it
				// holds pins kept from before.
				if rerr := safedir.RemoveEmpty(so.PinDir); rerr != nil {
					err = errors.Join(err, rerr)
				}
			}
			return nil, fmt.Errorf("engine: port %s: %w", name, err)
		}
		p := &Port{Name: name, Ifindex: ifi.Index, MTU: ifi.MTU, steer: st}
		e.ports = append(e.ports, p)
		for _, c := range opts.Classes {
			for _, d := range c.DSCP {
				if err := st.SetDSCPClass(d, int(c.ID)); err != nil {
					return nil, fmt.Errorf("engine: port %s: class %s: %w", name, c.Name, err)
				}
			}
		}
		if err := e.dropGoneGuests(p, gone[name]); err != nil {
			return nil, err
		}
		// Raw mode: every TCP and UDP frame goes to the queue's socket (guest
		// 0, class 0); ARP and ICMP keep going to the host.
		if !opts.NoCatchAll {
			before, err := st.Rules()
			if err != nil {
				return nil, fmt.Errorf("engine: port %s: %w", name, err)
			}
			ids, err := st.AddCatchAll(0, 0)
			if err != nil {
				return nil, fmt.Errorf("engine: port %s: %w", name, err)
			}
			for _, id := range ids {
				if !slices.ContainsFunc(before, func(r bpf.Rule) bool { return r.ID == id }) {
					p.addedRules = append(p.addedRules, id)
				}
			}
		}
		if p.attach, err = st.Attach(ifi.Index, opts.Attach); err != nil {
			return nil, fmt.Errorf("engine: port %s: %w", name, err)
		}
	}
	for _, q := range opts.Queues {
		u, err := umem.New(opts.UMEM)
		if err != nil {
			return nil, fmt.Errorf("engine: queue %d: %w", q, err)
		}
		e.umems = append(e.umems, u)
		var eps []*Endpoint
		for i, p := range e.ports {
			s, err := umem.NewSocket(u, p.Ifindex, q, opts.Socket)
			if err != nil {
				return nil, fmt.Errorf("engine: port %s: %w", p.Name, err)
			}
			eps = append(eps, &Endpoint{Sock: s, Port: i})
		}
		w := NewWorker(u, eps, opts.Batch, opts.PollMs, fn)
		if opts.Pipeline != nil {
			if w.pipe, err = newRxPipeline(u, len(w.descs), *opts.Pipeline, opts.RawSink); err != nil {
				return nil, err
			}
			// The guests' send path shares the context cache, so a
			// connection's two directions meet in one context.
			if w.txp, err = newTxPath(u, len(w.descs), w.pipe.proc.Cache(), &w.Tx); err != nil {
				return nil, err
			}
			if len(opts.Classes) > 0 {
				w.txp.classes = newTxClassifier(opts)
			}
			w.txReserve = int(opts.UMEM.NumFrames / 4)
		}
		w.Prime()
		e.workers = append(e.workers, w)
		// Register only once the fill rings are primed, so the first packets
		// find frames.
		for _, ep := range eps {
			p := e.ports[ep.Port]
			if err := p.steer.RegisterSocket(q, ep.Sock.FD()); err != nil {
				return nil, fmt.Errorf("engine: port %s queue %d: %w", p.Name, q, err)
			}
			p.registered = append(p.registered, q)
		}
	}
	if err := e.watchLinks(); err != nil {
		return nil, err
	}
	return e, nil
}

// Ports are the engine's ports, in the order of Options.Ifaces.
func (e *Engine) Ports() []*Port { return e.ports }

// Workers are the engine's workers, in the order of Options.Queues.
func (e *Engine) Workers() []*Worker { return e.workers }

// Start runs every worker on its own locked OS thread.
func (e *Engine) Start() {
	if e.started {
		return
	}
	e.started = true
	base := e.dropBase()
	for _, w := range e.workers {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			w.Run()
		}()
	}
	e.dropsStop = make(chan struct{})
	e.dropsWG.Add(1)
	go e.watchDrops(base, e.dropsStop, &e.dropsWG)
}

// Stop stops the workers and waits for them.
func (e *Engine) Stop() {
	if e.dropsStop != nil {
		close(e.dropsStop)
		e.dropsWG.Wait()
		e.dropsStop = nil
	}
	for _, w := range e.workers {
		w.Stop()
	}
	e.wg.Wait()
	e.started = false
}

// Close stops the engine, takes the sockets out of the steering maps, closes
// them (every frame returns to its UMEM), audits every UMEM, then detaches
// the programs. The audit's error, if any, is returned.
func (e *Engine) Close() error {
	e.stopWatchingLinks()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	var errs []error
	for id, g := range e.guests {
		if g != nil {
			errs = append(errs, e.detachLocked(g))
			e.guests[id] = nil
		}
	}
	e.closed = true
	e.mu.Unlock()
	e.Stop()
	return errors.Join(append(errs, e.teardown(false))...)
}

// teardown undoes New: failed says New is failing, so the rules it added
// to maps it may have found pinned come out too. It only ever removes what
// this engine made, and releases the port locks last.
func (e *Engine) teardown(failed bool) error {
	e.stopWatchingLinks()
	var errs []error
	for _, w := range e.workers {
		w.Close()
	}
	for _, p := range e.ports {
		for _, q := range p.registered {
			_ = p.steer.UnregisterSocket(q)
		}
		p.registered = nil
		if failed {
			for _, id := range p.addedRules {
				if err := p.steer.DeleteRule(id); err != nil {
					errs = append(errs, fmt.Errorf("engine: port %s: %w", p.Name, err))
				}
			}
			p.addedRules = nil
		}
	}
	for i, u := range e.umems {
		for _, ep := range e.endpointsOf(i) {
			if err := ep.Sock.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if _, err := u.AuditIdle(); err != nil {
			errs = append(errs, fmt.Errorf("engine: queue %d: %w", e.opts.Queues[i], err))
		}
		if err := u.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range e.ports {
		if p.attach != nil {
			if err := p.attach.Close(); err != nil {
				errs = append(errs, fmt.Errorf("engine: detach from %s: %w", p.Name, err))
			}
		}
		if !e.opts.KeepPins {
			if err := p.steer.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("engine: port %s: %w", p.Name, err))
			}
		}
		if err := p.steer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("engine: port %s: %w", p.Name, err))
		}
	}
	if e.opts.PinDir != "" && !e.opts.KeepPins {
		// The shared parent goes once the last port's directory has gone.
		if err := safedir.RemoveEmpty(e.opts.PinDir); err != nil {
			errs = append(errs, fmt.Errorf("engine: remove %s: %w", e.opts.PinDir, err))
		}
	}
	// The next engine on these ports takes pins left on purpose without
	// being told to; after a failed start the lock files name the engine
	// before this one again, whose pins these may be (owner.go).
	mode := unlockStopped
	switch {
	case failed:
		mode = unlockFailed
	case e.opts.KeepPins && e.opts.PinDir != "":
		mode = unlockKept
	}
	errs = append(errs, e.unlockPorts(mode))
	return errors.Join(errs...)
}

// Done is closed when the engine stops on its own, because its last port
// is gone; Err then says why. Close does not close it.
func (e *Engine) Done() <-chan struct{} { return e.done }

// Err is nil until Done is closed, and then the reason.
func (e *Engine) Err() error {
	select {
	case <-e.done:
		return e.doneErr
	default:
		return nil
	}
}

// finish records why the engine stopped on its own and closes Done.
func (e *Engine) finish(err error) {
	e.doneOnce.Do(func() {
		e.doneErr = err
		close(e.done)
	})
}

func (e *Engine) endpointsOf(i int) []*Endpoint {
	if i < len(e.workers) {
		w := e.workers[i]
		return append(append([]*Endpoint(nil), w.eps...), w.retired...)
	}
	return nil
}

// logf reports an engine event.
func (e *Engine) logf(format string, args ...any) {
	l := e.opts.Logger
	if l == nil {
		l = slog.Default()
	}
	l.Info(fmt.Sprintf(format, args...), "component", "engine")
}

// logWarn reports an event that needs an operator's eye: drops.
func (e *Engine) logWarn(msg string) {
	l := e.opts.Logger
	if l == nil {
		l = slog.Default()
	}
	l.Warn(msg, "component", "engine")
}

// Options are the options the engine was made with.
func (e *Engine) Options() Options { return e.opts }
