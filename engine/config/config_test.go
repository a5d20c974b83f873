package config

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/xnic/xnic/engine"
)

// Line 1 is empty; "ports:" is line 2.
const goodConfig = `
ports:
  - iface: xnic0
    queues: [0]
classes:
  - {name: storage, id: 1, dscp: [10, 12]}
guests:
  - name: web
    mac: 02:00:00:00:00:01
    ipv4: [198.18.0.10/24]
    ipv6: [2001:2::10/64]
    rules:
      - {proto: tcp, ports: "80"}
      - {dst: 198.18.0.128/25, proto: udp, ports: 5000-5999, class: storage}
  - name: db
    ipv4: [198.18.0.11]
    rules:
      - {proto: any, class: dscp}
    services:
      - {kind: http}
      - {kind: udp-echo}
`

func TestConfigResolves(t *testing.T) {
	c, err := Parse("good.yaml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Options.Ifaces) != 1 || r.Options.Ifaces[0] != "xnic0" || r.DSCP[10] != 1 || r.DSCP[12] != 1 {
		t.Fatalf("resolved: %+v", r)
	}
	web := r.Guests[0]
	// The first rule has no dst: one rule per guest address, as a host route.
	if len(web.Rules) != 3 || web.Rules[0].Dst.String() != "198.18.0.10/32" || web.Rules[1].Dst.String() != "2001:2::10/128" {
		t.Fatalf("web rules: %+v", web.Rules)
	}
	if web.Rules[0].Proto != 6 || web.Rules[0].PortLo != 80 || web.Rules[0].PortHi != 80 {
		t.Fatalf("web rule 0: %+v", web.Rules[0])
	}
	if r2 := web.Rules[2]; r2.Class != 1 || r2.PortLo != 5000 || r2.PortHi != 5999 || r2.Dst.String() != "198.18.0.128/25" {
		t.Fatalf("web rule 2: %+v", r2)
	}
	if sv := r.Guests[1].Services; len(sv) != 2 || sv[0] != (Service{Kind: "http"}) || sv[1] != (Service{Kind: "udp-echo"}) {
		t.Fatalf("db services: %+v", sv)
	}
	if r.Options.Pipeline == nil || r.Options.Pipeline.Window != 64 || !r.Options.Pipeline.GRO || !r.TSO {
		t.Fatalf("pipeline defaults: %+v, tso %v", r.Options.Pipeline, r.TSO)
	}
	if !r.Options.Pipeline.GROOptions.CoalesceAcks || r.Options.PollMs != DefaultPollMs || r.GoMaxProcs != 0 {
		t.Fatalf("coalesce_acks %v, poll_ms %d, gomaxprocs %d: want the defaults true, %d and 0 (auto)",
			r.Options.Pipeline.GROOptions.CoalesceAcks, r.Options.PollMs, r.GoMaxProcs, DefaultPollMs)
	}
	c, err = Parse("set.yaml", []byte(strings.Replace(goodConfig, "classes:", "engine:\n  poll_ms: 0\n  coalesce_acks: false\n  gomaxprocs: 3\nclasses:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if r, err = c.Resolve(); err != nil || r.Options.PollMs != 0 || r.Options.Pipeline.GROOptions.CoalesceAcks || r.GoMaxProcs != 3 {
		t.Fatalf("poll_ms 0, coalesce_acks false, gomaxprocs 3: %v %+v", err, r)
	}
	c, err = Parse("auto.yaml", []byte(strings.Replace(goodConfig, "classes:", "engine:\n  gomaxprocs: auto\nclasses:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if ra, err := c.Resolve(); err != nil {
		t.Fatalf("gomaxprocs: auto: %v", err)
	} else if ra.GoMaxProcs != 0 {
		t.Fatalf("gomaxprocs: auto resolved to %d; want 0 (auto)", ra.GoMaxProcs)
	}
	if db := r.Guests[1]; !db.Rules[0].ClassFromDSCP || db.Port != "xnic0" || db.Rules[0].Dst.String() != "198.18.0.11/32" {
		t.Fatalf("db: %+v", db)
	}
	// Spoof checking is on unless a guest turns it off.
	if r.Guests[0].NoSpoofCheck || r.Guests[1].NoSpoofCheck {
		t.Fatal("spoof checking off by default")
	}
	c, err = Parse("off.yaml", []byte(strings.Replace(goodConfig, "name: db", "name: db\n    spoof_check: false", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if r, err = c.Resolve(); err != nil || !r.Guests[1].NoSpoofCheck || r.Guests[0].NoSpoofCheck {
		t.Fatalf("spoof_check: false on db: %v %+v", err, r.Guests)
	}
	// Guests may share a subnet and a prefix with rules for other ports.
	c, err = Parse("apart.yaml", []byte(strings.Replace(goodConfig, "{proto: any, class: dscp}",
		"{proto: any, class: dscp}\n      - {dst: 198.18.0.128/25, proto: udp, ports: 6000}\n      - {dst: 198.18.0.128/25, proto: tcp}", 1)))
	if err != nil {
		t.Fatalf("guests apart: %v", err)
	}
}

// TestErrorsNameLineAndField: every bad value is reported with its
// line and the path of its field.
func TestErrorsNameLineAndField(t *testing.T) {
	cases := []struct {
		name, find, replace, want string
	}{
		{"bad port range", `ports: "80"`, `ports: "90-80"`, `bad.yaml:13: guests[0].rules[0].ports`},
		{"ports without tcp/udp", `{proto: tcp, ports: "80"}`, `{proto: icmp, ports: "80"}`, `bad.yaml:13: guests[0].rules[0].ports`},
		{"bad proto", `proto: any`, `proto: sctpx`, `bad.yaml:18: guests[1].rules[0].proto`},
		{"unknown class", `class: storage`, `class: bulk`, `bad.yaml:14: guests[0].rules[1].class`},
		{"bad prefix", `198.18.0.128/25`, `198.18.0.300/25`, `bad.yaml:14: guests[0].rules[1].dst`},
		{"v6 in ipv4", `ipv4: [198.18.0.10/24]`, `ipv4: [2001:2::1]`, `bad.yaml:10: guests[0].ipv4[0]`},
		{"bad mac", `02:00:00:00:00:01`, `03:00:00:00:00:01`, `bad.yaml:9: guests[0].mac`},
		{"bad dscp", `dscp: [10, 12]`, `dscp: [10, 64]`, `bad.yaml:6: classes[0].dscp[1]`},
		{"bad queue", `queues: [0]`, `queues: [x]`, `bad.yaml:4: ports[0].queues[0]`},
		{"unknown port", `name: db`, "name: db\n    port: eth9", `bad.yaml:16: guests[1].port`},
		{"duplicate guest", `name: db`, `name: web`, `guests[1].name`},
		{"bad service kind", `{kind: http}`, `{kind: gopher}`, `bad.yaml:20: guests[1].services[0].kind`},
		{"service port clash", `{kind: udp-echo}`, `{kind: discard, port: 80}`, `bad.yaml:21: guests[1].services[1].port`},
		{"bad service port", `{kind: udp-echo}`, `{kind: echo, port: 0}`, `bad.yaml:21: guests[1].services[1].port`},
		{"bad poll_ms", `classes:`, "engine:\n  poll_ms: -1\nclasses:", `bad.yaml:6: engine.poll_ms`},
		{"bad coalesce_acks", `classes:`, "engine:\n  coalesce_acks: maybe\nclasses:", `bad.yaml:6: engine.coalesce_acks`},
		{"bad gomaxprocs", `classes:`, "engine:\n  gomaxprocs: all\nclasses:", `bad.yaml:6: engine.gomaxprocs: want auto or 1..4096, got "all"`},
		{"zero gomaxprocs", `classes:`, "engine:\n  gomaxprocs: 0\nclasses:", `bad.yaml:6: engine.gomaxprocs`},
		{"misspelt key", `{proto: tcp, ports: "80"}`, `{proto: tcp, prots: "80"}`, `bad.yaml:13: guests[0].rules[0].prots: unknown field (known: dst, proto, ports, class)`},
		{"bad spoof_check", `name: db`, "name: db\n    spoof_check: maybe", `bad.yaml:16: guests[1].spoof_check`},
		// Guests that overlap: the later one is refused, naming both.
		{"same mac", `name: db`, "name: db\n    mac: 02:00:00:00:00:01",
			`bad.yaml:16: guests[1].mac: mac 02:00:00:00:00:01 is guest web's too (guests[0].mac)`},
		{"same address", `ipv4: [198.18.0.11]`, `ipv4: [198.18.0.10/24]`,
			`bad.yaml:16: guests[1].ipv4[0]: address 198.18.0.10 is guest web's too (guests[0].ipv4[0])`},
		{"rule on another's address", `{proto: any, class: dscp}`, `{dst: 198.18.0.0/24, proto: udp, ports: 53}`,
			`bad.yaml:18: guests[1].rules[0]: rule 198.18.0.0/24 udp 53 matches guest web's address 198.18.0.10 (guests[0].ipv4[0])`},
		{"address under another's rule", `ipv4: [198.18.0.11]`, `ipv4: [198.18.0.200]`,
			`bad.yaml:16: guests[1].ipv4[0]: address 198.18.0.200 is matched by guest web's rule 198.18.0.128/25 udp 5000-5999 (guests[0].rules[1])`},
		{"overlapping rules", `{proto: any, class: dscp}`, `{dst: 198.18.0.192/26, proto: udp, ports: 5500}`,
			`bad.yaml:18: guests[1].rules[0]: rule 198.18.0.192/26 udp 5500 overlaps guest web's rule 198.18.0.128/25 udp 5000-5999 (guests[0].rules[1])`},
	}
	for _, c := range cases {
		src := strings.Replace(goodConfig, c.find, c.replace, 1)
		if src == goodConfig {
			t.Fatalf("%s: the replacement did not apply", c.name)
		}
		_, err := Parse("bad.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
		var ce *Error
		if strings.HasPrefix(c.want, "bad.yaml:") && !errors.As(err, &ce) {
			t.Errorf("%s: error is not a *Error: %T", c.name, err)
		}
	}
	if _, err := Parse("empty.yaml", nil); err == nil || !strings.Contains(err.Error(), "ports") {
		t.Errorf("empty file: %v", err)
	}
}

// twoPortConfig is a guest with an active and a standby port.
const twoPortConfig = `
ports:
  - iface: xnic0
  - iface: xnic1
guests:
  - name: web
    ports: [xnic1, xnic0]
    failover: {link_down: true, failback: true}
    mac: 02:00:00:00:00:01
    ipv4: [198.18.0.10/24]
`

// TestGuestPorts: ports lists the active port first, then the standby
// ones; failover is read; mistakes name their field.
func TestGuestPorts(t *testing.T) {
	c, err := Parse("two.yaml", []byte(twoPortConfig))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	g := r.Guests[0]
	if g.Port != "xnic1" || len(g.Standby) != 1 || g.Standby[0] != "xnic0" || !g.Failover.LinkDown || !g.Failover.Failback {
		t.Fatalf("web: port %q standby %v failover %+v", g.Port, g.Standby, g.Failover)
	}
	cases := []struct{ name, find, replace, want string }{
		{"unknown port", `[xnic1, xnic0]`, `[xnic1, eth9]`, `two.yaml:7: guests[0].ports[1]`},
		{"port twice", `[xnic1, xnic0]`, `[xnic1, xnic1]`, `two.yaml:7: guests[0].ports[1]`},
		{"port and ports", `ports: [xnic1, xnic0]`, "port: xnic0\n    ports: [xnic1, xnic0]", `two.yaml:7: guests[0].port:`},
		{"bad bool", `link_down: true`, `link_down: often`, `two.yaml:8: guests[0].failover.link_down`},
		{"failover alone", `[xnic1, xnic0]`, `[xnic1]`, `two.yaml:8: guests[0].failover`},
		{"misspelt failover key", `failback: true`, `fallback: true`, `two.yaml:8: guests[0].failover.fallback: unknown field (known: link_down, failback)`},
		{"no port with two ports", `ports: [xnic1, xnic0]`, `ipv6: []`, `guests[0].port`},
	}
	for _, c := range cases {
		src := strings.Replace(twoPortConfig, c.find, c.replace, 1)
		if src == twoPortConfig {
			t.Fatalf("%s: the replacement did not apply", c.name)
		}
		_, err := Parse("two.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

const classConfig = `ports:
  - iface: xnic0
classes:
  - {name: interactive, id: 1, priority: 0, match: {dscp: [46]}}
  - name: storage
    id: 2
    priority: 1
    weight: 3
    match: {ports: ["4420", "3260"]}
  - name: bulk
    id: 3
    priority: 1
    weight: 1
    rate: 500mbit
    burst: 64kb
    ecn: true
    red: {min: 64, max: 256, max_p: 0.1}
    rx_threshold: 512
guests:
  - name: web
    rate: 1gbit
    burst: 128kb
    ipv4: [198.18.0.10/24]
    rules:
      - {proto: tcp}
      - {proto: udp, ports: "5000-5999", class: bulk}
`

// TestClasses: the three classes on one guest resolve to engine
// classes with their scheduler and congestion settings, the guest's rate
// and the DSCP map; a class defined by port gives the guest a rule for it
// within what its rules take; each bad value names its line and field.
func TestClasses(t *testing.T) {
	c, err := Parse("cls.yaml", []byte(classConfig))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	cls := r.Options.Classes
	if len(cls) != 3 {
		t.Fatalf("classes: %+v", cls)
	}
	bulk := cls[2]
	if bulk.ID != 3 || bulk.Priority != 1 || bulk.Weight != 1 || bulk.Rate != 62_500_000 || bulk.Burst != 64<<10 ||
		!bulk.ECN || bulk.RED == nil || *bulk.RED != (engine.REDSpec{Min: 64, Max: 256, MaxP: 0.1}) || bulk.RxThreshold != 512 {
		t.Errorf("bulk: %+v", bulk)
	}
	if st := cls[1]; st.Weight != 3 || len(st.Ports) != 2 || st.Ports[0] != (engine.PortRange{Lo: 4420, Hi: 4420}) {
		t.Errorf("storage: %+v", st)
	}
	if r.DSCP[46] != 1 || r.Classes["storage"] != 2 {
		t.Errorf("dscp %v classes %v", r.DSCP, r.Classes)
	}
	g := r.Guests[0]
	if g.Rate != 125_000_000 || g.Burst != 128<<10 {
		t.Errorf("guest rate %d burst %d", g.Rate, g.Burst)
	}
	if err := r.Options.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, find, replace, want string }{
		{"bad weight", `weight: 3`, `weight: 0`, `cls.yaml:8: classes[1].weight`},
		{"bad priority", `priority: 1`, `priority: 9`, `cls.yaml:7: classes[1].priority`},
		{"bad rate", `rate: 500mbit`, `rate: 500furlongs`, `cls.yaml:14: classes[2].rate: rate "500furlongs": unknown unit`},
		{"rate without burst", "    burst: 64kb\n", "", `cls.yaml:14: classes[2].burst: required with a rate`},
		{"tiny burst", `burst: 64kb`, `burst: 100`, `cls.yaml:15: classes[2].burst`},
		{"red min above max", `max: 256`, `max: 32`, `cls.yaml:17: classes[2].red.max`},
		{"red max_p", `max_p: 0.1`, `max_p: 2`, `cls.yaml:17: classes[2].red.max_p`},
		{"ecn", `ecn: true`, `ecn: sometimes`, `cls.yaml:16: classes[2].ecn`},
		{"port", `"3260"`, `"70000"`, `cls.yaml:9: classes[1].match.ports[1]`},
		{"id twice", `id: 3`, `id: 2`, `cls.yaml:11: classes[2].id`},
		{"unknown key", `weight: 1`, `wieght: 1`, `cls.yaml:13: classes[2].wieght: unknown field`},
		{"guest rate", `rate: 1gbit`, `rate: fast`, `cls.yaml:21: guests[0].rate`},
	}
	for _, tc := range cases {
		src := strings.Replace(classConfig, tc.find, tc.replace, 1)
		if src == classConfig {
			t.Fatalf("%s: the replacement did not apply", tc.name)
		}
		_, err := Parse("cls.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestShapeErrors: YAML of the wrong shape (a list where a single value
// belongs, a mapping where a list does), unknown and repeated keys and
// syntax errors are all reported as file:line: path: message, as *Error.
func TestShapeErrors(t *testing.T) {
	cases := []struct{ name, find, replace, want string }{
		{"list for a scalar", `iface: xnic0`, `iface: [xnic0, xnic1]`,
			`bad.yaml:3: ports[0].iface: want a single value, got a list`},
		{"mapping for a scalar", `mac: 02:00:00:00:00:01`, `mac: {a: 1}`,
			`bad.yaml:9: guests[0].mac: want a single value, got a mapping`},
		{"mapping for a list", `ipv4: [198.18.0.10/24]`, `ipv4: {addr: 198.18.0.10/24}`,
			`bad.yaml:10: guests[0].ipv4: want a list, got a mapping`},
		{"scalar for a list", `queues: [0]`, `queues: 0`,
			`bad.yaml:4: ports[0].queues: want a list, got a value`},
		{"list of lists", `queues: [0]`, `queues: [[0]]`,
			`bad.yaml:4: ports[0].queues[0]: want a single value, got a list`},
		{"scalar for a mapping", "guests:\n  - name: web", "guests:\n  - web\n  - name: web",
			`bad.yaml:8: guests[0]: want a mapping, got a value`},
		{"list for a mapping", `classes:`, "engine: [1, 2]\nclasses:",
			`bad.yaml:5: engine: want a mapping, got a list`},
		{"scalar for failover", `name: db`, "name: db\n    failover: yes",
			`bad.yaml:16: guests[1].failover: want a mapping, got a value`},
		{"nested unknown key", `{name: storage, id: 1, dscp: [10, 12]}`, `{name: storage, id: 1, match: {dcsp: [10]}}`,
			`bad.yaml:6: classes[0].match.dcsp: unknown field (known: dscp, ports)`},
		{"top-level unknown key", `classes:`, "servces: []\nclasses:",
			`bad.yaml:5: servces: unknown field (known: ports, engine, classes, guests)`},
		{"key twice", `name: db`, "name: db\n    name: db2",
			`bad.yaml:16: guests[1].name: given twice (first on line 15)`},
		{"empty list item", "guests:\n  - name: web", "guests:\n  -\n  - name: web",
			`bad.yaml:8: guests[0]: empty list item`},
		{"syntax", `mac: 02:00:00:00:00:01`, "mac: [02:00",
			`bad.yaml:`},
	}
	for _, tc := range cases {
		src := strings.Replace(goodConfig, tc.find, tc.replace, 1)
		if src == goodConfig {
			t.Fatalf("%s: the replacement did not apply", tc.name)
		}
		_, err := Parse("bad.yaml", []byte(src))
		var ce *Error
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ce) {
			t.Errorf("%s: got %v (%T), want an *Error containing %q", tc.name, err, err, tc.want)
			continue
		}
		if ce.Line == 0 || ce.Field == "" {
			t.Errorf("%s: %q lacks a line or a field", tc.name, err)
		}
	}
	_, err := Parse("top.yaml", []byte("- iface: xnic0\n"))
	if err == nil || err.Error() != "top.yaml:1: (top level): want a mapping, got a list" {
		t.Errorf("a list at the top: %v", err)
	}
	_, err = Parse("syn.yaml", []byte("ports:\n  - iface: xnic0\n   queues: [0]\n"))
	// The parser names the line of the collection it was in, not always
	// the line at fault.
	if err == nil || !regexp.MustCompile(`^syn\.yaml:[1-3]: \(syntax\): \S`).MatchString(err.Error()) {
		t.Errorf("a syntax error: %v", err)
	}
	// Aliases are expanded with a bound: a few lines may not make a
	// million values.
	var bomb strings.Builder
	bomb.WriteString("ports: [{iface: a}]\nguests:\n  - {name: g, ipv4: &a [198.18.0.1" + strings.Repeat(", 198.18.0.1", 999) + "]}\n")
	for range 500 {
		bomb.WriteString("  - {name: g, ipv4: *a}\n")
	}
	if _, err = Parse("bomb.yaml", []byte(bomb.String())); err == nil || !strings.Contains(err.Error(), "values once aliases are expanded") {
		t.Errorf("an alias bomb: %v", err)
	}
	// Anchors and aliases are YAML's: a rule list shared by two guests.
	shared := strings.Replace(goodConfig, "rules:\n      - {proto: any, class: dscp}", "rules: &any\n      - {proto: any, class: dscp}", 1)
	if _, err := Parse("alias.yaml", []byte(shared+"  - name: db2\n    ipv4: [198.18.1.11]\n    rules: *any\n")); err != nil {
		t.Errorf("an alias: %v", err)
	}
}

// TestIgnored: xnic run warns of the settings only xnic serve uses, at
// their lines; xnic serve uses them all.
func TestIgnored(t *testing.T) {
	c, err := Parse("good.yaml", []byte(strings.Replace(goodConfig, "classes:", "engine:\n  tso: false\nclasses:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range c.Ignored(Run) {
		got = append(got, w.Error())
	}
	want := []string{
		"good.yaml:6: engine.tso: ignored by xnic run: only xnic serve gives guests a TCP/IP stack",
		"good.yaml:22: guests[1].services: ignored by xnic run: only xnic serve runs services",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ignored by run:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if w := c.Ignored(Serve); len(w) != 0 {
		t.Errorf("ignored by serve: %v", w)
	}
	c, err = Parse("class.yaml", []byte(classConfig))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Ignored(Run); len(w) != 0 {
		t.Errorf("a config without services or tso: %v", w)
	}
}

func TestParseRateSize(t *testing.T) {
	for s, want := range map[string]uint64{"500mbit": 62_500_000, "10gbit": 1_250_000_000, "8000": 1000, "1.5gbit": 187_500_000, "100mbps": 100_000_000} {
		if got, err := ParseRate(s); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0", "-5mbit", "5 parsecs", "1bit"} {
		if _, err := ParseRate(s); err == nil {
			t.Errorf("ParseRate(%q): no error", s)
		}
	}
	for s, want := range map[string]uint64{"64kb": 65536, "1500": 1500, "2m": 2 << 20, "1gb": 1 << 30} {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0", "1.5kb", "12 furlongs"} {
		if _, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q): no error", s)
		}
	}
}
