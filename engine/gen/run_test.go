package gen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine/lab/labtest"
)

// testLab is one veth pair named after the engine/lab convention: host end
// NAME0 in the root netns, peer end NAMEp0 in netns NAME-peer.
type testLab struct {
	ns, host, peer string
	hostIndex      int
	hostMAC        net.HardwareAddr
}

func newTestLab(t testing.TB) *testLab {
	t.Helper()
	labtest.RequireRoot(t, "netns, veth and BPF")
	name := fmt.Sprintf("xgt%05x", rand.Uint32()&0xfffff)
	l := &testLab{ns: name + "-peer", host: name + "0", peer: name + "p0"}

	err := goInNetns("", func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		ns, err := netns.NewNamed(l.ns) // switches this thread
		if err != nil {
			return err
		}
		ns.Close()
		return netns.Set(orig)
	})
	if err != nil {
		t.Fatalf("create netns %s: %v", l.ns, err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(l.ns); err != nil {
			t.Errorf("delete netns %s: %v", l.ns, err)
		}
	})
	ns, err := netns.GetFromName(l.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := netlink.LinkAdd(&netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: l.host}, PeerName: l.peer, PeerNamespace: netlink.NsFd(ns),
	}); err != nil {
		t.Fatalf("add veth %s: %v", l.host, err)
	}
	t.Cleanup(func() {
		if link, err := netlink.LinkByName(l.host); err == nil {
			netlink.LinkDel(link)
		}
	})
	host, err := netlink.LinkByName(l.host)
	if err != nil {
		t.Fatal(err)
	}
	l.hostIndex, l.hostMAC = host.Attrs().Index, host.Attrs().HardwareAddr
	if err := netlink.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}
	// The peer sends nothing of its own (no IPv6 NDP/MLD), so the host-side
	// counters see only generated frames.
	err = goInNetns(l.ns, func() error {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+l.peer+"/disable_ipv6", []byte("1"), 0o644); err != nil {
			return err
		}
		peer, err := netlink.LinkByName(l.peer)
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(peer)
	})
	if err != nil {
		t.Fatalf("set up %s: %v", l.peer, err)
	}
	return l
}

func (l *testLab) attach(t testing.TB, v bpf.Verdict) *bpf.Counter {
	t.Helper()
	c, err := bpf.LoadCounter(v)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Attach(l.hostIndex, bpf.AttachNative); err != nil {
		t.Fatal(err)
	}
	return c
}

func (l *testLab) options() Options {
	o := DefaultOptions()
	o.Netns, o.Iface = l.ns, l.peer
	return o
}

// TestRunIntoDrop generates for about a second into xnic_drop on the far
// end of the veth and compares what was sent with what arrived.
func TestRunIntoDrop(t *testing.T) {
	l := newTestLab(t)
	drop := l.attach(t, bpf.VerdictDrop)

	o := l.options()
	o.Flows = 16
	var ticks []Tick
	o.Progress = func(tk Tick) { ticks = append(ticks, tk) }
	o.Duration = 2200 * time.Millisecond // two progress ticks
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got, err := drop.TotalStats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d frames in %s: %.2f Mpps; xnic_drop counted %d (%.1f%%)",
		res.Packets, res.Duration, res.PPS/1e6, got.RxPackets, 100*float64(got.RxPackets)/float64(res.Packets))
	if res.Packets == 0 || res.Bytes != res.Packets*60 {
		t.Errorf("result %+v: want packets > 0 of 60 bytes", res)
	}
	if res.Duration < o.Duration || res.Duration > o.Duration+time.Second {
		t.Errorf("ran %s for a %s duration", res.Duration, o.Duration)
	}
	// veth drops when its ring is full; most frames must still arrive.
	if got.RxPackets == 0 || got.RxPackets > res.Packets || float64(got.RxPackets) < 0.5*float64(res.Packets) {
		t.Errorf("xnic_drop counted %d of %d sent", got.RxPackets, res.Packets)
	}
	if len(ticks) < 2 || ticks[0].PPS <= 0 || ticks[1].Packets <= ticks[0].Packets {
		t.Errorf("progress ticks %+v", ticks)
	}
}

func TestRunCountAndCancel(t *testing.T) {
	l := newTestLab(t)
	drop := l.attach(t, bpf.VerdictDrop)

	o := l.options()
	o.Count = 100_003 // not a multiple of Repeat or BatchSize
	o.Threads = 2
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Packets != o.Count {
		t.Errorf("sent %d, want exactly %d", res.Packets, o.Count)
	}
	if st, _ := drop.TotalStats(); st.RxPackets == 0 || st.RxPackets > o.Count {
		t.Errorf("xnic_drop counted %d of %d", st.RxPackets, o.Count)
	}

	o = l.options()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err = Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second || res.Packets == 0 {
		t.Errorf("cancelled run took %s and sent %d", el, res.Packets)
	}
}

