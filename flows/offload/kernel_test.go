//go:build linux

package offload

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/flows"
)

// kernelTrain is a train to put through the kernel's GRO and ours.
type kernelTrain struct {
	name string
	v6   bool
	lens []int
	mod  func(i int, s *seg)
	// sorted: compare the boundaries as a set, for trains where Linux
	// delivers a never-merged frame before the held aggregate of its flow.
	sorted bool
}

func kernelTrains() []kernelTrain {
	var ts []kernelTrain
	for _, v6 := range []bool{false, true} {
		fam := "ipv4"
		if v6 {
			fam = "ipv6"
		}
		mss := 1448 // a 1500-byte MTU with timestamps
		if v6 {
			mss = 1428
		}
		lens1 := repeat(100, mss)
		lens1[50], lens1[99] = 0, 1000
		ts = append(ts,
			kernelTrain{name: fam + "/ticks+ack+short+psh", v6: v6, lens: lens1, mod: func(i int, s *seg) {
				ts := uint32(5000)
				if i >= 30 {
					ts++
				}
				if i >= 70 {
					ts++
				}
				s.opts = tsOpts(ts, 42)
				if i == 99 {
					s.flags |= flows.TCPFlagPSH
				}
			}},
			kernelTrain{name: fam + "/64KB", v6: v6, lens: repeat(100, mss)},
			kernelTrain{name: fam + "/flags", v6: v6, lens: repeat(40, 1000), mod: func(i int, s *seg) {
				switch i {
				case 5:
					s.flags |= flows.TCPFlagPSH
				case 9:
					s.flags |= flows.TCPFlagCWR
				case 14:
					s.flags |= flows.TCPFlagECE
				case 19:
					s.flags |= flows.TCPFlagURG
					s.urg = 3
				case 24:
					s.flags |= flows.TCPFlagFIN
				}
				if i >= 30 {
					s.window = 400
				}
				if i >= 35 {
					s.ack += 1000
				}
			}},
			kernelTrain{name: fam + "/mss+loss+hops", v6: v6, lens: []int{
				1000, 1000, 1200, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 700, 1000, 1000, 1000},
				mod: func(i int, s *seg) {
					if i >= 6 {
						s.seq += 5000 // loss
					}
					if i >= 9 {
						s.ttl--
					}
					if i >= 12 {
						s.tos = 0x20
					}
				}},
			kernelTrain{name: fam + "/bad checksum", v6: v6, lens: repeat(10, 1000), sorted: true, mod: func(i int, s *seg) {
				s.badTCP = i == 4
			}},
		)
	}
	ts = append(ts,
		kernelTrain{name: "ipv4/fixed id", lens: repeat(30, 1448), mod: func(i int, s *seg) { s.id = 7 }},
		kernelTrain{name: "ipv4/fixed id then jump", lens: repeat(30, 1448), mod: func(i int, s *seg) {
			s.id = 7
			if i >= 20 {
				s.id = 9 + uint16(i)
			}
		}},
		kernelTrain{name: "ipv4/fixed id without DF", lens: repeat(30, 1448), mod: func(i int, s *seg) { s.id, s.df = 7, false }},
	)
	return ts
}

// boundary is one delivered packet of a flow: its first sequence number and
// its payload length.
type boundary struct{ seq, n uint32 }

func (b boundary) String() string { return fmt.Sprintf("%d+%d", b.seq, b.n) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func packetSocket(ifindex int) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return -1, fmt.Errorf("open packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind packet socket to ifindex %d: %w", ifindex, err)
	}
	return fd, nil
}

