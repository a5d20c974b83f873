package peerstest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/engine/lab/labtest"
)

const (
	framesToSend = 1000
	sendBurst    = 32 // frames between pauses, well under veth's 256-entry ring
	testUDPPort  = 9  // must match TEST_PORT in testdata/xsk_redirect.c
	peerDuration = 1500 * time.Millisecond
)

// TestPeers builds the three peers, runs each one on a fresh veth lab while
// a sender in the peer netns pushes a known number of UDP frames, and checks
// what each peer reports.
func TestPeers(t *testing.T) {
	labtest.RequireRoot(t, "creates a netns, a veth pair, an XDP program, a bpffs pin and AF_XDP sockets")
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Logf("warning: remove memlock limit: %v", err)
	}

	bin := t.TempDir()
	buildPeers(t, bin)
	lab := newVethLab(t)
	red := loadRedirect(t, bin, lab.hostIndex)

	peers := []struct {
		name   string
		args   []string
		xsk    bool
		fields []string
	}{
		{"libxdp", []string{filepath.Join(bin, "rxdrop_libxdp"), "-xskmap", red.pin}, true,
			[]string{"rx_dropped", "rx_invalid_descs", "rx_ring_full", "rx_fill_ring_empty_descs"}},
		{"asavie", []string{filepath.Join(bin, "asavie"), "-xskmap", red.pin}, true,
			[]string{"rx_dropped", "rx_invalid_descs", "rx_ring_full", "rx_fill_ring_empty_descs"}},
		{"afpacket", []string{filepath.Join(bin, "afpacket")}, false,
			[]string{"tp_packets", "tp_drops", "tp_freeze_q_cnt"}},
	}
	for _, p := range peers {
		t.Run(p.name, func(t *testing.T) {
			before := red.hits(t)
			args := append(p.args[1:], "-iface", lab.host, "-queue", "0",
				"-duration", peerDuration.String(), "-json")
			res := runPeer(t, p.args[0], args, func() int { return lab.send(t, framesToSend) })
			after := red.hits(t)
			matched, redirected := after[0]-before[0], after[1]-before[1]

			if res["name"] != p.name {
				t.Errorf("name = %v, want %s", res["name"], p.name)
			}
			for _, k := range append([]string{"packets", "seconds", "pps"}, p.fields...) {
				if _, ok := res[k].(float64); !ok {
					t.Errorf("JSON field %q missing or not a number in %v", k, res)
				}
			}
			packets, _ := res["packets"].(float64)
			seconds, _ := res["seconds"].(float64)
			pps, _ := res["pps"].(float64)
			if seconds < peerDuration.Seconds()*0.95 || seconds > peerDuration.Seconds()+1 {
				t.Errorf("seconds = %.3f, want about %.3f", seconds, peerDuration.Seconds())
			}
			if seconds > 0 && (pps < 0.99*packets/seconds || pps > 1.01*packets/seconds) {
				t.Errorf("pps = %.1f, want packets/seconds = %.1f", pps, packets/seconds)
			}
			if matched != framesToSend {
				t.Fatalf("XDP program matched %d test frames, want %d: the lab lost frames", matched, framesToSend)
			}

			if p.xsk {
				if redirected != framesToSend {
					t.Errorf("XDP redirected %d frames into the XSKMAP, want %d", redirected, framesToSend)
				}
				if packets != framesToSend {
					t.Errorf("packets = %.0f, want exactly %d", packets, framesToSend)
				}
				for _, k := range []string{"rx_dropped", "rx_ring_full", "rx_invalid_descs"} {
					if res[k] != 0.0 {
						t.Errorf("%s = %v, want 0", k, res[k])
					}
				}
				return
			}
			// The XSK peers removed their sockets from the map on exit,
			// so XDP now passes every test frame to the stack.
			if redirected != 0 {
				t.Errorf("XDP redirected %d frames with no peer in the XSKMAP: a stale entry was left", redirected)
			}
			// IPv6 is off on both ends and the host side has no address, so
			// besides our frames only a stray packet or two could show up.
			if packets < framesToSend || packets > framesToSend+8 {
				t.Errorf("packets = %.0f, want %d (+ at most 8 of kernel noise)", packets, framesToSend)
			}
			if tp, _ := res["tp_packets"].(float64); tp < framesToSend {
				t.Errorf("tp_packets = %.0f, want >= %d", tp, framesToSend)
			}
			if res["tp_drops"] != 0.0 {
				t.Errorf("tp_drops = %v, want 0", res["tp_drops"])
			}
		})
	}
}

