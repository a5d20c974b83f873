package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
	"github.com/xnic/xnic/internal/cli"
)

// bulkTrain writes n contiguous IPv4 TCP segments of mss payload bytes
// (timestamps option, so 1448 fills a 1500 MTU) to a pcap file.
func bulkTrain(t *testing.T, path string, n, mss int) {
	t.Helper()
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	seq := uint32(1_000_000)
	for i := range n {
		f := make([]byte, 14+20+32+mss)
		copy(f[0:], []byte{2, 0, 0x5e, 0, 0, 1, 2, 0, 0x5e, 0, 0, 2})
		binary.BigEndian.PutUint16(f[12:], flows.EtherTypeIPv4)
		ip := f[14:34]
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+32+mss))
		binary.BigEndian.PutUint16(ip[4:], uint16(100+i))
		ip[6], ip[8], ip[9] = 0x40, 64, flows.ProtoTCP
		copy(ip[12:], []byte{198, 18, 0, 2, 198, 18, 0, 1})
		offload.SetIPv4HeaderChecksum(ip)
		tcp := f[34:]
		binary.BigEndian.PutUint16(tcp[0:], 40000)
		binary.BigEndian.PutUint16(tcp[2:], 5201)
		binary.BigEndian.PutUint32(tcp[4:], seq)
		binary.BigEndian.PutUint32(tcp[8:], 7777)
		tcp[12], tcp[13] = 8<<4, flows.TCPFlagACK
		binary.BigEndian.PutUint16(tcp[14:], 501)
		copy(tcp[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
		for j := range mss {
			tcp[32+j] = byte(seq + uint32(j))
		}
		var p flows.Packet
		flows.Parse(f, &p)
		if !offload.SetL4Checksum(f, &p) {
			t.Fatal("test frame does not parse")
		}
		ts := time.Unix(1_700_000_000, int64(i)*1000)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(f), Length: len(f)}, f); err != nil {
			t.Fatal(err)
		}
		seq += uint32(mss)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runCaptured runs runReplay with os.Stdout and os.Stderr redirected.
func runCaptured(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	grab := func(f **os.File) (func() string, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		old := *f
		*f = w
		done := make(chan string)
		go func() {
			b, _ := io.ReadAll(r)
			done <- string(b)
		}()
		return func() string {
			*f = old
			w.Close()
			s := <-done
			r.Close()
			return s
		}, nil
	}
	outDone, perr := grab(&os.Stdout)
	if perr != nil {
		t.Fatal(perr)
	}
	errDone, perr := grab(&os.Stderr)
	if perr != nil {
		outDone()
		t.Fatal(perr)
	}
	err = runReplay(context.Background(), args)
	return outDone(), errDone(), err
}

func TestReplayCLI(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "train.pcap")
	bulkTrain(t, in, 40, 1448)
	agg := filepath.Join(dir, "agg.pcap")
	stdout, stderr, err := runCaptured(t, "--in", in, "--out", agg, "--stage", "gro", "--batch", "20", "--json")
	if err != nil {
		t.Fatalf("gro: %v\n%s", err, stderr)
	}
	var rep struct {
		FramesIn   uint64 `json:"frames_in"`
		PacketsOut uint64 `json:"packets_out"`
		PayloadIn  uint64 `json:"payload_in"`
		PayloadOut uint64 `json:"payload_out"`
		GRO        struct {
			Ratio float64           `json:"ratio"`
			Flush map[string]uint64 `json:"flush"`
		} `json:"gro"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, stdout)
	}
	// Batches of 20: two aggregates of 20 segments.
	if rep.FramesIn != 40 || rep.PacketsOut != 2 || rep.GRO.Ratio != 20 || rep.GRO.Flush["batch_end"] != 2 ||
		rep.PayloadIn != 40*1448 || rep.PayloadOut != rep.PayloadIn {
		t.Fatalf("report %+v", rep)
	}
	st, err := os.Stat(agg)
	if err != nil || st.Size() < 40*1448 {
		t.Fatalf("output: %v", err)
	}

	// Back through GSO, with the text report.
	back := filepath.Join(dir, "back.pcap")
	stdout, stderr, err = runCaptured(t, "--in", agg, "--out", back, "--stage", "gso", "--mss", "1448")
	if err != nil {
		t.Fatalf("gso: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "2 frames segmented into 40") {
		t.Fatalf("gso text report:\n%s", stdout)
	}
	a, b := readFrames(t, in), readFrames(t, back)
	if len(a) != 40 || len(b) != len(a) {
		t.Fatalf("round trip: %d frames, want %d", len(b), len(a))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("round trip: frame %d differs", i)
		}
	}
}

func readFrames(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		d, _, err := r.ReadPacketData()
		if err != nil {
			return out
		}
		out = append(out, d)
	}
}

func TestReplayCLIBadFlags(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "train.pcap")
	bulkTrain(t, in, 2, 100)
	out := filepath.Join(dir, "out.pcap")
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--in", in, "--out", out, "--stage", "tso"}, "--stage"},
		{[]string{"--in", in, "--out", out}, "--stage"},
		{[]string{"--out", out, "--stage", "gro"}, "--in"},
		{[]string{"--in", in, "--stage", "gro"}, "--out"},
		{[]string{"--in", in, "--out", out, "--stage", "gro", "--batch", "0"}, "--batch"},
		{[]string{"--in", in, "--out", out, "--stage", "gro", "--flush-timeout", "-1s"}, "--flush-timeout"},
		{[]string{"--in", in, "--out", out, "--stage", "gso", "--mss", "-5"}, "--mss"},
		{[]string{"--in", in, "--out", out, "--stage", "gso", "--mtu", "100"}, "--mtu"},
		{[]string{"--in", in, "--out", out, "--stage", "gro", "--mss", "1000"}, "--mss"},
		{[]string{"--in", in, "--out", out, "--stage", "csum", "--no-verify"}, "--no-verify"},
		{[]string{"--in", in, "--out", out, "--stage", "gso", "--fix"}, "--fix"},
		{[]string{"--in", in, "--out", out, "--stage", "gso", "--coalesce-acks"}, "--coalesce-acks"},
		{[]string{"--in", in, "--out", out, "--stage", "gro", "--bogus"}, "-bogus"},
	} {
		_, stderr, err := runCaptured(t, c.args...)
		if !errors.Is(err, cli.ErrUsage) || !strings.Contains(stderr+fmt.Sprint(err), c.flag) {
			t.Errorf("%v: error %v, stderr %q; want a usage error naming %s", c.args, err, stderr, c.flag)
		}
		if _, serr := os.Stat(out); !os.IsNotExist(serr) {
			t.Fatalf("%v: output written", c.args)
		}
	}
	// A file that is not a capture: an error, no output.
	notPcap := filepath.Join(dir, "notes.txt")
	os.WriteFile(notPcap, []byte("hello, world"), 0o644)
	if _, _, err := runCaptured(t, "--in", notPcap, "--out", out, "--stage", "csum"); err == nil ||
		!strings.Contains(err.Error(), "not a valid pcap") {
		t.Fatalf("not a pcap: %v", err)
	}
	if _, serr := os.Stat(out); !os.IsNotExist(serr) {
		t.Fatal("output written for a bad input")
	}
}