// TestKernelGRO sends trains from the peer netns into a veth whose host end
// runs the kernel's GRO, captures what comes out of it, and compares the
// packet boundaries with ours. gro_flush_timeout keeps the kernel's GRO
// lists across NAPI polls, so that both see the train as one batch. A jiffy
// tick (HZ=250 here) or a full NAPI budget can still flush the kernel's
// list early, as a batch end would: every attempt must match ours run with
// a Flush wherever the kernel started a packet, and one of a few attempts
// must match ours without any.
func TestKernelGRO(t *testing.T) {
	labtest.RequireRoot(t, "compares GRO with the kernel's on a veth lab")
	opts := lab.DefaultOptions()
	opts.Name = ""
	l := labtest.New(t, opts)
	port := l.Ports[0]
	if out, err := exec.Command("ethtool", "-K", port.Host, "gro", "on").CombinedOutput(); err != nil {
		t.Fatalf("ethtool -K %s gro on: %v: %s", port.Host, err, out)
	}
	if err := os.WriteFile("/sys/class/net/"+port.Host+"/gro_flush_timeout", []byte("20000000"), 0); err != nil {
		t.Fatalf("set gro_flush_timeout: %v", err)
	}

	rx, err := packetSocket(port.HostIfindex)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(rx) })
	for _, o := range []struct{ level, opt, v int }{
		{unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1},
		{unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32 << 20},
	} {
		if err := unix.SetsockoptInt(rx, o.level, o.opt, o.v); err != nil {
			t.Fatalf("setsockopt %d: %v", o.opt, err)
		}
	}
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	var tx int
	if err := l.InPeer(func() error {
		var err error
		tx, err = packetSocket(port.PeerIfindex)
		if err != nil {
			return err
		}
		return unix.SetsockoptInt(tx, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(tx) })

	buf := make([]byte, 1<<17)
	sport := uint16(20000)
	for _, kt := range kernelTrains() {
		t.Run(kt.name, func(t *testing.T) {
			var want []boundary
			exact := false
			for attempt := 0; attempt < 8 && !exact; attempt++ {
				sport++ // a fresh flow for every attempt
				base := baseSeg(kt.v6)
				base.sport = sport
				copy(base.srcMAC[:], port.PeerMAC)
				copy(base.dstMAC[:], port.HostMAC)
				segs := train(base, kt.lens)
				if kt.mod != nil {
					for i := range segs {
						kt.mod(i, &segs[i])
					}
				}
				fs := frames(segs)

				// Ours.
				want = ours(t, fs, nil)

				// The kernel's.
				for {
					if _, _, err := unix.Recvfrom(rx, buf, unix.MSG_DONTWAIT); err != nil {
						break // drained
					}
				}
				for _, f := range fs {
					if _, err := unix.Write(tx, f); err != nil {
						t.Fatalf("send: %v", err)
					}
				}
				var got []boundary
				bytesIn, emptyIn := 0, 0
				bytesWant, emptyWant := 0, 0
				for _, s := range segs {
					bytesWant += len(s.payload)
					if len(s.payload) == 0 {
						emptyWant++
					}
				}
				deadline := time.Now().Add(2 * time.Second)
				for (bytesIn < bytesWant || emptyIn < emptyWant) && time.Now().Before(deadline) {
					n, _, err := unix.Recvfrom(rx, buf, 0)
					if err != nil {
						continue
					}
					var p flows.Packet
					flows.Parse(buf[:n], &p)
					if p.Reason != flows.ReasonOK || p.Proto != flows.ProtoTCP || p.Key.SrcPort != sport {
						continue
					}
					seq := flows.TCP(buf[p.L4Off:]).Seq()
					got = append(got, boundary{seq, uint32(p.PayloadLen)})
					bytesIn += int(p.PayloadLen)
					if p.PayloadLen == 0 {
						emptyIn++
					}
				}
				if kt.sorted {
					sortB(got)
					sortB(want)
				}
				if slices.Equal(got, want) {
					exact = true
					break
				}
				// The kernel flushed early (a jiffy tick or a full NAPI
				// budget): run ours again with a Flush before every frame
				// that starts a kernel packet. It must then agree, or the
				// rules differ.
				flushAt := map[int]bool{}
				for _, b := range got {
					for i, s := range segs {
						if s.seq == b.seq && (len(s.payload) == 0) == (b.n == 0) {
							flushAt[i] = true
							break
						}
					}
				}
				again := ours(t, fs, flushAt)
				if kt.sorted {
					sortB(again)
				}
				if !slices.Equal(got, again) {
					t.Fatalf("attempt %d: kernel\n %v\nours with the kernel's early flushes\n %v\nours\n %v", attempt, got, again, want)
				}
				t.Logf("attempt %d: the kernel flushed early: %v", attempt, got)
			}
			if !exact {
				t.Fatalf("no attempt matched ours: %v", want)
			}
		})
	}
}

// ours runs our GRO over fs, with a Flush before the frames in flushAt
// and at the end, and returns the packet boundaries.
func ours(t testing.TB, fs [][]byte, flushAt map[int]bool) []boundary {
	h := newHarness(t, DefaultGROOptions())
	for i, f := range fs {
		if flushAt[i] {
			h.flush()
		}
		h.feed(f)
	}
	h.flush()
	var b []boundary
	for _, x := range h.out {
		p := parse(t, x.bytes)
		b = append(b, boundary{flows.TCP(x.bytes[p.L4Off:]).Seq(), uint32(p.PayloadLen)})
	}
	return b
}

func sortB(b []boundary) {
	slices.SortFunc(b, func(x, y boundary) int {
		if x.seq != y.seq {
			return int(int64(x.seq) - int64(y.seq))
		}
		return int(x.n) - int(y.n)
	})
}
