// Package config is xnic's YAML configuration: the schema, its resolver into
// engine options and guest specs, and its errors, each naming the file, the
// line and the field. Nothing is loaded until a whole file has resolved, so
// a bad file changes nothing.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/services"
	"github.com/xnic/xnic/umem"
)

// Config is an engine described in YAML for `xnic run --config`: ports,
// traffic classes and guests with their steering rules. Load checks all of
// it before anything is loaded, so a bad file changes nothing.
//
//	ports:
//	  - iface: xnic0
//	    queues: [0]
//	  - iface: xnic1
//	    queues: [0]
//	classes:
//	  - {name: storage, id: 1, dscp: [10, 12]}
//	guests:
//	  - name: web
//	    ports: [xnic0, xnic1]   # active, then standby
//	    failover: {link_down: true, failback: false}
//	    mac: 02:00:00:00:00:01
//	    ipv4: [198.18.0.10/24]
//	    rules:
//	      - {proto: tcp, ports: "80"}
//	      - {dst: 198.18.0.10/32, proto: udp, ports: 5000-5999, class: storage}
//	    spoof_check: true       # the default: see engine.GuestSpec.NoSpoofCheck
//
// Guests must not overlap: no two share a MAC or an address, no rule of
// one matches another's address, and no two guests' rules match the same
// traffic (engine.FindOverlap).
//
// Read a file with Load or Parse, whose decoder checks the YAML's shape
// against these structs; they have no YAML unmarshalers of their own.
type Config struct {
	Ports   []PortConfig  `yaml:"ports"`
	Engine  EngineConfig  `yaml:"engine"`
	Classes []ClassConfig `yaml:"classes"`
	Guests  []GuestConfig `yaml:"guests"`

	file string
}

// PortConfig is one interface.
type PortConfig struct {
	Iface  Scalar   `yaml:"iface"`
	Queues []Scalar `yaml:"queues"`
	Attach Scalar   `yaml:"attach"` // auto, native or generic
	Line   int      `yaml:"-"`
}

// DefaultPollMs is engine.poll_ms when a config leaves it out: idle workers
// sleep in poll(2), so that on a small machine the guests' stacks get the
// CPU a spinning worker would burn (docs/benchmarks.md has the figures).
const DefaultPollMs = 10

// MaxGoMaxProcs bounds engine.gomaxprocs.
const MaxGoMaxProcs = 4096

// EngineConfig holds data-path settings; zero values take the defaults.
type EngineConfig struct {
	Frames Scalar `yaml:"frames"`
	Batch  Scalar `yaml:"batch"`
	Ring   Scalar `yaml:"ring"`
	Mode   Scalar `yaml:"mode"` // auto, zerocopy or copy
	Pin    Scalar `yaml:"pin"`  // keep maps pinned across restarts: true/false
	// The receive pipeline: on by default for `xnic run` and `xnic serve`.
	Pipeline Scalar `yaml:"pipeline"` // true/false
	Window   Scalar `yaml:"window"`   // lookahead window W, 1..4096
	Cache    Scalar `yaml:"cache"`    // context cache entries, a power of two
	Conns    Scalar `yaml:"conns"`    // connection table capacity per worker, a power of two
	GRO      Scalar `yaml:"gro"`      // true/false
	TSO      Scalar `yaml:"tso"`      // true/false: guests' large sends segmented by the engine
	// PollMs > 0: an idle worker sleeps in poll(2) up to this many ms
	// (woken by traffic, a guest's send or the control plane); 0 spins.
	PollMs Scalar `yaml:"poll_ms"`
	// CoalesceAcks: GRO folds runs of a flow's pure ACKs into the last one
	// (true by default here; the library's GRO default is Linux's, off).
	CoalesceAcks Scalar `yaml:"coalesce_acks"`
	// GoMaxProcs is the process's GOMAXPROCS under xnic run and xnic
	// serve: auto (the default) gives it one P per worker, unless the
	// GOMAXPROCS environment variable is set; a number sets it.
	GoMaxProcs Scalar `yaml:"gomaxprocs"`
}

