package gen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/xnic/xnic/bpf"
)

// ErrInvalidOptions matches every *OptionError.
var ErrInvalidOptions = errors.New("invalid options")

// OptionError names the option that failed validation.
type OptionError struct {
	Field string // e.g. "flows"
	Msg   string // e.g. "must be 1..65535, got 0"
}

func (e *OptionError) Error() string { return "gen: " + e.Field + ": " + e.Msg }

// Is makes errors.Is(err, ErrInvalidOptions) true.
func (e *OptionError) Is(target error) bool { return target == ErrInvalidOptions }

func optErr(field, format string, args ...any) error {
	return &OptionError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Limits of the live-frames generator.
const (
	// MaxLiveFrameSize is the largest frame accepted for live mode. The
	// kernel's bound is a 4 KiB page less XDP headroom, its per-page
	// bookkeeping and skb tail room: 3408 bytes on 6.18. 3072 leaves margin
	// for other kernel builds and still holds any 1500-MTU frame.
	MaxLiveFrameSize = 3072
	// MaxThreads bounds Options.Threads.
	MaxThreads = 256
	// MaxRepeat bounds Options.Repeat.
	MaxRepeat = 1 << 24
)

// Default addresses: lab port 0 (peer 198.18.0.2 sends to host 198.18.0.1).
var (
	DefaultSrcIPv4 = netip.MustParseAddr("198.18.0.2")
	DefaultDstIPv4 = netip.MustParseAddr("198.18.0.1")
	DefaultSrcIPv6 = netip.MustParseAddr("2001:2:0:0::2")
	DefaultDstIPv6 = netip.MustParseAddr("2001:2:0:0::1")
)

// Mode is how the generator puts frames on the wire.
type Mode string

// The generator's modes.
const (
	// ModeAuto sends live frames where the kernel runs them and falls back
	// to AF_XDP TX where it refuses them (bpf.ErrLiveFramesRefused).
	ModeAuto Mode = "auto"
	// ModeLive runs xnic_gen with BPF_PROG_RUN live frames and XDP_TX, the
	// fastest: the receiving end needs an XDP program.
	ModeLive Mode = "live"
	// ModeXSK sends from an AF_XDP socket's tx ring on Iface, for receivers
	// without an XDP program too. One thread; Threads, BatchSize and Repeat
	// do not apply.
	ModeXSK Mode = "xsk"
)

// ParseMode parses "auto", "live" or "xsk".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeLive, ModeXSK:
		return m, nil
	}
	return "", optErr("mode", "want auto, live or xsk, got %q", s)
}

// Options configure Run.
type Options struct {
	// Mode picks live frames or AF_XDP TX; "" is ModeAuto.
	Mode Mode
	// Netns is the network namespace to send from: a name under
	// /var/run/netns or a path. "" stays in the caller's namespace.
	Netns string
	// Iface is the interface inside Netns the frames "arrive" on and leave
	// from with XDP_TX: the peer end of the veth whose other end receives.
	Iface string

	// Flows is the number of flows cycled through, 1..bpf.MaxGenFlows
	// (AF_XDP TX mode: up to the ports above SrcPortBase). Flow i has
	// source port SrcPortBase + i%P, with P = 65536-SrcPortBase; beyond P
	// flows the third octet of the IPv4 source (byte 12 of an IPv6 one)
	// grows by i/P, so a million flows fit within 198.18.0.0/15.
	Flows int
	// FrameSize is the frame length without FCS (a "64-byte" frame is 60):
	// MinSize(IPv6)..MaxLiveFrameSize.
	FrameSize int
	// IPv6 makes IPv6 frames instead of IPv4.
	IPv6 bool

	// Duration stops the run after this long; 0: no time limit.
	Duration time.Duration
	// Count stops the run after this many frames; 0: no limit. With neither,
	// Run stops when ctx is done. Calls cut short by a signal are made up
	// for from the program's own counter, so Count is met exactly.
	Count uint64

	// SrcMAC defaults to Iface's address. DstMAC defaults to the address of
	// the other end when Iface is a veth whose peer is in the caller's
	// namespace, else to broadcast.
	SrcMAC, DstMAC net.HardwareAddr
	// SrcIP and DstIP default to lab port 0: 198.18.0.2 -> 198.18.0.1, or
	// 2001:2::2 -> 2001:2::1 with IPv6.
	SrcIP, DstIP netip.Addr
	// DstPort is the UDP destination port.
	DstPort uint16
	// SrcPortBase is the first UDP source port; flow i uses SrcPortBase+i%P.
	SrcPortBase uint16

	// Threads is the number of sending threads, each its own BPF_PROG_RUN
	// loop, 1..MaxThreads.
	Threads int
	// BatchSize is the kernel's live-frames batch, 1..256.
	BatchSize int
	// Repeat is the number of frames per BPF_PROG_RUN call, 1..MaxRepeat:
	// larger means fewer syscalls, smaller means quicker stops.
	Repeat int

	// Progress, when set, is called about once a second, on the goroutine
	// that called Run, with the rate of the last interval. Keep it short.
	Progress func(Tick)
}

