package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/xnic/xnic/flows"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// smallSteerOptions keep the maps small for tests: 4 queues, 8 guests, 4
// classes, and a rule cache (off by default) so that its paths are tested.
func smallSteerOptions() SteerOptions {
	o := DefaultSteerOptions()
	o.Queues, o.Guests, o.Classes, o.Prefixes, o.Flows, o.RuleCache = 4, 8, 4, 1024, 1024, 65536
	return o
}

func TestSteerOptionsValidate(t *testing.T) {
	base := DefaultSteerOptions()
	cases := []struct {
		field string
		mod   func(*SteerOptions)
	}{
		{"queues", func(o *SteerOptions) { o.Queues = 0 }},
		{"queues", func(o *SteerOptions) { o.Queues = MaxQueues + 1 }},
		{"guests", func(o *SteerOptions) { o.Guests = 0 }},
		{"guests", func(o *SteerOptions) { o.Guests = MaxGuests + 1 }},
		{"classes", func(o *SteerOptions) { o.Classes = MaxClasses + 1 }},
		{"prefixes", func(o *SteerOptions) { o.Prefixes = -1 }},
		{"flows", func(o *SteerOptions) { o.Flows = MaxFlows + 1 }},
		{"queues*guests*classes", func(o *SteerOptions) { o.Queues, o.Guests, o.Classes = 1024, 256, 16 }},
	}
	for _, c := range cases {
		o := base
		c.mod(&o)
		_, err := LoadSteer(o)
		if !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("LoadSteer(%+v) = %v, want ErrInvalidOptions", o, err)
			continue
		}
		if !strings.Contains(err.Error(), c.field) {
			t.Errorf("error %q does not name the field %q", err, c.field)
		}
	}
	if got := base.SlotIndex(2, 3, 5); got != uint32((2*64+3)*8+5) {
		t.Errorf("SlotIndex(2, 3, 5) = %d", got)
	}
}

func TestRuleValidation(t *testing.T) {
	s := loadSteerOptsT(t, smallSteerOptions())
	cases := []struct {
		field string
		r     Rule
	}{
		{"prefix", Rule{}},
		{"prefix", Rule{Prefix: pfx("198.18.1.5/24")}},
		{"prefix", Rule{Prefix: pfx("::ffff:198.18.1.0/120")}},
		{"proto", Rule{Prefix: pfx("2001:2::/48"), Proto: ProtoARP}},
		{"port_lo", Rule{Prefix: pfx("198.18.0.0/15"), Proto: ProtoTCP, PortLo: 90, PortHi: 80}},
		{"port range", Rule{Prefix: pfx("198.18.0.0/15"), Proto: ProtoICMP, PortLo: 1, PortHi: 2}},
		{"port range", Rule{Prefix: pfx("198.18.0.0/15"), PortLo: 80, PortHi: 80}},
		{"guest", Rule{Prefix: pfx("198.18.0.0/15"), Guest: 8}},
		{"guest", Rule{Prefix: pfx("198.18.0.0/15"), Guest: -1}},
		{"class", Rule{Prefix: pfx("198.18.0.0/15"), Class: 4}},
		{"class", Rule{Prefix: pfx("198.18.0.0/15"), Class: 1, ClassFromDSCP: true}},
	}
	for _, c := range cases {
		_, err := s.AddRule(c.r)
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("AddRule(%+v) = %v, want ErrInvalidOptions naming %q", c.r, err, c.field)
		}
	}

	// Duplicates and the per-prefix limit.
	r := Rule{Prefix: pfx("198.18.7.0/24"), Proto: ProtoTCP, PortLo: 1, PortHi: 1, Guest: 1}
	if _, err := s.AddRule(r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRule(r); !errors.Is(err, ErrRuleExists) {
		t.Errorf("duplicate AddRule = %v, want ErrRuleExists", err)
	}
	for p := uint16(2); p <= MaxRulesPerPrefix; p++ {
		r.PortLo, r.PortHi = p, p
		if _, err := s.AddRule(r); err != nil {
			t.Fatalf("rule %d of a prefix: %v", p, err)
		}
	}
	r.PortLo, r.PortHi = 100, 100
	if _, err := s.AddRule(r); !errors.Is(err, ErrTableFull) {
		t.Errorf("rule %d of a prefix = %v, want ErrTableFull", MaxRulesPerPrefix+1, err)
	}
	if err := s.DeleteRule(9999); !errors.Is(err, ErrRuleNotFound) {
		t.Errorf("DeleteRule(unknown) = %v, want ErrRuleNotFound", err)
	}

	// The prefix table's own limit.
	small := smallSteerOptions()
	small.Prefixes = 2
	s2 := loadSteerOptsT(t, small)
	for i, p := range []string{"198.18.0.0/24", "198.18.1.0/24", "198.18.2.0/24"} {
		_, err := s2.AddRule(Rule{Prefix: pfx(p)})
		if i < 2 && err != nil {
			t.Fatalf("AddRule %s: %v", p, err)
		}
		if i == 2 && !errors.Is(err, ErrTableFull) {
			t.Errorf("third prefix in a table of 2 = %v, want ErrTableFull", err)
		}
	}
}

