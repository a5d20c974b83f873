package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Frame offsets the generator accepts (Ethernet without VLAN tags).
const (
	// GenL4OffsetIPv4 is the UDP header offset behind Ethernet and a 20-byte
	// IPv4 header.
	GenL4OffsetIPv4 = 14 + 20
	// GenL4OffsetIPv6 is the UDP header offset behind Ethernet and IPv6.
	GenL4OffsetIPv6 = 14 + 40
	// GenSeqLen is the size of the sequence number xnic_gen writes.
	GenSeqLen = 8
)

// GenOptions configure LoadGen. They become read-only data of the program,
// constant to the verifier, so changing them means loading again.
type GenOptions struct {
	// Flows is the number of flows cycled through, 1..MaxGenFlows. Flow i
	// has source port SrcPortBase + i%P, where P = 65536-SrcPortBase ports
	// fit above the base; beyond P flows, flow i also adds i/P to the
	// source address: to its third octet (IPv4) or to byte 12 (IPv6).
	Flows int
	// SrcPortBase is the first source port.
	SrcPortBase uint16
	// SrcAddrWord is the template's source address bytes 2..3 (IPv4) or
	// 12..13 (IPv6) as a big-endian number, needed when Flows > P.
	SrcAddrWord uint16
	// IPv6 says the template is IPv6 (UDP checksum mandatory). For IPv4 a
	// zero checksum (none) stays zero; any other is kept valid.
	IPv6 bool
	// L4Offset is the offset of the UDP header in the template: at least
	// GenL4OffsetIPv4 or GenL4OffsetIPv6.
	L4Offset int
	// SeqOffset is where the 64-bit big-endian sequence number goes, at or
	// after the end of the UDP header; 0 writes none. Frames too short to
	// hold it at that offset get none either.
	SeqOffset int
}

// DefaultGenOptions is one IPv4 flow from source port 10000, with the
// sequence number at the start of the UDP payload.
func DefaultGenOptions() GenOptions {
	return GenOptions{
		Flows:       1,
		SrcPortBase: 10000,
		L4Offset:    GenL4OffsetIPv4,
		SeqOffset:   GenL4OffsetIPv4 + 8,
	}
}

// MaxGenFlows bounds GenOptions.Flows.
const MaxGenFlows = 1 << 22

// GenPorts is the number of source ports a generator with this base cycles
// through per source address.
func GenPorts(base uint16) int { return 65536 - int(base) }

func (o GenOptions) validate() error {
	if o.Flows < 1 || o.Flows > MaxGenFlows {
		return fmt.Errorf("gen flows: must be 1..%d, got %d: %w", MaxGenFlows, o.Flows, ErrInvalidOptions)
	}
	if p := GenPorts(o.SrcPortBase); o.Flows > p {
		// The address byte that varies must not wrap.
		if top := int(o.SrcAddrWord>>8) + (o.Flows-1)/p; top > 255 {
			return fmt.Errorf("gen flows: %d flows over %d ports per address need %d source addresses; the address byte would pass 255: %w",
				o.Flows, p, (o.Flows-1)/p+1, ErrInvalidOptions)
		}
	}
	minL4 := GenL4OffsetIPv4
	if o.IPv6 {
		minL4 = GenL4OffsetIPv6
	}
	if o.L4Offset < minL4 || o.L4Offset > 0xffff {
		return fmt.Errorf("gen l4 offset: must be %d..65535, got %d: %w", minL4, o.L4Offset, ErrInvalidOptions)
	}
	if o.SeqOffset != 0 && (o.SeqOffset < o.L4Offset+8 || o.SeqOffset > 0xffff) {
		return fmt.Errorf("gen seq offset: must be 0 or %d..65535, got %d: %w", o.L4Offset+8, o.SeqOffset, ErrInvalidOptions)
	}
	return nil
}

// Gen is the loaded xnic_gen program. Run it with a LiveRunner.
type Gen struct {
	opts GenOptions
	objs genObjects
}

// LoadGen loads xnic_gen configured by opts.
func LoadGen(opts GenOptions) (*Gen, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("load gen: %w", err)
	}
	removeMemlock()
	spec, err := loadGen()
	if err != nil {
		return nil, fmt.Errorf("load gen spec: %w", err)
	}
	ipv6 := uint32(0)
	addrOff := uint32(0)
	nports := min(opts.Flows, GenPorts(opts.SrcPortBase))
	if opts.Flows > nports {
		addrOff = 14 + 12 + 2 // IPv4 source address, bytes 2..3
	}
	if opts.IPv6 {
		ipv6 = 1
		if addrOff != 0 {
			addrOff = 14 + 8 + 12 // IPv6 source address, bytes 12..13
		}
	}
	for name, v := range map[string]uint32{
		genVarCfgNflows:   uint32(opts.Flows),
		genVarCfgNports:   uint32(nports),
		genVarCfgAddrOff:  addrOff,
		genVarCfgAddrWord: uint32(opts.SrcAddrWord),
		genVarCfgPortBase: uint32(opts.SrcPortBase),
		genVarCfgL4Off:    uint32(opts.L4Offset),
		genVarCfgSeqOff:   uint32(opts.SeqOffset),
		genVarCfgIpv6:     ipv6,
	} {
		vs, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("load gen: variable %s missing from object", name)
		}
		if err := vs.Set(v); err != nil {
			return nil, fmt.Errorf("load gen: set %s: %w", name, err)
		}
	}
	g := &Gen{opts: opts}
	if err := spec.LoadAndAssign(&g.objs, nil); err != nil {
		return nil, fmt.Errorf("load gen program: %w", err)
	}
	return g, nil
}

// Options are the options the program was loaded with.
func (g *Gen) Options() GenOptions { return g.opts }

// Program is the loaded xnic_gen program.
func (g *Gen) Program() *ebpf.Program { return g.objs.XnicGen }

// Stats returns the generator counters summed over CPUs. FramesGenerated
// counts every run that returned XDP_TX, interrupted calls included.
func (g *Gen) Stats() (GenStats, error) {
	st, err := readPerCPU[GenStats](g.objs.GenCounts)
	if err != nil {
		return GenStats{}, fmt.Errorf("gen stats: %w", err)
	}
	return sum(st), nil
}

// Close frees the program and its map.
func (g *Gen) Close() error {
	if g.objs.XnicGen == nil {
		return nil
	}
	err := g.objs.Close()
	g.objs = genObjects{}
	if err != nil {
		return fmt.Errorf("close gen objects: %w", err)
	}
	return nil
}
