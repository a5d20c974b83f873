package tests

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xnic/xnic/engine/gen"
	"github.com/xnic/xnic/engine/lab/labtest"
	"github.com/xnic/xnic/umem"
)

// TestTxNeedWakeup sends K frames through an XSK tx ring in copy mode, where
// the kernel sends only when kicked: the tx ring must ask for a wakeup, the
// socket must kick it, every frame must come back on the completion ring, and
// the peer's kernel must receive every datagram intact.
func TestTxNeedWakeup(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	const K = 5000

	pc, err := l.PeerListenPacket("udp4", net.JoinHostPort(p.PeerIPv4.String(), "9"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got := make(chan map[uint32]int, 1)
	var arrived atomic.Int64
	go func() {
		seen := map[uint32]int{}
		buf := make([]byte, 2048)
		for len(seen) < K {
			pc.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			if n >= 12 && binary.BigEndian.Uint32(buf) == magic {
				seen[binary.BigEndian.Uint32(buf[8:])]++
				arrived.Add(1)
			}
		}
		got <- seen
	}()

	u, err := umem.New(umem.Options{NumFrames: 1024, FrameSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	o := umem.DefaultSocketOptions()
	o.RxSize = 0
	o.Mode = umem.BindCopy
	s, err := umem.NewSocket(u, p.HostIfindex, 0, o)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Tx.NeedsWakeup() {
		t.Fatal("a copy-mode tx ring with need_wakeup must start out asking for a wakeup")
	}
	descs := make([]umem.Desc, 0, 64)
	sent := 0
	deadline := time.Now().Add(10 * time.Second)
	for sent < K || u.Free() != int(u.NumFrames()) {
		if time.Now().After(deadline) {
			t.Fatalf("sent %d, %d frames still out", sent, int(u.NumFrames())-u.Free())
		}
		s.KickTx()
		s.CompleteToFree()
		descs = descs[:0]
		for len(descs) < cap(descs) && sent+len(descs) < K {
			a, ok := u.Alloc()
			if !ok {
				break
			}
			seq := uint32(sent + len(descs))
			payload := make([]byte, 12)
			binary.BigEndian.PutUint32(payload, magic)
			binary.BigEndian.PutUint32(payload[8:], seq)
			f, err := gen.BuildUDP(gen.FrameOptions{Size: 128, SrcMAC: p.HostMAC, DstMAC: p.PeerMAC,
				SrcIP: p.HostIPv4, DstIP: p.PeerIPv4, SrcPort: 5000, DstPort: 9, Payload: payload})
			if err != nil {
				t.Fatal(err)
			}
			off := a + u.DataOffset()
			copy(u.Frame(a)[u.DataOffset():], f)
			descs = append(descs, umem.Desc{Addr: off, Len: uint32(len(f))})
		}
		n := s.Transmit(descs)
		for _, d := range descs[n:] {
			u.Release(d.Addr)
		}
		sent += n
		// Pace to the peer's reader: veth loses nothing here, but a UDP
		// receive queue of about 200 KiB overflows if the reader falls a few hundred behind.
		for int64(sent)-arrived.Load() > 64 && time.Now().Before(deadline) {
			s.KickTx() // copy mode sends at most 32 frames per kick
			s.CompleteToFree()
			time.Sleep(20 * time.Microsecond)
		}
	}
	if s.Counters.TxWakeups == 0 {
		t.Fatal("the socket never kicked the kernel, though the tx ring asked")
	}
	if s.Counters.TxCompleted != K {
		t.Fatalf("completed %d of %d", s.Counters.TxCompleted, K)
	}
	st, err := s.Statistics()
	if err != nil {
		t.Fatal(err)
	}
	if st.TxInvalidDescs != 0 {
		t.Fatalf("tx_invalid_descs %d", st.TxInvalidDescs)
	}
	seen := <-got
	if len(seen) != K {
		t.Fatalf("peer received %d distinct datagrams of %d", len(seen), K)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := u.AuditIdle(); err != nil {
		t.Fatal(err)
	}
}
