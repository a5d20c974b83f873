package lab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"path"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offloads is the state of the offloads a lab switches. Each one is on when
// any kernel feature of its group is active, as `ethtool -k` aggregates them.
type Offloads struct {
	TxChecksum bool `json:"tx_checksum"` // tx-checksumming: tx-checksum-*
	TSO        bool `json:"tso"`         // tcp-segmentation-offload: tx-tcp*-segmentation
	USO        bool `json:"uso"`         // tx-udp-segmentation
	GSO        bool `json:"gso"`         // generic-segmentation-offload: tx-generic-segmentation
	GRO        bool `json:"gro"`         // generic-receive-offload: rx-gro
	LRO        bool `json:"lro"`         // large-receive-offload: rx-lro
}

// offloadGroups maps each Offloads field to the kernel feature names (shell
// patterns, as in ethtool's own table) that make it up.
var offloadGroups = []struct {
	name     string
	patterns []string
	field    func(*Offloads) *bool
}{
	{"tx-checksumming", []string{"tx-checksum-*"}, func(o *Offloads) *bool { return &o.TxChecksum }},
	{"tcp-segmentation-offload", []string{"tx-tcp*-segmentation"}, func(o *Offloads) *bool { return &o.TSO }},
	{"tx-udp-segmentation", []string{"tx-udp-segmentation"}, func(o *Offloads) *bool { return &o.USO }},
	{"generic-segmentation-offload", []string{"tx-generic-segmentation"}, func(o *Offloads) *bool { return &o.GSO }},
	{"generic-receive-offload", []string{"rx-gro"}, func(o *Offloads) *bool { return &o.GRO }},
	{"large-receive-offload", []string{"rx-lro"}, func(o *Offloads) *bool { return &o.LRO }},
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func (o Offloads) String() string {
	return fmt.Sprintf("tx-csum %s, tso %s, uso %s, gso %s, gro %s, lro %s",
		onOff(o.TxChecksum), onOff(o.TSO), onOff(o.USO), onOff(o.GSO), onOff(o.GRO), onOff(o.LRO))
}

// AnyOn reports whether any of the offloads is on.
func (o Offloads) AnyOn() bool {
	return o.TxChecksum || o.TSO || o.USO || o.GSO || o.GRO || o.LRO
}

// From <linux/ethtool.h>.
const (
	ethSSFeatures  = 4  // ETH_SS_FEATURES: the string set of feature names
	ethGStringLen  = 32 // ETH_GSTRING_LEN
	ethtoolFWish   = 1  // ETHTOOL_F_WISH: a requested change did not happen
	featureBlock   = 16 // struct ethtool_get_features_block: 4 x u32
	setFeatureSize = 8  // struct ethtool_set_features_block: 2 x u32
)

// ethtoolIfreq is struct ifreq with ifr_data set: 16 bytes of name, then a
// pointer, padded to the union's 24 bytes.
type ethtoolIfreq struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolSocket is a datagram socket for SIOCETHTOOL. The ioctl acts on the
// devices of the netns in which the socket was created.
type ethtoolSocket struct{ fd int }

func newEthtoolSocket() (*ethtoolSocket, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open ethtool socket: %w", err)
	}
	return &ethtoolSocket{fd: fd}, nil
}

func (s *ethtoolSocket) Close() error { return unix.Close(s.fd) }

// ioctl runs the ethtool command whose struct, command word first, is buf.
// It returns the ioctl's non-negative result.
func (s *ethtoolSocket) ioctl(ifname string, buf []byte) (uintptr, error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("interface name %q: too long", ifname)
	}
	var ifr ethtoolIfreq
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&buf[0])
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s.fd), unix.SIOCETHTOOL,
		uintptr(unsafe.Pointer(&ifr)))
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// features is a device's feature bitmaps, as ETHTOOL_GFEATURES returns them,
// with the names of the bits.
type features struct {
	names                                    []string
	available, requested, active, neverChngd []uint32
}

func (f *features) bit(words []uint32, i int) bool { return words[i/32]&(1<<(i%32)) != 0 }

