package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// Run reads a capture from in, runs every frame through opts.Stage and
// writes the result to out as a pcap file (see the package doc for the
// formats and timestamps). It returns the report of a replay that read
// the whole input, a last record cut short included; on any other error
// the output is incomplete and the report is nil. ctx is checked every
// few hundred frames.
func Run(ctx context.Context, in io.Reader, out io.Writer, opts Options) (*Report, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	src, err := openSource(in)
	if err != nil {
		return nil, err
	}
	snk, err := newSink(out, bufSizeFor(in), src.nanos)
	if err != nil {
		return nil, err
	}
	r := &replayer{
		opts: opts,
		src:  src,
		snk:  snk,
		rep: &Report{
			Stage:    opts.Stage.String(),
			Format:   src.format,
			LinkType: src.link.String(),
		},
	}
	if err := r.setup(); err != nil {
		return nil, err
	}
	if err := r.run(ctx); err != nil {
		return nil, err
	}
	if err := snk.flush(); err != nil {
		return nil, err
	}
	r.rep.finish()
	return r.rep, nil
}

// RunFile is Run from the file inPath to the file outPath. The output is
// written to a temporary file next to outPath and renamed over it only
// when the replay succeeded, so a failed run leaves no partial file (and
// an existing outPath untouched). inPath and outPath may be the same file.
func RunFile(ctx context.Context, inPath, outPath string, opts Options) (rep *Report, err error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	in, err := os.Open(inPath)
	if err != nil {
		return nil, fmt.Errorf("open input: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(outPath), "."+filepath.Base(outPath)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("create output: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if rep, err = Run(ctx, in, tmp, opts); err != nil {
		return nil, fmt.Errorf("replay %s: %w", inPath, err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return nil, fmt.Errorf("write output: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return nil, fmt.Errorf("write output: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return nil, fmt.Errorf("write output: %w", err)
	}
	if err = os.Rename(tmp.Name(), outPath); err != nil {
		return nil, fmt.Errorf("write output: %w", err)
	}
	return rep, nil
}

// replayer is one replay's state. It is used by one goroutine.
type replayer struct {
	opts Options
	src  *source
	snk  *sink
	rep  *Report

	pkt    flows.Packet // the current input frame
	outPkt flows.Packet // the packet being written

	// Frame slots: the frames read, by slot index (the GRO handle); the
	// GSO and checksum stages use slot 0 only.
	slots []slot
	free  []int32

	// GRO stage.
	gro     *offload.GRO
	scratch []byte // an aggregate's packet, to be written
	now     int64  // the capture clock, never going back
	werr    error  // the first error writing an aggregate

	// GSO stage.
	gso      *offload.GSO
	segArena []byte // the segments' bytes
	segBufs  [][]byte
	sizes    []int
	payload  [1][]byte
	gsoRep   GSOReport

	csum CsumReport
}

// slot is a frame the replay owns and its capture record, adjusted to the
// frame (after a cooked header became an Ethernet one).
type slot struct {
	buf []byte
	ci  gopacket.CaptureInfo
}

// minSlot is the capacity a new frame slot starts with: an MTU frame fits.
const minSlot = 2048

func (r *replayer) setup() error {
	r.slots = make([]slot, 1, r.opts.BatchSize+1)
	r.slots[0].buf = make([]byte, 0, minSlot)
	switch r.opts.Stage {
	case StageGRO:
		o := offload.DefaultGROOptions()
		o.MaxSegs = r.opts.MaxSegs
		o.Verify = r.opts.Verify
		o.CsumOut = r.opts.csumOut()
		o.FlushTimeout = r.opts.FlushTimeout
		o.CoalesceAcks = r.opts.CoalesceAcks
		g, err := offload.NewGRO(o)
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		r.gro = g
		r.free = make([]int32, 0, r.opts.BatchSize+1)
		r.free = append(r.free, 0)
	case StageGSO:
		g, err := offload.NewGSO(offload.GSOOptions{CsumOut: r.opts.csumOut()})
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		r.gso = g
		r.gsoRep.MSS = r.opts.MSS
		if r.opts.MSS == 0 {
			r.gsoRep.MTU = r.opts.MTU
		}
	}
	return nil
}

// ctxEvery is how many frames go by between two looks at the context.
const ctxEvery = 256

func (r *replayer) run(ctx context.Context) error {
	batch := 0 // frames in the current GRO batch
	for {
		if r.rep.FramesIn%ctxEvery == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("replay: %w", err)
			}
		}
		data, ci, err := r.src.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errTruncated) {
			r.rep.TruncatedTail = true
			break
		}
		if err != nil {
			return err
		}
		r.rep.FramesIn++
		r.rep.BytesIn += uint64(len(data))
		if ci.Length > ci.CaptureLength {
			r.rep.SnapTruncated++
		}

		idx := r.slotFor()
		sl := &r.slots[idx]
		frame, ok := r.src.toEthernet(sl.buf, data)
		sl.buf = frame
		if !ok {
			// A cooked record too short for its header: written as it is.
			r.rep.countMalformed(truncCooked)
			r.release(idx)
			if err := r.emit(ci, frame); err != nil {
				return err
			}
			continue
		}
		if d := r.src.linkHeaderDelta(); d != 0 {
			ci.CaptureLength = len(frame)
			ci.Length -= d
		}
		sl.ci = ci

		p := &r.pkt
		parseFrame(frame, p)
		if p.Reason.Malformed() {
			r.rep.countMalformed(int(p.Reason))
		}
		r.rep.PayloadIn += payloadOf(p)

		switch r.opts.Stage {
		case StageGRO:
			if r.opts.FlushTimeout > 0 {
				r.now = max(r.now, ci.Timestamp.UnixNano())
				r.gro.FlushOlderThan(r.now)
				r.deliver()
			}
			r.gro.Receive(frame, uint64(idx), p)
			r.deliver()
			if batch++; batch == r.opts.BatchSize {
				batch = 0
				if r.opts.FlushTimeout == 0 {
					r.gro.Flush()
					r.deliver()
				}
			}
			if r.werr != nil {
				return r.werr
			}
		case StageGSO:
			err = r.segment(frame, ci)
		case StageCsum:
			err = r.check(frame, ci)
		}
		if err != nil {
			return err
		}
	}
	switch r.opts.Stage {
	case StageGRO:
		r.gro.Flush() // the end of the capture ends a batch
		r.deliver()
		if r.werr != nil {
			return r.werr
		}
		r.rep.GRO = groReport(&r.gro.Stats, &r.opts, r.rep)
	case StageGSO:
		r.gsoRep.Segments = r.gso.Stats.Segments
		g := r.gsoRep
		r.rep.GSO = &g
	case StageCsum:
		c := r.csum
		r.rep.Csum = &c
	}
	return nil
}

// slotFor returns a free frame slot.
func (r *replayer) slotFor() int32 {
	if r.opts.Stage != StageGRO {
		return 0
	}
	if n := len(r.free); n > 0 {
		i := r.free[n-1]
		r.free = r.free[:n-1]
		return i
	}
	r.slots = append(r.slots, slot{buf: make([]byte, 0, minSlot)})
	return int32(len(r.slots) - 1)
}

func (r *replayer) release(idx int32) {
	if r.opts.Stage == StageGRO {
		r.free = append(r.free, idx)
	}
}

// emit writes one packet and counts it.
func (r *replayer) emit(ci gopacket.CaptureInfo, data []byte) error {
	if err := r.snk.write(ci, data); err != nil {
		return err
	}
	r.rep.PacketsOut++
	r.rep.BytesOut += uint64(len(data))
	parseFrame(data, &r.outPkt)
	r.rep.PayloadOut += payloadOf(&r.outPkt)
	return nil
}

// built is the capture record of a packet a stage made, stamped ts.
func built(ts time.Time, n int) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: ts, CaptureLength: n, Length: n}
}