// ClassConfig is a traffic class (engine.ClassSpec): its name and id, how
// the send scheduler serves it, its congestion controls, and what selects
// it.
//
//	classes:
//	  - {name: interactive, id: 1, priority: 0, match: {dscp: [46]}}
//	  - name: storage
//	    id: 2
//	    priority: 1
//	    weight: 3
//	    match: {ports: [4420, 3260]}   # NVMe/TCP, iSCSI
//	  - name: bulk
//	    id: 3
//	    priority: 1
//	    weight: 1
//	    rate: 500mbit                  # tc's units: bit, kbit, mbit, gbit; bps, kbps, mbps, gbps are bytes/s
//	    burst: 64kb
//	    ecn: true
//	    red: {min: 64, max: 256, max_p: 0.1}
type ClassConfig struct {
	Name     Scalar `yaml:"name"`
	ID       Scalar `yaml:"id"`
	Priority Scalar `yaml:"priority"` // strict-priority level, 0 (first) .. 7
	Weight   Scalar `yaml:"weight"`   // ETS weight within the level, 1..1000
	Rate     Scalar `yaml:"rate"`     // per guest, as tc writes rates
	Burst    Scalar `yaml:"burst"`    // bytes, as tc writes sizes
	ECN      Scalar `yaml:"ecn"`      // mark CE instead of dropping ECN-capable packets
	Queue    Scalar `yaml:"queue"`    // send queue depth in frames
	// RxThreshold: frames in the class's receive ring from which the
	// steering program drops (or marks) its frames before the copy.
	RxThreshold Scalar       `yaml:"rx_threshold"`
	RED         *REDConfig   `yaml:"red"`
	Match       *MatchConfig `yaml:"match"`
	// DSCP is match.dscp, as earlier configs wrote it.
	DSCP []Scalar `yaml:"dscp"`
	Line int      `yaml:"-"`
}

// REDConfig is a class queue's WRED curve, in frames of average depth.
type REDConfig struct {
	Min  Scalar `yaml:"min"`
	Max  Scalar `yaml:"max"`
	MaxP Scalar `yaml:"max_p"`
	Line int    `yaml:"-"`
}

// MatchConfig says what selects a class: DSCP values (for rules with
// class: dscp), and destination ports ("4420" or "5000-5999") within the
// traffic a guest's rules take.
type MatchConfig struct {
	DSCP  []Scalar `yaml:"dscp"`
	Ports []Scalar `yaml:"ports"`
}

// GuestConfig is a tenant: its addresses, its port and its rules.
type GuestConfig struct {
	Name Scalar `yaml:"name"`
	Port Scalar `yaml:"port"`
	// Ports lists the guest's ports: the first is active, the rest are
	// standby ports it may migrate to. Give port or ports, not both.
	Ports    []Scalar        `yaml:"ports"`
	Failover *FailoverConfig `yaml:"failover"`
	MAC      Scalar          `yaml:"mac"`
	IPv4     []Scalar        `yaml:"ipv4"`
	IPv6     []Scalar        `yaml:"ipv6"`
	Rules    []RuleConfig    `yaml:"rules"`
	// SpoofCheck: true (the default) drops the guest's frames that claim
	// a MAC or address it does not own; false lets them out.
	SpoofCheck Scalar `yaml:"spoof_check"`
	// Rate and Burst shape everything the guest sends, over its classes.
	Rate  Scalar `yaml:"rate"`
	Burst Scalar `yaml:"burst"`
	// Services are run on the guest's own stack by `xnic serve`.
	Services []ServiceConfig `yaml:"services"`
	Line     int             `yaml:"-"`
}

// FailoverConfig says when the engine moves a guest by itself:
// link_down moves it to its first standby port that is up when its active
// port goes down; failback moves it back when its first port is up again.
type FailoverConfig struct {
	LinkDown Scalar `yaml:"link_down"`
	Failback Scalar `yaml:"failback"`
	Line     int    `yaml:"-"`
}

// ServiceConfig is a built-in service on a guest (see package
// engine/services): discard, echo, udp-echo or http, on a port (default:
// the kind's well-known port).
type ServiceConfig struct {
	Kind Scalar `yaml:"kind"`
	Port Scalar `yaml:"port"`
	Line int    `yaml:"-"`
}

// RuleConfig steers matching traffic to the guest. An empty dst means each
// of the guest's own addresses.
type RuleConfig struct {
	Dst   Scalar `yaml:"dst"`
	Proto Scalar `yaml:"proto"` // any, tcp, udp, icmp, icmpv6, arp or a number
	Ports Scalar `yaml:"ports"` // "80" or "1000-2000"; empty: any
	Class Scalar `yaml:"class"` // a class name or id; "dscp" takes it from the DSCP map
	Line  int    `yaml:"-"`
}

// Scalar is a YAML scalar that remembers its line, so that errors found
// after decoding still point into the file.
type Scalar struct {
	Value string
	Line  int
	Set   bool
}

// Error is a configuration error: the file, the line and the field.
type Error struct {
	File  string
	Line  int
	Field string // e.g. "guests[0].rules[1].ports"
	Msg   string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Field, e.Msg)
}

// Load reads and checks a configuration file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, b)
}

// Parse decodes and checks a configuration; name is used in errors.
// Every error, from a YAML syntax error to guests that overlap, is an
// *Error naming the file, the line and the field.
func Parse(name string, b []byte) (*Config, error) {
	c := Config{file: name}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, syntaxError(name, err)
	}
	if len(root.Content) == 0 || root.Content[0].ShortTag() == nullTag {
		return nil, &Error{File: name, Field: "ports", Msg: "the file is empty; at least one port is needed"}
	}
	if err := (&decoder{c: &c}).decode(root.Content[0], reflect.ValueOf(&c).Elem(), ""); err != nil {
		return nil, err
	}
	if _, err := c.Resolve(); err != nil {
		return nil, err
	}
	return &c, nil
}

