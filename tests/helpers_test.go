package tests

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/engine/lab"
)

// magic marks the frames a test sends, so stray traffic cannot be mistaken
// for them.
const magic = 0x786e6963 // "xnic"

// tagged is the payload the tests send: magic, the port it was sent to, a
// sequence number, and a fill pattern derived from the sequence.
func taggedFrame(t testing.TB, p lab.Port, port int, seq uint32, size int) []byte {
	t.Helper()
	payload := make([]byte, size-gen.PayloadOffset(false))
	binary.BigEndian.PutUint32(payload[0:], magic)
	binary.BigEndian.PutUint32(payload[4:], uint32(port))
	binary.BigEndian.PutUint32(payload[8:], seq)
	for i := 12; i < len(payload); i++ {
		payload[i] = byte(seq) + byte(i)
	}
	f, err := gen.BuildUDP(gen.FrameOptions{
		Size: size, SrcMAC: p.PeerMAC, DstMAC: p.HostMAC,
		SrcIP: p.PeerIPv4, DstIP: p.HostIPv4, SrcPort: 40000 + uint16(seq%1000), DstPort: 9,
		Payload: payload,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// parseTagged reads a frame sent by taggedFrame. ok is false for anything else.
func parseTagged(f []byte) (port int, seq uint32, intact, ok bool) {
	off := gen.PayloadOffset(false)
	if len(f) < off+12 || binary.BigEndian.Uint32(f[off:]) != magic {
		return 0, 0, false, false
	}
	port = int(binary.BigEndian.Uint32(f[off+4:]))
	seq = binary.BigEndian.Uint32(f[off+8:])
	intact = true
	for i := 12; off+i < len(f); i++ {
		if f[off+i] != byte(seq)+byte(i) {
			intact = false
			break
		}
	}
	return port, seq, intact, true
}

// peerSender is an AF_PACKET socket created inside the lab's netns; it stays
// in that netns after the creating thread leaves it.
type peerSender struct {
	fd      int
	ifindex int
}

func newPeerSender(t testing.TB, l *lab.Lab, port int) *peerSender {
	t.Helper()
	s := &peerSender{ifindex: l.Ports[port].PeerIfindex, fd: -1}
	err := l.InPeer(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("af_packet socket: %w", err)
		}
		s.fd = fd
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

func (s *peerSender) send(t testing.TB, frame []byte) {
	t.Helper()
	sa := &unix.SockaddrLinklayer{Ifindex: s.ifindex, Halen: 6}
	if err := unix.Sendto(s.fd, frame, 0, sa); err != nil {
		t.Fatalf("send from peer: %v", err)
	}
}

// rxPackets reads the packets w has received, for sendPaced.
func rxPackets(w *engine.Worker) func() uint64 {
	return func() uint64 { return w.Stats().RxPackets }
}

// sendPaced sends frames in bursts and waits after each burst until
// received() has caught up, so the veth ring (256 slots) never overflows and
// any loss is the data path's.
func sendPaced(t testing.TB, s *peerSender, frames [][]byte, burst int, received func() uint64) {
	t.Helper()
	base := received()
	for i := 0; i < len(frames); i += burst {
		end := min(i+burst, len(frames))
		for _, f := range frames[i:end] {
			s.send(t, f)
		}
		want := base + uint64(end)
		deadline := time.Now().Add(5 * time.Second)
		for received() < want {
			if time.Now().After(deadline) {
				t.Fatalf("after %d frames sent, only %d received", end, received()-base)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

func mustIfindex(t testing.TB, name string) int {
	t.Helper()
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return ifi.Index
}

// labOptions is a default lab with a random test name.
func labOptions(ports int) lab.Options {
	o := lab.DefaultOptions()
	o.Name = ""
	o.Ports = ports
	return o
}

// removePinDir removes a port's pin directory, and the shared root when
// that leaves it empty (another engine's pins keep it), as an engine's
// close does: a test whose engine was killed cleans up after it.
func removePinDir(dir string) {
	os.RemoveAll(dir)
	os.Remove(filepath.Dir(dir))
}
