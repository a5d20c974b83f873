package bpf

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Proto is the protocol a Rule matches: an IP protocol number, ProtoAny, or
// ProtoARP.
type Proto uint8

const (
	// ProtoAny matches every IP protocol (not ARP).
	ProtoAny Proto = 0
	// ProtoICMP, ProtoTCP, ProtoUDP and ProtoICMPv6 are IP protocol numbers;
	// any other number 1..254 may be used as well.
	ProtoICMP   Proto = 1
	ProtoTCP    Proto = 6
	ProtoUDP    Proto = 17
	ProtoICMPv6 Proto = 58
	// ProtoARP matches ARP requests and replies whose target protocol
	// address is in the rule's (IPv4) prefix (XNIC_RULE_ARP; IP protocol
	// 255 is reserved).
	ProtoARP Proto = 255
)

func (p Proto) String() string {
	switch p {
	case ProtoAny:
		return "any"
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMPv6:
		return "icmpv6"
	case ProtoARP:
		return "arp"
	}
	return strconv.Itoa(int(p))
}

// ParseProto parses "any", "tcp", "udp", "icmp", "icmpv6", "arp" or an IP
// protocol number 0..254.
func ParseProto(s string) (Proto, error) {
	switch strings.ToLower(s) {
	case "any", "", "ip":
		return ProtoAny, nil
	case "icmp":
		return ProtoICMP, nil
	case "tcp":
		return ProtoTCP, nil
	case "udp":
		return ProtoUDP, nil
	case "icmpv6", "ipv6-icmp":
		return ProtoICMPv6, nil
	case "arp":
		return ProtoARP, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n == uint64(ProtoARP) {
		return 0, fmt.Errorf("parse proto %q: want any, tcp, udp, icmp, icmpv6, arp or 0..254: %w", s, ErrInvalidOptions)
	}
	return Proto(n), nil
}

// RuleID identifies a rule in the rule table. IDs start at 1 and are not
// reused while the table lives (pinned maps included).
type RuleID uint32

// Rule steers frames to a destination prefix, protocol and destination port
// range to a guest and class.
//
// Matching: the program finds the most specific prefix in the table that
// contains the frame's destination address (for ARP, its target protocol
// address) and takes the first of that prefix's rules, ordered by Priority
// then ID, whose family, protocol and port range match. When none matches,
// it tries the next less specific prefix, up to RuleDepth prefixes in all;
// then the frame is unmatched and goes to the kernel. So a /32 with a TCP
// port 80 rule does not hide a 0.0.0.0/0 UDP rule from that address's UDP
// traffic, as long as fewer than RuleDepth prefixes nest there.
type Rule struct {
	// ID is assigned by AddRule; AddRule ignores it.
	ID RuleID
	// Prefix is the destination prefix, IPv4 or IPv6 (not IPv4-mapped
	// IPv6), without host bits. IPv4 rules match IPv4 frames (and ARP),
	// IPv6 rules IPv6 frames, even ::/0.
	Prefix netip.Prefix
	// Proto is the protocol: ProtoAny, an IP protocol, or ProtoARP (IPv4
	// prefixes only).
	Proto Proto
	// PortLo and PortHi are the destination port range, inclusive, for
	// ProtoTCP and ProtoUDP only. 0, 0 means every port and is stored as
	// 0..65535. Non-first fragments have no ports: they match only ranges
	// starting at 0.
	PortLo, PortHi uint16
	// Guest and Class are the slot frames go to.
	Guest, Class int
	// ClassFromDSCP takes the class from the frame's DSCP through the DSCP
	// table (SetDSCPClass) instead of Class, which must then be 0.
	ClassFromDSCP bool
	// Priority orders the rules of one prefix: lower first, then by ID.
	Priority uint16
}

// CatchAllPriority is the priority of the rules AddCatchAll adds: after
// every other rule of the same prefix.
const CatchAllPriority = 0xffff

func (r Rule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rule %d: dst %s proto %s", r.ID, r.Prefix, r.Proto)
	if r.Proto == ProtoTCP || r.Proto == ProtoUDP {
		if r.PortLo == r.PortHi {
			fmt.Fprintf(&b, " port %d", r.PortLo)
		} else {
			fmt.Fprintf(&b, " ports %d-%d", r.PortLo, r.PortHi)
		}
	}
	if r.ClassFromDSCP {
		fmt.Fprintf(&b, " -> guest %d class dscp", r.Guest)
	} else {
		fmt.Fprintf(&b, " -> guest %d class %d", r.Guest, r.Class)
	}
	if r.Priority != 0 {
		fmt.Fprintf(&b, " priority %d", r.Priority)
	}
	return b.String()
}

// matchEqual reports whether r and o match the same frames at the same
// priority.
func (r Rule) matchEqual(o Rule) bool {
	return r.Prefix == o.Prefix && r.Proto == o.Proto && r.PortLo == o.PortLo &&
		r.PortHi == o.PortHi && r.Priority == o.Priority
}

// normalize validates r and returns it with its port range filled in. The
// error names the field at fault.
func (s *Steer) normalizeRule(r Rule) (Rule, error) {
	p := r.Prefix
	switch {
	case !p.IsValid():
		return r, fmt.Errorf("prefix: %q is not a valid prefix: %w", p, ErrInvalidOptions)
	case p.Addr().Is4In6():
		return r, fmt.Errorf("prefix: %s is IPv4-mapped; write it as IPv4: %w", p, ErrInvalidOptions)
	case p.Addr().Zone() != "":
		return r, fmt.Errorf("prefix: %s has a zone: %w", p, ErrInvalidOptions)
	case p != p.Masked():
		return r, fmt.Errorf("prefix: %s has host bits set (did you mean %s?): %w", p, p.Masked(), ErrInvalidOptions)
	}
	if r.Proto == ProtoARP && !p.Addr().Is4() {
		return r, fmt.Errorf("proto: arp needs an IPv4 prefix, got %s: %w", p, ErrInvalidOptions)
	}
	if r.PortLo == 0 && r.PortHi == 0 {
		r.PortHi = 0xffff
	}
	if r.PortLo > r.PortHi {
		return r, fmt.Errorf("port_lo: %d above port_hi %d: %w", r.PortLo, r.PortHi, ErrInvalidOptions)
	}
	if (r.PortLo != 0 || r.PortHi != 0xffff) && r.Proto != ProtoTCP && r.Proto != ProtoUDP {
		return r, fmt.Errorf("port_lo/port_hi: a port range needs proto tcp or udp, not %s: %w", r.Proto, ErrInvalidOptions)
	}
	if err := s.checkSlot(Slot{r.Guest, r.Class}); err != nil {
		return r, err
	}
	if r.ClassFromDSCP && r.Class != 0 {
		return r, fmt.Errorf("class: %d with class_from_dscp; leave it 0: %w", r.Class, ErrInvalidOptions)
	}
	return r, nil
}

// ruleKey is the LPM key of a prefix, comparable for the rule index.
type ruleKey = steerRuleKey

func ruleKeyOf(p netip.Prefix) ruleKey {
	if p.Addr().Is4() {
		return ruleKey{Prefixlen: uint32(96 + p.Bits()), Addr: netip.AddrFrom16(p.Addr().As16()).As16()}
	}
	return ruleKey{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}
}

// prefixOf decodes a key for a rule of family (4 or 6).
func prefixOf(k ruleKey, family uint8) netip.Prefix {
	a := netip.AddrFrom16(k.Addr)
	if family == 4 && k.Prefixlen >= 96 {
		return netip.PrefixFrom(a.Unmap(), int(k.Prefixlen)-96)
	}
	return netip.PrefixFrom(a, int(k.Prefixlen))
}

func encodeRule(r Rule) steerRule {
	e := steerRule{
		Id: uint32(r.ID), Priority: r.Priority, PortLo: r.PortLo, PortHi: r.PortHi,
		Proto: uint8(r.Proto), Family: 6, Guest: uint8(r.Guest), Class: uint8(r.Class),
	}
	if r.Prefix.Addr().Is4() {
		e.Family = 4
	}
	if r.ClassFromDSCP {
		e.Flags |= flagClassFromDSCP
	}
	return e
}

func decodeRule(k ruleKey, e steerRule) Rule {
	return Rule{
		ID: RuleID(e.Id), Prefix: prefixOf(k, e.Family), Proto: Proto(e.Proto),
		PortLo: e.PortLo, PortHi: e.PortHi, Guest: int(e.Guest), Class: int(e.Class),
		ClassFromDSCP: e.Flags&flagClassFromDSCP != 0, Priority: e.Priority,
	}
}

// flagClassFromDSCP is XNIC_CLASS_FROM_DSCP.
const flagClassFromDSCP = 0x1

// readSet returns the rules stored under exactly k, in program order.
func (s *Steer) readSet(k ruleKey) ([]Rule, error) {
	var set steerRuleSet
	err := s.objs.Rules.Lookup(&k, &set)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if set.Prefixlen != k.Prefixlen {
		// A lookup in an LPM trie is a longest-prefix match: this is the
		// set of a less specific prefix, and k has none of its own.
		return nil, nil
	}
	n := min(int(set.Count), MaxRulesPerPrefix)
	out := make([]Rule, n)
	for i := range n {
		out[i] = decodeRule(k, set.Rules[i])
	}
	return out, nil
}

// writeSet stores rules under k, sorted, in one map update: the program
// sees the old set or the new one, never a mix. Then it brings the fast
// rule index in line, in one step of its sequence lock: until then the
// program answers from the old index, after it from the new, and in
// between it walks the trie, which already has the new set. Callers hold
// s.mu.
func (s *Steer) writeSet(k ruleKey, rules []Rule) error {
	slices.SortFunc(rules, func(a, b Rule) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.ID, b.ID))
	})
	if len(rules) == 0 {
		if err := s.objs.Rules.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	} else {
		set := steerRuleSet{Prefixlen: k.Prefixlen, Count: uint32(len(rules))}
		for i, r := range rules {
			set.Rules[i] = encodeRule(r)
		}
		if err := s.objs.Rules.Update(&k, &set, ebpf.UpdateAny); err != nil {
			return err
		}
	}
	if s.fastRules != nil {
		s.fastRules.set(k, rules)
	}
	return nil
}