// syntaxError turns the YAML parser's "yaml: line N: problem" into an
// *Error; the parser knows the line but not yet the field.
func syntaxError(name string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, after
			}
		}
	}
	return &Error{File: name, Line: line, Field: "(syntax)", Msg: msg}
}

const nullTag = "!!null"

var scalarType = reflect.TypeFor[Scalar]()

// maxNodes bounds the values a file may hold once its aliases are
// expanded, so that a few lines of anchors cannot make a billion values.
const maxNodes = 1 << 18

// decoder walks a YAML tree into the schema; it counts the nodes it visits.
type decoder struct {
	c     *Config
	nodes int
}

// decode fills v, a value of the schema above, from n, and checks the
// shape as it goes: a mapping of known keys where the schema has a
// struct, a list where it has a slice, a single value where it has a
// Scalar. A misspelt key is an error, not a silently ignored setting.
// Each mismatch is an *Error naming its line and path (such as
// "guests[0].rules[1].ports"); a struct's Line gets its mapping's line. A
// key with no value (null) leaves its field unset.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if d.nodes++; d.nodes > maxNodes {
		return d.c.errf(n.Line, topLevel(path), "more than %d values once aliases are expanded", maxNodes)
	}
	if n.ShortTag() == nullTag {
		return nil
	}
	switch {
	case v.Type() == scalarType:
		if n.Kind != yaml.ScalarNode {
			return d.c.errf(n.Line, path, "want a single value, got a %s", kindName(n.Kind))
		}
		v.Set(reflect.ValueOf(Scalar{Value: n.Value, Line: n.Line, Set: true}))
	case v.Kind() == reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		return d.decode(n, v.Elem(), path)
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return d.c.errf(n.Line, path, "want a list, got a %s", kindName(n.Kind))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			if item.ShortTag() == nullTag {
				return d.c.errf(item.Line, ip, "empty list item")
			}
			if err := d.decode(item, s.Index(i), ip); err != nil {
				return err
			}
		}
		v.Set(s)
	case v.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return d.c.errf(n.Line, topLevel(path), "want a mapping, got a %s", kindName(n.Kind))
		}
		t := v.Type()
		field := map[string]int{}
		var known []string
		for i := range t.NumField() {
			if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
				field[tag] = i
				known = append(known, tag)
			}
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return d.c.errf(k.Line, topLevel(path), "want a key name, got a %s", kindName(k.Kind))
			}
			kp := keyPath(path, k.Value)
			fi, ok := field[k.Value]
			if !ok {
				return d.c.errf(k.Line, kp, "unknown field (known: %s)", strings.Join(known, ", "))
			}
			if first, dup := seen[k.Value]; dup {
				return d.c.errf(k.Line, kp, "given twice (first on line %d)", first)
			}
			seen[k.Value] = k.Line
			if err := d.decode(val, v.Field(fi), kp); err != nil {
				return err
			}
		}
		if l := v.FieldByName("Line"); l.IsValid() && l.Kind() == reflect.Int {
			l.SetInt(int64(n.Line))
		}
	default:
		return d.c.errf(n.Line, path, "no such setting") // not reached: the schema has only these kinds
	}
	return nil
}

// topLevel names the document itself where path is empty.
func topLevel(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

// keyPath is the path of key under path; a key that is not a plain name
// (empty, spaces, dots) is quoted so that the path stays readable.
func keyPath(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			plain = false
		}
	}
	if !plain {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "value"
	}
	return "node"
}

// Command is an xnic command that reads a configuration; each uses a
// different part of it.
type Command string

const (
	// Run is `xnic run`: the engine and its guests' steering, no stacks.
	Run Command = "run"
	// Serve is `xnic serve`: guests with their own TCP/IP stacks and
	// built-in services.
	Serve Command = "serve"
)

// Ignored lists the settings in the file that cmd does not use, each as
// an *Error (file:line: path: message) for the command to print as a
// warning: xnic run gives its guests no stacks, so it ignores their
// services and engine.tso. xnic serve uses every setting.
func (c *Config) Ignored(cmd Command) []*Error {
	if cmd != Run {
		return nil
	}
	var out []*Error
	why := "ignored by xnic run: only xnic serve gives guests a TCP/IP stack"
	if c.Engine.TSO.Set {
		out = append(out, &Error{File: c.file, Line: c.Engine.TSO.Line, Field: "engine.tso", Msg: why})
	}
	for i, g := range c.Guests {
		if len(g.Services) > 0 {
			out = append(out, &Error{File: c.file, Line: g.Services[0].Line, Field: fmt.Sprintf("guests[%d].services", i),
				Msg: "ignored by xnic run: only xnic serve runs services"})
		}
	}
	return out
}

