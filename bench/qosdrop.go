package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/xnic/xnic/bench/internal/stat"
	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/umem"
)

// The drop-cost measurement: a class flooded from the peer with 64-byte
// UDP frames by the generator, its frames dropped either early by
// xnic_steer (the class over its receive threshold, its socket never read)
// or in user space (no threshold: the kernel copies each frame into UMEM
// and the worker receives it and drops it). The CPU per frame is the busy
// time of all CPUs (softirq included, where the receiving veth's XDP
// program and the copy run) over the frames the generator sent; the
// machine should be otherwise idle (the report flags other tasks).
// Both include the generator's own cost, so a third run measures it: the
// same flood into xnic_drop, a program that only counts and drops. The
// ratio reported is of the two drops above that baseline.
const (
	dropCostClass     = 3
	dropCostPort      = 9
	dropCostThreshold = 64
	dropCostDuration  = 2 * time.Second
)

// dropCostRounds is how many times the three floods run, interleaved:
// busy time counts every task on the machine, so one round's baseline can
// take a burst of someone else's work; the median of each drop's cost
// above its own round's baseline rides over such a burst.
const dropCostRounds = 3

// measureDropCost runs both drops on the lab's port with an engine of its
// own (the main one must be closed: one engine owns a port), dropCostRounds
// times, each round after its own baseline.
func (b *qosBencher) measureDropCost(ctx context.Context) (*QoSDropCost, error) {
	var base, early, user, xdp, usr []float64
	for range dropCostRounds {
		ba, err := b.dropBaseline(ctx)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		ea, err := b.dropRun(ctx, true)
		if err != nil {
			return nil, fmt.Errorf("early drop: %w", err)
		}
		us, err := b.dropRun(ctx, false)
		if err != nil {
			return nil, fmt.Errorf("user-space drop: %w", err)
		}
		base, early, user = append(base, ba), append(early, ea), append(user, us)
		xdp, usr = append(xdp, max(ea-ba, 0)), append(usr, max(us-ba, 0))
	}
	return &QoSDropCost{XDPNsPerFrame: stat.Median(xdp), UserNsPerFrame: stat.Median(usr),
		BaselineNsPerFrame: stat.Median(base), EarlyTotalNsPerFrame: stat.Median(early), UserTotalNsPerFrame: stat.Median(user),
		Method: fmt.Sprintf("64-byte UDP from the generator (%s mode, one thread) to one class for %s; "+
			"busy time of all CPUs (/proc/stat: user, system, irq, softirq: the generator, the receiving veth's XDP program "+
			"and copy into UMEM, the worker) per frame sent, less the same flood into xnic_drop (the generator and a bare "+
			"XDP_DROP) run just before; early: the class over its receive threshold (%d frames), its socket not read; user space: the worker "+
			"receives every frame and drops it; median of %d interleaved rounds", b.floodMode, dropCostDuration, dropCostThreshold, dropCostRounds)}, nil
}

// dropBaseline is the CPU per frame of the flood into xnic_drop alone.
func (b *qosBencher) dropBaseline(ctx context.Context) (float64, error) {
	c, err := bpf.LoadDrop()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	att, err := c.Attach(b.lab.Ports[0].HostIfindex, bpf.AttachNative)
	if err != nil {
		return 0, err
	}
	defer att.Close()
	return b.flood(ctx)
}

// flood runs the generator at the guest's address and the drop class's
// port and returns this process's CPU nanoseconds per frame sent.
func (b *qosBencher) flood(ctx context.Context) (float64, error) {
	o := gen.DefaultOptions()
	o.Netns, o.Iface = b.lab.Netns, b.lab.Ports[0].Peer
	o.DstIP, o.DstPort = b.guestAddr(), dropCostPort
	o.FrameSize, o.Threads, o.Duration = gen.MinSize(false), 1, dropCostDuration
	t0 := sampleNoise()
	res, err := gen.Run(ctx, o)
	t1 := sampleNoise()
	if err != nil {
		return 0, fmt.Errorf("generate: %w", err)
	}
	if res.Packets == 0 {
		return 0, errors.New("the generator sent nothing")
	}
	b.floodSent, b.floodMode = res.Packets, res.Mode
	// Every CPU's busy time: the receiving veth's XDP program and the
	// copy into UMEM run in softirq, which a process's own CPU time does
	// not include.
	return float64(t1.busy-t0.busy) / float64(res.Packets), nil
}

// dropRun floods the class and returns this process's CPU nanoseconds per
// frame; early says whether the steering program drops (threshold set,
// workers stopped) or the worker does.
func (b *qosBencher) dropRun(ctx context.Context, early bool) (nsPerFrame float64, err error) {
	p := b.lab.Ports[0]
	o := engine.DefaultOptions()
	o.Ifaces = []string{p.Host}
	o.NoCatchAll = true
	o.PinDir = ""
	o.PollMs = 1
	cls := engine.ClassSpec{Name: "flood", ID: dropCostClass}
	if early {
		cls.RxThreshold = dropCostThreshold
	}
	o.Classes = []engine.ClassSpec{cls}
	e, err := engine.New(o, nil)
	if err != nil {
		return 0, fmt.Errorf("start an engine: %w", err)
	}
	defer func() { err = errors.Join(err, e.Close()) }()
	dst := b.guestAddr()
	var got atomic.Uint64
	_, err = e.AttachGuest(engine.GuestSpec{Name: "sink", Port: p.Host, Rules: []engine.RuleSpec{
		{Dst: netip.PrefixFrom(dst, 32), Proto: 17, PortLo: dropCostPort, PortHi: dropCostPort, Class: dropCostClass},
	}}, func(_ *engine.Guest, _ *engine.Endpoint, descs []umem.Desc) { got.Add(uint64(len(descs))) })
	if err != nil {
		return 0, fmt.Errorf("attach the sink: %w", err)
	}
	if !early {
		e.Start()
	}
	// Without workers nobody reads the class's ring: the program lets in
	// its threshold's worth and drops the rest.
	ns, err := b.flood(ctx)
	if err != nil {
		return 0, err
	}
	st, err := e.Stats()
	if err != nil {
		return 0, err
	}
	if sent := b.floodSent; early && st.Steer.EarlyDrops < sent/2 {
		return 0, fmt.Errorf("%d of %d frames dropped early: the threshold did not hold", st.Steer.EarlyDrops, sent)
	}
	if !early && (st.Steer.EarlyDrops != 0 || got.Load() == 0) {
		return 0, fmt.Errorf("%d frames dropped early without a threshold, %d received by the worker", st.Steer.EarlyDrops, got.Load())
	}
	return ns, nil
}