// payloadOf is the TCP or UDP payload length of a frame parsed whole.
func payloadOf(p *flows.Packet) uint64 {
	if p.Reason == flows.ReasonOK && (p.Proto == flows.ProtoTCP || p.Proto == flows.ProtoUDP) {
		return uint64(p.PayloadLen)
	}
	return 0
}

// deliver writes each aggregate GRO has ready and frees its frames'
// slots. An aggregate of one frame is the frame as it came, with its
// record (GRO drops Ethernet padding from the unmergeable frames it
// delivers alone; the replay keeps it); a merged one is stamped with its
// last frame's time.
func (r *replayer) deliver() {
	for a := r.gro.Next(); a != nil; a = r.gro.Next() {
		r.write(a)
	}
}

// write writes one aggregate, unless a write failed before, and frees its
// frames' slots.
func (r *replayer) write(a *offload.Aggregate) {
	if r.werr == nil {
		if a.Count() == 1 {
			sl := &r.slots[a.Handles[0]]
			r.werr = r.emit(sl.ci, sl.buf)
		} else {
			if r.scratch == nil { // on the first merge: a replay may have none
				r.scratch = make([]byte, 0, offload.MaxAggregateLen+64)
			}
			r.scratch = a.AppendTo(r.scratch[:0])
			last := &r.slots[a.Handles[a.Count()-1]]
			r.werr = r.emit(built(last.ci.Timestamp, len(r.scratch)), r.scratch)
		}
	}
	for _, h := range a.Handles {
		r.free = append(r.free, int32(h))
	}
}
