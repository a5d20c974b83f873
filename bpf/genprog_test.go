package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/xnic/xnic/engine/lab/labtest"
	"golang.org/x/sys/unix"
)

func TestGenOptionsValidate(t *testing.T) {
	ok := DefaultGenOptions()
	if err := ok.validate(); err != nil {
		t.Fatalf("default options: %v", err)
	}
	for name, o := range map[string]GenOptions{
		"zero flows":      {Flows: 0, L4Offset: 34},
		"too many flows":  {Flows: MaxGenFlows + 1, L4Offset: 34},
		"address wraps":   {Flows: 10, SrcPortBase: 65530, SrcAddrWord: 0xff02, L4Offset: 34},
		"l4 short v4":     {Flows: 1, L4Offset: 33},
		"l4 short v6":     {Flows: 1, IPv6: true, L4Offset: 34},
		"seq in udp hdr":  {Flows: 1, L4Offset: 34, SeqOffset: 41},
		"seq past 64 KiB": {Flows: 1, L4Offset: 34, SeqOffset: 1 << 16},
	} {
		if err := o.validate(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: validate = %v, want ErrInvalidOptions", name, err)
		}
		if _, err := LoadGen(o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: LoadGen = %v, want ErrInvalidOptions", name, err)
		}
	}
}

// TestGenFlowsAcrossAddresses: with more flows than ports above the base,
// the generator varies the source address too, and every checksum stays
// valid, also when live mode feeds a frame back in.
func TestGenFlowsAcrossAddresses(t *testing.T) {
	labtest.RequireRoot(t, "load xnic_gen")
	for _, ipv6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[ipv6], func(t *testing.T) {
			pinCPU(t)
			tmpl := udpFrame(ipv6, 1, 9, make([]byte, 20))
			l4, aoff := GenL4OffsetIPv4, 14+12+2
			if ipv6 {
				l4, aoff = GenL4OffsetIPv6, 14+8+12
			}
			word := be16(tmpl[aoff:])
			const base, flows, runs = 65530, 15, 40 // 6 ports per address: 3 addresses
			g := loadGenT(t, GenOptions{Flows: flows, SrcPortBase: base, SrcAddrWord: word, IPv6: ipv6, L4Offset: l4})
			in := tmpl
			for i := range runs {
				out := make([]byte, len(tmpl))
				if _, err := g.Program().Run(&ebpf.RunOptions{Data: in, DataOut: out}); err != nil {
					t.Fatal(err)
				}
				f := i % flows
				if got, want := be16(out[l4:]), uint16(base+f%6); got != want {
					t.Fatalf("run %d: port %d, want %d", i, got, want)
				}
				if got, want := be16(out[aoff:]), word+uint16(f/6)<<8; got != want {
					t.Fatalf("run %d: address word %#04x, want %#04x", i, got, want)
				}
				if !udpChecksumOK(out) {
					t.Fatalf("run %d: bad UDP checksum", i)
				}
				if !ipv6 {
					var sum uint32
					for j := 14; j < 34; j += 2 {
						sum += uint32(be16(out[j:]))
					}
					for sum > 0xffff {
						sum = sum&0xffff + sum>>16
					}
					if sum != 0xffff {
						t.Fatalf("run %d: bad IPv4 header checksum", i)
					}
				}
				in = out
			}
		})
	}
}

// pinCPU keeps the test on one thread and one CPU, so the program's per-CPU
// counter, and with it port and sequence, advance by one per run.
func pinCPU(t *testing.T) int {
	t.Helper()
	runtime.LockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	cpu := 0
	for !old.IsSet(cpu) {
		cpu++
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	})
	return cpu
}

// TestGenFrames runs xnic_gen with plain BPF_PROG_RUN and checks every output
// frame: source port cycling over the flows, sequence number, valid UDP
// checksum, nothing else touched. The chained variant feeds each output back
// in, as live mode does when it recycles a page without re-copying it.
func TestGenFrames(t *testing.T) {
	labtest.RequireRoot(t, "load xnic_gen")
	for _, ipv6 := range []bool{false, true} {
		for _, chained := range []bool{false, true} {
			name := map[bool]string{false: "ipv4", true: "ipv6"}[ipv6] + map[bool]string{false: "-fresh", true: "-chained"}[chained]
			t.Run(name, func(t *testing.T) { testGenFrames(t, ipv6, chained) })
		}
	}
}