// allSets returns every rule set of the trie by key, in program order.
func (s *Steer) allSets() (map[ruleKey][]Rule, error) {
	var (
		k   ruleKey
		set steerRuleSet
	)
	out := map[ruleKey][]Rule{}
	it := s.objs.Rules.Iterate()
	for it.Next(&k, &set) {
		n := min(int(set.Count), MaxRulesPerPrefix)
		rules := make([]Rule, n)
		for i := range n {
			rules[i] = decodeRule(k, set.Rules[i])
		}
		out[k] = rules
	}
	return out, it.Err()
}

// AddRule validates r and adds it to the rule table, returning its ID. It
// takes effect for the next frame. A rule with the same prefix, protocol,
// port range and priority as one in the table is ErrRuleExists.
func (s *Steer) AddRule(r Rule) (RuleID, error) {
	id, _, err := s.addRule(r, false)
	return id, err
}

// addRule adds r. With reuse, an identical rule (same match and target)
// already in the table is not an error: its ID is returned, with added
// false.
func (s *Steer) addRule(r Rule, reuse bool) (RuleID, bool, error) {
	r, err := s.normalizeRule(r)
	if err != nil {
		return 0, false, fmt.Errorf("add rule: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objs.Rules == nil {
		return 0, false, fmt.Errorf("add rule: %w", ErrClosed)
	}
	k := ruleKeyOf(r.Prefix)
	set, err := s.readSet(k)
	if err != nil {
		return 0, false, fmt.Errorf("add rule for %s: read rule set: %w", r.Prefix, err)
	}
	for _, o := range set {
		if r.matchEqual(o) {
			if same := r; reuse {
				same.ID = o.ID
				if same == o {
					return o.ID, false, nil
				}
			}
			return 0, false, fmt.Errorf("add rule: %s: same match as rule %d: %w", r, o.ID, ErrRuleExists)
		}
	}
	if len(set) >= MaxRulesPerPrefix {
		return 0, false, fmt.Errorf("add rule: prefix: %s already has %d rules: %w", r.Prefix, MaxRulesPerPrefix, ErrTableFull)
	}
	r.ID = s.nextRule
	if err := s.writeSet(k, append(set, r)); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return 0, false, fmt.Errorf("add rule: prefix: %s: rule table holds %d prefixes: %w", r.Prefix, s.opts.Prefixes, ErrTableFull)
		}
		return 0, false, fmt.Errorf("add rule for %s: %w", r.Prefix, err)
	}
	s.nextRule++
	s.ruleAt[r.ID] = k
	s.prefixRules[k]++
	if r.hasPorts() {
		s.portRules[r.ID] = struct{}{}
	}
	if err := s.bumpRuleGen(); err != nil {
		return r.ID, true, fmt.Errorf("add rule %d: %w", r.ID, err)
	}
	return r.ID, true, nil
}

