package bpf

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/xnic/xnic/engine/lab/labtest"
)

func TestCounterVerdicts(t *testing.T) {
	labtest.RequireRoot(t, "load xnic_drop and xnic_pass")
	drop, err := LoadDrop()
	if err != nil {
		t.Fatalf("LoadDrop: %+v", err)
	}
	t.Cleanup(func() { drop.Close() })
	pass, err := LoadPass()
	if err != nil {
		t.Fatalf("LoadPass: %+v", err)
	}
	t.Cleanup(func() { pass.Close() })

	frame := udpFrame(false, 1, 2, make([]byte, 18))
	for _, c := range []struct {
		c    *Counter
		want uint32
		runs uint32
	}{{drop, xdpDrop, 1000}, {pass, xdpPass, 7}} {
		ret, err := c.c.Program().Run(&ebpf.RunOptions{Data: frame, Repeat: c.runs})
		if err != nil {
			t.Fatalf("run xnic_%s: %v", c.c.Verdict(), err)
		}
		if ret != c.want {
			t.Errorf("xnic_%s returned %d, want %d", c.c.Verdict(), ret, c.want)
		}
		st, err := c.c.TotalStats()
		if err != nil {
			t.Fatal(err)
		}
		// Each program has its own map: the other's runs do not show up.
		// (A run interrupted by a signal is retried whole after part of it
		// ran, so there may be more runs than asked, never fewer.)
		if st.RxPackets < uint64(c.runs) || st.RxPackets > 2*uint64(c.runs) || st.RxBytes != st.RxPackets*uint64(len(frame)) {
			t.Errorf("xnic_%s counted %+v, want %d runs of %d bytes", c.c.Verdict(), st, c.runs, len(frame))
		}
	}

	if _, err := LoadCounter(Verdict(9)); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("LoadCounter(9) = %v, want ErrInvalidOptions", err)
	}
}

func TestAttachModes(t *testing.T) {
	labtest.RequireRoot(t, "attach XDP to a veth")
	lab := newVethLab(t)
	c, err := LoadDrop()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	for _, m := range []struct{ ask, got AttachMode }{
		{AttachNative, AttachNative},
		{AttachGeneric, AttachGeneric},
		{AttachAuto, AttachNative}, // veth supports native XDP
	} {
		a, err := c.Attach(lab.hostIndex, m.ask)
		if err != nil {
			t.Fatalf("attach %s: %v", m.ask, err)
		}
		if a.Mode() != m.got {
			t.Errorf("attach %s: mode %s, want %s", m.ask, a.Mode(), m.got)
		}
		if !lab.xdpAttached(t) {
			t.Errorf("attach %s: nothing attached", m.ask)
		}
		if err := a.Close(); err != nil {
			t.Errorf("detach %s: %v", m.ask, err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("second detach %s: %v", m.ask, err)
		}
		if lab.xdpAttached(t) {
			t.Errorf("attach %s: still attached after Close", m.ask)
		}
	}
	if _, err := c.Attach(0, AttachAuto); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Attach(ifindex 0) = %v, want ErrInvalidOptions", err)
	}
	for in, want := range map[string]AttachMode{"": AttachAuto, "drv": AttachNative, "skb": AttachGeneric, "generic": AttachGeneric} {
		if got, err := ParseAttachMode(in); err != nil || got != want {
			t.Errorf("ParseAttachMode(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := ParseAttachMode("hw"); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("ParseAttachMode(hw) = %v, want ErrInvalidOptions", err)
	}
}
