package lab_test

import (
	"errors"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/xnic/xnic/engine/lab"
)

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*lab.Options)
		want   string
	}{
		{"ports zero", func(o *lab.Options) { o.Ports = 0 }, "lab: ports: must be 1..16, got 0"},
		{"ports too many", func(o *lab.Options) { o.Ports = 17 }, "lab: ports: must be 1..16, got 17"},
		{"queues", func(o *lab.Options) { o.Queues = 0 }, "lab: queues: must be 1..64, got 0"},
		{"mtu low", func(o *lab.Options) { o.MTU = 67 }, "lab: mtu: must be 68..65535, got 67"},
		{"mtu high", func(o *lab.Options) { o.MTU = 70000 }, "lab: mtu: "},
		{"mtu ipv6", func(o *lab.Options) { o.MTU = 1000 }, "lab: mtu: must be at least 1280 with ipv6, got 1000"},
		{"name empty", func(o *lab.Options) { o.Name = "" }, "lab: name: must not be empty"},
		{"name upper", func(o *lab.Options) { o.Name = "Xnic" }, "lab: name: must match"},
		{"name dash", func(o *lab.Options) { o.Name = "x-nic" }, "lab: name: must match"},
		{"name digit first", func(o *lab.Options) { o.Name = "1x" }, "lab: name: must match"},
		{"name long", func(o *lab.Options) { o.Name = "abcdefghijklmn" }, `lab: name: "abcdefghijklmn" is too long`},
		// 13 characters fit 10 ports (peer NAMEp9) but not 11 (NAMEp10).
		{"name long for ports", func(o *lab.Options) { o.Name = "abcdefghijklm"; o.Ports = 11 }, "lab: name: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := lab.DefaultOptions()
			tc.mutate(&o)
			err := o.Validate()
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want %q", o, tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Validate error = %q, want prefix %q", err, tc.want)
			}
			if !errors.Is(err, lab.ErrInvalidOptions) {
				t.Errorf("errors.Is(%v, ErrInvalidOptions) = false", err)
			}
			if _, err := lab.Up(o); !errors.Is(err, lab.ErrInvalidOptions) {
				t.Errorf("Up with invalid options: err = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	o := lab.DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("DefaultOptions().Validate() = %v", err)
	}
	o.Name, o.Ports = "abcdefghijklm", 10
	if err := o.Validate(); err != nil {
		t.Errorf("13-char name with 10 ports: %v", err)
	}
	o.Name, o.Ports, o.IPv6, o.MTU = lab.RandomName("xt"), lab.MaxPorts, false, 576
	if err := o.Validate(); err != nil {
		t.Errorf("random name, %d ports, ipv4-only MTU 576: %v", lab.MaxPorts, err)
	}
	// A bridge over one port is a switch with one server port cabled in.
	for _, ports := range []int{1, 2, lab.MaxPorts} {
		o := lab.DefaultOptions()
		o.Ports, o.PeerBridge = ports, true
		if err := o.Validate(); err != nil {
			t.Errorf("peer bridge with %d ports: %v", ports, err)
		}
	}
}

func TestRandomName(t *testing.T) {
	re := regexp.MustCompile(`^xt[0-9a-f]{4}$`)
	seen := map[string]bool{}
	for range 20 {
		n := lab.RandomName("xt")
		if !re.MatchString(n) {
			t.Fatalf("RandomName(xt) = %q", n)
		}
		seen[n] = true
	}
	if len(seen) < 15 {
		t.Errorf("20 random names gave only %d distinct", len(seen))
	}
}

func TestNaming(t *testing.T) {
	if got := lab.NetnsName("xnic"); got != "xnic-peer" {
		t.Errorf("NetnsName = %q", got)
	}
	if got := lab.HostLinkName("xnic", 3); got != "xnic3" {
		t.Errorf("HostLinkName = %q", got)
	}
	if got := lab.PeerLinkName("xnic", 12); got != "xnicp12" {
		t.Errorf("PeerLinkName = %q", got)
	}
	if got := lab.BridgeName("xnic"); got != "xnicbr" || len(got) > len(lab.PeerLinkName("xnic", 0)) {
		t.Errorf("BridgeName = %q", got)
	}
	for _, tc := range []struct {
		got  netip.Addr
		want string
	}{
		{lab.HostIPv4(3), "198.18.3.1"},
		{lab.PeerIPv4(15), "198.18.15.2"},
		{lab.HostIPv6(0), "2001:2::1"},
		{lab.PeerIPv6(15), "2001:2:0:f::2"},
	} {
		if tc.got.String() != tc.want {
			t.Errorf("address = %s, want %s", tc.got, tc.want)
		}
	}
}
