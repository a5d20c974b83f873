package qos

import (
	"fmt"
	"slices"
)

// MaxClasses is how many classes one scheduler serves.
const MaxClasses = 16

// MaxItemLen bounds a descriptor's length (a TSO frame fits); Enqueue
// rejects longer ones.
const MaxItemLen = 1 << 18

// DefaultQueueLen is a class queue's capacity when its QueueLen is 0.
const DefaultQueueLen = 1024

// DefaultMaxFrame is the frame length DRR quanta are sized for when
// Config.MaxFrame is 0: an Ethernet frame at MTU 1500.
const DefaultMaxFrame = 1514

// Item is a frame descriptor: where the frame is in UMEM, its length, and
// the flow it belongs to. A queue holds these, never packet bytes.
type Item struct {
	Addr uint64
	Len  uint32
	Flow uint32
}

// Verdict is what Enqueue did with a descriptor.
type Verdict uint8

const (
	Queued         Verdict = iota // queued
	Marked                        // queued; the caller must set CE in the frame (MarkCE)
	DroppedTail                   // the class queue is full
	DroppedRED                    // WRED dropped it early
	DroppedPolicer                // the class's policer coloured it red
	Rejected                      // no such class, or Len above MaxItemLen
)

// Dropped reports whether the descriptor was not queued, so the caller
// still owns (and must free) its frame.
func (v Verdict) Dropped() bool { return v >= DroppedTail }

func (v Verdict) String() string {
	switch v {
	case Queued:
		return "queued"
	case Marked:
		return "marked"
	case DroppedTail:
		return "tail"
	case DroppedRED:
		return "red"
	case DroppedPolicer:
		return "policer"
	case Rejected:
		return "rejected"
	}
	return "invalid"
}

// ClassConfig configures one class. Its index in Config.Classes is the
// class number Enqueue and Dequeue use.
type ClassConfig struct {
	// Priority is the strict-priority level, 0 the highest. Classes of one
	// level share it by deficit round robin.
	Priority uint8
	// Weight is the class's ETS share within its level (0 means 1).
	// Quanta are proportional to weights.
	Weight uint32
	// Rate (bytes/s) and Burst (bytes) shape the class; Rate 0 leaves it
	// unshaped.
	Rate, Burst uint64
	// QueueLen is the descriptor ring's capacity, a power of two (0 means
	// DefaultQueueLen).
	QueueLen int
	// RED configures early drop or ECN marking; the zero value is off.
	// Its PacketTime, if 0, is a 1500-byte frame at the class's rate (or
	// the scheduler's).
	RED WREDParams
	// Police meters arrivals; red packets are dropped. Zero is off.
	Police PolicerParams
}

// Config configures a Scheduler.
type Config struct {
	Classes []ClassConfig
	// Rate (bytes/s) and Burst (bytes) shape all classes together, the
	// guest's aggregate. Rate 0 leaves them unshaped.
	Rate, Burst uint64
	// MaxFrame sizes the DRR quanta: the lightest class of a level gets a
	// quantum of at least MaxFrame bytes, so it sends a frame every round.
	// 0 means DefaultMaxFrame.
	MaxFrame uint32
}

// Counters are one class's counters, named after events.
type Counters struct {
	Enqueued, EnqueuedBytes uint64 // descriptors queued (Marked ones too)
	Sent, SentBytes         uint64 // descriptors handed out by Dequeue
	DropTail                uint64 // dropped: queue full
	DropRED                 uint64 // dropped early by WRED
	DropPolicer             uint64 // dropped: policer red
	Marks                   uint64 // queued with CE to set
	Depth, MaxDepth         uint64 // descriptors queued now, and the most since ResetMaxDepth
}

type class struct {
	// The descriptor ring: head and tail run freely, mask indexes.
	ring       []Item
	mask       uint32
	head, tail uint32

	// DRR: quantum per turn, deficit carried; inTurn while its turn lasts.
	quantum, deficit int64
	inTurn           bool

	// Congestion controls, each optional.
	bucket    TokenBucket // zero value: unshaped
	red       WRED
	hasRED    bool
	police    Policer
	hasPolice bool

	Counters
}

func (c *class) empty() bool { return c.head == c.tail }

// level is a strict-priority level: the classes sharing it, in config order,
// and the DRR position.
type level struct {
	members []uint8
	cur     int
}

func (l *level) next() {
	l.cur++
	if l.cur == len(l.members) {
		l.cur = 0
	}
}

// Scheduler serves up to MaxClasses descriptor queues: strict priority
// between levels, deficit round robin by bytes within a level, a token
// bucket per class and one over all of them, WRED/ECN and a policer per
// class. It is work-conserving: a class short of tokens is passed over and
// the next eligible one served. One worker owns it; it takes no locks and
// allocates nothing after NewScheduler.
type Scheduler struct {
	classes [MaxClasses]class
	n       int
	levels  []level // by priority, highest first
	agg     TokenBucket
}

