package lab

import (
	"net/netip"
)

// Prefix lengths of the lab's addresses.
const (
	PrefixLenIPv4 = 24
	PrefixLenIPv6 = 64
)

// Address roles on a port.
const (
	hostOctet = 1 // the host end gets .1 and ::1
	peerOctet = 2 // the peer end gets .2 and ::2
)

// ipv4 returns 198.18.<port>.<host>, in 198.18.0.0/15 (RFC 2544).
func ipv4(port int, host byte) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(port), host})
}

// ipv6 returns 2001:2:0:<port>::<host>, in 2001:2::/48 (RFC 5180).
func ipv6(port int, host byte) netip.Addr {
	var a [16]byte
	a[0], a[1] = 0x20, 0x01
	a[3] = 0x02
	a[6], a[7] = byte(port>>8), byte(port)
	a[15] = host
	return netip.AddrFrom16(a)
}

// SubnetIPv4 returns port i's IPv4 subnet, 198.18.<i>.0/24.
func SubnetIPv4(i int) netip.Prefix { return netip.PrefixFrom(ipv4(i, 0), PrefixLenIPv4) }

// SubnetIPv6 returns port i's IPv6 subnet, 2001:2:0:<i>::/64.
func SubnetIPv6(i int) netip.Prefix { return netip.PrefixFrom(ipv6(i, 0), PrefixLenIPv6) }

// HostIPv4 returns port i's host address, 198.18.<i>.1.
func HostIPv4(i int) netip.Addr { return ipv4(i, hostOctet) }

// PeerIPv4 returns port i's peer address, 198.18.<i>.2.
func PeerIPv4(i int) netip.Addr { return ipv4(i, peerOctet) }

// HostIPv6 returns port i's host address, 2001:2:0:<i>::1.
func HostIPv6(i int) netip.Addr { return ipv6(i, hostOctet) }

// PeerIPv6 returns port i's peer address, 2001:2:0:<i>::2.
func PeerIPv6(i int) netip.Addr { return ipv6(i, peerOctet) }
