package replay

import (
	"github.com/gopacket/gopacket"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// check is the checksum stage for one frame: it verifies the IPv4 header
// and TCP/UDP checksums, completes CHECKSUM_PARTIAL sums, and with Fix
// rewrites bad ones. Malformed frames are not looked into.
func (r *replayer) check(frame []byte, ci gopacket.CaptureInfo) error {
	p := &r.pkt
	c := &r.csum
	if p.Reason.Malformed() {
		c.Unchecked++
		return r.emit(ci, frame)
	}
	ip := ipv4Header(frame, p)
	ipBad := ip != nil && !offload.VerifyIPv4Header(ip)
	sum := l4Check(frame, p)
	switch {
	case ip == nil && sum == l4None:
		c.Unchecked++
	case ipBad || sum == l4Bad:
		c.Bad++
		if ipBad {
			c.BadIPv4++
		}
		if sum == l4Bad {
			if p.Proto == flows.ProtoTCP {
				c.BadTCP++
			} else {
				c.BadUDP++
			}
		}
		if r.opts.Fix {
			if ipBad {
				offload.SetIPv4HeaderChecksum(ip)
			}
			if sum != l4None {
				offload.SetL4Checksum(frame, p)
			}
			c.Fixed++
		}
	case sum == l4Partial:
		c.Partial++
		if offload.CompletePartial(frame, p) {
			c.Completed++
		}
	default:
		c.Good++
	}
	return r.emit(ci, frame)
}