func TestRulesRoundTrip(t *testing.T) {
	s := loadSteerOptsT(t, smallSteerOptions())
	in := []Rule{
		{Prefix: pfx("198.18.1.0/24"), Proto: ProtoTCP, PortLo: 80, PortHi: 89, Guest: 1, Class: 2},
		{Prefix: pfx("198.18.1.10/32"), Proto: ProtoARP, Guest: 1},
		{Prefix: pfx("2001:2:0:1::/64"), Guest: 2, ClassFromDSCP: true, Priority: 7},
		{Prefix: pfx("::/0"), Proto: ProtoUDP, Guest: 3, Class: 3},
		{Prefix: pfx("0.0.0.0/0"), Proto: 132, Guest: 4},
	}
	var ids []RuleID
	for _, r := range in {
		id, err := s.AddRule(r)
		if err != nil {
			t.Fatalf("AddRule(%s): %v", r, err)
		}
		ids = append(ids, id)
	}
	got, err := s.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("Rules() returned %d rules, want %d: %v", len(got), len(in), got)
	}
	for i, r := range in {
		r.ID = ids[i]
		if r.PortLo == 0 && r.PortHi == 0 {
			r.PortHi = 0xffff
		}
		if got[i] != r {
			t.Errorf("rule %d: got %s (%+v), want %+v", i, got[i], got[i], r)
		}
	}
	if err := s.DeleteRule(ids[0]); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Rules()
	if slices.ContainsFunc(got, func(r Rule) bool { return r.ID == ids[0] }) || len(got) != len(in)-1 {
		t.Errorf("after DeleteRule(%d): %v", ids[0], got)
	}
	if err := s.DeleteRule(ids[0]); !errors.Is(err, ErrRuleNotFound) {
		t.Errorf("second DeleteRule = %v, want ErrRuleNotFound", err)
	}
	// Deleting the last rule of a prefix removes the prefix.
	var k ruleKey = ruleKeyOf(pfx("198.18.1.0/24"))
	var set steerRuleSet
	// (A trie lookup is longest-prefix: it finds 0.0.0.0/0 now.)
	if err := s.RulesMap().Lookup(&k, &set); err != nil || set.Prefixlen != 96 {
		t.Errorf("lookup of 198.18.1.0/24 after deleting its rule: prefixlen %d, %v; want 0.0.0.0/0's set", set.Prefixlen, err)
	}
	n := 0
	it := s.RulesMap().Iterate()
	for it.Next(&k, &set) {
		n++
	}
	if n != len(in)-1 {
		t.Errorf("trie holds %d prefixes, want %d", n, len(in)-1)
	}
}

// slotSockets binds one AF_XDP socket per slot to distinct queues of a
// multi-queue veth and registers them on rx queue 0 of s, where
// BPF_PROG_RUN runs. (The XSKMAP does not check which queue a socket is
// bound to; a real deployment binds them to the slot's queue with a shared
// UMEM.)
func slotSockets(t *testing.T, s *Steer, slots ...Slot) {
	t.Helper()
	lab := newVethLabQueues(t, len(slots))
	for i, sl := range slots {
		fd := newTestXSK(t, lab.hostIndex, i)
		if err := s.RegisterSlot(0, sl.Guest, sl.Class, fd); err != nil {
			t.Fatalf("RegisterSlot(0, %s): %v", sl, err)
		}
	}
}

// want is the expected outcome of one frame.
type want struct {
	verdict uint32
	slot    Slot   // for matched frames
	how     string // slot outcome: "redirected", "class0", "no-socket"; "" when unmatched
	queue   string // the queue verdict counter: redirected, pass_unmatched, ...
	hit     string // "flow", "rule" or ""
	info    string // "fragment", "unknown_l4" or ""
	cache   string // "hit", "miss" (rule lookup answered by the rule cache or not), "" either
}

// checkFrame runs one frame and checks the verdict and that exactly the
// expected counters moved, by one.
func checkFrame(t *testing.T, s *Steer, name string, frame []byte, w want) {
	t.Helper()
	before := snap(t, s)
	if got := runProg(t, s.Program(), frame); got != w.verdict {
		t.Errorf("%s: verdict %d, want %d", name, got, w.verdict)
	}
	after := snap(t, s)
	d := subStats(after.total, before.total)
	exp := SteerStats{RxPackets: 1, RxBytes: uint64(len(frame))}
	switch w.queue {
	case "redirected":
		exp.Redirected = 1
	case "pass_non_ip":
		exp.PassNonIp = 1
	case "pass_control":
		exp.PassControl = 1
	case "pass_unmatched":
		exp.PassUnmatched = 1
	case "pass_no_socket":
		exp.PassNoSocket = 1
	default:
		t.Fatalf("%s: bad queue counter %q", name, w.queue)
	}
	switch w.hit {
	case "flow":
		exp.FlowHits = 1
	case "rule":
		exp.RuleHits = 1
	}
	switch w.info {
	case "fragment":
		exp.RxFragments = 1
	case "unknown_l4":
		exp.RxUnknownL4 = 1
	}
	var slotExp SlotStats
	if w.how != "" {
		slotExp = SlotStats{Packets: 1, Bytes: uint64(len(frame))}
		switch w.how {
		case "redirected":
			slotExp.Redirected = 1
		case "class0":
			slotExp.RedirectedClass0 = 1
			exp.RedirectedClass0 = 1
		case "no-socket":
			slotExp.PassNoSocket = 1
		}
	}
	switch w.cache {
	case "hit":
		exp.RuleCacheHits = 1
	case "":
		d.RuleCacheHits = 0
	}
	if d != exp {
		t.Errorf("%s: queue counters moved by %+v, want %+v", name, d, exp)
	}
	for sl, a := range after.slots {
		got := subStats(a, before.slots[sl])
		want := SlotStats{}
		if w.how != "" && sl == w.slot {
			want = slotExp
		}
		if got != want {
			t.Errorf("%s: slot %s moved by %+v, want %+v", name, sl, got, want)
		}
	}
	if w.how != "" {
		if _, ok := after.slots[w.slot]; !ok {
			t.Errorf("%s: slot %s did not count", name, w.slot)
		}
	}
}

