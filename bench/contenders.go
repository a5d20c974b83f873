package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xnic/xnic/bpf"
)

// busyRetry bounds how long a receiver is restarted while the queue is
// still held by the previous contender's socket (freed asynchronously).
const busyRetry = 5 * time.Second

// measure measures one contender once. Errors go into the Result.
func (b *bencher) measure(ctx context.Context, name string) Result {
	res := Result{Contender: name}
	var err error
	switch name {
	case XDPDrop:
		err = b.measureDrop(ctx, &res)
	case XnicRx:
		err = b.measureXnicRx(ctx, &res)
	case XnicPipeW1:
		err = b.measureXnicRx(ctx, &res, "--pipeline", "--window", "1")
	case XnicPipeW64:
		err = b.measureXnicRx(ctx, &res, "--pipeline", "--window", "64")
	case LibXDPSteer, AsavieSteer:
		err = b.measureXSKPeer(ctx, &res)
	case LibXDPBare:
		err = b.runReceiver(ctx, b.peerSpec(name, "-bare"), &res, nil)
	case AsavieOwn:
		err = b.runReceiver(ctx, b.peerSpec(name, "-own-prog"), &res, nil)
	case AFPacket:
		err = b.measureAFPacket(ctx, &res)
	default:
		err = fmt.Errorf("unknown contender %q", name)
	}
	if err != nil {
		res.Err = err.Error()
		res.PPS = 0
	}
	return res
}

// measureDrop counts what xnic_drop sees over a window that opens Slack
// after the generator starts.
func (b *bencher) measureDrop(ctx context.Context, res *Result) error {
	c, err := bpf.LoadDrop()
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Attach(b.port.HostIfindex, bpf.AttachNative); err != nil {
		return err
	}
	count := func() (uint64, time.Time, error) {
		st, err := c.TotalStats()
		return st.RxPackets, time.Now(), err
	}
	before, _, err := count()
	if err != nil {
		return err
	}
	g := startGen(ctx, b.genOpts, 2*b.opts.Slack+b.opts.Duration+exitGrace)
	if err := sleep(ctx, b.opts.Slack, g.failed()); err != nil {
		g.stop()
		return err
	}
	n0, t0, err0 := count()
	s0 := sampleNoise()
	werr := sleep(ctx, b.opts.Duration, g.failed())
	n1, t1, err1 := count()
	res.Noise = noiseBetween(s0, sampleNoise())
	sent, gerr := g.stop()
	res.Sent = sent
	if err := errors.Join(werr, err0, err1, gerr); err != nil {
		return err
	}
	after, _, err := count()
	if err != nil {
		return err
	}
	res.Packets, res.Seconds = n1-n0, t1.Sub(t0).Seconds()
	res.PPS = float64(res.Packets) / res.Seconds
	res.XDPPackets = after - before
	return nil
}

// measureXnicRx runs `xnic rx`, which loads and attaches its own steering
// program; its window opens with its "xnic rx:" line.
func (b *bencher) measureXnicRx(ctx context.Context, res *Result, extra ...string) error {
	args := []string{"rx", "--iface", b.port.Host, "--queue", "0",
		"--duration", b.opts.Duration.String(), "--json", "--quiet", "--attach", "native"}
	if len(extra) > 0 {
		args = append(args, extra...)
		args = append(args, "--cache", strconv.Itoa(b.opts.PipeCache), "--conn-table", strconv.Itoa(b.opts.PipeConns))
	}
	spec := receiverSpec{
		path:  b.opts.Xnic,
		args:  args,
		ready: func(line string) bool { return strings.HasPrefix(line, "xnic rx:") },
	}
	// Its steering program's counters are in its report (runReceiver).
	return b.runReceiver(ctx, spec, res, nil)
}

// measureXSKPeer runs libxdp's or asavie's peer behind xnic_steer, loaded
// here with its XSKMAP pinned for the peer. (The bare and own-program peers
// load their own programs: runReceiver then has no XDP counter to read.)
func (b *bencher) measureXSKPeer(ctx context.Context, res *Result) error {
	st, err := bpf.LoadSteer(bpf.DefaultSteerOptions())
	if err != nil {
		return err
	}
	defer st.Close() // detaches and unpins
	// Peers put their socket at key=queue, which is the slot of guest 0,
	// class 0 on queue 0; the catch-all rules steer all UDP there.
	if _, err := st.AddCatchAll(0, 0); err != nil {
		return err
	}
	if err := st.Pin(b.pinDir); err != nil {
		return err
	}
	if _, err := st.Attach(b.port.HostIfindex, bpf.AttachNative); err != nil {
		return err
	}
	spec := b.peerSpec(res.Contender, "-xskmap", filepath.Join(b.pinDir, bpf.PinXSKMap))
	return b.runReceiver(ctx, spec, res, func() (uint64, error) {
		s, err := st.TotalStats()
		return s.RxPackets, err
	})
}

