package gen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/umem"
)

// xskFrames is the UMEM size of the AF_XDP TX generator.
const xskFrames = 4096

// RunXSK sends through an AF_XDP socket's tx ring instead of live frames, for
// receivers without an XDP program (kernel sockets, AF_PACKET) and kernels
// that refuse live frames. Every UMEM frame is written once with a flow's
// template; after that the generator only cycles descriptors. With more
// flows than frames, each frame's source port is rewritten before it goes
// out again (the UDP checksum updated in place, RFC 1624), so every flow is
// sent in turn. It honours the same Options as Run, except Threads,
// BatchSize and Repeat. Packets counts frames the kernel completed.
func RunXSK(ctx context.Context, opts Options) (Result, error) {
	if err := opts.Validate(); err != nil {
		return Result{}, err
	}
	if opts.FrameSize > 2048-256 {
		return Result{}, optErr("frame size", "must be at most %d in xsk mode, got %d", 2048-256, opts.FrameSize)
	}
	if p := bpf.GenPorts(opts.SrcPortBase); opts.Flows > p {
		return Result{}, optErr("flows", "xsk mode varies the source port only: at most %d above port %d, got %d", p, opts.SrcPortBase, opts.Flows)
	}
	info, err := resolveIface(opts.Netns, opts.Iface)
	if err != nil {
		return Result{}, fmt.Errorf("gen: resolve %s in netns %q: %w", opts.Iface, opts.Netns, err)
	}
	// The socket is made inside the netns, where the ifindex means Iface; its
	// fd then works from any thread.
	var u *umem.UMEM
	var s *umem.Socket
	err = goInNetns(opts.Netns, func() error {
		var err error
		if u, err = umem.New(umem.Options{NumFrames: xskFrames, FrameSize: 2048}); err != nil {
			return err
		}
		so := umem.DefaultSocketOptions()
		so.RxSize = 0
		so.FillSize, so.CompletionSize, so.TxSize = 2048, xskFrames, 2048
		// A socket closed just before (the previous run's) leaves the
		// queue busy until the kernel has released it.
		for give := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			s, err = umem.NewSocket(u, info.index, 0, so)
			if !errors.Is(err, unix.EBUSY) || time.Now().After(give) {
				return err
			}
		}
	})
	if err != nil {
		if u != nil {
			u.Close()
		}
		return Result{}, fmt.Errorf("gen: xsk on %s: %w", opts.Iface, err)
	}
	defer u.Close()

	// Write every frame once, flow i in frame i % flows.
	fo := frameOptions(opts, info)
	free := make([]uint64, 0, xskFrames)
	for {
		a, ok := u.Alloc()
		if !ok {
			break
		}
		fo.SrcPort = opts.SrcPortBase + uint16(len(free)%opts.Flows)
		f, err := BuildUDP(fo)
		if err != nil {
			return Result{}, fmt.Errorf("gen: %w", err)
		}
		copy(u.Frame(a)[u.DataOffset():], f)
		free = append(free, a)
	}
	frameLen := uint32(opts.FrameSize)
	// Each frame sent carries the next sequence number, as xnic_gen's do,
	// and with more flows than frames the next flow's source port too.
	rewritePort := opts.Flows > len(free)
	udpOff := u.DataOffset() + uint64(UDPOffset(opts.IPv6))
	seqAt := 8 // in the UDP datagram
	if opts.FrameSize < PayloadOffset(opts.IPv6)+SeqLen {
		seqAt = 0 // no room for a sequence number
	}
	next := 0
	var seq uint64

	descs := make([]umem.Desc, 64)
	done := make([]uint64, 256)
	start := time.Now()
	var deadline time.Time
	if opts.Duration > 0 {
		deadline = start.Add(opts.Duration)
	}
	var sent, completed uint64
	last := Tick{}
	nextTick := start.Add(time.Second)
	for iter := 0; ; iter++ {
		for {
			n := s.Complete(done)
			if n == 0 {
				break
			}
			for _, a := range done[:n] {
				free = append(free, a&^2047)
			}
			completed += uint64(n)
		}
		if iter&63 == 0 {
			now := time.Now()
			if ctx.Err() != nil || (!deadline.IsZero() && now.After(deadline)) {
				break
			}
			if opts.Progress != nil && now.After(nextTick) {
				cur := Tick{Elapsed: now.Sub(start), Packets: completed}
				cur.PPS = float64(cur.Packets-last.Packets) / (cur.Elapsed - last.Elapsed).Seconds()
				last = cur
				opts.Progress(cur)
				nextTick = nextTick.Add(time.Second)
			}
		}
		want := len(descs)
		if opts.Count > 0 {
			if sent >= opts.Count {
				if completed >= sent {
					break
				}
				want = 0
			} else {
				want = int(min(uint64(want), opts.Count-sent))
			}
		}
		want = min(want, len(free))
		if want == 0 {
			s.KickTx()
			continue
		}
		for i := 0; i < want; i++ {
			a := free[len(free)-1-i]
			udp := u.Frame(a)[udpOff:]
			if rewritePort {
				setWord(udp, 0, opts.SrcPortBase+uint16(next))
				if next++; next == opts.Flows {
					next = 0
				}
			}
			if seqAt > 0 {
				for w := 0; w < 4; w++ {
					setWord(udp, seqAt+2*w, uint16(seq>>(48-16*w)))
				}
				seq++
			}
			descs[i] = umem.Desc{Addr: a + u.DataOffset(), Len: frameLen}
		}
		n := s.Transmit(descs[:want])
		free = free[:len(free)-n]
		sent += uint64(n)
	}
	// Let the ring drain so every frame is accounted for before close.
	drainUntil := time.Now().Add(time.Second)
	for completed < sent && time.Now().Before(drainUntil) {
		s.KickTx()
		for {
			n := s.Complete(done)
			if n == 0 {
				break
			}
			completed += uint64(n)
			for _, a := range done[:n] {
				free = append(free, a&^2047)
			}
		}
	}
	elapsed := time.Since(start)
	for _, a := range free {
		u.Release(a)
	}
	res := Result{Packets: completed, Bytes: completed * uint64(frameLen), Duration: elapsed, Mode: ModeXSK}
	if elapsed > 0 {
		res.PPS = float64(completed) / elapsed.Seconds()
	}
	if err := s.Close(); err != nil {
		return res, fmt.Errorf("gen: %w", err)
	}
	if _, err := u.AuditIdle(); err != nil {
		return res, fmt.Errorf("gen: %w", err)
	}
	return res, nil
}

// setWord sets the 16-bit word at offset at (even) of a UDP datagram and
// updates its checksum for the change (RFC 1624, eqn. 3:
// HC' = ~(~HC + ~m + m')). A checksum of zero means none in IPv4 and stays
// so; a computed zero is sent as 0xffff.
func setWord(udp []byte, at int, v uint16) {
	old := binary.BigEndian.Uint16(udp[at:])
	binary.BigEndian.PutUint16(udp[at:], v)
	hc := binary.BigEndian.Uint16(udp[6:])
	if hc == 0 {
		return
	}
	sum := uint32(^hc) + uint32(^old) + uint32(v)
	sum = (sum & 0xffff) + sum>>16
	sum = (sum & 0xffff) + sum>>16
	c := ^uint16(sum)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
}
