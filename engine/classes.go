package engine

import (
	"fmt"
	"math/bits"
	"slices"

	"github.com/xnic/xnic/engine/qos"
)

// Traffic classes. A class is what a converged NIC serves network packets
// and storage requests by: each class a guest uses has its own XSK socket
// on every queue of each of the guest's ports (its own rx ring on the
// shared UMEM, so one class's backlog never holds up another's frames),
// and on the send path its own descriptor queue, served by the worker's
// scheduler: strict priority between levels, deficit round robin by bytes
// (ETS weights) within a level, a token bucket per class and per guest,
// WRED with ECN per class queue. Class 0 is every guest's default.

// ClassSpec configures one traffic class for every guest that uses it.
type ClassSpec struct {
	Name string
	ID   uint8
	// Priority is the class's strict-priority level: 0 is served first; a
	// level is served only when every level above it is empty or shaped.
	Priority int
	// Weight is the class's ETS share within its level (deficit round
	// robin by bytes); 0 means 1.
	Weight int
	// Rate (bytes per second) and Burst (bytes) shape the class per guest
	// with a token bucket; Rate 0 leaves it unshaped.
	Rate, Burst uint64
	// ECN marks ECN-capable packets CE where RED (and the receive
	// threshold) would drop them (RFC 3168).
	ECN bool
	// RED drops (or marks) early as the class queue's average depth grows;
	// nil: tail drop only.
	RED *REDSpec
	// Queue is the send queue's depth in frames; 0: DefaultClassQueue.
	Queue int
	// RxThreshold, when not 0, makes the steering program drop (or, with
	// ECN, mark CE) the class's frames before they are copied, while its
	// receive ring holds this many frames or more.
	RxThreshold int
	// DSCP values that select the class (rules with ClassFromDSCP), and
	// destination port ranges whose traffic is the class's on every guest
	// that uses it (for example NVMe/TCP on 4420, iSCSI on 3260).
	DSCP  []uint8
	Ports []PortRange
}

// REDSpec is a class queue's WRED curve: below Min frames of average
// depth nothing is dropped, from Min to Max the drop probability rises to
// MaxP, above Max every frame is dropped (or marked, with ECN, up to Max).
type REDSpec struct {
	Min, Max int
	MaxP     float64
}

// PortRange is an inclusive range of TCP or UDP ports.
type PortRange struct{ Lo, Hi uint16 }

// DefaultClassQueue is a class send queue's depth, in frames, when
// ClassSpec.Queue is 0.
const DefaultClassQueue = 1024

// validateClasses checks o.Classes and names the field at fault.
func (o Options) validateClasses() error {
	ids := map[uint8]bool{}
	names := map[string]bool{}
	for i, c := range o.Classes {
		f := fmt.Sprintf("engine: classes[%d]", i)
		if c.Name == "" {
			return fmt.Errorf("%s: name: required", f)
		}
		if names[c.Name] {
			return fmt.Errorf("%s: name: class %q defined twice", f, c.Name)
		}
		names[c.Name] = true
		if int(c.ID) >= o.Steer.Classes {
			return fmt.Errorf("%s: id: want 0..%d (steer classes), got %d", f, o.Steer.Classes-1, c.ID)
		}
		if ids[c.ID] {
			return fmt.Errorf("%s: id: class id %d defined twice", f, c.ID)
		}
		ids[c.ID] = true
		if c.Priority < 0 || c.Priority > 7 {
			return fmt.Errorf("%s: priority: want 0..7, got %d", f, c.Priority)
		}
		if c.Weight < 0 || c.Weight > 1000 {
			return fmt.Errorf("%s: weight: want 1..1000, got %d", f, c.Weight)
		}
		if c.Rate > 0 && c.Burst == 0 {
			return fmt.Errorf("%s: burst: required with a rate", f)
		}
		if c.Queue < 0 || c.Queue > 1<<16 {
			return fmt.Errorf("%s: queue: want 0..65536 frames, got %d", f, c.Queue)
		}
		if r := c.RED; r != nil {
			q := c.queueDepth()
			if r.Min < 1 || r.Max <= r.Min || r.Max > q {
				return fmt.Errorf("%s: red: want 1 <= min < max <= queue (%d), got min %d max %d", f, q, r.Min, r.Max)
			}
			if r.MaxP <= 0 || r.MaxP > 1 {
				return fmt.Errorf("%s: red: max_p: want 0 < max_p <= 1, got %g", f, r.MaxP)
			}
		}
		if c.RxThreshold < 0 {
			return fmt.Errorf("%s: rx_threshold: want >= 0, got %d", f, c.RxThreshold)
		}
		for j, p := range c.Ports {
			if p.Lo > p.Hi {
				return fmt.Errorf("%s: ports[%d]: low %d above high %d", f, j, p.Lo, p.Hi)
			}
		}
	}
	return nil
}

