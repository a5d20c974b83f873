package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/services"
	"github.com/xnic/xnic/engine/stack"
	"github.com/xnic/xnic/internal/cli"
)

// demoLab is the name of the demo's lab; a leftover one from a killed demo
// is removed before starting.
const demoLab = "xnicdemo"

func runDemo(ctx context.Context, args []string) error {
	fs := cli.NewFlags("demo", "[--duration D] [--flows N] [--size BYTES]")
	duration := fs.Duration("duration", 10*time.Second, "how long to run traffic")
	flows := fs.Int("flows", 64, "UDP flows the generator cycles through")
	size := fs.Int("size", gen.MinFrameSize, "frame size in bytes, without FCS (60 is a 64-byte frame on the wire)")
	ef := addEngineFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *duration <= 0 || *duration > time.Hour {
		return cli.FlagError("duration", "must be in (0, 1h], got %s", *duration)
	}
	if *flows < 1 || *flows > 65535 {
		return cli.FlagError("flows", "must be 1..65535, got %d", *flows)
	}
	if *size < gen.MinFrameSize || *size > gen.MaxLiveFrameSize {
		return cli.FlagError("size", "must be %d..%d, got %d", gen.MinFrameSize, gen.MaxLiveFrameSize, *size)
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
	po := engine.DefaultPipelineOptions()
	opts.Pipeline = &po
	if opts.UMEM.NumFrames < 8192 {
		opts.UMEM.NumFrames = 8192 // room for the guest's TSO sends too
	}
	e, err := engine.New(opts, nil)
	if err != nil {
		return err
	}
	defer e.Close()
	// A guest with its own TCP/IP stack serves HTTP next to the raw socket
	// that takes the generator's UDP flood.
	guest, err := startDemoGuest(e, p)
	if err != nil {
		return err
	}
	defer guest.close()
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
	// Let the last frames in flight land.
	time.Sleep(50 * time.Millisecond)
	elapsed := time.Since(start)
	st, serr := e.Stats()
	if genErr != nil {
		return genErr
	}
	if serr != nil {
		return serr
	}
	fmt.Printf("\ngenerator sent %d frames (%.3f Mpps, %s mode)\n", genRes.Packets, genRes.PPS/1e6, genRes.Mode)
	fmt.Printf("engine received %d (%.3f Mpps over %.1fs); xsk drops %d (ring full %d), fill ring empty %d\n",
		st.RxPackets, float64(st.RxPackets)/elapsed.Seconds()/1e6, elapsed.Seconds(), st.Drops(), st.XSK.RxRingFull, st.XSK.RxFillRingEmptyDescs)
	pl := st.Pipeline
	fmt.Printf("pipeline: %d connections, %.3f context loads per packet, %d malformed\n", pl.Conns, pl.LoadsPerPacket(), pl.Malformed)
	if genRes.Packets > st.Steer.RxPackets {
		fmt.Printf("veth dropped %d frames before XDP (its 256-slot ring overflows when the receiver's CPU is busy)\n",
			genRes.Packets-st.Steer.RxPackets)
	}
	if ctx.Err() == nil {
		if err := guest.show(ctx, l, e); err != nil {
			return err
		}
	}
	e.Stop()
	gerr := guest.close()
	cerr := e.Close()
	if gerr != nil {
		return gerr
	}
	if cerr != nil {
		return fmt.Errorf("engine close: %w", cerr)
	}
	fmt.Println("frame audit: clean (every UMEM frame accounted for after close)")
	return nil
}

// demoGuest is the demo's guest: its own netstack with an HTTP server.
type demoGuest struct {
	g   *stack.Guest
	svc *services.Service
	c   services.Counters
}

func startDemoGuest(e *engine.Engine, p lab.Port) (*demoGuest, error) {
	v4 := p.HostIPv4.As4()
	v4[3] = 10
	v6 := p.HostIPv6.As16()
	v6[15] = 0x10
	spec := engine.GuestSpec{
		Name: "web", Port: p.Host, MAC: net.HardwareAddr{0x02, 0x78, 0x6e, 0x69, 0x63, 0x10},
		Addrs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4(v4), lab.PrefixLenIPv4),
			netip.PrefixFrom(netip.AddrFrom16(v6), lab.PrefixLenIPv6)},
	}
	g, err := stack.Attach(e, spec, stack.DefaultOptions())
	if err != nil {
		return nil, err
	}
	d := &demoGuest{g: g}
	if d.svc, err = services.Start(g, services.HTTP, 80, "web", &d.c, func() any { return g.Stats() }); err != nil {
		g.Close()
		return nil, err
	}
	fmt.Printf("guest web: its own TCP/IP stack at %s and %s, mac %s, serving HTTP on port 80\n",
		spec.Addrs[0].Addr(), spec.Addrs[1].Addr(), spec.MAC)
	return d, nil
}