func testGenFrames(t *testing.T, ipv6, chained bool) {
	cpu := pinCPU(t)
	payload := make([]byte, 37) // odd length: checksum padding
	for i := range payload {
		payload[i] = byte(0xa5 ^ i)
	}
	tmpl := udpFrame(ipv6, 1, 9, payload)
	l4 := GenL4OffsetIPv4
	if ipv6 {
		l4 = GenL4OffsetIPv6
	}
	const flows, base, runs = 5, 20000, 23
	g := loadGenT(t, GenOptions{Flows: flows, SrcPortBase: base, IPv6: ipv6, L4Offset: l4, SeqOffset: l4 + 8})

	in := tmpl
	for i := range runs {
		out := make([]byte, len(tmpl))
		ret, err := g.Program().Run(&ebpf.RunOptions{Data: in, DataOut: out})
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if ret != xdpTX {
			t.Fatalf("run %d returned %d, want XDP_TX", i, ret)
		}
		if got, want := be16(out[l4:]), uint16(base+i%flows); got != want {
			t.Errorf("run %d: source port %d, want %d", i, got, want)
		}
		seq := binary.BigEndian.Uint64(out[l4+8:])
		if seq&(1<<48-1) != uint64(i) || int(seq>>48) != cpu {
			t.Errorf("run %d: seq %#x, want cpu %d counter %d", i, seq, cpu, i)
		}
		if !udpChecksumOK(out) {
			t.Errorf("run %d: bad UDP checksum %#04x in % x", i, be16(out[l4+6:]), out)
		}
		// Only port, checksum and sequence may differ from the template.
		a, b := append([]byte{}, out...), append([]byte{}, tmpl...)
		for _, off := range []int{l4, l4 + 1, l4 + 6, l4 + 7} {
			a[off], b[off] = 0, 0
		}
		copy(a[l4+8:l4+16], make([]byte, 8))
		copy(b[l4+8:l4+16], make([]byte, 8))
		if !bytes.Equal(a, b) {
			t.Errorf("run %d touched more than port, checksum and sequence", i)
		}
		if chained {
			in = out
		}
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.FramesGenerated != runs || st.BytesGenerated != runs*uint64(len(tmpl)) || st.FramesTooShort != 0 {
		t.Errorf("stats %+v, want %d frames of %d bytes", st, runs, len(tmpl))
	}
}

func TestGenEdgeFrames(t *testing.T) {
	labtest.RequireRoot(t, "load xnic_gen")
	pinCPU(t)
	run := func(g *Gen, in []byte) []byte {
		t.Helper()
		out := make([]byte, len(in))
		ret, err := g.Program().Run(&ebpf.RunOptions{Data: in, DataOut: out})
		if err != nil {
			t.Fatal(err)
		}
		if ret != xdpTX && ret != xdpDrop {
			t.Fatalf("returned %d", ret)
		}
		return out
	}

	// IPv4 without checksum keeps none.
	g := loadGenT(t, GenOptions{Flows: 3, SrcPortBase: 100, L4Offset: GenL4OffsetIPv4, SeqOffset: GenL4OffsetIPv4 + 8})
	nock := udpFrame(false, 1, 9, make([]byte, 18))
	nock[40], nock[41] = 0, 0
	if out := run(g, nock); be16(out[40:]) != 0 || be16(out[34:]) != 100 {
		t.Errorf("zero-checksum frame: port %d checksum %#x, want 100 and 0", be16(out[34:]), be16(out[40:]))
	}

	// No room for the sequence: port still set, checksum still valid.
	short := udpFrame(false, 1, 9, make([]byte, 5))
	out := run(g, short)
	if !udpChecksumOK(out) || be16(out[34:]) != 101 {
		t.Errorf("short payload: port %d checksum ok %v", be16(out[34:]), udpChecksumOK(out))
	}
	if !bytes.Equal(out[42:], short[42:]) {
		t.Errorf("short payload was written: % x", out[42:])
	}

	// Too short for a UDP header: dropped and counted.
	before, _ := g.Stats()
	ret, err := g.Program().Run(&ebpf.RunOptions{Data: short[:38]})
	if err != nil || ret != xdpDrop {
		t.Errorf("truncated template: ret %d err %v, want XDP_DROP", ret, err)
	}
	after, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if after.FramesTooShort != before.FramesTooShort+1 || after.FramesGenerated != before.FramesGenerated {
		t.Errorf("truncated template: stats %+v -> %+v", before, after)
	}

	// SeqOffset 0 writes no sequence.
	g0 := loadGenT(t, GenOptions{Flows: 1, SrcPortBase: 7, IPv6: true, L4Offset: GenL4OffsetIPv6})
	v6 := udpFrame(true, 1, 9, make([]byte, 18))
	out = run(g0, v6)
	if !bytes.Equal(out[62:], v6[62:]) || !udpChecksumOK(out) || be16(out[54:]) != 7 {
		t.Errorf("seq offset 0: payload % x, checksum ok %v", out[62:], udpChecksumOK(out))
	}
}

// TestLoadWithoutMemlock loads every program with RLIMIT_MEMLOCK at 0: since
// 5.11 the kernel charges BPF memory to the memory cgroup, so the limit (which
// root here cannot raise) does not matter.
func TestLoadWithoutMemlock(t *testing.T) {
	labtest.RequireRoot(t, "load BPF programs")
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 0, Max: old.Max}); err != nil {
		t.Fatalf("lower memlock: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
			t.Errorf("restore memlock: %v", err)
		}
	})
	s, err := LoadSteer(DefaultSteerOptions())
	if err != nil {
		t.Fatalf("LoadSteer with memlock 0: %v", err)
	}
	s.Close()
	for _, v := range []Verdict{VerdictDrop, VerdictPass} {
		c, err := LoadCounter(v)
		if err != nil {
			t.Fatalf("load xnic_%s with memlock 0: %v", v, err)
		}
		c.Close()
	}
	g, err := LoadGen(DefaultGenOptions())
	if err != nil {
		t.Fatalf("LoadGen with memlock 0: %v", err)
	}
	g.Close()
}