// DeleteRule removes a rule; an unknown id is ErrRuleNotFound.
func (s *Steer) DeleteRule(id RuleID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objs.Rules == nil {
		return fmt.Errorf("delete rule %d: %w", id, ErrClosed)
	}
	k, ok := s.ruleAt[id]
	if !ok {
		return fmt.Errorf("delete rule %d: %w", id, ErrRuleNotFound)
	}
	set, err := s.readSet(k)
	if err != nil {
		return fmt.Errorf("delete rule %d: read rule set: %w", id, err)
	}
	i := slices.IndexFunc(set, func(r Rule) bool { return r.ID == id })
	if i < 0 {
		s.forget(id, k)
		return fmt.Errorf("delete rule %d: gone from the map: %w", id, ErrRuleNotFound)
	}
	if err := s.writeSet(k, slices.Delete(set, i, i+1)); err != nil {
		return fmt.Errorf("delete rule %d: %w", id, err)
	}
	s.forget(id, k)
	if err := s.bumpRuleGen(); err != nil {
		return fmt.Errorf("delete rule %d: %w", id, err)
	}
	return nil
}

// Rules returns every rule in the table, by ID.
func (s *Steer) Rules() ([]Rule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objs.Rules == nil {
		return nil, fmt.Errorf("list rules: %w", ErrClosed)
	}
	out, err := s.allRules()
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	return out, nil
}