func TestRunErrors(t *testing.T) {
	l := newTestLab(t)
	o := l.options()
	o.Iface = "nonexistent0"
	if _, err := Run(context.Background(), o); err == nil {
		t.Error("Run on a missing interface succeeded")
	}
	o = l.options()
	o.Netns = "xnic-no-such-netns"
	if _, err := Run(context.Background(), o); err == nil {
		t.Error("Run in a missing netns succeeded")
	}
	o = l.options()
	o.Flows = 0
	if _, err := Run(context.Background(), o); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Run with 0 flows: %v", err)
	}
}

// TestRunOnTheWire passes the frames to the host stack with xnic_pass and
// reads them back with an AF_PACKET socket: addresses, flows, sequence
// numbers and checksums are what a receiver sees.
func TestRunOnTheWire(t *testing.T) {
	for _, ipv6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[ipv6], func(t *testing.T) {
			l := newTestLab(t)
			l.attach(t, bpf.VerdictPass)
			fd := packetSocket(t, l.hostIndex)

			const flows, count = 8, 400
			o := l.options()
			o.IPv6, o.Flows, o.Count, o.FrameSize = ipv6, flows, count, 128
			o.SrcPortBase, o.DstPort = 40000, 7777
			res, err := Run(context.Background(), o)
			if err != nil || res.Packets != count {
				t.Fatalf("Run: %+v, %v", res, err)
			}
			src, dst := o.addresses()
			ports := map[uint16]int{}
			seqs := map[uint64]bool{}
			buf := make([]byte, 4096)
			for len(seqs) < count {
				n, _, err := unix.Recvfrom(fd, buf, 0)
				if err != nil {
					break // timeout: some frames lost in the veth ring
				}
				f := buf[:n]
				l4 := UDPOffset(ipv6)
				if n != o.FrameSize || binary.BigEndian.Uint16(f[l4+2:]) != o.DstPort {
					continue // not ours
				}
				if !bytesEq(f[0:6], l.hostMAC) {
					t.Fatalf("dst mac % x, want the host veth's % x", f[0:6], l.hostMAC)
				}
				if !UDPChecksumValid(src, dst, f[l4:]) {
					t.Fatalf("bad udp checksum in % x", f)
				}
				if !ipv6 && foldSum(addBytes(0, f[14:34])) != 0xffff {
					t.Fatalf("bad ipv4 header checksum")
				}
				ports[binary.BigEndian.Uint16(f[l4:])]++
				seq := binary.BigEndian.Uint64(f[l4+8:])
				if seqs[seq] {
					t.Fatalf("sequence %#x seen twice", seq)
				}
				seqs[seq] = true
			}
			t.Logf("received %d of %d frames, ports %v", len(seqs), count, ports)
			if len(seqs) < count/2 {
				t.Fatalf("received %d of %d frames", len(seqs), count)
			}
			for p := range ports {
				if p < o.SrcPortBase || p >= o.SrcPortBase+flows {
					t.Errorf("source port %d outside %d..%d", p, o.SrcPortBase, o.SrcPortBase+flows-1)
				}
			}
			if len(ports) != flows {
				t.Errorf("saw %d source ports, want %d", len(ports), flows)
			}
		})
	}
}

func bytesEq(a, b []byte) bool { return string(a) == string(b) }

// packetSocket opens an AF_PACKET socket on ifindex that receives incoming
// frames only, with a short timeout.
func packetSocket(t *testing.T, ifindex int) int {
	t.Helper()
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20); err != nil {
		t.Fatal(err)
	}
	tv := unix.Timeval{Usec: 200_000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		t.Fatal(err)
	}
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// BenchmarkLiveFrames measures the generator into xnic_drop: 60-byte frames
// (64 on the wire) by default; the metric is millions of frames per second
// sent, and the share xnic_drop saw.
func BenchmarkLiveFrames(b *testing.B) {
	for _, bc := range []struct {
		size, threads, batch int
		ipv6                 bool
	}{
		{60, 1, 64, false}, {60, 1, 256, false}, {60, 2, 64, false}, {62, 1, 64, true}, {1514, 1, 64, false},
	} {
		name := fmt.Sprintf("size=%d/threads=%d/batch=%d/ipv6=%v", bc.size, bc.threads, bc.batch, bc.ipv6)
		b.Run(name, func(b *testing.B) {
			l := newTestLab(b)
			drop := l.attach(b, bpf.VerdictDrop)
			o := l.options()
			o.FrameSize, o.Threads, o.BatchSize, o.IPv6 = bc.size, bc.threads, bc.batch, bc.ipv6
			o.Count = uint64(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			res, err := Run(context.Background(), o)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			st, _ := drop.TotalStats()
			b.ReportMetric(res.PPS/1e6, "Mpps")
			b.ReportMetric(float64(st.RxPackets)/float64(max(res.Packets, 1)), "recv/sent")
		})
	}
}