// buildPeers builds all peers into dir through the Makefile, so the lead's
// build line is the one under test.
func buildPeers(t *testing.T, dir string) {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	cmd := exec.Command("make", "-s", "-C", "..", "OUT="+dir, "GO="+goBin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build peers: %v\n%s", err, out)
	}
}

// runPeer starts a peer, waits for its ready line, runs send, waits for the
// peer to exit and returns the JSON object on its last stdout line.
func runPeer(t *testing.T, bin string, args []string, send func() int) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("pipe peer stderr: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}

	ready := make(chan struct{})
	var errText strings.Builder
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(stderr)
		signaled := false
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" && !signaled {
				signaled = true
				close(ready)
				continue
			}
			errText.WriteString(line + "\n")
		}
	}()

	select {
	case <-ready:
	case <-stderrDone:
		cmd.Wait()
		t.Fatalf("%s exited before it was ready:\n%s", bin, errText.String())
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("%s was not ready after 10s:\n%s", bin, errText.String())
	}

	start := time.Now()
	sent := send()
	if took := time.Since(start); took > peerDuration/2 {
		t.Errorf("sending %d frames took %s, too close to the %s window", sent, took, peerDuration)
	}
	<-stderrDone
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s\nstdout:\n%s", bin, err, errText.String(), stdout.String())
	}
	if sent != framesToSend {
		t.Fatalf("sent %d frames, want %d", sent, framesToSend)
	}
	t.Logf("%s output:\n%s", filepath.Base(bin), stdout.String())

	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("decode last line of %s output as JSON: %v", bin, err)
	}
	return res
}

// vethLab is a veth pair: host side in the root netns (where the peers run),
// peer side in a private netns (where the sender runs).
type vethLab struct {
	ns        string
	host      string
	peer      string
	hostIndex int
	hostMAC   net.HardwareAddr
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func newVethLab(t *testing.T) *vethLab {
	t.Helper()
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("pick lab name: %v", err)
	}
	id := "xb" + hex.EncodeToString(b[:])
	l := &vethLab{ns: id + "-peer", host: id + "h", peer: id + "p"}

	run(t, "ip", "netns", "add", l.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.ns).Run() })
	// No IPv6 anywhere (no DAD, MLD or router solicitations), so nothing
	// but the test's frames crosses the pair.
	run(t, "ip", "netns", "exec", l.ns, "sysctl", "-qw",
		"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	// One queue per side: every frame lands on rx queue 0.
	run(t, "ip", "link", "add", l.host, "numtxqueues", "1", "numrxqueues", "1", "type", "veth",
		"peer", "name", l.peer, "numtxqueues", "1", "numrxqueues", "1", "netns", l.ns)
	t.Cleanup(func() { exec.Command("ip", "link", "del", l.host).Run() })
	// The host side gets no address and does not forward: the kernel
	// drops the test frames quietly after the peers have seen them.
	for _, kv := range [][2]string{
		{"/proc/sys/net/ipv6/conf/" + l.host + "/disable_ipv6", "1"},
		{"/proc/sys/net/ipv4/conf/" + l.host + "/forwarding", "0"},
	} {
		if err := os.WriteFile(kv[0], []byte(kv[1]), 0o644); err != nil {
			t.Fatalf("set sysctl %s: %v", kv[0], err)
		}
	}
	run(t, "ip", "link", "set", l.host, "up")
	run(t, "ip", "-n", l.ns, "link", "set", l.peer, "up")

	ifc, err := net.InterfaceByName(l.host)
	if err != nil {
		t.Fatalf("look up %s: %v", l.host, err)
	}
	l.hostIndex, l.hostMAC = ifc.Index, ifc.HardwareAddr
	return l
}

// send pushes n UDP frames (198.18.0.2 -> 198.18.0.1, port 9) out of the
// peer side, pausing every sendBurst frames. It returns how many it sent.
func (l *vethLab) send(t *testing.T, n int) int {
	t.Helper()
	type result struct {
		sent int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// The thread joins the lab netns and is never unlocked, so the
		// runtime retires it when this goroutine ends.
		runtime.LockOSThread()
		sent, err := l.sendInNetns(n)
		done <- result{sent, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("send frames: %v", r.err)
	}
	return r.sent
}

func (l *vethLab) sendInNetns(n int) (int, error) {
	h, err := netns.GetFromName(l.ns)
	if err != nil {
		return 0, fmt.Errorf("open netns %s: %w", l.ns, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return 0, fmt.Errorf("enter netns %s: %w", l.ns, err)
	}
	ifc, err := net.InterfaceByName(l.peer)
	if err != nil {
		return 0, fmt.Errorf("look up %s: %w", l.peer, err)
	}
	// Protocol 0: a send-only socket that receives nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open packet socket: %w", err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrLinklayer{Ifindex: ifc.Index, Halen: 6}
	copy(sa.Addr[:], l.hostMAC)

	frame := udpFrame(l.hostMAC, ifc.HardwareAddr)
	for i := 0; i < n; i++ {
		binary.BigEndian.PutUint32(frame[42:], uint32(i))
		if err := unix.Sendto(fd, frame, 0, sa); err != nil {
			return i, fmt.Errorf("send frame %d: %w", i, err)
		}
		if (i+1)%sendBurst == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	return n, nil
}

// udpFrame builds a 60-byte Ethernet/IPv4/UDP frame to testUDPPort with a
// valid IPv4 header checksum and no UDP checksum.
func udpFrame(dst, src net.HardwareAddr) []byte {
	f := make([]byte, 60)
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_IP)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-14))
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	copy(ip[12:16], net.IPv4(198, 18, 0, 2).To4())
	copy(ip[16:20], net.IPv4(198, 18, 0, 1).To4())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:42]
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], testUDPPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(f)-34))
	return f
}

