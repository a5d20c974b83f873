package gen

import (
	"fmt"
	"net/netip"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/flows"
)

// InstallSteering fills a steering program's tables as the steering
// benchmarks do: nRules UDP rules on distinct /32 prefixes, the first on
// DefaultDstIPv4 (so the generator's default IPv4 traffic matches it) and
// the rest in 198.19.0.0/16; then nFlows exact flows keyed as the
// generator's first nFlows IPv4 flows with default options, all to slot
// (0, 0).
func InstallSteering(st *bpf.Steer, nRules, nFlows int) error {
	for i := 0; i < nRules; i++ {
		pfx := netip.PrefixFrom(DefaultDstIPv4, 32)
		if i > 0 {
			pfx = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32)
		}
		if _, err := st.AddRule(bpf.Rule{Prefix: pfx, Proto: bpf.ProtoUDP}); err != nil {
			return fmt.Errorf("install rule %d: %w", i, err)
		}
	}
	if nFlows == 0 {
		return nil
	}
	o := DefaultOptions()
	ports := bpf.GenPorts(o.SrcPortBase)
	keys := make([]flows.Key, 0, nFlows)
	slots := make([]bpf.Slot, 0, nFlows)
	src, dst := DefaultSrcIPv4.As4(), DefaultDstIPv4.As4()
	for i := 0; i < nFlows; i++ {
		// Beyond the source ports of one address, the generator varies the
		// third octet of the source address.
		s := src
		s[2] += byte(i / ports)
		keys = append(keys, flows.Key{Src: flows.MapIPv4(s), Dst: flows.MapIPv4(dst),
			SrcPort: o.SrcPortBase + uint16(i%ports), DstPort: o.DstPort, Proto: flows.ProtoUDP, Family: 4})
		slots = append(slots, bpf.Slot{})
	}
	if _, err := st.InstallFlows(keys, slots); err != nil {
		return fmt.Errorf("install %d flows: %w", nFlows, err)
	}
	return nil
}