// TestLiveRunnerNoAllocs sends live frames into a veth with xnic_drop on the
// far side, checks they arrive, and that LiveRunner.Run does not allocate.
func TestLiveRunnerNoAllocs(t *testing.T) {
	labtest.RequireRoot(t, "live frames into a veth")
	lab := newVethLab(t)
	drop, err := LoadDrop()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drop.Close() })
	if _, err := drop.Attach(lab.hostIndex, AttachNative); err != nil {
		t.Fatal(err)
	}
	g := loadGenT(t, DefaultGenOptions())
	frame := udpFrame(false, 1, 9, make([]byte, 18))
	if perr := ProbeLiveFrames(); perr != nil {
		// This kernel refuses live frames: the refusal must come back as
		// ErrLiveFramesRefused, from the probe and from a runner alike, so
		// that callers (the generator) can fall back to AF_XDP TX.
		if !errors.Is(perr, ErrLiveFramesRefused) {
			t.Fatalf("ProbeLiveFrames = %v, want nil or ErrLiveFramesRefused", perr)
		}
		lab.inPeer(t, func() {
			r, err := g.NewLiveRunner(frame, lab.peerIndex, 64)
			if err != nil {
				t.Errorf("NewLiveRunner: %v", err)
				return
			}
			if err := r.Run(256); !errors.Is(err, ErrLiveFramesRefused) {
				t.Errorf("Run on a kernel that refuses live frames = %v, want ErrLiveFramesRefused", err)
			}
		})
		t.Logf("the kernel refuses live frames (%v): checked that the refusal is reported; the zero-allocation loop cannot run here", perr)
		return
	}

	var allocs float64
	lab.inPeer(t, func() {
		if _, err := g.NewLiveRunner(frame, lab.peerIndex, MaxLiveBatch+1); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("batch %d accepted: %v", MaxLiveBatch+1, err)
		}
		r, err := g.NewLiveRunner(frame, lab.peerIndex, 64)
		if err != nil {
			t.Errorf("NewLiveRunner: %v", err)
			return
		}
		var runErr error
		allocs = testing.AllocsPerRun(50, func() {
			if err := r.Run(256); err != nil && !errors.Is(err, ErrInterrupted) {
				runErr = err
			}
		})
		if runErr != nil {
			t.Errorf("Run: %v", runErr)
		}
	})
	if allocs != 0 {
		t.Errorf("LiveRunner.Run: %v allocs per call, want 0", allocs)
	}
	gs, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	ds, err := drop.TotalStats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %d, xnic_drop counted %d", gs.FramesGenerated, ds.RxPackets)
	// A signal may cut a call short (ErrInterrupted), so allow a shortfall.
	if gs.FramesGenerated < 51*256/2 || gs.FramesGenerated > 51*256 {
		t.Errorf("generated %d frames, want about %d", gs.FramesGenerated, 51*256)
	}
	if ds.RxPackets == 0 || ds.RxPackets > gs.FramesGenerated {
		t.Errorf("xnic_drop counted %d of %d generated", ds.RxPackets, gs.FramesGenerated)
	}
}