// queueDepth is the class send queue's depth in frames.
func (c ClassSpec) queueDepth() int {
	if c.Queue > 0 {
		return c.Queue
	}
	return DefaultClassQueue
}

// class returns the spec of class id, or a default one (priority 0,
// weight 1, unshaped) for a class the options do not describe.
func (o Options) class(id uint8) ClassSpec {
	for _, c := range o.Classes {
		if c.ID == id {
			return c
		}
	}
	return ClassSpec{Name: fmt.Sprintf("class%d", id), ID: id}
}

// guestClasses are the classes a guest uses: 0, each rule's class, the
// classes a DSCP can select when a rule takes its class from the DSCP,
// and the classes defined with ports.
func (o Options) guestClasses(spec GuestSpec) []uint8 {
	cls := []uint8{0}
	add := func(c uint8) {
		if !slices.Contains(cls, c) {
			cls = append(cls, c)
		}
	}
	for _, r := range spec.Rules {
		if r.ClassFromDSCP {
			for _, c := range o.Classes {
				if len(c.DSCP) > 0 {
					add(c.ID)
				}
			}
			continue
		}
		add(r.Class)
	}
	for _, r := range o.classRules(spec) {
		add(r.Class)
	}
	slices.Sort(cls)
	return cls
}

// classRules are the rules that give the classes defined by port their
// traffic, within what the guest's own rules claim: for each rule of the
// guest that takes TCP or UDP (or any protocol) to a port range, and each
// class port range that overlaps it, a rule for the overlap in that class.
// They go before the guest's rules, so they match first; they never claim
// traffic the guest's rules do not.
func (o Options) classRules(spec GuestSpec) []RuleSpec {
	var out []RuleSpec
	for _, c := range o.Classes {
		for _, pr := range c.Ports {
			for _, r := range spec.Rules {
				if r.ClassFromDSCP || r.Class == c.ID {
					continue
				}
				lo, hi := max(pr.Lo, r.PortLo), min(pr.Hi, r.PortHi)
				if r.PortHi == 0 && r.PortLo == 0 { // any port
					lo, hi = pr.Lo, pr.Hi
				}
				if lo > hi {
					continue
				}
				protos := []uint8{r.Proto}
				switch r.Proto {
				case 0:
					protos = []uint8{6, 17}
				case 6, 17:
				default:
					continue
				}
				for _, p := range protos {
					d := RuleSpec{Dst: r.Dst, Proto: p, PortLo: lo, PortHi: hi, Class: c.ID}
					if !slices.Contains(out, d) && !slices.Contains(spec.Rules, d) {
						out = append(out, d)
					}
				}
			}
		}
	}
	return out
}

// schedConfig is the send scheduler of a guest (one per worker): a queue
// for every class id, configured from Options.Classes, and the guest's
// aggregate rate. ok is false when neither classes nor a guest rate are
// configured: then sends go straight to the tx ring, as before classes.
func (o Options) schedConfig(spec GuestSpec) (cfg qos.Config, ok bool) {
	if len(o.Classes) == 0 && spec.Rate == 0 {
		return cfg, false
	}
	cfg.Rate, cfg.Burst = spec.Rate, spec.Burst
	for id := range min(o.Steer.Classes, qos.MaxClasses) {
		c := o.class(uint8(id))
		q := c.queueDepth()
		if q&(q-1) != 0 {
			q = 1 << bits.Len(uint(q)) // the ring wants a power of two
		}
		cc := qos.ClassConfig{Priority: uint8(c.Priority), Weight: uint32(max(c.Weight, 1)),
			Rate: c.Rate, Burst: c.Burst, QueueLen: min(q, 1<<16)}
		if r := c.RED; r != nil {
			cc.RED = qos.WREDParams{MinTh: uint32(r.Min), MaxTh: uint32(r.Max), MaxP: r.MaxP, ECN: c.ECN, Seed: uint64(id) + 1}
		}
		cfg.Classes = append(cfg.Classes, cc)
	}
	return cfg, true
}

// txClassifier gives a send its class when its connection has none: the
// class its DSCP selects, else the class whose ports hold its destination
// or source port.
type txClassifier struct {
	dscp  [64]uint8
	ports []classPorts
}

type classPorts struct {
	class  uint8
	lo, hi uint16
}

func newTxClassifier(o Options) *txClassifier {
	c := &txClassifier{}
	for _, cl := range o.Classes {
		for _, d := range cl.DSCP {
			c.dscp[d&63] = cl.ID
		}
		for _, p := range cl.Ports {
			c.ports = append(c.ports, classPorts{class: cl.ID, lo: p.Lo, hi: p.Hi})
		}
	}
	return c
}