// NewScheduler validates cfg and returns a scheduler with empty queues and
// full buckets, on a clock that reads now.
func NewScheduler(cfg Config, now int64) (*Scheduler, error) {
	if len(cfg.Classes) == 0 || len(cfg.Classes) > MaxClasses {
		return nil, fmt.Errorf("classes: %d: %w", len(cfg.Classes), ErrClasses)
	}
	s := &Scheduler{n: len(cfg.Classes)}
	var err error
	if s.agg, err = NewTokenBucket(cfg.Rate, cfg.Burst, now); err != nil {
		return nil, fmt.Errorf("rate: %w", err)
	}
	maxFrame := int64(cfg.MaxFrame)
	if maxFrame == 0 {
		maxFrame = DefaultMaxFrame
	}
	var prios []uint8
	for i, cc := range cfg.Classes {
		c := &s.classes[i]
		if cc.Weight > 1<<16 {
			return nil, fmt.Errorf("classes[%d]: weight %d: %w", i, cc.Weight, ErrWeight)
		}
		ql := cc.QueueLen
		if ql == 0 {
			ql = DefaultQueueLen
		}
		if ql < 1 || ql > 1<<16 || ql&(ql-1) != 0 {
			return nil, fmt.Errorf("classes[%d]: queue length %d: %w", i, cc.QueueLen, ErrQueueLen)
		}
		c.ring = make([]Item, ql)
		c.mask = uint32(ql - 1)
		if c.bucket, err = NewTokenBucket(cc.Rate, cc.Burst, now); err != nil {
			return nil, fmt.Errorf("classes[%d]: rate: %w", i, err)
		}
		if cc.RED.MaxTh != 0 {
			p := cc.RED
			if p.PacketTime == 0 {
				if r := max(cc.Rate, cfg.Rate); r > 0 {
					p.PacketTime = max(1, int64(1500*nsPerSec/r))
				}
			}
			if p.Seed == 0 {
				p.Seed = uint64(i+1) * 0x9e3779b97f4a7c15
			}
			if c.red, err = NewWRED(p, now); err != nil {
				return nil, fmt.Errorf("classes[%d]: %w", i, err)
			}
			c.hasRED = true
		}
		if cc.Police.CIR != 0 || cc.Police.PIR != 0 {
			if c.police, err = NewPolicer(cc.Police, now); err != nil {
				return nil, fmt.Errorf("classes[%d]: %w", i, err)
			}
			c.hasPolice = true
		}
		if !slices.Contains(prios, cc.Priority) {
			prios = append(prios, cc.Priority)
		}
	}
	slices.Sort(prios)
	s.levels = make([]level, len(prios))
	for li, p := range prios {
		l := &s.levels[li]
		minW := uint32(0)
		for i, cc := range cfg.Classes {
			if cc.Priority == p {
				l.members = append(l.members, uint8(i))
				w := max(cc.Weight, 1)
				if minW == 0 || w < minW {
					minW = w
				}
			}
		}
		// The lightest class's quantum covers a MaxFrame frame; the others'
		// are in proportion to their weights.
		base := (maxFrame + int64(minW) - 1) / int64(minW)
		for _, i := range l.members {
			s.classes[i].quantum = int64(max(cfg.Classes[i].Weight, 1)) * base
		}
	}
	return s, nil
}

// Classes returns the number of classes.
func (s *Scheduler) Classes() int { return s.n }

// Counters returns a copy of class's counters (zero for no such class).
func (s *Scheduler) Counters(class uint8) Counters {
	if int(class) >= s.n {
		return Counters{}
	}
	return s.classes[class].Counters
}

// ResetMaxDepth starts every class's MaxDepth again from its depth now.
func (s *Scheduler) ResetMaxDepth() {
	for i := range s.n {
		c := &s.classes[i]
		c.MaxDepth = c.Depth
	}
}

// Enqueue offers a descriptor to class at now; ecnCapable says whether the
// frame is ECN-capable (ECNCapable). On Marked the caller sets CE in the
// frame before it is sent; on a drop the caller keeps and frees the frame.
func (s *Scheduler) Enqueue(now int64, class uint8, it Item, ecnCapable bool) Verdict {
	if int(class) >= s.n || it.Len > MaxItemLen {
		return Rejected
	}
	c := &s.classes[class]
	if c.hasPolice && c.police.Color(now, it.Len) == Red {
		c.DropPolicer++
		return DroppedPolicer
	}
	v := Queued
	if c.hasRED {
		switch c.red.Decide(now, int(c.tail-c.head), ecnCapable) {
		case Drop:
			c.DropRED++
			return DroppedRED
		case Mark:
			v = Marked
		}
	}
	if c.tail-c.head > c.mask {
		c.DropTail++
		return DroppedTail
	}
	c.ring[c.tail&c.mask] = it
	c.tail++
	c.Enqueued++
	c.EnqueuedBytes += uint64(it.Len)
	if v == Marked {
		c.Marks++
	}
	c.Depth++
	c.MaxDepth = max(c.MaxDepth, c.Depth)
	return v
}