// DefaultOptions sends 60-byte (64 on the wire) IPv4 frames of one flow
// from one thread, to UDP port 9 (discard), until ctx is done. Netns and
// Iface must still be set.
func DefaultOptions() Options {
	return Options{
		Flows:       1,
		FrameSize:   MinFrameSize,
		DstPort:     9,
		SrcPortBase: 10000,
		Threads:     1,
		BatchSize:   bpf.DefaultLiveBatch,
		Repeat:      1 << 16,
	}
}

// Validate checks every option and names the first bad one.
func (o Options) Validate() error {
	if o.Iface == "" {
		return optErr("iface", "must be set")
	}
	if o.Mode != "" {
		if _, err := ParseMode(string(o.Mode)); err != nil {
			return err
		}
	}
	if o.Flows < 1 || o.Flows > bpf.MaxGenFlows {
		return optErr("flows", "must be 1..%d, got %d", bpf.MaxGenFlows, o.Flows)
	}
	if p := bpf.GenPorts(o.SrcPortBase); o.Flows > p {
		src, _ := o.addresses()
		if top := int(srcAddrWord(src)>>8) + (o.Flows-1)/p; top > 255 {
			return optErr("flows", "%d flows over %d source ports need %d source addresses from %s: the varied address byte would pass 255",
				o.Flows, p, (o.Flows-1)/p+1, src)
		}
	}
	if o.DstPort == 0 {
		return optErr("dst port", "must be 1..65535, got 0")
	}
	if lo := MinSize(o.IPv6); o.FrameSize < lo || o.FrameSize > MaxLiveFrameSize {
		return optErr("frame size", "must be %d..%d, got %d", lo, MaxLiveFrameSize, o.FrameSize)
	}
	if o.Duration < 0 {
		return optErr("duration", "must not be negative, got %s", o.Duration)
	}
	if o.Threads < 1 || o.Threads > MaxThreads {
		return optErr("threads", "must be 1..%d, got %d", MaxThreads, o.Threads)
	}
	if o.BatchSize < 1 || o.BatchSize > bpf.MaxLiveBatch {
		return optErr("batch size", "must be 1..%d, got %d", bpf.MaxLiveBatch, o.BatchSize)
	}
	if o.Repeat < 1 || o.Repeat > MaxRepeat {
		return optErr("repeat", "must be 1..%d, got %d", MaxRepeat, o.Repeat)
	}
	for _, m := range []struct {
		name string
		mac  net.HardwareAddr
	}{{"src mac", o.SrcMAC}, {"dst mac", o.DstMAC}} {
		if m.mac != nil && len(m.mac) != 6 {
			return optErr(m.name, "must be 6 bytes, got %d", len(m.mac))
		}
	}
	for _, a := range []struct {
		name string
		ip   netip.Addr
	}{{"src ip", o.SrcIP}, {"dst ip", o.DstIP}} {
		if !a.ip.IsValid() {
			continue
		}
		if is6 := a.ip.Unmap().Is6(); is6 != o.IPv6 {
			want := "IPv4"
			if o.IPv6 {
				want = "IPv6"
			}
			return optErr(a.name, "%s is not %s", a.ip, want)
		}
	}
	return nil
}

// addresses returns the IPs to use, filling in the lab defaults.
func (o Options) addresses() (src, dst netip.Addr) {
	src, dst = o.SrcIP.Unmap(), o.DstIP.Unmap()
	if !src.IsValid() {
		src = DefaultSrcIPv4
		if o.IPv6 {
			src = DefaultSrcIPv6
		}
	}
	if !dst.IsValid() {
		dst = DefaultDstIPv4
		if o.IPv6 {
			dst = DefaultDstIPv6
		}
	}
	return src, dst
}

// srcAddrWord is the source address word the generator varies beyond
// 65536-SrcPortBase flows: bytes 2..3 of IPv4, 12..13 of IPv6.
func srcAddrWord(a netip.Addr) uint16 {
	if a.Is4() {
		b := a.As4()
		return uint16(b[2])<<8 | uint16(b[3])
	}
	b := a.As16()
	return uint16(b[12])<<8 | uint16(b[13])
}
