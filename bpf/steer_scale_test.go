package bpf

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/xnic/xnic/flows"
)

// hostRules adds n /32 TCP port 80 rules, 198.18.0.0 upwards, to guest i %
// Guests (spread) or guest 0, and returns the time taken.
func hostRules(t testing.TB, s *Steer, n int, spread bool) time.Duration {
	t.Helper()
	start := time.Now()
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		r := Rule{Prefix: netip.PrefixFrom(a, 32), Proto: ProtoTCP, PortLo: 80, PortHi: 80}
		if spread {
			r.Guest = i % s.opts.Guests
		}
		if _, err := s.AddRule(r); err != nil {
			t.Fatalf("rule %d: %v", i, err)
		}
	}
	return time.Since(start)
}

// udpFlows returns n distinct UDP flow keys to 198.19.0.1, by source
// address and port.
func udpFlows(n int) []flows.Key {
	keys := make([]flows.Key, n)
	for i := range keys {
		src := [4]byte{198, 18, byte(i >> 16), byte(i >> 8)}
		keys[i] = flows.Key{
			Src: flows.MapIPv4(src), Dst: flows.MapIPv4([4]byte{198, 19, 0, 1}),
			SrcPort: uint16(10000 + i&0xff), DstPort: 5201, Proto: flows.ProtoUDP, Family: 4,
		}
	}
	return keys
}

// flowFrame is a frame of key k (UDP, IPv4).
func flowFrame(k flows.Key) []byte {
	return pkt{src: k.SrcAddr(), dst: k.DstAddr(), proto: k.Proto, sport: k.SrcPort, dport: k.DstPort}.frame()
}

// TestSteerScale: with the default sizes, 10k rules and 100k flows fit,
// and frames still find theirs. Insert times are logged.
func TestSteerScale(t *testing.T) {
	if testing.Short() {
		t.Skip("inserts 10k rules and 100k flows")
	}
	s := loadSteerOptsT(t, DefaultSteerOptions())
	const nRules, nFlows = 10000, 100000

	d := hostRules(t, s, nRules, true)
	t.Logf("AddRule: %d rules in %v (%v/rule)", nRules, d, d/nRules)
	rules, err := s.Rules()
	if err != nil || len(rules) != nRules {
		t.Fatalf("Rules() = %d rules, %v", len(rules), err)
	}

	keys := udpFlows(nFlows)
	slots := make([]Slot, nFlows)
	for i := range slots {
		slots[i] = Slot{Guest: i % 64, Class: i % 8}
	}
	start := time.Now()
	n, err := s.InstallFlows(keys, slots)
	d = time.Since(start)
	if err != nil || n != nFlows {
		t.Fatalf("InstallFlows = %d, %v", n, err)
	}
	t.Logf("InstallFlows: %d flows in %v (%v/flow)", nFlows, d, d/nFlows)
	start = time.Now()
	count, err := s.FlowCount()
	t.Logf("FlowCount: %d in %v", count, time.Since(start))
	if err != nil || count != nFlows {
		t.Errorf("FlowCount = %d, %v, want %d", count, err, nFlows)
	}

	// One at a time, as a learning engine would: replace 10k of them.
	start = time.Now()
	for i := range 10000 {
		if err := s.InstallFlow(keys[i], Slot{1, 1}); err != nil {
			t.Fatal(err)
		}
	}
	d = time.Since(start)
	t.Logf("InstallFlow: 10000 flows one by one in %v (%v/flow)", d, d/10000)

	for _, i := range []int{0, 9999, 10000, 54321, nFlows - 1} {
		want := slots[i]
		if i < 10000 {
			want = Slot{1, 1}
		}
		if got, ok, err := s.LookupFlow(keys[i]); err != nil || !ok || got != want {
			t.Errorf("flow %d: %v %v %v, want %v", i, got, ok, err, want)
		}
		before := snap(t, s)
		runProg(t, s.Program(), flowFrame(keys[i]))
		after := snap(t, s)
		if d := subStats(after.total, before.total); d.FlowHits != 1 {
			t.Errorf("flow %d: not a flow hit: %+v", i, d)
		}
		if d := subStats(after.slots[want], before.slots[want]); d.Packets != 1 {
			t.Errorf("flow %d: slot %s moved by %+v", i, want, d)
		}
	}
	for _, i := range []int{0, 4321, nRules - 1} {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		sl := Slot{Guest: i % 64}
		before := snap(t, s)
		runProg(t, s.Program(), pkt{dst: a, proto: flows.ProtoTCP, sport: 1, dport: 80}.frame())
		after := snap(t, s)
		if d := subStats(after.total, before.total); d.RuleHits != 1 {
			t.Errorf("rule %d: not a rule hit: %+v", i, d)
		}
		if d := subStats(after.slots[sl], before.slots[sl]); d.Packets != 1 {
			t.Errorf("rule %d: slot %s moved by %+v", i, sl, d)
		}
	}
}