// pick returns the class of level l that DRR serves next, or false when
// every class of the level is empty or short of tokens. A class's turn
// begins with its quantum added to its deficit (unless the deficit already
// covers its head, as after a turn cut short by its bucket) and lasts while
// the deficit covers its head; an empty class loses its deficit.
func (s *Scheduler) pick(now int64, l *level) (uint8, bool) {
	// idle counts consecutive visits that found nothing to send; a visit
	// that grew a deficit is progress.
	for idle := 0; idle < len(l.members); {
		ci := l.members[l.cur]
		c := &s.classes[ci]
		if c.empty() {
			c.deficit, c.inTurn = 0, false
			l.next()
			idle++
			continue
		}
		n := c.ring[c.head&c.mask].Len
		if !c.inTurn {
			if c.deficit < int64(n) {
				c.deficit += c.quantum
			}
			c.inTurn = true
		}
		if c.deficit < int64(n) {
			c.inTurn = false
			l.next()
			idle = 0
			continue
		}
		if !c.bucket.Conform(now, n) {
			c.inTurn = false
			l.next()
			idle++
			continue
		}
		return ci, true
	}
	return 0, false
}

// Dequeue returns the next descriptor to send at now and its class, or
// false when every queue is empty or shaped (see NextEligible).
func (s *Scheduler) Dequeue(now int64) (uint8, Item, bool) {
	for li := range s.levels {
		ci, ok := s.pick(now, &s.levels[li])
		if !ok {
			continue
		}
		c := &s.classes[ci]
		it := c.ring[c.head&c.mask]
		// The aggregate bucket holds back the chosen class, and with it the
		// lower levels: the guest's rate is spent in priority order.
		if !s.agg.Take(now, it.Len) {
			return 0, Item{}, false
		}
		c.bucket.Take(now, it.Len)
		c.head++
		c.deficit -= int64(it.Len)
		c.Depth--
		c.Sent++
		c.SentBytes += uint64(it.Len)
		if c.empty() {
			c.deficit, c.inTurn = 0, false
			if c.hasRED {
				c.red.QueueEmpty(now)
			}
		}
		return ci, it, true
	}
	return 0, Item{}, false
}

// DequeueBatch dequeues up to len(out) descriptors at now into out, and
// their classes into classes (if not nil; then at most len(classes)), and
// returns how many.
func (s *Scheduler) DequeueBatch(now int64, out []Item, classes []uint8) int {
	limit := len(out)
	if classes != nil {
		limit = min(limit, len(classes))
	}
	for i := range limit {
		ci, it, ok := s.Dequeue(now)
		if !ok {
			return i
		}
		out[i] = it
		if classes != nil {
			classes[i] = ci
		}
	}
	return limit
}

// NextEligible returns the earliest time, not before now, at which Dequeue
// will have something to send: now if it has already, Never if every queue
// is empty. It looks for the class Dequeue would serve, as Dequeue does.
func (s *Scheduler) NextEligible(now int64) int64 {
	for li := range s.levels {
		if ci, ok := s.pick(now, &s.levels[li]); ok {
			// Dequeue serves this one as soon as the aggregate allows.
			c := &s.classes[ci]
			return s.agg.NextAt(now, c.ring[c.head&c.mask].Len)
		}
	}
	// Every backlogged class waits for its own bucket.
	best := Never
	for i := range s.n {
		c := &s.classes[i]
		if c.empty() {
			continue
		}
		n := c.ring[c.head&c.mask].Len
		best = min(best, max(c.bucket.NextAt(now, n), s.agg.NextAt(now, n)))
	}
	return best
}

// Backlog is the number of descriptors queued over all classes.
func (s *Scheduler) Backlog() int {
	n := 0
	for i := range s.n {
		n += int(s.classes[i].Depth)
	}
	return n
}

// Flush empties every class queue, handing each descriptor to fn (whose
// frame the caller frees), as a port that goes away does: no bucket is
// charged and nothing counts as sent. It returns how many it flushed.
func (s *Scheduler) Flush(fn func(Item)) int {
	n := 0
	for i := range s.n {
		c := &s.classes[i]
		for ; !c.empty(); c.head++ {
			fn(c.ring[c.head&c.mask])
			n++
		}
		c.Depth, c.deficit, c.inTurn = 0, 0, false
	}
	return n
}