// redirect is the test's XDP program attached to the host side, with its
// XSKMAP pinned for the peers.
type redirect struct {
	pin     string
	hitsMap *ebpf.Map
}

func loadRedirect(t *testing.T, dir string, ifindex int) *redirect {
	t.Helper()
	obj := filepath.Join(dir, "xsk_redirect.o")
	run(t, "clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
		"-c", filepath.Join("testdata", "xsk_redirect.c"), "-o", obj)
	coll, err := ebpf.LoadCollection(obj)
	if err != nil {
		t.Fatalf("load %s: %v", obj, err)
	}
	t.Cleanup(func() { coll.Close() })

	l, err := link.AttachXDP(link.XDPOptions{
		Program:   coll.Programs["xsk_redirect"],
		Interface: ifindex,
		Flags:     link.XDPDriverMode,
	})
	if err != nil {
		t.Fatalf("attach XDP to ifindex %d: %v", ifindex, err)
	}
	t.Cleanup(func() { l.Close() })

	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("pick pin dir: %v", err)
	}
	pinDir := filepath.Join("/sys/fs/bpf", "xnic-bench-"+hex.EncodeToString(b[:]))
	if err := os.Mkdir(pinDir, 0o700); err != nil {
		t.Fatalf("create pin dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	r := &redirect{pin: filepath.Join(pinDir, "xsks"), hitsMap: coll.Maps["hits"]}
	if err := coll.Maps["xsks"].Pin(r.pin); err != nil {
		t.Fatalf("pin xskmap: %v", err)
	}
	t.Cleanup(func() {
		if err := coll.Maps["xsks"].Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("unpin xskmap: %v", err)
		}
	})
	return r
}

// hits returns the XDP program's counters: [0] matched test frames,
// [1] frames the XSKMAP redirect accepted.
func (r *redirect) hits(t *testing.T) [2]uint64 {
	t.Helper()
	var out [2]uint64
	for k := range out {
		if err := r.hitsMap.Lookup(uint32(k), &out[k]); err != nil {
			t.Fatalf("read hits[%d]: %v", k, err)
		}
	}
	return out
}

// TestPeersOwnProgram runs the AF_XDP peers as their users run them, each on
// the XDP program it loads itself (rxdrop_libxdp -bare, asavie -own-prog):
// every frame sent reaches the peer, and the program is gone once it exits.
func TestPeersOwnProgram(t *testing.T) {
	labtest.RequireRoot(t, "creates a netns, a veth pair and AF_XDP sockets; the peers load XDP programs")
	bin := t.TempDir()
	buildPeers(t, bin)
	for _, p := range []struct{ name, bin, flag string }{
		{"libxdp", "rxdrop_libxdp", "-bare"},
		{"asavie", "asavie", "-own-prog"},
	} {
		t.Run(p.name, func(t *testing.T) {
			lab := newVethLab(t)
			args := []string{p.flag, "-iface", lab.host, "-queue", "0", "-duration", peerDuration.String(), "-json"}
			res := runPeer(t, filepath.Join(bin, p.bin), args, func() int { return lab.send(t, framesToSend) })
			if packets, _ := res["packets"].(float64); packets != framesToSend {
				t.Errorf("packets = %v, want exactly %d: the peer's own program did not steer every frame to it", res["packets"], framesToSend)
			}
			link, err := netlink.LinkByName(lab.host)
			if err != nil {
				t.Fatal(err)
			}
			if x := link.Attrs().Xdp; x != nil && x.Attached {
				t.Errorf("an XDP program is still attached to %s after %s exited", lab.host, p.bin)
			}
		})
	}
}