func (s *Steer) allRules() ([]Rule, error) {
	var (
		out []Rule
		k   ruleKey
		set steerRuleSet
	)
	it := s.objs.Rules.Iterate()
	for it.Next(&k, &set) {
		for i := range min(int(set.Count), MaxRulesPerPrefix) {
			out = append(out, decodeRule(k, set.Rules[i]))
		}
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Rule) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// bumpRuleGen invalidates every cached rule outcome. It runs after the
// rule set update: the program reads the generation before it walks the
// rules, so an outcome computed from the old rules is stored under the old
// generation and never used again. Callers hold s.mu.
func (s *Steer) bumpRuleGen() error {
	// The cache saves trie walks only: off while the fast rule index
	// answers every frame without one.
	on := uint32(0)
	if len(s.prefixRules) >= RuleCacheMinPrefixes && !s.fastRules.answersAlone() {
		on = 1
	}
	// The rule memo keys on the port only while some rule has a port
	// range. That flag changes in a write of its own, before the one
	// that bumps the generation (see struct rule_memo): a program that
	// reads the new generation then reads the new flag.
	if ports := s.rulePorts(); ports != s.ctl.RulePorts {
		if err := s.updateCtl(func(c *steerSteerCtl) { c.RulePorts = ports }); err != nil {
			return err
		}
	}
	// Switching the cache on or off in the same write as the generation
	// bump: entries cached before are stale either way.
	return s.updateCtl(func(c *steerSteerCtl) { c.RuleGen++; c.RuleCacheOn = on })
}

// rulePorts is ctl.rule_ports for the rules in the table: 1 while some
// rule has a port range. Callers hold s.mu (or own s, while loading).
func (s *Steer) rulePorts() uint32 { return uint32(min(len(s.portRules), 1)) }

// hasPorts reports whether r matches only some destination ports (a
// normalized rule without a range has 0-65535).
func (r Rule) hasPorts() bool { return r.PortLo != 0 || r.PortHi != 0xffff }

// RuleCacheMinPrefixes is the number of prefixes from which the program
// uses the rule cache (when SteerOptions.RuleCache is not 0, and while
// some lookups walk the trie). Below it a trie walk is cheaper than the
// hash lookup (BenchmarkSteerProgRun, before the fast rule index: 23 ns
// against 37 ns for one prefix; 94 against 37 for 10k).
const RuleCacheMinPrefixes = 8

// loadRuleIndex rebuilds the id index from a reused rule table.
func (s *Steer) loadRuleIndex() error {
	rules, err := s.allRules()
	if err != nil {
		return fmt.Errorf("read pinned rules: %w", err)
	}
	for _, r := range rules {
		k := ruleKeyOf(r.Prefix)
		s.ruleAt[r.ID] = k
		s.prefixRules[k]++
		if r.hasPorts() {
			s.portRules[r.ID] = struct{}{}
		}
		s.nextRule = max(s.nextRule, r.ID+1)
	}
	return nil
}

// forget drops rule id of prefix k from the index. Callers hold s.mu.
func (s *Steer) forget(id RuleID, k ruleKey) {
	delete(s.ruleAt, id)
	delete(s.portRules, id)
	if s.prefixRules[k]--; s.prefixRules[k] <= 0 {
		delete(s.prefixRules, k)
	}
}

// AddCatchAll adds the rules of raw mode: all TCP and UDP to 0.0.0.0/0 and
// ::/0 goes to (guest, class), at CatchAllPriority, so more specific rules
// and flows still win. ICMP, ICMPv6 and ARP keep going to the kernel. It
// returns the IDs of the four rules. Rules already there with the same
// match and target are kept (a restart over pinned maps); the same match
// with another target is ErrRuleExists, and then nothing is added.
func (s *Steer) AddCatchAll(guest, class int) ([]RuleID, error) {
	var ids, added []RuleID
	for _, p := range []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
		for _, proto := range []Proto{ProtoTCP, ProtoUDP} {
			id, isNew, err := s.addRule(Rule{Prefix: p, Proto: proto, Guest: guest, Class: class, Priority: CatchAllPriority}, true)
			if err != nil {
				for _, id := range added {
					s.DeleteRule(id)
				}
				return nil, fmt.Errorf("add catch-all: %w", err)
			}
			ids = append(ids, id)
			if isNew {
				added = append(added, id)
			}
		}
	}
	return ids, nil
}
