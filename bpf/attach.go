package bpf

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// AttachMode selects how an XDP program is attached to an interface.
type AttachMode int

const (
	// AttachAuto tries native (driver) mode and falls back to generic mode.
	AttachAuto AttachMode = iota
	// AttachNative runs the program in the driver (XDP_FLAGS_DRV_MODE).
	AttachNative
	// AttachGeneric runs the program on the skb path (XDP_FLAGS_SKB_MODE).
	AttachGeneric
)

func (m AttachMode) String() string {
	switch m {
	case AttachAuto:
		return "auto"
	case AttachNative:
		return "native"
	case AttachGeneric:
		return "generic"
	}
	return fmt.Sprintf("AttachMode(%d)", int(m))
}

// ParseAttachMode parses "auto", "native" (or "drv") and "generic" (or "skb").
func ParseAttachMode(s string) (AttachMode, error) {
	switch s {
	case "auto", "":
		return AttachAuto, nil
	case "native", "drv", "driver":
		return AttachNative, nil
	case "generic", "skb":
		return AttachGeneric, nil
	}
	return 0, fmt.Errorf("parse attach mode %q: %w", s, ErrInvalidOptions)
}

// Attachment is an XDP program linked to one interface through a bpf_link.
// The kernel detaches it when Close is called or when the process dies.
type Attachment struct {
	ifindex int
	mode    AttachMode // the mode in effect: never AttachAuto
	link    link.Link

	closeOnce sync.Once
	closeErr  error
}

// Ifindex is the interface the program is attached to.
func (a *Attachment) Ifindex() int { return a.ifindex }

// Mode is the mode in effect, native or generic (never auto).
func (a *Attachment) Mode() AttachMode { return a.mode }

// Link is the underlying bpf_link.
func (a *Attachment) Link() link.Link { return a.link }

// Close detaches the program. Closing twice is harmless.
func (a *Attachment) Close() error {
	a.closeOnce.Do(func() {
		if err := a.link.Close(); err != nil {
			a.closeErr = fmt.Errorf("detach xdp from ifindex %d: %w", a.ifindex, err)
		}
	})
	return a.closeErr
}

// attachXDP links prog to ifindex in mode; AttachAuto tries native first.
func attachXDP(prog *ebpf.Program, ifindex int, mode AttachMode) (*Attachment, error) {
	if ifindex <= 0 {
		return nil, fmt.Errorf("attach xdp: ifindex %d: %w", ifindex, ErrInvalidOptions)
	}
	try := func(m AttachMode) (*Attachment, error) {
		flags := link.XDPDriverMode
		if m == AttachGeneric {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags})
		if err != nil {
			return nil, fmt.Errorf("attach xdp to ifindex %d in %s mode: %w", ifindex, m, err)
		}
		return &Attachment{ifindex: ifindex, mode: m, link: l}, nil
	}
	switch mode {
	case AttachNative, AttachGeneric:
		return try(mode)
	case AttachAuto:
		a, errNative := try(AttachNative)
		if errNative == nil {
			return a, nil
		}
		a, errGeneric := try(AttachGeneric)
		if errGeneric == nil {
			return a, nil
		}
		return nil, errors.Join(errNative, errGeneric)
	}
	return nil, fmt.Errorf("attach xdp: mode %s: %w", mode, ErrInvalidOptions)
}

// attachments tracks the links of one program so Close can drop them all.
// mu guards list; it is control plane only.
type attachments struct {
	mu   sync.Mutex
	list []*Attachment
}

func (as *attachments) attach(prog *ebpf.Program, ifindex int, mode AttachMode) (*Attachment, error) {
	a, err := attachXDP(prog, ifindex, mode)
	if err != nil {
		return nil, err
	}
	as.mu.Lock()
	as.list = append(as.list, a)
	as.mu.Unlock()
	return a, nil
}

func (as *attachments) closeAll() error {
	as.mu.Lock()
	list := as.list
	as.list = nil
	as.mu.Unlock()
	var errs []error
	for _, a := range list {
		errs = append(errs, a.Close())
	}
	return errors.Join(errs...)
}
