package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/engine/lab"
)

// demoLab is the name of the demo's lab; a leftover one from a killed demo
// is removed before starting.
const demoLab = "xnicdemo"

func runDemo(ctx context.Context, args []string) error {
	fs := newFlags("demo", "[--duration D] [--flows N] [--size BYTES]")
	duration := fs.Duration("duration", 10*time.Second, "how long to run traffic")
	flows := fs.Int("flows", 64, "UDP flows the generator cycles through")
	size := fs.Int("size", gen.MinFrameSize, "frame size in bytes, without FCS (60 is a 64-byte frame on the wire)")
	ef := addEngineFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *duration <= 0 || *duration > time.Hour {
		return flagError("duration", "must be in (0, 1h], got %s", *duration)
	}
	if *flows < 1 || *flows > 65535 {
		return flagError("flows", "must be 1..65535, got %d", *flows)
	}
	if *size < gen.MinFrameSize || *size > gen.MaxLiveFrameSize {
		return flagError("size", "must be %d..%d, got %d", gen.MinFrameSize, gen.MaxLiveFrameSize, *size)
	}
	if unix.Geteuid() != 0 {
		return errors.New("demo needs root (BPF, AF_XDP, network namespaces): run sudo make demo")
	}

	// A demo lab left by a killed run is ours to remove.
	if old, err := lab.Open(demoLab); err == nil {
		fmt.Printf("removing the lab %s left by an earlier demo\n", demoLab)
		if err := old.Down(); err != nil {
			return err
		}
	}
	lo := lab.DefaultOptions()
	lo.Name = demoLab
	l, err := lab.Up(lo)
	if err != nil {
		return err
	}
	defer func() {
		if err := l.Down(); err != nil {
			fmt.Fprintf(os.Stderr, "xnic demo: %s\n", err)
		} else {
			fmt.Printf("lab %s removed\n", l.Name)
		}
	}()
	p := l.Ports[0]
	fmt.Printf("lab %s: %s (%s) <-> %s (%s, netns %s)\n", l.Name, p.Host, p.HostIPv4, p.Peer, p.PeerIPv4, l.Netns)

	opts, err := ef.options([]string{p.Host}, []int{0})
	if err != nil {
		return err
	}
	e, err := engine.New(opts, nil)
	if err != nil {
		return err
	}
	sock := e.Workers()[0].Endpoints()[0].Sock
	fmt.Printf("engine: %s queue 0, xdp %s, xsk %s, batch %d\n", p.Host, e.Ports()[0].AttachMode(),
		map[bool]string{true: "zero-copy", false: "copy"}[sock.ZeroCopy()], opts.Batch)
	e.Start()

	genCtx, stopGen := context.WithTimeout(ctx, *duration)
	defer stopGen()
	g := gen.DefaultOptions()
	g.Netns, g.Iface = l.Netns, p.Peer
	g.Flows, g.FrameSize = *flows, *size
	g.SrcMAC, g.DstMAC = p.PeerMAC, p.HostMAC
	g.SrcIP, g.DstIP = p.PeerIPv4, p.HostIPv4
	var genRes gen.Result
	var genErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		genRes, genErr = gen.Run(genCtx, g)
	}()
	fmt.Printf("generator: live frames from %s, %d-byte UDP, %d flows, for %s (Ctrl-C stops early)\n",
		p.Peer, *size, *flows, *duration)
	fmt.Printf("%7s %14s %10s %10s %12s %16s\n", "time", "rx packets", "rx Mpps", "drops", "fill-empty", "steer pass/drop")

	start := time.Now()
	lastN, lastT := uint64(0), start
	tick := time.NewTicker(time.Second)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
loop:
	for {
		select {
		case <-done:
			break loop
		case now := <-tick.C:
			st, err := e.Stats()
			if err != nil {
				continue
			}
			fmt.Printf("%6.1fs %14d %10.3f %10d %12d %9d/%d\n", now.Sub(start).Seconds(), st.RxPackets,
				float64(st.RxPackets-lastN)/now.Sub(lastT).Seconds()/1e6, st.Drops(), st.XSK.RxFillRingEmptyDescs,
				st.Steer.PassNoSocket+st.Steer.PassNonIp+st.Steer.PassControl+st.Steer.PassUnmatched, st.Steer.DroppedMalformed)
			lastN, lastT = st.RxPackets, now
		}
	}
	tick.Stop()
	// Let the last frames in flight land before stopping the workers.
	time.Sleep(50 * time.Millisecond)
	e.Stop()
	elapsed := time.Since(start)
	st, serr := e.Stats()
	cerr := e.Close()
	if genErr != nil {
		return genErr
	}
	if serr != nil {
		return serr
	}
	fmt.Printf("\ngenerator sent %d frames (%.3f Mpps)\n", genRes.Packets, genRes.PPS/1e6)
	fmt.Printf("engine received %d (%.3f Mpps over %.1fs); xsk drops %d (ring full %d), fill ring empty %d\n",
		st.RxPackets, float64(st.RxPackets)/elapsed.Seconds()/1e6, elapsed.Seconds(), st.Drops(), st.XSK.RxRingFull, st.XSK.RxFillRingEmptyDescs)
	if genRes.Packets > st.Steer.RxPackets {
		fmt.Printf("veth dropped %d frames before XDP (its 256-slot ring overflows when the receiver's CPU is busy)\n",
			genRes.Packets-st.Steer.RxPackets)
	}
	if cerr != nil {
		return fmt.Errorf("engine close: %w", cerr)
	}
	fmt.Println("frame audit: clean (every UMEM frame accounted for after close)")
	return nil
}
