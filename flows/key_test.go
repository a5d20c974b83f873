package flows_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/corpus"
)

// randomKey is a random IPv4 or IPv6 TCP/UDP key, drawn from r.
func randomKey(r *rand.Rand) flows.Key {
	var k flows.Key
	if r.IntN(2) == 0 {
		k.Family = 4
		k.Src = flows.MapIPv4([4]byte{198, 18 + byte(r.IntN(2)), byte(r.Uint32()), byte(r.Uint32())})
		k.Dst = flows.MapIPv4([4]byte{198, 18 + byte(r.IntN(2)), byte(r.Uint32()), byte(r.Uint32())})
	} else {
		k.Family = 6
		for i := range k.Src {
			k.Src[i], k.Dst[i] = byte(r.Uint32()), byte(r.Uint32())
		}
	}
	k.Proto = []uint8{flows.ProtoTCP, flows.ProtoUDP}[r.IntN(2)]
	k.SrcPort, k.DstPort = uint16(r.Uint32()), uint16(r.Uint32())
	if r.IntN(4) == 0 {
		k.VLAN = uint16(r.IntN(4095) + 1)
	}
	return k
}

func TestKeyReverse(t *testing.T) {
	k := flows.Key{
		Src: flows.MapIPv4([4]byte{198, 18, 0, 1}), Dst: flows.MapIPv4([4]byte{198, 18, 0, 2}),
		SrcPort: 1234, DstPort: 80, Proto: flows.ProtoTCP, Family: 4, VLAN: 7,
	}
	r := k.Reverse()
	want := flows.Key{Src: k.Dst, Dst: k.Src, SrcPort: 80, DstPort: 1234, Proto: flows.ProtoTCP, Family: 4, VLAN: 7}
	if r != want {
		t.Errorf("Reverse = %+v, want %+v", r, want)
	}
	if r.Reverse() != k {
		t.Error("Reverse is not its own inverse")
	}
}

// TestKeyFromParse checks that the two directions of one flow, as parsed
// from the corpus, give reversed keys and one symmetric hash.
func TestKeyFromParse(t *testing.T) {
	fwd := corpus.V4{Proto: flows.ProtoTCP}.Bytes(corpus.TCP(40000, 443, flows.TCPFlagSYN, nil, nil))
	rev := append([]byte(nil), fwd...)
	copy(rev[12:16], fwd[16:20])
	copy(rev[16:20], fwd[12:16])
	copy(rev[20:22], fwd[22:24])
	copy(rev[22:24], fwd[20:22])
	var a, b flows.Packet
	flows.Parse(append(corpus.Eth(flows.EtherTypeIPv4), fwd...), &a)
	flows.Parse(append(corpus.Eth(flows.EtherTypeIPv4), rev...), &b)
	if a.Reason != flows.ReasonOK || b.Reason != flows.ReasonOK {
		t.Fatalf("reasons %s, %s", a.Reason, b.Reason)
	}
	if a.Key.Reverse() != b.Key {
		t.Errorf("keys are not reversed: %s / %s", a.Key, b.Key)
	}
	if a.Key.SymmetricHash() != b.Key.SymmetricHash() {
		t.Error("symmetric hashes of the two directions differ")
	}
	if a.Key.Hash() == b.Key.Hash() {
		t.Error("directional hashes of the two directions agree")
	}
}

func TestKeyHashes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 100000
	sameDir := 0
	for range n {
		k := randomKey(r)
		rk := k.Reverse()
		if k.SymmetricHash() != rk.SymmetricHash() {
			t.Fatalf("SymmetricHash(%s) != SymmetricHash(reverse)", k)
		}
		if k.Hash() == rk.Hash() {
			sameDir++
		}
		if k.Hash() != k.Hash() {
			t.Fatal("Hash is not deterministic")
		}
	}
	if sameDir != 0 {
		t.Errorf("%d of %d random keys hash alike in both directions", sameDir, n)
	}

	// A key equal to its reverse (same endpoint both ways) hashes alike.
	k := randomKey(r)
	k.Dst, k.DstPort = k.Src, k.SrcPort
	if rk := k.Reverse(); k.Hash() != rk.Hash() {
		t.Error("a key equal to its reverse hashes differently")
	}

	// Every field feeds both hashes.
	base := randomKey(r)
	for name, mut := range map[string]func(*flows.Key){
		"src":     func(k *flows.Key) { k.Src[3] ^= 1 },
		"dst":     func(k *flows.Key) { k.Dst[15] ^= 0x80 },
		"sport":   func(k *flows.Key) { k.SrcPort ^= 1 },
		"dport":   func(k *flows.Key) { k.DstPort ^= 0x100 },
		"proto":   func(k *flows.Key) { k.Proto ^= 1 },
		"family":  func(k *flows.Key) { k.Family ^= 2 },
		"vlan":    func(k *flows.Key) { k.VLAN ^= 1 },
		"swapped": func(k *flows.Key) { k.SrcPort, k.DstPort = k.DstPort, k.SrcPort },
	} {
		m := base
		mut(&m)
		if m.Hash() == base.Hash() {
			t.Errorf("changing %s leaves Hash alike", name)
		}
		if m.SymmetricHash() == base.SymmetricHash() {
			t.Errorf("changing %s leaves SymmetricHash alike", name)
		}
	}
}

