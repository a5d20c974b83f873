package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/internal/cli"
)

// genResult is the summary line of `xnic gen --json`.
type genResult struct {
	Type    string  `json:"type"` // "summary"
	Name    string  `json:"name"`
	Mode    string  `json:"mode"`
	Packets uint64  `json:"packets"`
	Bytes   uint64  `json:"bytes"`
	Seconds float64 `json:"seconds"`
	PPS     float64 `json:"pps"`
}

// genTick is an interval line of `xnic gen --json`.
type genTick struct {
	Type    string  `json:"type"`    // "interval"
	Seconds float64 `json:"seconds"` // since the start
	Packets uint64  `json:"packets"` // sent so far
	PPS     float64 `json:"pps"`     // over the last interval
}

func runGen(ctx context.Context, args []string) error {
	fs := cli.NewFlags("gen", "(--lab NAME [--lab-port I] | --netns NS --iface IF) [flags]")
	labName := fs.String("lab", "", "send into port --port of this lab (sets --netns, --iface, MACs and addresses)")
	port := fs.Int("lab-port", 0, "lab port index, with --lab")
	cli.Alias(fs, "port", "lab-port")
	netns := fs.String("netns", "", "network namespace to send from")
	iface := fs.String("iface", "", "interface to send out of (inside --netns)")
	mode := fs.String("mode", "auto", "live: BPF_PROG_RUN live frames with XDP_TX (the receiver needs an XDP program); xsk: AF_XDP TX; auto: live where the kernel allows it, else xsk")
	flows := fs.Int("flows", 1, "UDP flows: source ports cycled through, and beyond the ports above 10000, source addresses (198.18.N.2)")
	size := fs.Int("size", gen.MinFrameSize, "frame size in bytes without FCS (60 = 64 on the wire)")
	ipv6 := fs.Bool("ipv6", false, "send IPv6 instead of IPv4")
	duration := fs.Duration("duration", 10*time.Second, "how long to send (0: until --count or Ctrl-C)")
	count := fs.Uint64("count", 0, "frames to send (0: no limit)")
	threads := fs.Int("threads", 1, "sending threads (live mode)")
	dstMAC := fs.String("dst-mac", "", "destination MAC (default: the veth peer's, or broadcast)")
	srcIP := fs.String("src-ip", "", "source address (default 198.18.0.2 or 2001:2::2)")
	dstIP := fs.String("dst-ip", "", "destination address (default 198.18.0.1 or 2001:2::1)")
	asJSON := fs.Bool("json", false, "JSON on stdout: one object per second and a summary object; text on stderr")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	o := gen.DefaultOptions()
	o.Netns, o.Iface = *netns, *iface
	o.Flows, o.FrameSize, o.IPv6, o.Duration, o.Count, o.Threads = *flows, *size, *ipv6, *duration, *count, *threads
	if *labName != "" {
		l, err := lab.Open(*labName)
		if err != nil {
			return err
		}
		if *port < 0 || *port >= len(l.Ports) {
			return cli.FlagError("lab-port", "lab %s has ports 0..%d, got %d", l.Name, len(l.Ports)-1, *port)
		}
		p := l.Ports[*port]
		o.Netns, o.Iface = l.Netns, p.Peer
		o.SrcMAC, o.DstMAC = p.PeerMAC, p.HostMAC
		o.SrcIP, o.DstIP = p.PeerIPv4, p.HostIPv4
		if *ipv6 {
			o.SrcIP, o.DstIP = p.PeerIPv6, p.HostIPv6
		}
	}
	if o.Iface == "" {
		return cli.FlagError("iface", "required (or use --lab)")
	}
	if *dstMAC != "" {
		m, err := net.ParseMAC(*dstMAC)
		if err != nil || len(m) != 6 {
			return cli.FlagError("dst-mac", "not an Ethernet address: %q", *dstMAC)
		}
		o.DstMAC = m
	}
	for _, a := range []struct {
		name string
		s    string
		dst  *netip.Addr
	}{{"src-ip", *srcIP, &o.SrcIP}, {"dst-ip", *dstIP, &o.DstIP}} {
		if a.s == "" {
			continue
		}
		ip, err := netip.ParseAddr(a.s)
		if err != nil {
			return cli.FlagError(a.name, "not an IP address: %q", a.s)
		}
		*a.dst = ip
	}
	if *duration == 0 && *count == 0 {
		o.Duration = 0
	}
	m, err := gen.ParseMode(*mode)
	if err != nil {
		return cli.FlagError("mode", "want auto, live or xsk, got %q", *mode)
	}
	o.Mode = m
	o.Progress = func(t gen.Tick) {
		if *asJSON {
			writeJSON(os.Stdout, genTick{Type: lineInterval, Seconds: t.Elapsed.Seconds(), Packets: t.Packets, PPS: t.PPS})
			return
		}
		fmt.Fprintf(os.Stderr, "%6.1fs %14d sent %9.3f Mpps\n", t.Elapsed.Seconds(), t.Packets, t.PPS/1e6)
	}
	res, err := gen.Run(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(humanOut(*asJSON), "sent %d frames (%d bytes) in %.2fs: %.3f Mpps (%s mode)\n", res.Packets, res.Bytes,
		res.Duration.Seconds(), res.PPS/1e6, res.Mode)
	if *asJSON {
		return writeJSON(os.Stdout, genResult{Type: lineSummary, Name: "xnic-gen", Mode: string(res.Mode), Packets: res.Packets,
			Bytes: res.Bytes, Seconds: res.Duration.Seconds(), PPS: res.PPS})
	}
	return nil
}
