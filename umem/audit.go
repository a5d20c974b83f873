package umem

import (
	"fmt"
	"strings"
)

// AuditReport counts every frame of a UMEM by place (DESIGN.md, "Frame
// ownership"). The ring and kernel counts split the frames lent to the
// kernel by where they are now.
type AuditReport struct {
	Frames uint32 // frames in the UMEM

	Free   int // on the free list
	Engine int // held by the application
	FillQ  int // in fill rings
	RxQ    int // in rx rings
	TxQ    int // in tx rings
	CompQ  int // in completion rings
	Kernel int // lent and in none of the rings: inside the kernel or driver

	DoubleFrees uint64 // releases of frames the caller did not hold
	BadAddrs    uint64 // releases of addresses outside the UMEM

	Problems []string // what does not add up; empty when the audit is clean
}

// Total is the sum over every place; a clean audit has Total == Frames.
func (r AuditReport) Total() int {
	return r.Free + r.Engine + r.FillQ + r.RxQ + r.TxQ + r.CompQ + r.Kernel
}

func (r AuditReport) String() string {
	return fmt.Sprintf("frames %d = free %d + engine %d + fill %d + rx %d + tx %d + completion %d + kernel %d",
		r.Frames, r.Free, r.Engine, r.FillQ, r.RxQ, r.TxQ, r.CompQ, r.Kernel)
}

// Audit checks that every frame is in exactly one place: the free list holds
// only free frames, once each; each ring holds only frames lent through its
// group, and no frame sits in two rings or twice in one; and the places add up
// to the number of frames. Call it where the data path is quiet (between
// batches, after close): rings the kernel is writing may be read mid-update.
// It returns the report and, when something does not add up, an error
// wrapping ErrLeak that names the first problems.
func (u *UMEM) Audit() (AuditReport, error) {
	r := AuditReport{Frames: u.opts.NumFrames, DoubleFrees: u.doubleFrees, BadAddrs: u.badAddrs}
	if u.closed {
		return r, fmt.Errorf("audit: umem: %w", ErrClosed)
	}
	seen := make([]uint8, u.opts.NumFrames) // 0: not seen; otherwise place+1 where first seen
	lentRx := make(map[uint8]int)
	lentTx := make(map[uint8]int)
	for i, p := range u.place {
		switch p {
		case PlaceEngine:
			r.Engine++
		case PlaceRx:
			lentRx[u.group[i]]++
		case PlaceTx:
			lentTx[u.group[i]]++
		}
	}
	problem := func(format string, a ...any) {
		if len(r.Problems) < 16 {
			r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
		}
	}
	mark := func(where string, addr uint64, want Place, g uint8) {
		i := u.index(addr)
		if i < 0 {
			problem("%s holds address %#x outside the umem", where, addr)
			return
		}
		if seen[i] != 0 {
			problem("frame %#x is in %s and also elsewhere", uint64(i)<<u.shift, where)
			return
		}
		seen[i] = 1
		if u.place[i] != want || (want != PlaceFree && u.group[i] != g) {
			problem("frame %#x is in %s but accounted as %s", uint64(i)<<u.shift, where, u.place[i])
		}
	}
	for k := 0; k < u.top; k++ {
		mark("the free list", u.free[k], PlaceFree, 0)
		r.Free++
	}
	for g, s := range u.groups {
		if s == nil {
			continue
		}
		gid := uint8(g)
		fill := scanProducer(s.Fill, func(idx uint32) uint64 { return s.Fill.descs[idx&s.Fill.mask] },
			func(a uint64) { mark("fill ring", a, PlaceRx, gid) })
		comp := scanProducer(s.Completion, func(idx uint32) uint64 { return s.Completion.descs[idx&s.Completion.mask] },
			func(a uint64) { mark("completion ring", a, PlaceTx, gid) })
		var rx, tx int
		for _, o := range u.sockets {
			if o.ringHost != s {
				continue
			}
			if o.Rx != nil {
				rx += scanProducer(o.Rx, func(idx uint32) uint64 { return o.Rx.descs[idx&o.Rx.mask].Addr },
					func(a uint64) { mark("rx ring", a, PlaceRx, gid) })
			}
			if o.Tx != nil {
				tx += scanProducer(o.Tx, func(idx uint32) uint64 { return o.Tx.descs[idx&o.Tx.mask].Addr },
					func(a uint64) { mark("tx ring", a, PlaceTx, gid) })
			}
		}
		r.FillQ += fill
		r.RxQ += rx
		r.TxQ += tx
		r.CompQ += comp
		kr := lentRx[gid] - fill - rx
		kt := lentTx[gid] - tx - comp
		if kr < 0 || kt < 0 {
			problem("ring group %d: rings hold more frames than were lent (rx %d, tx %d)", g, kr, kt)
		}
		r.Kernel += max(kr, 0) + max(kt, 0)
		delete(lentRx, gid)
		delete(lentTx, gid)
	}
	for g, n := range lentRx {
		problem("%d frames lent for rx through closed ring group %d", n, g)
		r.Kernel += n
	}
	for g, n := range lentTx {
		problem("%d frames lent for tx through closed ring group %d", n, g)
		r.Kernel += n
	}
	if r.Total() != int(r.Frames) {
		problem("places add up to %d frames, not %d", r.Total(), r.Frames)
	}
	if r.DoubleFrees > 0 {
		problem("%d releases of frames not held by the caller", r.DoubleFrees)
	}
	if r.BadAddrs > 0 {
		problem("%d releases of addresses outside the umem", r.BadAddrs)
	}
	if len(r.Problems) > 0 {
		return r, fmt.Errorf("audit: %s: %w", strings.Join(r.Problems, "; "), ErrLeak)
	}
	return r, nil
}

// AuditIdle is Audit for a UMEM whose sockets are closed or quiet and whose
// application holds nothing: any frame the engine still holds is a leak, and
// is reported with its address.
func (u *UMEM) AuditIdle() (AuditReport, error) {
	r, err := u.Audit()
	if err != nil {
		return r, err
	}
	if r.Engine > 0 {
		var addrs []string
		for i, p := range u.place {
			if p == PlaceEngine && len(addrs) < 8 {
				addrs = append(addrs, fmt.Sprintf("%#x", uint64(i)<<u.shift))
			}
		}
		return r, fmt.Errorf("audit: %d frames leaked, held by no ring and not freed (first: %s): %w",
			r.Engine, strings.Join(addrs, " "), ErrLeak)
	}
	return r, nil
}

// scanProducer visits the published, unconsumed entries of a ring.
func scanProducer(r interface{ published() (first, end uint32) }, get func(uint32) uint64, visit func(uint64)) int {
	first, end := r.published()
	n := 0
	for i := first; i != end; i++ {
		visit(get(i))
		n++
	}
	return n
}