// measureAFPacket runs the AF_PACKET peer behind xnic_pass: veth drops live
// frames unless the receiving end runs an XDP program.
func (b *bencher) measureAFPacket(ctx context.Context, res *Result) error {
	c, err := bpf.LoadPass()
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Attach(b.port.HostIfindex, bpf.AttachNative); err != nil {
		return err
	}
	return b.runReceiver(ctx, b.peerSpec(AFPacket), res, func() (uint64, error) {
		s, err := c.TotalStats()
		return s.RxPackets, err
	})
}

// peerSpec is the command line of a peer binary, with the common flags.
func (b *bencher) peerSpec(name string, extra ...string) receiverSpec {
	args := append([]string{"-iface", b.port.Host, "-queue", "0",
		"-duration", b.opts.Duration.String(), "-json"}, extra...)
	return receiverSpec{
		path:  filepath.Join(b.opts.PeersDir, peerBinaries[name]),
		args:  args,
		ready: func(line string) bool { return line == "ready" },
	}
}

// runReceiver starts a receiver on RxCPU, waits for its window to open,
// generates until it exits and takes its report. xdpCount, when set, reads
// the XDP program's counter before and after; without it the count comes
// from the report's "steer" object (xnic rx). A receiver that got nothing
// failed.
func (b *bencher) runReceiver(ctx context.Context, spec receiverSpec, res *Result,
	xdpCount func() (uint64, error)) error {
	r, err := startReady(ctx, spec, b.opts.RxCPU)
	if err != nil {
		return err
	}
	res.RxCPUs = processCPUs(r.cmd.Process.Pid)
	var before uint64
	if xdpCount != nil {
		if before, err = xdpCount(); err != nil {
			r.stop()
			return err
		}
	}
	g := startGen(ctx, b.genOpts, b.opts.Duration+exitGrace+killDelay)
	s0 := sampleNoise()
	werr := r.waitExit(ctx, b.opts.Duration+exitGrace, g.failed())
	res.Noise = noiseBetween(s0, sampleNoise())
	sent, gerr := g.stop()
	res.Sent = sent
	if werr != nil {
		return werr // a generator failure is in it
	}
	if gerr != nil {
		return gerr
	}
	if xdpCount != nil {
		after, err := xdpCount()
		if err != nil {
			return err
		}
		res.XDPPackets = after - before
	}
	obj, err := r.report()
	if err != nil {
		return err
	}
	res.Receiver = obj
	res.PPS = obj["pps"].(float64)
	if n, ok := obj["packets"].(float64); ok {
		res.Packets = uint64(n)
	}
	if s, ok := obj["seconds"].(float64); ok {
		res.Seconds = s
	}
	if steer, ok := obj["steer"].(map[string]any); ok && xdpCount == nil {
		if n, ok := steer["rx_packets"].(float64); ok { // xnic rx's own program (struct steer_stats)
			res.XDPPackets = uint64(n)
		}
	}
	if res.Packets == 0 {
		return fmt.Errorf("%s received nothing while the generator sent %d frames and XDP saw %d",
			res.Contender, res.Sent.Packets, res.XDPPackets)
	}
	return nil
}

// startReady starts a receiver (or a server) on cpu and waits for its ready
// line, starting it again for a while if the queue is still held by the
// previous contender's socket.
func startReady(ctx context.Context, spec receiverSpec, cpu int) (*receiver, error) {
	giveUp := time.Now().Add(busyRetry)
	for {
		r, err := startReceiver(spec, cpu)
		if err != nil {
			return nil, err
		}
		err = r.waitReady(ctx)
		if err == nil {
			return r, nil
		}
		if !r.busyQueue() || ctx.Err() != nil || time.Now().After(giveUp) {
			return nil, err
		}
		if err := sleep(ctx, 200*time.Millisecond, nil); err != nil {
			return nil, err
		}
	}
}
