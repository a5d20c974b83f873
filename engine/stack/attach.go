package stack

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// Guest is a guest attached to an engine with its own TCP/IP stack: the
// engine steers the guest's addresses (ARP and NDP included) to the
// guest's sockets, runs the receive pipeline and posts its GRO output to the
// stack; the stack's sends go through the engine's send path (lookahead,
// TSO and checksums) to the guest's tx rings. Use it as the net package:
// Listen, Dial, ListenPacket.
type Guest struct {
	*Stack
	g atomic.Pointer[engine.Guest] // nil until attached and after Close
	e *engine.Engine

	txRefused atomic.Uint64 // sends the engine's queue refused
	tap       atomic.Pointer[func(*offload.Aggregate)]
}

// SetTap makes fn see every aggregate and frame the engine delivers to the
// guest, on the engine's worker, before the stack does; nil removes it. It
// must not keep the aggregate or its slices: they are valid only during the
// call. Use it to capture the engine's GRO output (xnic serve --capture).
func (gu *Guest) SetTap(fn func(*offload.Aggregate)) {
	if fn == nil {
		gu.tap.Store(nil)
		return
	}
	gu.tap.Store(&fn)
}

// Attach starts a stack for spec and attaches it to e as a guest. The
// engine must run the pipeline (engine.Options.Pipeline). opts.MAC and
// opts.Addrs default to the spec's; opts.Name (empty or the default) becomes
// the spec's name. Rules
// steering each of the guest's addresses (every protocol, ARP for IPv4,
// the solicited-node group for IPv6) are added to spec's own.
func Attach(e *engine.Engine, spec engine.GuestSpec, opts Options) (*Guest, error) {
	if !e.PipelineOn() {
		return nil, errors.New("stack: attach guest: the engine runs no pipeline (engine.Options.Pipeline)")
	}
	if opts.Name == "" || opts.Name == DefaultOptions().Name {
		opts.Name = spec.Name
	}
	if opts.MAC == nil {
		opts.MAC = spec.MAC
	}
	if len(opts.Addrs) == 0 {
		opts.Addrs = spec.Addrs
	}
	if len(spec.Addrs) == 0 {
		spec.Addrs = opts.Addrs
	}
	if opts.MAC == nil {
		return nil, fmt.Errorf("stack: attach guest %s: mac: a guest with a stack needs its own MAC address", spec.Name)
	}
	spec.MAC = opts.MAC
	spec.Rules = append(append([]engine.RuleSpec(nil), spec.Rules...), OwnRules(spec.Addrs)...)

	gu := &Guest{e: e}
	st, err := New(opts, gu.send)
	if err != nil {
		return nil, err
	}
	gu.Stack = st
	g, err := e.AttachGuestWith(spec, engine.GuestOptions{Aggregates: gu.receive})
	if err != nil {
		st.Close()
		return nil, err
	}
	gu.g.Store(g)
	return gu, nil
}

// OwnRules are the steering rules that give a guest with its own stack
// everything addressed to it: all IP protocols to each address, ARP whose
// target is an IPv4 address, and ICMPv6 to the solicited-node multicast
// group of each IPv6 address (neighbour solicitations).
func OwnRules(addrs []netip.Prefix) []engine.RuleSpec {
	var rs []engine.RuleSpec
	for _, p := range addrs {
		a := p.Addr()
		rs = append(rs, engine.RuleSpec{Dst: netip.PrefixFrom(a, a.BitLen())})
		if a.Is4() {
			rs = append(rs, engine.RuleSpec{Dst: netip.PrefixFrom(a, 32), Proto: engine.ProtoARP})
			continue
		}
		b := a.As16()
		sn := [16]byte{0xff, 0x02, 11: 0x01, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]}
		rs = append(rs, engine.RuleSpec{Dst: netip.PrefixFrom(netip.AddrFrom16(sn), 128), Proto: flows.ProtoICMPv6})
	}
	return rs
}

// receive takes the engine pipeline's output for the guest (its
// engine.Sink), on the engine's worker.
func (gu *Guest) receive(_ *engine.Endpoint, a *offload.Aggregate) {
	if tap := gu.tap.Load(); tap != nil {
		(*tap)(a)
	}
	if a.Flags&offload.AggPassThrough != 0 {
		gu.deliverPassedThrough(a)
		return
	}
	gu.DeliverAggregate(a)
}

// send hands one of the stack's packets to the engine's send path.
func (gu *Guest) send(p *TxPacket) bool {
	g := gu.g.Load()
	if g == nil {
		return false // not attached yet, or detached
	}
	wr := engine.WorkRequest{Head: p.Head, Payload: p.Payload, GSOSize: p.GSOSize, CsumPartial: p.CsumPartial, FixedID: p.FixedID}
	if err := g.Send(&wr); err != nil {
		gu.txRefused.Add(1)
		return false
	}
	return true
}

// Engine is the engine the guest is attached to, and EngineGuest its
// engine-side state (sockets, rules, counters).
func (gu *Guest) Engine() *engine.Engine     { return gu.e }
func (gu *Guest) EngineGuest() *engine.Guest { return gu.g.Load() }

// TxRefused counts the stack's packets the engine's send queue refused
// (full or detached); TCP retransmits them.
func (gu *Guest) TxRefused() uint64 { return gu.txRefused.Load() }

// Close shuts the stack down, then detaches the guest from the engine.
func (gu *Guest) Close() error {
	err := gu.Stack.Close()
	if g := gu.g.Swap(nil); g != nil {
		err = errors.Join(err, gu.e.DetachGuest(g))
	}
	return err
}