// TestKeyHashDistribution puts 100k keys into 1024 buckets, by the low and
// the high bits, for random keys and for keys that differ only in a port
// and the last address byte (a load test's flows).
func TestKeyHashDistribution(t *testing.T) {
	const (
		n       = 100000
		buckets = 1024
		mean    = n / buckets // about 98
		maxLoad = mean * 3 / 2
		minLoad = mean / 2
	)
	r := rand.New(rand.NewPCG(3, 4))
	random := func(i int) flows.Key { return randomKey(r) }
	structured := func(i int) flows.Key {
		return flows.Key{
			Src: flows.MapIPv4([4]byte{198, 18, 1, byte(i >> 16)}), Dst: flows.MapIPv4([4]byte{198, 18, 0, 1}),
			SrcPort: uint16(i), DstPort: 5201, Proto: flows.ProtoUDP, Family: 4,
		}
	}
	structured6 := func(i int) flows.Key {
		k := flows.Key{SrcPort: 443, DstPort: uint16(i), Proto: flows.ProtoTCP, Family: 6}
		k.Src = netip.MustParseAddr("2001:2::1").As16()
		k.Dst = netip.MustParseAddr("2001:2::2").As16()
		k.Dst[14] = byte(i >> 16)
		return k
	}
	for _, gen := range []struct {
		name string
		key  func(int) flows.Key
	}{{"random", random}, {"ipv4-ports", structured}, {"ipv6-ports", structured6}} {
		for _, h := range []struct {
			name string
			hash func(*flows.Key) uint64
		}{{"Hash", (*flows.Key).Hash}, {"SymmetricHash", (*flows.Key).SymmetricHash}} {
			var low, high [buckets]int
			for i := range n {
				k := gen.key(i)
				v := h.hash(&k)
				low[v%buckets]++
				high[v>>54]++
			}
			for _, b := range []struct {
				name string
				load *[buckets]int
			}{{"low bits", &low}, {"high bits", &high}} {
				lo, hi := n, 0
				for _, c := range b.load {
					lo, hi = min(lo, c), max(hi, c)
				}
				if hi > maxLoad || lo < minLoad {
					t.Errorf("%s %s %s: bucket loads %d..%d, want %d..%d", gen.name, h.name, b.name, lo, hi, minLoad, maxLoad)
				}
			}
		}
	}
}

func TestKeyAsMapKey(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	m := map[flows.Key]int{}
	keys := make([]flows.Key, 1000)
	for i := range keys {
		keys[i] = randomKey(r)
		m[keys[i]] = i
	}
	for i, k := range keys {
		c := k // a copy compares equal
		if m[c] != i {
			t.Fatalf("key %d: got %d", i, m[c])
		}
		if _, ok := m[k.Reverse()]; ok && k != k.Reverse() {
			t.Fatalf("reverse of key %d found", i)
		}
	}
	// Keys parsed from two copies of one frame are the same map key.
	var a, b flows.Packet
	flows.Parse(corpusFrame(t, "qinq-9100-ipv6-udp"), &a)
	flows.Parse(corpusFrame(t, "qinq-9100-ipv6-udp"), &b)
	m2 := map[flows.Key]bool{a.Key: true}
	if !m2[b.Key] {
		t.Error("parsed keys of the same frame differ as map keys")
	}
}

func TestKeyString(t *testing.T) {
	tests := []struct {
		frame string
		want  string
	}{
		{"ipv4-udp", "udp 198.18.0.2:40000 -> 198.18.0.1:5201"},
		{"vlan-ipv4-udp", "udp 198.18.0.2:40000 -> 198.18.0.1:5201 vlan 100"},
		{"ipv6-tcp", "tcp [2001:2::2]:40000 -> [2001:2::1]:5201"},
		{"ipv4-icmp-echo", "icmp 198.18.0.2:0 -> 198.18.0.1:0"},
		{"ipv6-icmpv6-echo", "icmpv6 [2001:2::2]:0 -> [2001:2::1]:0"},
		{"ipv4-gre", "proto 47 198.18.0.2:0 -> 198.18.0.1:0"},
	}
	for _, tt := range tests {
		var p flows.Packet
		flows.Parse(corpusFrame(t, tt.frame), &p)
		if got := p.Key.String(); got != tt.want {
			t.Errorf("%s: String() = %q, want %q", tt.frame, got, tt.want)
		}
	}
}

func TestKeyAddrs(t *testing.T) {
	var p flows.Packet
	flows.Parse(corpusFrame(t, "ipv4-udp"), &p)
	if p.Key.SrcAddr() != netip.MustParseAddr("198.18.0.2") || !p.Key.DstAddr().Is4() {
		t.Errorf("ipv4 addrs %s -> %s", p.Key.SrcAddr(), p.Key.DstAddr())
	}
	flows.Parse(corpusFrame(t, "ipv6-udp"), &p)
	if p.Key.DstAddr() != netip.MustParseAddr("2001:2::1") {
		t.Errorf("ipv6 dst %s", p.Key.DstAddr())
	}
}

func TestKeyHashAllocs(t *testing.T) {
	k := randomKey(rand.New(rand.NewPCG(7, 8)))
	var sink uint64
	if n := testing.AllocsPerRun(100, func() {
		rk := k.Reverse()
		sink += k.Hash() + k.SymmetricHash() + rk.Hash()
	}); n != 0 {
		t.Errorf("%v allocs per hash, want 0", n)
	}
	_ = sink
}