// show drives the guest from the peer netns with the kernel's own tools:
// ping, curl for a page, a download and an upload.
func (d *demoGuest) show(ctx context.Context, l *lab.Lab, e *engine.Engine) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var v4, v6 netip.Addr
	for _, a := range d.g.Options().Addrs {
		if a.Addr().Is4() {
			v4 = a.Addr()
		} else {
			v6 = a.Addr()
		}
	}
	run := func(show string, name string, args ...string) (string, error) {
		fmt.Printf("\npeer$ %s\n", show)
		out, err := l.PeerCommand(ctx, name, args...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s: %w\n%s", show, err, out)
		}
		return string(out), nil
	}
	steps := []struct {
		show, name string
		args       []string
	}{
		{"ping -c 2 " + v4.String(), "ping", []string{"-c", "2", "-i", "0.2", "-W", "2", v4.String()}},
		{"ping -6 -c 2 " + v6.String(), "ping", []string{"-6", "-c", "2", "-i", "0.2", "-W", "2", v6.String()}},
		{"curl http://" + v4.String() + "/", "curl", []string{"-sS", "--max-time", "10", "http://" + v4.String() + "/"}},
		{"curl http://[" + v6.String() + "]/status", "curl", []string{"-sS", "--max-time", "10", "http://[" + v6.String() + "]/status"}},
	}
	for _, s := range steps {
		out, err := run(s.show, s.name, s.args...)
		if err != nil {
			return err
		}
		fmt.Print(indent(out))
	}
	const n = 500 << 20
	before, _ := e.Stats()
	out, err := run(fmt.Sprintf("head -c %dM /dev/zero | curl --data-binary @- http://%s/upload", n>>20, v4), "sh", "-c",
		fmt.Sprintf("head -c %d /dev/zero | curl -sS --max-time 50 -o /dev/null -w '%%{speed_upload}' --data-binary @- http://%s/upload", n, v4))
	if err != nil {
		return err
	}
	after, _ := e.Stats()
	fmt.Printf("    uploaded %d MB at %s; the engine's GRO merged %.1f segments per aggregate\n",
		n>>20, gbps(out), float64(after.Pipeline.GROSegments-before.Pipeline.GROSegments)/float64(max(1, aggs(after)-aggs(before))))
	out, err = run(fmt.Sprintf("curl -o /dev/null http://%s/bytes/%d", v4, n), "curl",
		"-sS", "--max-time", "50", "-o", "/dev/null", "-w", "%{speed_download}", fmt.Sprintf("http://%s/bytes/%d", v4, n))
	if err != nil {
		return err
	}
	st := d.g.Stats()
	fmt.Printf("    downloaded %d MB at %s; the guest's stack handed the engine %d TSO packets to segment\n", n>>20, gbps(out), st.TxGSOPackets)
	return nil
}

func aggs(s engine.Stats) uint64 {
	var n uint64
	for _, v := range s.Pipeline.SegsHist {
		n += v
	}
	return n
}

// gbps turns curl's bytes-per-second figure into Gbit/s.
func gbps(bytesPerSec string) string {
	var b float64
	fmt.Sscan(strings.TrimSpace(bytesPerSec), &b)
	return fmt.Sprintf("%.2f Gbit/s", b*8/1e9)
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	return b.String()
}

func (d *demoGuest) close() error {
	if d.g == nil {
		return nil
	}
	err := errors.Join(d.svc.Stop(), d.g.Close())
	d.g = nil
	return err
}
