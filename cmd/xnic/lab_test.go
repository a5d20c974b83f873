package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
)

func labOut(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := labCmd(context.Background(), args, &out)
	return out.String(), err
}

// TestLabPeerBridge drives `xnic lab up --ports 2 --peer-bridge`, status in
// both forms and down, the last on a lab whose port 0 was deleted, which Open
// cannot read.
func TestLabPeerBridge(t *testing.T) {
	labtest.HoldSlot(t)
	name := lab.RandomName(labtest.Prefix)
	t.Cleanup(func() { (&lab.Lab{Name: name, Netns: lab.NetnsName(name)}).Down() })

	out, err := labOut(t, "up", "--name", name, "--ports", "2", "--peer-bridge")
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
	br := lab.BridgeName(name)
	for _, want := range []string{
		"bridge " + br + ": 198.18.0.2/24 2001:2::2/64 (netns " + name + "-peer)",
		"port 0: " + name + "0 198.18.0.1/24 2001:2::1/64  <->  " + name + "p0 (bridge port of " + br + ")",
		"port 1: " + name + "1 (no address)  <->  " + name + "p1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lab up output lacks %q:\n%s", want, out)
		}
	}

	out, err = labOut(t, "status", "--name", name)
	if err != nil || !strings.Contains(out, "bridge "+br+" (peer), members "+name+"p0 "+name+"p1, stp off") {
		t.Errorf("lab status: %v\n%s", err, out)
	}
	out, err = labOut(t, "status", "--name", name, "--json")
	if err != nil {
		t.Fatalf("lab status --json: %v", err)
	}
	var st lab.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("lab status --json: %v\n%s", err, out)
	}
	if st.Bridge == nil || st.Bridge.Name != br || !reflect.DeepEqual(st.Bridge.Members, []string{name + "p0", name + "p1"}) ||
		len(st.Bridge.Addrs) < 2 || st.Bridge.Addrs[0].String() != "198.18.0.2/24" || st.Ports[1].Peer.Master != br {
		t.Errorf("lab status --json: bridge %+v, port 1 peer master %q", st.Bridge, st.Ports[1].Peer.Master)
	}
	if !strings.Contains(out, `"master":"`+br+`"`) || !strings.Contains(out, `"forward_delay_ns":0`) ||
		!strings.Contains(out, `"mac":"`+st.Ports[0].Host.MAC.String()+`"`) || len(st.Ports[0].Host.MAC) != 6 ||
		strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("lab status --json lacks the bridge's keys:\n%s", out)
	}

	l, err := lab.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.DeletePort(0); err != nil {
		t.Fatal(err)
	}
	if out, err := labOut(t, "down", "--name", name); err != nil || !strings.Contains(out, "lab "+name+" removed") {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	if _, err := lab.Open(name); !errors.Is(err, lab.ErrNotFound) {
		t.Errorf("Open after lab down: %v, want ErrNotFound", err)
	}
	if _, err := netlink.LinkByName(name + "1"); err == nil {
		t.Errorf("link %s1 survived lab down", name)
	}
}

// TestLabPlainOutput: without --peer-bridge the lab and its report are as
// before, with no bridge in the status.
func TestLabPlainOutput(t *testing.T) {
	labtest.HoldSlot(t)
	name := lab.RandomName(labtest.Prefix)
	t.Cleanup(func() { (&lab.Lab{Name: name, Netns: lab.NetnsName(name)}).Down() })
	out, err := labOut(t, "up", "--name", name, "--ports", "2", "--no-ipv6")
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
	if want := "port 1: " + name + "1 198.18.1.1/24  <->  " + name + "p1 198.18.1.2/24 (netns " + name + "-peer)"; !strings.Contains(out, want) {
		t.Errorf("lab up output lacks %q:\n%s", want, out)
	}
	out, err = labOut(t, "status", "--name", name, "--json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, `"bridge"`) || strings.Contains(out, `"master"`) {
		t.Errorf("status of a plain lab shows a bridge:\n%s", out)
	}
	if out, err := labOut(t, "down", "--name", name); err != nil || !strings.Contains(out, "removed") {
		t.Errorf("lab down: %v\n%s", err, out)
	}
}

func TestLabUpBadOptionNamesField(t *testing.T) {
	_, err := labOut(t, "up", "--name", lab.RandomName("xq"), "--ports", "0", "--peer-bridge")
	var oe *lab.OptionError
	if !errors.As(err, &oe) || oe.Field != "ports" {
		t.Errorf("lab up --ports 0 --peer-bridge: %v, want an OptionError on ports", err)
	}
}