// BenchmarkSteerProgRun measures xnic_steer per frame with BPF_PROG_RUN
// (the kernel repeats the run b.N times and times it), on a 60-byte UDP
// frame redirected to a socket, against the number of rules and flows.
// "raw" is steer version 1's path (xnic_raw: parse, redirect to the
// queue's socket) and "drop" the xnic_drop floor (count, XDP_DROP). Report
// the ns/pkt metric (the kernel's own timing).
func BenchmarkSteerProgRun(b *testing.B) {
	lab := newVethLab(b)
	fd := newTestXSK(b, lab.hostIndex, 0)
	udp := pkt{dst: addr("198.19.0.1"), proto: flows.ProtoUDP, sport: 10000, dport: 5201}
	tcp80 := func(i int) []byte {
		return pkt{dst: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), proto: flows.ProtoTCP, sport: 1, dport: 80}.frame()
	}
	tcp81 := func(i int) []byte {
		return pkt{dst: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), proto: flows.ProtoTCP, sport: 1, dport: 81}.frame()
	}

	bench := func(b *testing.B, prog *ebpf.Program, frame []byte, wantRet uint32) {
		ret, per, err := prog.Benchmark(frame, b.N, nil)
		if err != nil {
			b.Fatal(err)
		}
		if ret != wantRet {
			b.Fatalf("verdict %d, want %d", ret, wantRet)
		}
		b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
	}
	// steer loads xnic_steer with the g0c0 socket, applies setup, checks
	// that frame takes the hit path named, then benchmarks it.
	steer := func(cache bool, setup func(b *testing.B, s *Steer), frame func() []byte, hit string) func(b *testing.B) {
		return func(b *testing.B) {
			o := DefaultSteerOptions()
			if cache {
				o.RuleCache = 65536
			}
			s := loadSteerOptsT(b, o)
			if err := s.RegisterSocket(0, fd); err != nil {
				b.Fatal(err)
			}
			setup(b, s)
			f := frame()
			before := snap(b, s)
			runProg(b, s.Program(), f)
			d := subStats(snap(b, s).total, before.total)
			if (hit == "flow" && d.FlowHits != 1) || (hit == "rule" && d.RuleHits != 1) || d.Redirected != 1 {
				b.Fatalf("frame did not take the %s path: %+v", hit, d)
			}
			b.ResetTimer()
			bench(b, s.Program(), f, xdpRedirect)
		}
	}
	catchAll := func(b *testing.B, s *Steer) {
		if _, err := s.AddRule(Rule{Prefix: pfx("0.0.0.0/0"), Proto: ProtoUDP}); err != nil {
			b.Fatal(err)
		}
	}
	withFlows := func(n int) func(b *testing.B, s *Steer) {
		return func(b *testing.B, s *Steer) {
			catchAll(b, s)
			hostRules(b, s, 10000, false)
			keys := udpFlows(n)
			if _, err := s.InstallFlows(keys, make([]Slot, n)); err != nil {
				b.Fatal(err)
			}
		}
	}

	b.Run("drop", func(b *testing.B) {
		c, err := LoadDrop()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		bench(b, c.prog, udp.frame(), xdpDrop)
	})
	b.Run("raw", func(b *testing.B) {
		objs := loadTestprogsT(b)
		if err := objs.RawXsks.Put(uint32(0), uint32(fd)); err != nil {
			b.Fatal(err)
		}
		bench(b, objs.XnicRaw, udp.frame(), xdpRedirect)
	})
	for _, cache := range []bool{false, true} {
		c := map[bool]string{false: "cache=off", true: "cache=on"}[cache]
		b.Run("rules=1/"+c, steer(cache, catchAll, udp.frame, "rule"))
		for _, n := range []int{100, 10000} {
			b.Run(fmt.Sprintf("rules=%d/%s", n, c), steer(cache, func(b *testing.B, s *Steer) { hostRules(b, s, n, false) },
				func() []byte { return tcp80(n / 2) }, "rule"))
		}
		// The /32 has no rule for port 81: one more trie lookup, to 0.0.0.0/0.
		b.Run("rules=10000/fallback/"+c, steer(cache, func(b *testing.B, s *Steer) {
			hostRules(b, s, 10000, false)
			if _, err := s.AddRule(Rule{Prefix: pfx("0.0.0.0/0"), Proto: ProtoTCP}); err != nil {
				b.Fatal(err)
			}
		}, func() []byte { return tcp81(5000) }, "rule"))
	}
	// Flows, with 10k rules and a catch-all behind them.
	for _, n := range []int{1, 1000, 100000} {
		b.Run(fmt.Sprintf("flows=%d", n), steer(true, withFlows(n), func() []byte { return flowFrame(udpFlows(n)[n/2]) }, "flow"))
	}
	miss := udp
	miss.sport = 9999
	b.Run("flows=100000/miss/cache=on", steer(true, withFlows(100000), miss.frame, "rule"))
	b.Run("flows=100000/miss/cache=off", steer(false, withFlows(100000), miss.frame, "rule"))
}