// featureNames reads the names of the feature bits (ETH_SS_FEATURES).
func (s *ethtoolSocket) featureNames(ifname string) ([]string, error) {
	ne := binary.NativeEndian
	// struct ethtool_sset_info: cmd, reserved, u64 sset_mask, u32 data[1].
	info := make([]byte, 20)
	ne.PutUint32(info[0:], unix.ETHTOOL_GSSET_INFO)
	ne.PutUint64(info[8:], 1<<ethSSFeatures)
	if _, err := s.ioctl(ifname, info); err != nil {
		return nil, fmt.Errorf("ethtool get feature count of %s: %w", ifname, err)
	}
	if ne.Uint64(info[8:])&(1<<ethSSFeatures) == 0 {
		return nil, fmt.Errorf("ethtool get feature count of %s: no feature names", ifname)
	}
	n := int(ne.Uint32(info[16:]))

	// struct ethtool_gstrings: cmd, string_set, len, then len names.
	strs := make([]byte, 12+n*ethGStringLen)
	ne.PutUint32(strs[0:], unix.ETHTOOL_GSTRINGS)
	ne.PutUint32(strs[4:], ethSSFeatures)
	ne.PutUint32(strs[8:], uint32(n))
	if _, err := s.ioctl(ifname, strs); err != nil {
		return nil, fmt.Errorf("ethtool get feature names of %s: %w", ifname, err)
	}
	names := make([]string, n)
	for i := range names {
		b := strs[12+i*ethGStringLen : 12+(i+1)*ethGStringLen]
		if j := bytes.IndexByte(b, 0); j >= 0 {
			b = b[:j]
		}
		names[i] = string(b)
	}
	return names, nil
}

// features reads the feature bitmaps of ifname (ETHTOOL_GFEATURES).
func (s *ethtoolSocket) features(ifname string) (*features, error) {
	names, err := s.featureNames(ifname)
	if err != nil {
		return nil, err
	}
	ne := binary.NativeEndian
	words := (len(names) + 31) / 32
	// struct ethtool_gfeatures: cmd, size, then size blocks of
	// available, requested, active, never_changed.
	buf := make([]byte, 8+words*featureBlock)
	ne.PutUint32(buf[0:], unix.ETHTOOL_GFEATURES)
	ne.PutUint32(buf[4:], uint32(words))
	if _, err := s.ioctl(ifname, buf); err != nil {
		return nil, fmt.Errorf("ethtool get features of %s: %w", ifname, err)
	}
	f := &features{names: names}
	for w := range words {
		b := buf[8+w*featureBlock:]
		f.available = append(f.available, ne.Uint32(b[0:]))
		f.requested = append(f.requested, ne.Uint32(b[4:]))
		f.active = append(f.active, ne.Uint32(b[8:]))
		f.neverChngd = append(f.neverChngd, ne.Uint32(b[12:]))
	}
	return f, nil
}

// groupBits returns the bits whose names match one of patterns.
func (f *features) groupBits(patterns []string) []int {
	var bits []int
	for i, name := range f.names {
		for _, p := range patterns {
			if ok, _ := path.Match(p, name); ok {
				bits = append(bits, i)
				break
			}
		}
	}
	return bits
}

// offloads summarises f by group.
func (f *features) offloads() Offloads {
	var o Offloads
	for _, g := range offloadGroups {
		for _, i := range f.groupBits(g.patterns) {
			if f.bit(f.active, i) {
				*g.field(&o) = true
			}
		}
	}
	return o
}

// offloads reads the offload state of ifname.
func (s *ethtoolSocket) offloads(ifname string) (Offloads, error) {
	f, err := s.features(ifname)
	if err != nil {
		return Offloads{}, err
	}
	return f.offloads(), nil
}

// offloadsOff turns every feature of the Offloads groups off on ifname, like
// `ethtool -K IF tx off tso off gso off gro off lro off` plus UDP segmentation.
// Features the device cannot change are left alone; it then checks that no
// offload is still active.
func (s *ethtoolSocket) offloadsOff(ifname string) error {
	f, err := s.features(ifname)
	if err != nil {
		return err
	}
	ne := binary.NativeEndian
	words := len(f.available)
	// struct ethtool_sfeatures: cmd, size, then size blocks of valid,
	// requested. requested stays zero: every valid bit is switched off.
	buf := make([]byte, 8+words*setFeatureSize)
	ne.PutUint32(buf[0:], unix.ETHTOOL_SFEATURES)
	ne.PutUint32(buf[4:], uint32(words))
	var any bool
	for _, g := range offloadGroups {
		for _, i := range f.groupBits(g.patterns) {
			if !f.bit(f.available, i) || !f.bit(f.requested, i) {
				continue
			}
			off := 8 + (i/32)*setFeatureSize
			ne.PutUint32(buf[off:], ne.Uint32(buf[off:])|1<<(i%32))
			any = true
		}
	}
	if any {
		r, err := s.ioctl(ifname, buf)
		if err != nil {
			return fmt.Errorf("ethtool set features of %s: %w", ifname, err)
		}
		if r&ethtoolFWish != 0 {
			return fmt.Errorf("ethtool set features of %s: the kernel kept some on", ifname)
		}
	}
	o, err := s.offloads(ifname)
	if err != nil {
		return err
	}
	if o.AnyOn() {
		return fmt.Errorf("turn offloads off on %s: still on: %s", ifname, o)
	}
	return nil
}