// Resolved is a checked configuration in engine terms.
type Resolved struct {
	// Options are the engine's, complete: ports, queues, UMEM and socket
	// settings, attach mode, pins and the pipeline (nil when the file
	// turns it off). Traffic no guest claims stays with the host kernel.
	Options engine.Options
	Classes map[string]uint8
	DSCP    map[uint8]uint8 // dscp -> class
	Guests  []Guest
	// TSO says whether guests' stacks hand large segments to the engine.
	TSO bool
	// GoMaxProcs is engine.gomaxprocs: 0 for auto, else the number.
	GoMaxProcs int
}

// Guest is a checked guest: its data-path spec, and the built-in services
// `xnic serve` runs on its stack.
type Guest struct {
	engine.GuestSpec
	// Services for `xnic serve`, checked: kind is one of services.Kinds().
	Services []Service
}

// Service is a checked built-in service.
type Service struct {
	Kind string
	Port int // 0: the kind's well-known port
}

func (c *Config) errf(line int, field, format string, a ...any) error {
	return &Error{File: c.file, Line: line, Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Resolve checks every field and turns the file into engine options and
// guest specs. The first problem is returned, naming its line and field.
func (c *Config) Resolve() (*Resolved, error) {
	r := &Resolved{Options: engine.DefaultOptions(), Classes: map[string]uint8{"default": 0}, DSCP: map[uint8]uint8{}}
	o := &r.Options
	o.Queues = nil
	o.NoCatchAll = true
	lim := o.Steer // the steering program's sizes bound queues and classes
	if len(c.Ports) == 0 {
		return nil, c.errf(0, "ports", "at least one port is needed")
	}
	ifaces := map[string]bool{}
	for i, p := range c.Ports {
		f := fmt.Sprintf("ports[%d]", i)
		if p.Iface.Value == "" {
			return nil, c.errf(p.Line, f+".iface", "required")
		}
		if ifaces[p.Iface.Value] {
			return nil, c.errf(p.Iface.Line, f+".iface", "%s is listed twice", p.Iface.Value)
		}
		ifaces[p.Iface.Value] = true
		o.Ifaces = append(o.Ifaces, p.Iface.Value)
		var qs []int
		for j, q := range p.Queues {
			n, err := strconv.Atoi(q.Value)
			if err != nil || n < 0 || n >= lim.Queues {
				return nil, c.errf(q.Line, fmt.Sprintf("%s.queues[%d]", f, j), "want a queue id 0..%d, got %q", lim.Queues-1, q.Value)
			}
			qs = append(qs, n)
		}
		if len(qs) == 0 {
			qs = []int{0}
		}
		if i == 0 {
			o.Queues = qs
		} else if fmt.Sprint(qs) != fmt.Sprint(o.Queues) {
			return nil, c.errf(p.Line, f+".queues", "every port must serve the same queues as ports[0] (%v), got %v", o.Queues, qs)
		}
		if p.Attach.Set {
			m, err := bpf.ParseAttachMode(p.Attach.Value)
			if err != nil {
				return nil, c.errf(p.Attach.Line, f+".attach", "want auto, native or generic, got %q", p.Attach.Value)
			}
			if i > 0 && m != o.Attach {
				return nil, c.errf(p.Attach.Line, f+".attach", "every port must use the attach mode of ports[0] (%s), got %s", o.Attach, m)
			}
			o.Attach = m
		}
	}
	if err := c.resolveEngine(r); err != nil {
		return nil, err
	}
	for i, cl := range c.Classes {
		spec, err := c.resolveClass(i, cl, r)
		if err != nil {
			return nil, err
		}
		o.Classes = append(o.Classes, spec)
	}
	names := map[string]bool{}
	var origins []origin
	for i, g := range c.Guests {
		spec, from, err := c.resolveGuest(i, g, r, ifaces)
		if err != nil {
			return nil, err
		}
		if names[spec.Name] {
			return nil, c.errf(g.Name.Line, fmt.Sprintf("guests[%d].name", i), "guest %q is defined twice", spec.Name)
		}
		names[spec.Name] = true
		for j, other := range r.Guests {
			if o, ok := engine.FindOverlap(spec.GuestSpec, other.GuestSpec); ok {
				line, field := from.where(o.Kind, o.A, true)
				_, ofield := origins[j].where(o.Kind, o.B, false)
				return nil, c.errf(line, field, "%s (%s); guests must not overlap",
					o.Describe(spec.GuestSpec, other.GuestSpec), ofield)
			}
		}
		r.Guests = append(r.Guests, spec)
		origins = append(origins, from)
	}
	return r, nil
}

// resolveClass checks classes[i] and returns it in engine terms; its DSCP
// values go into r.DSCP.
func (c *Config) resolveClass(i int, cl ClassConfig, r *Resolved) (engine.ClassSpec, error) {
	f := fmt.Sprintf("classes[%d]", i)
	lim := r.Options.Steer
	var spec engine.ClassSpec
	if cl.Name.Value == "" {
		return spec, c.errf(cl.Line, f+".name", "required")
	}
	id, err := strconv.Atoi(cl.ID.Value)
	if err != nil || id < 0 || id >= lim.Classes {
		return spec, c.errf(max(cl.ID.Line, cl.Line), f+".id", "want a class id 0..%d, got %q", lim.Classes-1, cl.ID.Value)
	}
	if old, ok := r.Classes[cl.Name.Value]; ok && (cl.Name.Value != "default" || old != uint8(id)) {
		return spec, c.errf(cl.Name.Line, f+".name", "class %q is defined twice", cl.Name.Value)
	}
	for name, other := range r.Classes {
		if other == uint8(id) && name != "default" {
			return spec, c.errf(cl.ID.Line, f+".id", "class id %d is already class %q", id, name)
		}
	}
	r.Classes[cl.Name.Value] = uint8(id)
	spec = engine.ClassSpec{Name: cl.Name.Value, ID: uint8(id), Weight: 1}
	intIn := func(s Scalar, field string, lo, hi int) (int, error) {
		n, err := strconv.Atoi(s.Value)
		if err != nil || n < lo || n > hi {
			return 0, c.errf(s.Line, f+"."+field, "want %d..%d, got %q", lo, hi, s.Value)
		}
		return n, nil
	}
	if cl.Priority.Set {
		if spec.Priority, err = intIn(cl.Priority, "priority", 0, 7); err != nil {
			return spec, err
		}
	}
	if cl.Weight.Set {
		if spec.Weight, err = intIn(cl.Weight, "weight", 1, 1000); err != nil {
			return spec, err
		}
	}
	if cl.Queue.Set {
		if spec.Queue, err = intIn(cl.Queue, "queue", 16, 1<<16); err != nil {
			return spec, err
		}
	}
	if cl.RxThreshold.Set {
		if spec.RxThreshold, err = intIn(cl.RxThreshold, "rx_threshold", 1, 1<<16); err != nil {
			return spec, err
		}
	}
	if spec.Rate, spec.Burst, err = c.rateBurst(f, cl.Rate, cl.Burst, cl.Line); err != nil {
		return spec, err
	}
	if cl.ECN.Set {
		if spec.ECN, err = strconv.ParseBool(cl.ECN.Value); err != nil {
			return spec, c.errf(cl.ECN.Line, f+".ecn", "want true or false, got %q", cl.ECN.Value)
		}
	}
	if rc := cl.RED; rc != nil {
		red := &engine.REDSpec{}
		q := engine.DefaultClassQueue
		if spec.Queue > 0 {
			q = spec.Queue
		}
		if red.Min, err = intIn(rc.Min, "red.min", 1, q-1); err != nil {
			return spec, err
		}
		if red.Max, err = intIn(rc.Max, "red.max", red.Min+1, q); err != nil {
			return spec, err
		}
		p, err := strconv.ParseFloat(rc.MaxP.Value, 64)
		if err != nil || !(p > 0 && p <= 1) {
			return spec, c.errf(max(rc.MaxP.Line, rc.Line), f+".red.max_p", "want a probability 0 < max_p <= 1, got %q", rc.MaxP.Value)
		}
		red.MaxP = p
		spec.RED = red
	}
	dscps, ports := cl.DSCP, []Scalar(nil)
	dfield := f + ".dscp"
	if m := cl.Match; m != nil {
		if len(m.DSCP) > 0 && len(cl.DSCP) > 0 {
			return spec, c.errf(m.DSCP[0].Line, f+".match.dscp", "give match.dscp or dscp, not both")
		}
		if len(m.DSCP) > 0 {
			dscps, dfield = m.DSCP, f+".match.dscp"
		}
		ports = m.Ports
	}
	for j, d := range dscps {
		v, err := strconv.Atoi(d.Value)
		if err != nil || v < 0 || v > 63 {
			return spec, c.errf(d.Line, fmt.Sprintf("%s[%d]", dfield, j), "want a DSCP value 0..63, got %q", d.Value)
		}
		if prev, ok := r.DSCP[uint8(v)]; ok && prev != uint8(id) {
			return spec, c.errf(d.Line, fmt.Sprintf("%s[%d]", dfield, j), "DSCP %d already selects class %d", v, prev)
		}
		r.DSCP[uint8(v)] = uint8(id)
		spec.DSCP = append(spec.DSCP, uint8(v))
	}
	for j, pv := range ports {
		lo, hi, ok := parsePortRange(pv.Value)
		if !ok {
			return spec, c.errf(pv.Line, fmt.Sprintf("%s.match.ports[%d]", f, j), "want PORT or LO-HI within 0..65535 with LO <= HI, got %q", pv.Value)
		}
		spec.Ports = append(spec.Ports, engine.PortRange{Lo: lo, Hi: hi})
	}
	return spec, nil
}

// rateBurst parses a rate and its burst (field f.rate, f.burst): both or
// neither.
func (c *Config) rateBurst(f string, rate, burst Scalar, line int) (uint64, uint64, error) {
	if !rate.Set && !burst.Set {
		return 0, 0, nil
	}
	if !rate.Set {
		return 0, 0, c.errf(burst.Line, f+".rate", "required with a burst")
	}
	bps, err := ParseRate(rate.Value)
	if err != nil {
		return 0, 0, c.errf(rate.Line, f+".rate", "%v", err)
	}
	if !burst.Set {
		return 0, 0, c.errf(rate.Line, f+".burst", "required with a rate (bytes, such as 64kb)")
	}
	b, err := ParseSize(burst.Value)
	if err != nil || b < 1500 {
		return 0, 0, c.errf(burst.Line, f+".burst", "want at least one MTU frame (1500 bytes) such as 64kb, got %q", burst.Value)
	}
	return bps, b, nil
}

// origin says where in the file a resolved guest's MAC, addresses and
// rules come from, for errors found once the guests are resolved.
type origin struct {
	guest    string // "guests[i]"
	macLine  int
	addrs    []string // field of each of GuestSpec.Addrs: "guests[i].ipv4[j]"
	addrLine []int
	rules    []int // index in the file's rules of each of GuestSpec.Rules
	ruleLine []int
}

// where is the line and field of what FindOverlap's index i points at, in
// the guest of this origin: its first (first: Overlap.A) or second spec.
func (o origin) where(k engine.OverlapKind, i int, first bool) (int, string) {
	rule := false
	switch k {
	case engine.OverlapMAC:
		return o.macLine, o.guest + ".mac"
	case engine.OverlapRules:
		rule = true
	case engine.OverlapRuleOnAddr: // the first's rule, the second's address
		rule = first
	case engine.OverlapAddrUnderRule: // the first's address, the second's rule
		rule = !first
	}
	if rule {
		return o.ruleLine[i], fmt.Sprintf("%s.rules[%d]", o.guest, o.rules[i])
	}
	return o.addrLine[i], o.addrs[i]
}

func (c *Config) resolveEngine(r *Resolved) error {
	e, o := c.Engine, &r.Options
	num := func(s Scalar, field string, lo, hi int, pow2 bool) (int, error) {
		n, err := strconv.Atoi(s.Value)
		if err != nil || n < lo || n > hi || (pow2 && n&(n-1) != 0) {
			what := ""
			if pow2 {
				what = " and a power of two"
			}
			return 0, c.errf(s.Line, "engine."+field, "want %d..%d%s, got %q", lo, hi, what, s.Value)
		}
		return n, nil
	}
	if e.Frames.Set {
		n, err := num(e.Frames, "frames", 64, 1<<20, false)
		if err != nil {
			return err
		}
		o.UMEM.NumFrames = uint32(n)
	}
	if e.Batch.Set {
		n, err := num(e.Batch, "batch", 1, 4096, false)
		if err != nil {
			return err
		}
		o.Batch = n
	}
	o.PollMs = DefaultPollMs
	if e.PollMs.Set {
		n, err := num(e.PollMs, "poll_ms", 0, 1000, false)
		if err != nil {
			return err
		}
		o.PollMs = n
	}
	if e.Ring.Set {
		n, err := num(e.Ring, "ring", 64, 1<<16, true)
		if err != nil {
			return err
		}
		o.Socket.RxSize, o.Socket.TxSize = uint32(n), uint32(n)
		o.Socket.FillSize, o.Socket.CompletionSize = uint32(2*n), uint32(n)
	}
	if e.Mode.Set {
		m, err := umem.ParseBindMode(e.Mode.Value)
		if err != nil {
			return c.errf(e.Mode.Line, "engine.mode", "want auto, zerocopy or copy, got %q", e.Mode.Value)
		}
		o.Socket.Mode = m
	}
	if e.Pin.Set {
		b, err := strconv.ParseBool(e.Pin.Value)
		if err != nil {
			return c.errf(e.Pin.Line, "engine.pin", "want true or false, got %q", e.Pin.Value)
		}
		o.KeepPins = b
	}
	boolean := func(s Scalar, field string, def bool) (bool, error) {
		if !s.Set {
			return def, nil
		}
		b, err := strconv.ParseBool(s.Value)
		if err != nil {
			return false, c.errf(s.Line, "engine."+field, "want true or false, got %q", s.Value)
		}
		return b, nil
	}
	on, err := boolean(e.Pipeline, "pipeline", true)
	if err != nil {
		return err
	}
	po := engine.DefaultPipelineOptions()
	if e.Window.Set {
		if po.Window, err = num(e.Window, "window", 1, 4096, false); err != nil {
			return err
		}
	}
	if e.Cache.Set {
		if po.Cache.Entries, err = num(e.Cache, "cache", 1, 1<<20, true); err != nil {
			return err
		}
		po.Cache.Ways = min(po.Cache.Ways, po.Cache.Entries)
	}
	if e.Conns.Set {
		if po.Table.Capacity, err = num(e.Conns, "conns", 1, 1<<26, true); err != nil {
			return err
		}
	}
	if po.GRO, err = boolean(e.GRO, "gro", true); err != nil {
		return err
	}
	if po.GROOptions.CoalesceAcks, err = boolean(e.CoalesceAcks, "coalesce_acks", true); err != nil {
		return err
	}
	if r.TSO, err = boolean(e.TSO, "tso", true); err != nil {
		return err
	}
	if e.GoMaxProcs.Set && e.GoMaxProcs.Value != "auto" {
		n, err := strconv.Atoi(e.GoMaxProcs.Value)
		if err != nil || n < 1 || n > MaxGoMaxProcs {
			return c.errf(e.GoMaxProcs.Line, "engine.gomaxprocs", "want auto or 1..%d, got %q", MaxGoMaxProcs, e.GoMaxProcs.Value)
		}
		r.GoMaxProcs = n
	}
	if on {
		o.Pipeline = &po
	}
	return nil
}

var protoNames = map[string]uint8{"any": 0, "tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "arp": engine.ProtoARP}

func (c *Config) resolveGuest(i int, g GuestConfig, r *Resolved, ifaces map[string]bool) (Guest, origin, error) {
	f := fmt.Sprintf("guests[%d]", i)
	from := origin{guest: f, macLine: g.MAC.Line}
	s, err := c.resolveGuestSpec(f, g, r, ifaces, &from)
	return s, from, err
}

func (c *Config) resolveGuestSpec(f string, g GuestConfig, r *Resolved, ifaces map[string]bool, from *origin) (Guest, error) {
	s := Guest{GuestSpec: engine.GuestSpec{Name: g.Name.Value, Port: g.Port.Value}}
	lim := r.Options.Steer
	if s.Name == "" {
		return s, c.errf(g.Line, f+".name", "required")
	}
	if g.Port.Set && len(g.Ports) > 0 {
		return s, c.errf(g.Port.Line, f+".port", "give port or ports, not both")
	}
	for j, pn := range g.Ports {
		fj := fmt.Sprintf("%s.ports[%d]", f, j)
		if !ifaces[pn.Value] {
			return s, c.errf(pn.Line, fj, "no port %q in ports", pn.Value)
		}
		if j == 0 {
			s.Port = pn.Value
			continue
		}
		if pn.Value == s.Port || slices.Contains(s.Standby, pn.Value) {
			return s, c.errf(pn.Line, fj, "port %q listed twice", pn.Value)
		}
		s.Standby = append(s.Standby, pn.Value)
	}
	if s.Port == "" {
		if len(c.Ports) != 1 {
			return s, c.errf(g.Line, f+".port", "required when there is more than one port (or ports: [active, standby...])")
		}
		s.Port = c.Ports[0].Iface.Value
	} else if !ifaces[s.Port] {
		return s, c.errf(g.Port.Line, f+".port", "no port %q in ports", s.Port)
	}
	if fo := g.Failover; fo != nil {
		for _, b := range []struct {
			name string
			v    Scalar
			dst  *bool
		}{{"link_down", fo.LinkDown, &s.Failover.LinkDown}, {"failback", fo.Failback, &s.Failover.Failback}} {
			if !b.v.Set {
				continue
			}
			v, err := strconv.ParseBool(b.v.Value)
			if err != nil {
				return s, c.errf(b.v.Line, f+".failover."+b.name, "want true or false, got %q", b.v.Value)
			}
			*b.dst = v
		}
		if (s.Failover.LinkDown || s.Failover.Failback) && len(s.Standby) == 0 {
			return s, c.errf(fo.Line, f+".failover", "needs a standby port: list the guest's ports (ports: [active, standby])")
		}
	}
	if g.MAC.Set {
		m, err := net.ParseMAC(g.MAC.Value)
		if err != nil || len(m) != 6 || m[0]&1 != 0 {
			return s, c.errf(g.MAC.Line, f+".mac", "want a unicast Ethernet address, got %q", g.MAC.Value)
		}
		s.MAC = m
	}
	var err error
	if s.Rate, s.Burst, err = c.rateBurst(f, g.Rate, g.Burst, g.Line); err != nil {
		return s, err
	}
	if g.SpoofCheck.Set {
		on, err := strconv.ParseBool(g.SpoofCheck.Value)
		if err != nil {
			return s, c.errf(g.SpoofCheck.Line, f+".spoof_check", "want true or false, got %q", g.SpoofCheck.Value)
		}
		s.NoSpoofCheck = !on
	}
	for _, fam := range []struct {
		name string
		list []Scalar
		v4   bool
	}{{"ipv4", g.IPv4, true}, {"ipv6", g.IPv6, false}} {
		for j, a := range fam.list {
			p, err := netip.ParsePrefix(a.Value)
			if err != nil {
				if ad, err2 := netip.ParseAddr(a.Value); err2 == nil {
					p = netip.PrefixFrom(ad, ad.BitLen())
					err = nil
				}
			}
			if err != nil || p.Addr().Is4() != fam.v4 {
				return s, c.errf(a.Line, fmt.Sprintf("%s.%s[%d]", f, fam.name, j), "want an %s address or prefix, got %q", fam.name, a.Value)
			}
			s.Addrs = append(s.Addrs, p)
			from.addrs = append(from.addrs, fmt.Sprintf("%s.%s[%d]", f, fam.name, j))
			from.addrLine = append(from.addrLine, a.Line)
		}
	}
	for j, rc := range g.Rules {
		rf := fmt.Sprintf("%s.rules[%d]", f, j)
		rule := engine.RuleSpec{PortHi: 65535}
		if rc.Proto.Set {
			p, ok := protoNames[strings.ToLower(rc.Proto.Value)]
			if !ok {
				n, err := strconv.Atoi(rc.Proto.Value)
				if err != nil || n < 0 || n > 255 {
					return s, c.errf(rc.Proto.Line, rf+".proto", "want any, tcp, udp, icmp, icmpv6, arp or 0..254, got %q", rc.Proto.Value)
				}
				p = uint8(n)
			}
			rule.Proto = p
		}
		if rc.Ports.Set {
			if rule.Proto != 6 && rule.Proto != 17 {
				return s, c.errf(rc.Ports.Line, rf+".ports", "ports need proto tcp or udp")
			}
			lo, hi, ok := parsePortRange(rc.Ports.Value)
			if !ok {
				return s, c.errf(rc.Ports.Line, rf+".ports", "want PORT or LO-HI within 0..65535 with LO <= HI, got %q", rc.Ports.Value)
			}
			rule.PortLo, rule.PortHi = lo, hi
		}
		if rc.Class.Set {
			if rc.Class.Value == "dscp" {
				rule.ClassFromDSCP = true
			} else if id, ok := r.Classes[rc.Class.Value]; ok {
				rule.Class = id
			} else if n, err := strconv.Atoi(rc.Class.Value); err == nil && n >= 0 && n < lim.Classes {
				rule.Class = uint8(n)
			} else {
				return s, c.errf(rc.Class.Line, rf+".class", "no class %q (define it under classes, or use an id 0..%d or dscp)", rc.Class.Value, lim.Classes-1)
			}
		}
		if rc.Dst.Set {
			p, err := netip.ParsePrefix(rc.Dst.Value)
			if err != nil {
				return s, c.errf(rc.Dst.Line, rf+".dst", "want a prefix such as 198.18.0.10/32, got %q", rc.Dst.Value)
			}
			rule.Dst = p.Masked()
			s.Rules = append(s.Rules, rule)
			from.rules, from.ruleLine = append(from.rules, j), append(from.ruleLine, rc.Line)
			continue
		}
		if len(s.Addrs) == 0 {
			return s, c.errf(g.Line, rf+".dst", "required when the guest has no addresses")
		}
		for _, a := range s.Addrs {
			if rule.Proto == engine.ProtoARP && !a.Addr().Is4() {
				continue // ARP has IPv4 targets only
			}
			rr := rule
			rr.Dst = netip.PrefixFrom(a.Addr(), a.Addr().BitLen())
			s.Rules = append(s.Rules, rr)
			from.rules, from.ruleLine = append(from.rules, j), append(from.ruleLine, rc.Line)
		}
	}
	type used struct {
		tcp  bool
		port int
	}
	seen := map[used]string{}
	for j, sc := range g.Services {
		sf := fmt.Sprintf("%s.services[%d]", f, j)
		if !sc.Kind.Set {
			return s, c.errf(g.Line, sf+".kind", "required: one of %s", strings.Join(services.Kinds(), ", "))
		}
		if !slices.Contains(services.Kinds(), sc.Kind.Value) {
			return s, c.errf(sc.Kind.Line, sf+".kind", "want one of %s, got %q", strings.Join(services.Kinds(), ", "), sc.Kind.Value)
		}
		sp := Service{Kind: sc.Kind.Value}
		if sc.Port.Set {
			n, err := strconv.Atoi(sc.Port.Value)
			if err != nil || n < 1 || n > 65535 {
				return s, c.errf(sc.Port.Line, sf+".port", "want 1..65535, got %q", sc.Port.Value)
			}
			sp.Port = n
		}
		u := used{sp.Kind != services.UDPEcho, sp.Port}
		if u.port == 0 {
			u.port = services.DefaultPort(sp.Kind)
		}
		if other, ok := seen[u]; ok {
			line := sc.Kind.Line
			if sc.Port.Set {
				line = sc.Port.Line
			}
			return s, c.errf(line, sf+".port", "port %d is already taken by %s", u.port, other)
		}
		seen[u] = sf
		s.Services = append(s.Services, sp)
	}
	return s, nil
}

func parsePortRange(v string) (lo, hi uint16, ok bool) {
	a, b, isRange := strings.Cut(v, "-")
	x, err := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	if err != nil {
		return 0, 0, false
	}
	y := x
	if isRange {
		if y, err = strconv.ParseUint(strings.TrimSpace(b), 10, 16); err != nil {
			return 0, 0, false
		}
	}
	if x > y {
		return 0, 0, false
	}
	return uint16(x), uint16(y), true
}