// TestSteerRules runs xnic_steer over frames with BPF_PROG_RUN against a
// rule table, a flow table, DSCP classes and sockets in some slots, and
// checks each verdict and that exactly the right counters moved by one.
func TestSteerRules(t *testing.T) {
	s := loadSteerOptsT(t, smallSteerOptions())
	slotSockets(t, s, Slot{1, 0}, Slot{1, 2}, Slot{2, 0}, Slot{3, 1})

	rules := []Rule{
		{Prefix: pfx("198.18.1.0/24"), Proto: ProtoTCP, PortLo: 80, PortHi: 89, Guest: 1, Class: 2},
		{Prefix: pfx("198.18.1.0/24"), Proto: ProtoUDP, Guest: 1, Class: 1},
		{Prefix: pfx("198.18.1.0/24"), Guest: 2, Class: 3, Priority: 100},
		{Prefix: pfx("198.18.1.10/32"), Proto: ProtoTCP, PortLo: 443, PortHi: 443, Guest: 2},
		{Prefix: pfx("198.18.1.10/32"), Proto: ProtoARP, Guest: 1},
		{Prefix: pfx("2001:2:0:1::/64"), Guest: 2},
		{Prefix: pfx("2001:2:0:1::5/128"), Proto: ProtoUDP, PortLo: 5000, PortHi: 5001, Guest: 3, Class: 1},
		{Prefix: pfx("198.18.2.0/24"), Proto: ProtoTCP, Guest: 4},
		{Prefix: pfx("198.18.3.0/24"), Guest: 1, ClassFromDSCP: true},
	}
	for _, r := range rules {
		if _, err := s.AddRule(r); err != nil {
			t.Fatalf("AddRule(%s): %v", r, err)
		}
	}
	if err := s.SetDSCPClass(46, 2); err != nil {
		t.Fatal(err)
	}

	tcp, udp := uint8(flows.ProtoTCP), uint8(flows.ProtoUDP)
	redirect := func(sl Slot, how, hit string) want {
		q := "redirected"
		if how == "no-socket" {
			q = "pass_no_socket"
		}
		v := uint32(xdpRedirect)
		if how == "no-socket" {
			v = xdpPass
		}
		return want{verdict: v, slot: sl, how: how, queue: q, hit: hit}
	}
	fragment := func(w want) want { w.info = "fragment"; return w }
	cases := []struct {
		name  string
		frame []byte
		want  want
	}{
		{"tcp-port-range", pkt{dst: addr("198.18.1.5"), proto: tcp, sport: 1, dport: 80}.frame(), redirect(Slot{1, 2}, "redirected", "rule")},
		{"tcp-port-range-hi", pkt{dst: addr("198.18.1.5"), proto: tcp, sport: 1, dport: 89}.frame(), redirect(Slot{1, 2}, "redirected", "rule")},
		{"tcp-outside-range-any-rule", pkt{dst: addr("198.18.1.5"), proto: tcp, sport: 1, dport: 90}.frame(), redirect(Slot{2, 3}, "class0", "rule")},
		{"udp-class1-falls-back-to-class0", pkt{dst: addr("198.18.1.5"), proto: udp, sport: 1, dport: 53}.frame(), redirect(Slot{1, 1}, "class0", "rule")},
		{"host-route-443", pkt{dst: addr("198.18.1.10"), proto: tcp, sport: 1, dport: 443}.frame(), redirect(Slot{2, 0}, "redirected", "rule")},
		{"host-route-miss-falls-to-24", pkt{dst: addr("198.18.1.10"), proto: tcp, sport: 1, dport: 80}.frame(), redirect(Slot{1, 2}, "redirected", "rule")},
		{"vlan-tagged-rule", pkt{dst: addr("198.18.1.5"), proto: tcp, sport: 1, dport: 80, vlan: 7}.frame(), redirect(Slot{1, 2}, "redirected", "rule")},
		{"ipv6-host-udp", pkt{dst: addr("2001:2:0:1::5"), proto: udp, sport: 1, dport: 5001}.frame(), redirect(Slot{3, 1}, "redirected", "rule")},
		{"ipv6-host-miss-falls-to-64", pkt{dst: addr("2001:2:0:1::5"), proto: udp, sport: 1, dport: 6000}.frame(), redirect(Slot{2, 0}, "redirected", "rule")},
		{"ipv6-icmp-any-proto", pkt{dst: addr("2001:2:0:1::7"), proto: flows.ProtoICMPv6}.frame(), redirect(Slot{2, 0}, "redirected", "rule")},
		{"no-socket", pkt{dst: addr("198.18.2.1"), proto: tcp, sport: 1, dport: 22}.frame(), redirect(Slot{4, 0}, "no-socket", "rule")},
		{"dscp-46-class-2", pkt{dst: addr("198.18.3.3"), proto: udp, sport: 1, dport: 9, tos: 46 << 2}.frame(), redirect(Slot{1, 2}, "redirected", "rule")},
		{"dscp-0-class-0", pkt{dst: addr("198.18.3.3"), proto: udp, sport: 1, dport: 9}.frame(), redirect(Slot{1, 0}, "redirected", "rule")},
		{"dscp-10-unset-class-0", pkt{dst: addr("198.18.3.3"), proto: tcp, sport: 1, dport: 9, tos: 10<<2 | 1}.frame(), redirect(Slot{1, 0}, "redirected", "rule")},
		{"fragment-port-0-matches-full-range", pkt{dst: addr("198.18.1.5"), proto: udp, fragOff: 100}.frame(), fragment(redirect(Slot{1, 1}, "class0", "rule"))},
		{"fragment-port-0-misses-range", pkt{dst: addr("198.18.1.5"), proto: tcp, fragOff: 100}.frame(), fragment(redirect(Slot{2, 3}, "class0", "rule"))},
		{"arp-for-guest", arpFrame(addr("198.18.1.10"), 0), redirect(Slot{1, 0}, "redirected", "rule")},
		{"arp-for-guest-vlan", arpFrame(addr("198.18.1.10"), 5), redirect(Slot{1, 0}, "redirected", "rule")},
		{"arp-other-address", arpFrame(addr("198.18.1.11"), 0), want{verdict: xdpPass, queue: "pass_non_ip"}},
		{"unmatched-udp", pkt{dst: addr("198.18.9.9"), proto: udp, sport: 1, dport: 9}.frame(), want{verdict: xdpPass, queue: "pass_unmatched"}},
		{"unmatched-icmp", pkt{dst: addr("198.18.9.9"), proto: flows.ProtoICMP}.frame(), want{verdict: xdpPass, queue: "pass_control"}},
		{"v4-mapped-v6-dst-not-v4-rule", pkt{dst: addr("::ffff:198.18.1.5"), proto: udp, sport: 1, dport: 9}.frame(), want{verdict: xdpPass, queue: "pass_unmatched"}},
		{"ipv6-other", pkt{dst: addr("2001:2:0:2::1"), proto: tcp, sport: 1, dport: 80}.frame(), want{verdict: xdpPass, queue: "pass_unmatched"}},
	}
	for _, c := range cases {
		checkFrame(t, s, c.name, c.frame, c.want)
	}

	// The flow table overrides the rules, exactly per 5-tuple and VLAN.
	udpFlow := pkt{dst: addr("198.18.1.5"), proto: udp, sport: 1000, dport: 2000}
	if err := s.InstallFlow(udpFlow.key(t), Slot{3, 1}); err != nil {
		t.Fatal(err)
	}
	checkFrame(t, s, "flow-overrides-rule", udpFlow.frame(), redirect(Slot{3, 1}, "redirected", "flow"))
	other := udpFlow
	other.sport = 1001
	checkFrame(t, s, "flow-other-sport-uses-rule", other.frame(), redirect(Slot{1, 1}, "class0", "rule"))
	tagged := udpFlow
	tagged.vlan = 9
	checkFrame(t, s, "flow-other-vlan-uses-rule", tagged.frame(), redirect(Slot{1, 1}, "class0", "rule"))
	if err := s.InstallFlow(tagged.key(t), Slot{2, 0}); err != nil {
		t.Fatal(err)
	}
	checkFrame(t, s, "flow-vlan", tagged.frame(), redirect(Slot{2, 0}, "redirected", "flow"))
	v6flow := pkt{dst: addr("2001:2:0:9::1"), proto: tcp, sport: 5, dport: 6}
	if err := s.InstallFlow(v6flow.key(t), Slot{1, 2}); err != nil {
		t.Fatal(err)
	}
	checkFrame(t, s, "flow-ipv6-unmatched-by-rules", v6flow.frame(), redirect(Slot{1, 2}, "redirected", "flow"))
	icmpFlow := pkt{dst: addr("198.18.9.9"), proto: flows.ProtoICMP}
	if err := s.InstallFlow(icmpFlow.key(t), Slot{1, 0}); err != nil {
		t.Fatal(err)
	}
	checkFrame(t, s, "flow-icmp", icmpFlow.frame(), redirect(Slot{1, 0}, "redirected", "flow"))

	if got, ok, err := s.LookupFlow(udpFlow.key(t)); err != nil || !ok || got != (Slot{3, 1}) {
		t.Errorf("LookupFlow = %v, %v, %v", got, ok, err)
	}
	if n, err := s.FlowCount(); err != nil || n != 4 {
		t.Errorf("FlowCount = %d, %v, want 4", n, err)
	}
	if err := s.DeleteFlow(udpFlow.key(t)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFlow(udpFlow.key(t)); err != nil {
		t.Errorf("DeleteFlow of a missing flow: %v", err)
	}
	checkFrame(t, s, "flow-deleted-rule-again", udpFlow.frame(), redirect(Slot{1, 1}, "class0", "rule"))

	// Deleting a rule takes effect at once.
	all, err := s.Rules()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if r.Proto == ProtoARP {
			if err := s.DeleteRule(r.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkFrame(t, s, "arp-rule-deleted", arpFrame(addr("198.18.1.10"), 0), want{verdict: xdpPass, queue: "pass_non_ip"})

	// Invalid flows and slots name their field.
	bad := []struct {
		field string
		err   error
	}{
		{"family", s.InstallFlow(flows.Key{}, Slot{})},
		{"guest", s.InstallFlow(udpFlow.key(t), Slot{Guest: 8})},
		{"class", s.InstallFlow(udpFlow.key(t), Slot{Class: -1})},
		{"queue", s.RegisterSlot(4, 0, 0, 3)},
		{"class", s.RegisterSlot(0, 0, 4, 3)},
		{"fd", s.RegisterSlot(0, 0, 0, -1)},
		{"dscp", s.SetDSCPClass(64, 0)},
		{"class", s.SetDSCPClass(1, 4)},
	}
	for _, b := range bad {
		if !errors.Is(b.err, ErrInvalidOptions) || !strings.Contains(b.err.Error(), b.field) {
			t.Errorf("got %v, want ErrInvalidOptions naming %q", b.err, b.field)
		}
	}
}

// TestCatchAll checks raw mode: all TCP and UDP to guest 0 class 0, ICMP
// and ARP to the kernel, and more specific rules still first.
func TestCatchAll(t *testing.T) {
	s := loadSteerOptsT(t, smallSteerOptions())
	slotSockets(t, s, Slot{0, 0}, Slot{1, 0})
	ids, err := s.AddCatchAll(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 4 {
		t.Fatalf("AddCatchAll added %d rules, want 4", len(ids))
	}
	if again, err := s.AddCatchAll(0, 0); err != nil || !slices.Equal(again, ids) {
		t.Errorf("second AddCatchAll = %v, %v; want the same ids %v", again, err, ids)
	}
	// Another target for the same match: refused, nothing added.
	if _, err := s.AddRule(Rule{Prefix: pfx("::/0"), Proto: ProtoUDP, Guest: 1, Priority: CatchAllPriority}); !errors.Is(err, ErrRuleExists) {
		t.Errorf("AddRule over a catch-all = %v, want ErrRuleExists", err)
	}
	if _, err := s.AddCatchAll(1, 0); !errors.Is(err, ErrRuleExists) {
		t.Errorf("AddCatchAll(1, 0) over AddCatchAll(0, 0) = %v, want ErrRuleExists", err)
	}
	if rules, _ := s.Rules(); len(rules) != 4 {
		t.Errorf("catch-all calls left %d rules, want 4", len(rules))
	}
	if _, err := s.AddRule(Rule{Prefix: pfx("0.0.0.0/0"), Proto: ProtoUDP, PortLo: 53, PortHi: 53, Guest: 1}); err != nil {
		t.Fatal(err)
	}
	tcp, udp := uint8(flows.ProtoTCP), uint8(flows.ProtoUDP)
	g0 := want{verdict: xdpRedirect, slot: Slot{0, 0}, how: "redirected", queue: "redirected", hit: "rule"}
	checkFrame(t, s, "tcp4", pkt{dst: addr("198.18.0.1"), proto: tcp, sport: 1, dport: 2}.frame(), g0)
	checkFrame(t, s, "udp6", pkt{dst: addr("2001:2::1"), proto: udp, sport: 1, dport: 2}.frame(), g0)
	checkFrame(t, s, "udp4-53-specific", pkt{dst: addr("198.18.0.1"), proto: udp, sport: 1, dport: 53}.frame(),
		want{verdict: xdpRedirect, slot: Slot{1, 0}, how: "redirected", queue: "redirected", hit: "rule"})
	checkFrame(t, s, "icmp4", pkt{dst: addr("198.18.0.1"), proto: flows.ProtoICMP}.frame(), want{verdict: xdpPass, queue: "pass_control"})
	checkFrame(t, s, "icmp6", pkt{dst: addr("2001:2::1"), proto: flows.ProtoICMPv6}.frame(), want{verdict: xdpPass, queue: "pass_control"})
	checkFrame(t, s, "arp", arpFrame(addr("198.18.0.1"), 0), want{verdict: xdpPass, queue: "pass_non_ip"})
	checkFrame(t, s, "gre", pkt{dst: addr("198.18.0.1"), proto: 47}.frame(), want{verdict: xdpPass, queue: "pass_unmatched", info: "unknown_l4"})

	// Raw-mode API: RegisterSocket/UnregisterSocket are slot (q, 0, 0).
	if err := s.UnregisterSocket(0); err != nil {
		t.Fatal(err)
	}
	checkFrame(t, s, "tcp4-socket-gone", pkt{dst: addr("198.18.0.1"), proto: tcp, sport: 1, dport: 2}.frame(),
		want{verdict: xdpPass, slot: Slot{0, 0}, how: "no-socket", queue: "pass_no_socket", hit: "rule"})
}

// TestRuleCache: the second frame of a flow takes its rule outcome from the
// rule cache; every rule change invalidates the cache at once; negative
// outcomes are cached too; the DSCP class is still taken per frame.
func TestRuleCache(t *testing.T) {
	s := loadSteerOptsT(t, smallSteerOptions())
	slotSockets(t, s, Slot{1, 0}, Slot{1, 2}, Slot{2, 0})
	if err := s.SetDSCPClass(46, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRule(Rule{Prefix: pfx("198.18.1.0/24"), Proto: ProtoUDP, Guest: 1, ClassFromDSCP: true}); err != nil {
		t.Fatal(err)
	}
	udp := uint8(flows.ProtoUDP)
	f := pkt{dst: addr("198.18.1.5"), proto: udp, sport: 1, dport: 2}
	g1 := want{verdict: xdpRedirect, slot: Slot{1, 0}, how: "redirected", queue: "redirected", hit: "rule", cache: "miss"}
	// A small table: no cache.
	checkFrame(t, s, "small-table-1", f.frame(), g1)
	checkFrame(t, s, "small-table-2", f.frame(), g1)
	fillPrefixes(t, s, RuleCacheMinPrefixes-1)
	checkFrame(t, s, "first", f.frame(), g1)
	g1.cache = "hit"
	checkFrame(t, s, "second", f.frame(), g1)
	// Same flow key, other DSCP: the cached rule says "class from DSCP".
	f46 := f
	f46.tos = 46 << 2
	checkFrame(t, s, "cached-dscp-46", f46.frame(), want{verdict: xdpRedirect, slot: Slot{1, 2}, how: "redirected", queue: "redirected", hit: "rule", cache: "hit"})
	if n := countEntries(t, s.RuleCacheMap()); n != 1 {
		t.Errorf("rule cache holds %d entries, want 1", n)
	}

	// A more specific rule: the cache is invalid at once. An exact rule
	// that matches is answered by the fast rule index, which needs no
	// trie walk and so no cache (on x86-64; elsewhere the cache answers).
	id, err := s.AddRule(Rule{Prefix: pfx("198.18.1.5/32"), Proto: ProtoUDP, Guest: 2})
	if err != nil {
		t.Fatal(err)
	}
	g2 := want{verdict: xdpRedirect, slot: Slot{2, 0}, how: "redirected", queue: "redirected", hit: "rule", cache: "miss"}
	checkFrame(t, s, "after-add", f.frame(), g2)
	if !fastSupported {
		g2.cache = "hit"
	}
	checkFrame(t, s, "after-add-again", f.frame(), g2)
	if err := s.DeleteRule(id); err != nil {
		t.Fatal(err)
	}
	g1.cache = "miss"
	checkFrame(t, s, "after-delete", f.frame(), g1)

	// No match is cached too, and undone by a rule.
	other := pkt{dst: addr("198.18.9.9"), proto: udp, sport: 1, dport: 2}
	checkFrame(t, s, "unmatched", other.frame(), want{verdict: xdpPass, queue: "pass_unmatched", cache: "miss"})
	checkFrame(t, s, "unmatched-cached", other.frame(), want{verdict: xdpPass, queue: "pass_unmatched", cache: "hit"})
	if _, err := s.AddRule(Rule{Prefix: pfx("198.18.9.0/24"), Guest: 2}); err != nil {
		t.Fatal(err)
	}
	checkFrame(t, s, "now-matched", other.frame(), want{verdict: xdpRedirect, slot: Slot{2, 0}, how: "redirected", queue: "redirected", hit: "rule", cache: "miss"})

	// An installed flow still comes first.
	if err := s.InstallFlow(f.key(t), Slot{2, 0}); err != nil {
		t.Fatal(err)
	}
	checkFrame(t, s, "flow-over-cache", f.frame(), want{verdict: xdpRedirect, slot: Slot{2, 0}, how: "redirected", queue: "redirected", hit: "flow"})

	// ARP is never cached.
	if _, err := s.AddRule(Rule{Prefix: pfx("198.18.1.10/32"), Proto: ProtoARP, Guest: 1}); err != nil {
		t.Fatal(err)
	}
	arp := arpFrame(addr("198.18.1.10"), 0)
	for _, name := range []string{"arp", "arp-again"} {
		checkFrame(t, s, name, arp, want{verdict: xdpRedirect, slot: Slot{1, 0}, how: "redirected", queue: "redirected", hit: "rule", cache: "miss"})
	}

	// Without the cache, every frame walks the rules.
	o := smallSteerOptions()
	o.RuleCache = 0
	s0 := loadSteerOptsT(t, o)
	if _, err := s0.AddRule(Rule{Prefix: pfx("198.18.1.0/24"), Proto: ProtoUDP}); err != nil {
		t.Fatal(err)
	}
	fillPrefixes(t, s0, RuleCacheMinPrefixes)
	for _, name := range []string{"no-cache-1", "no-cache-2"} {
		checkFrame(t, s0, name, f.frame(), want{verdict: xdpPass, slot: Slot{0, 0}, how: "no-socket", queue: "pass_no_socket", hit: "rule", cache: "miss"})
	}
	if n := countEntries(t, s0.RuleCacheMap()); n != 0 {
		t.Errorf("disabled rule cache holds %d entries", n)
	}
}

// fillPrefixes adds n IPv6 /64 prefixes with a rule no test frame matches,
// to reach RuleCacheMinPrefixes.
func fillPrefixes(t testing.TB, s *Steer, n int) {
	t.Helper()
	for i := range n {
		p := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 0, 0xff, byte(i)}), 64)
		if _, err := s.AddRule(Rule{Prefix: p, Proto: ProtoUDP, PortLo: 1, PortHi: 1}); err != nil {
			t.Fatal(err)
		}
	}
}

func countEntries(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	var k steerFlowKey
	var v steerRuleCacheEntry
	n := 0
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSteerQueues: frames on rx queue q go to the slot of (q, guest,
// class) and count in queue q's counters; queues beyond SteerOptions.Queues
// go to the kernel uncounted.
func TestSteerQueues(t *testing.T) {
	o := smallSteerOptions() // 4 queues
	s := loadSteerOptsT(t, o)
	lab := newVethLabQueues(t, 6)
	for q := range 4 {
		if err := s.RegisterSlot(q, 1, 0, newTestXSK(t, lab.hostIndex, q)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AddRule(Rule{Prefix: pfx("198.18.1.0/24"), Guest: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.UnregisterSlot(2, 1, 0); err != nil {
		t.Fatal(err)
	}
	frame := pkt{dst: addr("198.18.1.1"), proto: flows.ProtoUDP, sport: 1, dport: 2}.frame()
	for q := range 6 {
		ret, err := s.Program().Run(&ebpf.RunOptions{Data: frame, Context: xdpMD{dataEnd: uint32(len(frame)), ingressIfindex: uint32(lab.hostIndex), rxQueueIndex: uint32(q)}})
		if err != nil {
			t.Fatalf("run on queue %d: %v", q, err)
		}
		want := uint32(xdpRedirect)
		if q == 2 || q >= 4 {
			want = xdpPass
		}
		if ret != want {
			t.Errorf("queue %d: verdict %d, want %d", q, ret, want)
		}
	}
	per, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(per) != 4 {
		t.Fatalf("Stats() covers %d queues, want 4", len(per))
	}
	for q, st := range per {
		if st.RxPackets != 1 || st.RuleHits != 1 {
			t.Errorf("queue %d: %+v, want one frame matched", q, st)
		}
		if q == 2 && st.PassNoSocket != 1 || q != 2 && st.Redirected != 1 {
			t.Errorf("queue %d: redirected %d, pass_no_socket %d", q, st.Redirected, st.PassNoSocket)
		}
	}
	ss, err := s.SlotStats(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ss.Packets != 4 || ss.Redirected != 3 || ss.PassNoSocket != 1 {
		t.Errorf("slot (1, 0) over all queues: %+v", ss)
	}
}

// memoEntry reads the rule memo's entry for a frame to dst:dport on rx
// queue 0, on CPU cpu, as the program picks it: the address's low word xor
// the port, where port is dport while some rule has a port range and 0
// otherwise.
func memoEntry(t *testing.T, s *Steer, cpu int, dst netip.Addr, port uint16) steerRuleMemo {
	t.Helper()
	b := dst.As16()
	low := binary.LittleEndian.Uint32(b[12:]) // the word as the program loads it
	key := (low ^ uint32(port)) & (memoWays - 1)
	var per []steerRuleMemo
	if err := s.objs.RuleMemos.Lookup(&key, &per); err != nil {
		t.Fatalf("rule memo lookup %d: %v", key, err)
	}
	if cpu >= len(per) {
		t.Fatalf("rule memo has %d CPUs, want CPU %d", len(per), cpu)
	}
	return per[cpu]
}

// memoWays is XNIC_MEMO_WAYS of steer.bpf.c: memo entries per rx queue.
const memoWays = 8

// TestRuleMemo: on one CPU, the frames of a flow after the first take
// their rule decision from the rule memo, and every rule change (add,
// delete, one that changes the decision through a shorter prefix, one
// that does not) is seen by the very next frame; a match, no match and
// two frames that share a memo entry each keep their own decision; the
// DSCP class is still taken per frame. While no rule has a port range the
// memo keys on the address alone, so frames to other ports of the address
// share its entry.
func TestRuleMemo(t *testing.T) {
	s := loadSteerOptsT(t, smallSteerOptions())
	if n := s.objs.RuleMemos.MaxEntries(); n != 64*memoWays {
		t.Fatalf("rule_memos has %d entries, want 64 queues x %d ways: memoWays differs from XNIC_MEMO_WAYS", n, memoWays)
	}
	slotSockets(t, s, Slot{1, 0}, Slot{1, 2}, Slot{2, 0})
	cpu := pinCPU(t)
	if err := s.SetDSCPClass(46, 2); err != nil {
		t.Fatal(err)
	}
	udp := uint8(flows.ProtoUDP)
	dst := addr("198.18.1.5")
	f := pkt{dst: dst, proto: udp, sport: 1, dport: 5000}
	unmatched := want{verdict: xdpPass, queue: "pass_unmatched"}
	to := func(sl Slot) want {
		return want{verdict: xdpRedirect, slot: sl, how: "redirected", queue: "redirected", hit: "rule"}
	}
	twice := func(name string, p pkt, w want) {
		t.Helper()
		checkFrame(t, s, name, p.frame(), w)
		checkFrame(t, s, name+"-again", p.frame(), w)
	}
	ctl := func() steerSteerCtl {
		t.Helper()
		var c steerSteerCtl
		if err := s.objs.Ctl.Lookup(uint32(0), &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// The memo holds p's decision, taken at the current generation, keyed
	// on its port or not as ctl.rule_ports says, which must be ports.
	held := func(name string, p pkt, match, ports bool) {
		t.Helper()
		c := ctl()
		if got := c.RulePorts != 0; got != ports {
			t.Fatalf("%s: ctl.rule_ports %d, want ports %v", name, c.RulePorts, ports)
		}
		port := uint16(0)
		if ports {
			port = p.dport
		}
		e := memoEntry(t, s, cpu, p.dst, port)
		tag := uint32(4)<<24 | uint32(p.proto)<<16 | uint32(port)
		if e.Tag != tag || e.Gen != c.RuleGen {
			t.Errorf("%s: memo entry tag %#x gen %d, want %#x gen %d", name, e.Tag, e.Gen, tag, c.RuleGen)
		}
		if got := e.Target.Flags&0x80 == 0; got != match {
			t.Errorf("%s: memo entry holds a match: %v, want %v", name, got, match)
		}
	}

	twice("no-rules", f, unmatched)
	held("no-rules", f, false, false)
	id1, err := s.AddRule(Rule{Prefix: pfx("198.18.1.5/32"), Proto: ProtoUDP, Guest: 1})
	if err != nil {
		t.Fatal(err)
	}
	twice("exact", f, to(Slot{1, 0}))
	held("exact", f, true, false)
	// No rule has ports: another port of the address takes the same entry.
	other := f
	other.dport = 40000
	checkFrame(t, s, "exact-other-port", other.frame(), to(Slot{1, 0}))
	held("exact-other-port", other, true, false)

	// A rule elsewhere: the decision stays, taken again.
	if _, err := s.AddRule(Rule{Prefix: pfx("198.18.7.0/24"), Guest: 2}); err != nil {
		t.Fatal(err)
	}
	twice("rule-elsewhere", f, to(Slot{1, 0}))
	// A shorter prefix's rule for the port wins only where the exact
	// prefix has no match: the exact one still decides. It has a port
	// range, so the memo keys on the port from now on.
	id3, err := s.AddRule(Rule{Prefix: pfx("198.18.1.0/24"), Proto: ProtoUDP, PortLo: 5000, PortHi: 5000, Guest: 2})
	if err != nil {
		t.Fatal(err)
	}
	twice("shorter-prefix", f, to(Slot{1, 0}))
	held("shorter-prefix", f, true, true)
	if err := s.DeleteRule(id1); err != nil {
		t.Fatal(err)
	}
	twice("exact-deleted", f, to(Slot{2, 0}))
	held("exact-deleted", f, true, true)
	checkFrame(t, s, "exact-deleted-other-port", other.frame(), unmatched)

	// Two frames in one memo entry (same way: ports 5000 and 5008), told
	// apart by their port: each keeps its decision, alternating.
	g := f
	g.dport = 5008
	for i := range 3 {
		checkFrame(t, s, fmt.Sprintf("way-5000-%d", i), f.frame(), to(Slot{2, 0}))
		checkFrame(t, s, fmt.Sprintf("way-5008-%d", i), g.frame(), unmatched)
	}
	// The class from DSCP is per frame, not per decision.
	id5, err := s.AddRule(Rule{Prefix: pfx("198.18.1.5/32"), Proto: ProtoUDP, PortLo: 5008, PortHi: 5008, Guest: 1, ClassFromDSCP: true})
	if err != nil {
		t.Fatal(err)
	}
	g46 := g
	g46.tos = 46 << 2
	twice("dscp-0", g, to(Slot{1, 0}))
	twice("dscp-46", g46, to(Slot{1, 2}))
	checkFrame(t, s, "dscp-0-after-46", g.frame(), to(Slot{1, 0}))

	if err := s.DeleteRule(id3); err != nil {
		t.Fatal(err)
	}
	twice("prefix-deleted", f, unmatched)
	held("prefix-deleted", f, false, true)
	// The last rule with ports gone: keyed on the address again.
	if err := s.DeleteRule(id5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRule(Rule{Prefix: pfx("198.18.1.0/24"), Guest: 1}); err != nil {
		t.Fatal(err)
	}
	twice("no-ports-again", g, to(Slot{1, 0}))
	held("no-ports-again", g, true, false)
	checkFrame(t, s, "no-ports-again-other-port", f.frame(), to(Slot{1, 0}))
}
