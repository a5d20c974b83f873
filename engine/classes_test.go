package engine

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestClassRules: a class defined by port takes, within each of a guest's
// rules, the overlap of its ports (both TCP and UDP for a rule of any
// protocol), and nothing the guest's rules do not claim; the guest then
// uses that class, its rules' classes and the DSCP classes.
func TestClassRules(t *testing.T) {
	a := netip.MustParsePrefix("198.18.0.10/32")
	o := DefaultOptions()
	o.Classes = []ClassSpec{
		{Name: "storage", ID: 2, Ports: []PortRange{{4420, 4420}, {3260, 3260}}},
		{Name: "voice", ID: 1, DSCP: []uint8{46}},
	}
	spec := GuestSpec{Name: "g", Rules: []RuleSpec{
		{Dst: a, Proto: 6, PortLo: 4000, PortHi: 5000}, // takes 4420, not 3260
		{Dst: a, Proto: 17, PortLo: 80, PortHi: 80},    // neither
		{Dst: a, Proto: 1},                             // ICMP has no ports
	}}
	got := o.classRules(spec)
	want := []RuleSpec{{Dst: a, Proto: 6, PortLo: 4420, PortHi: 4420, Class: 2}}
	if !slices.Equal(got, want) {
		t.Fatalf("class rules %+v, want %+v", got, want)
	}
	if cls := o.guestClasses(spec); !slices.Equal(cls, []uint8{0, 2}) {
		t.Fatalf("classes %v, want [0 2]", cls)
	}
	spec.Rules = []RuleSpec{{Dst: a, ClassFromDSCP: true}}
	if got := o.classRules(spec); len(got) != 0 {
		t.Fatalf("a DSCP rule keeps its classes: %+v", got)
	}
	spec.Rules = []RuleSpec{{Dst: a}, {Dst: a, Proto: 6, PortLo: 443, PortHi: 443, Class: 3}}
	got = o.classRules(spec)
	if len(got) != 4 || got[0].Proto != 6 || got[1].Proto != 17 {
		t.Fatalf("any protocol, two port ranges: %+v", got)
	}
	if cls := o.guestClasses(spec); !slices.Equal(cls, []uint8{0, 2, 3}) {
		t.Fatalf("classes %v, want [0 2 3]", cls)
	}
}

func TestValidateClasses(t *testing.T) {
	base := DefaultOptions()
	base.Ifaces = []string{"x"}
	for _, c := range []struct {
		cls  ClassSpec
		want string
	}{
		{ClassSpec{ID: 1}, "classes[0]: name: required"},
		{ClassSpec{Name: "a", ID: 99}, "classes[0]: id"},
		{ClassSpec{Name: "a", ID: 1, Rate: 1000}, "classes[0]: burst"},
		{ClassSpec{Name: "a", ID: 1, RED: &REDSpec{Min: 10, Max: 5, MaxP: 0.1}}, "classes[0]: red"},
		{ClassSpec{Name: "a", ID: 1, RED: &REDSpec{Min: 10, Max: 50, MaxP: 1.5}}, "classes[0]: red: max_p"},
		{ClassSpec{Name: "a", ID: 1, Ports: []PortRange{{9, 1}}}, "classes[0]: ports[0]"},
	} {
		o := base
		o.Classes = []ClassSpec{c.cls}
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.cls, err, c.want)
		}
	}
}
