package bpf

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/xnic/xnic/flows"
)

// tempPinDir is a fresh directory name under /sys/fs/bpf, removed with
// everything in it by t.Cleanup.
func tempPinDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xnic-test-%08x", rand.Uint32()), "port0")
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(dir)) })
	return dir
}

// TestSteerPinReuse: a Steer loaded with PinDir keeps its maps pinned after
// Close, and the next LoadSteer with the same PinDir reuses them: rules,
// flows, DSCP classes and counters survive a restart.
func TestSteerPinReuse(t *testing.T) {
	opts := smallSteerOptions()
	opts.PinDir = tempPinDir(t)

	s1 := loadSteerOptsT(t, opts)
	if got := s1.Reused(); len(got) != 0 {
		t.Errorf("first load reused %v", got)
	}
	if s1.PinDir() != opts.PinDir {
		t.Errorf("PinDir = %q, want %q", s1.PinDir(), opts.PinDir)
	}
	var ids []RuleID
	for _, r := range []Rule{
		{Prefix: pfx("198.18.1.0/24"), Proto: ProtoTCP, PortLo: 80, PortHi: 80, Guest: 1, Class: 1},
		{Prefix: pfx("2001:2:0:1::/64"), Proto: ProtoUDP, Guest: 2},
		{Prefix: pfx("198.18.1.10/32"), Proto: ProtoARP, Guest: 1},
	} {
		id, err := s1.AddRule(r)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := s1.DeleteRule(ids[2]); err != nil {
		t.Fatal(err)
	}
	catchAll, err := s1.AddCatchAll(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	flow := pkt{dst: addr("198.18.1.5"), proto: flows.ProtoUDP, sport: 7, dport: 8}
	if err := s1.InstallFlow(flow.key(t), Slot{3, 2}); err != nil {
		t.Fatal(err)
	}
	if err := s1.SetDSCPClass(46, 3); err != nil {
		t.Fatal(err)
	}
	runProg(t, s1.Program(), flow.frame())
	rules1, err := s1.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range pinNames {
		if _, err := os.Stat(filepath.Join(opts.PinDir, name)); err != nil {
			t.Errorf("pin %s gone after Close of a PinDir Steer: %v", name, err)
		}
	}

	// Incompatible sizes: refused, and the pins stay.
	bad := opts
	bad.Flows *= 2
	if _, err := LoadSteer(bad); !errors.Is(err, ebpf.ErrMapIncompatible) {
		t.Errorf("LoadSteer with other sizes over the pins = %v, want ErrMapIncompatible", err)
	}
	for _, name := range pinNames {
		if _, err := os.Stat(filepath.Join(opts.PinDir, name)); err != nil {
			t.Errorf("pin %s removed by a failed LoadSteer: %v", name, err)
		}
	}

	s2 := loadSteerOptsT(t, opts)
	reused := s2.Reused()
	slices.Sort(reused)
	want := slices.Clone(pinNames)
	slices.Sort(want)
	if !slices.Equal(reused, want) {
		t.Errorf("Reused() = %v, want %v", reused, want)
	}
	rules2, err := s2.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rules1, rules2) || len(rules2) != 6 {
		t.Errorf("rules after restart %v, want %v", rules2, rules1)
	}
	// The engine's raw mode adds its catch-all again: the same rules.
	if again, err := s2.AddCatchAll(0, 0); err != nil || !slices.Equal(again, catchAll) {
		t.Errorf("AddCatchAll after restart = %v, %v, want %v", again, err, catchAll)
	}
	if sl, ok, err := s2.LookupFlow(flow.key(t)); err != nil || !ok || sl != (Slot{3, 2}) {
		t.Errorf("flow after restart: %v %v %v", sl, ok, err)
	}
	if fastSupported {
		// The fast rule index is rebuilt from the trie: the catch-all's /0
		// ways, and the /24 and /64 counted as middle prefixes.
		h := s2.fastRules.head
		if h.On != 1 || h.Middles != 2 || loadWay(&h.Any[0]).Count != 2 || loadWay(&h.Any[1]).Count != 2 {
			t.Errorf("fast rule index after restart: on %d, middles %d, /0 ways of %d and %d rules",
				h.On, h.Middles, loadWay(&h.Any[0]).Count, loadWay(&h.Any[1]).Count)
		}
	}
	if d, err := s2.DSCPClasses(); err != nil || d[46] != 3 {
		t.Errorf("dscp 46 after restart: class %d, %v", d[46], err)
	}
	st, err := s2.TotalStats()
	if err != nil || st.RxPackets != 1 || st.FlowHits != 1 {
		t.Errorf("counters after restart: %+v, %v", st, err)
	}
	// New ids do not reuse old ones.
	id, err := s2.AddRule(Rule{Prefix: pfx("198.18.2.0/24"), Guest: 1})
	if err != nil {
		t.Fatal(err)
	}
	if id <= catchAll[3] {
		t.Errorf("new rule id %d after restart, want above %d", id, catchAll[3])
	}
	if err := s2.DeleteRule(ids[0]); err != nil {
		t.Errorf("DeleteRule of a rule made before the restart: %v", err)
	}
	// A second Pin of a PinDir Steer is refused.
	if err := s2.Pin(opts.PinDir); !errors.Is(err, os.ErrExist) {
		t.Errorf("Pin on a pinned Steer = %v, want os.ErrExist", err)
	}
	if err := s2.Unpin(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(opts.PinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir still there after Unpin: %v", err)
	}
}

// TestSteerPinWithoutIndex: maps pinned by a version without the fast rule
// index (its two maps missing) are reused, and the index is built from the
// pinned rules.
func TestSteerPinWithoutIndex(t *testing.T) {
	opts := smallSteerOptions()
	opts.PinDir = tempPinDir(t)
	s1 := loadSteerOptsT(t, opts)
	slotSockets(t, s1, Slot{0, 0}, Slot{1, 0})
	if _, err := s1.AddCatchAll(0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.AddRule(Rule{Prefix: pfx("198.18.1.1/32"), Proto: ProtoUDP, Guest: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{PinFastHead, PinFastRules} {
		if err := os.Remove(filepath.Join(opts.PinDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	s2 := loadSteerOptsT(t, opts)
	if n := len(s2.Reused()); n != len(pinNames)-2 {
		t.Errorf("reused %d maps, want %d", n, len(pinNames)-2)
	}
	slotSockets(t, s2, Slot{0, 0}, Slot{1, 0})
	g := func(guest int) want {
		return want{verdict: xdpRedirect, slot: Slot{guest, 0}, how: "redirected", queue: "redirected", hit: "rule"}
	}
	checkFrame(t, s2, "exact", pkt{dst: addr("198.18.1.1"), proto: flows.ProtoUDP, sport: 1, dport: 2}.frame(), g(1))
	checkFrame(t, s2, "catch-all", pkt{dst: addr("198.18.1.2"), proto: flows.ProtoUDP, sport: 1, dport: 2}.frame(), g(0))
	if fastSupported && (s2.fastRules.head.On != 1 || len(s2.fastRules.exact) != 1) {
		t.Errorf("fast rule index after the reuse: on %d, %d exact prefixes", s2.fastRules.head.On, len(s2.fastRules.exact))
	}
}

// TestSteerBpftoolDump pins the maps and checks that bpftool prints the
// BTF field names of the counters, rules and flows.
func TestSteerBpftoolDump(t *testing.T) {
	s := loadSteerOptsT(t, smallSteerOptions())
	bpftool, err := exec.LookPath("bpftool")
	if err != nil {
		t.Fatalf("bpftool is needed (provisioned by vagrant/provision.sh): %v", err)
	}
	dir := tempPinDir(t)
	if err := s.Pin(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRule(Rule{Prefix: pfx("198.18.1.0/24"), Proto: ProtoTCP, PortLo: 80, PortHi: 80, Guest: 1}); err != nil {
		t.Fatal(err)
	}
	fillPrefixes(t, s, RuleCacheMinPrefixes)
	f := pkt{dst: addr("198.18.1.5"), proto: flows.ProtoTCP, sport: 1, dport: 80}
	if err := s.InstallFlow(f.key(t), Slot{2, 1}); err != nil {
		t.Fatal(err)
	}
	// An IPv6 flow goes to the LRU hash (the IPv4 one to the fast table).
	f6 := pkt{src: addr("2001:2::1"), dst: addr("2001:2::2"), proto: flows.ProtoTCP, sport: 1, dport: 80}
	if err := s.InstallFlow(f6.key(t), Slot{2, 0}); err != nil {
		t.Fatal(err)
	}
	runProg(t, s.Program(), f.frame())
	// A frame of another flow, matched by the rule: cached.
	runProg(t, s.Program(), pkt{dst: addr("198.18.1.6"), proto: flows.ProtoTCP, sport: 1, dport: 80}.frame())

	fields := map[string][]string{
		PinStats: {"rx_packets", "rx_bytes", "redirected", "pass_non_ip", "pass_control", "pass_unmatched",
			"pass_no_socket", "dropped_malformed", "flow_hits", "rule_hits", "rule_cache_hits", "drop_trunc_l4", "drop_bad_tcp_offset"},
		PinSlotStats: {"packets", "bytes", "redirected", "redirected_class0", "pass_no_socket"},
		PinRules:     {"prefixlen", "addr", "count", "rules", "port_lo", "port_hi", "guest", "class", "priority"},
		PinFlows:     {"src", "dst", "sport", "dport", "proto", "family", "vlan", "guest", "class"},
		PinFastFlows: {"way", "src", "dst", "sport", "dport", "proto", "guest", "vlan_class"},
		PinRuleCache: {"src", "dport", "target", "guest", "flags", "gen"},
		PinCtl:       {"rule_gen", "flows_in_use", "rule_cache_on", "fast_in_use"},
		PinFastHead:  {"seq", "on", "middles", "overflow", "hashed", "any", "exact", "addr", "family", "count", "rules", "port_lo", "guest"},
		PinFastRules: {"way", "addr", "flags", "rules", "port_hi", "class"},
	}
	for name, want := range fields {
		out, err := exec.Command(bpftool, "map", "dump", "pinned", filepath.Join(dir, name)).CombinedOutput()
		if err != nil {
			t.Fatalf("bpftool map dump pinned %s: %v\n%s", name, err, out)
		}
		for _, f := range want {
			if !strings.Contains(string(out), `"`+f+`"`) {
				t.Errorf("bpftool dump of %s lacks field %q:\n%.2000s", name, f, out)
			}
		}
	}
	// The counters bpftool shows are the ones the program bumped.
	out, err := exec.Command(bpftool, "-j", "map", "lookup", "pinned", filepath.Join(dir, PinStats), "key", "0", "0", "0", "0").CombinedOutput()
	if err != nil {
		t.Fatalf("bpftool map lookup: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"flow_hits":1`) {
		t.Errorf("bpftool lookup of queue 0 lacks flow_hits 1:\n%s", out)
	}
}
