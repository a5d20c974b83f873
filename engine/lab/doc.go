// Package lab builds and tears down veth labs: a peer network namespace joined
// to the caller's namespace by one veth pair per port. The CLI (`xnic lab
// up/down/status`), the benchmarks and the privileged tests all use it.
//
// A lab named NAME is made of:
//
//   - the named netns NAME-peer (a bind mount under /run/netns, as `ip netns add`
//     makes it, so `ip netns exec NAME-peer ...` works);
//   - for each port i, the veth NAME<i> in the caller's netns and its peer
//     NAMEp<i> inside NAME-peer, both created with Options.Queues rx and tx
//     queues and Options.MTU;
//   - addresses 198.18.<i>.1/24 and 2001:2:0:<i>::1/64 on NAME<i>, and
//     198.18.<i>.2/24 and 2001:2:0:<i>::2/64 on NAMEp<i>. IPv6 addresses are
//     added with IFA_F_NODAD, so they are usable as soon as Up returns.
//
// Lifecycle: Up creates the netns first, then each veth pair with its peer end
// born inside the netns (after the bridge, if any), so every link of a lab
// dies with its netns. Up refuses to reuse names that exist and unwinds
// through Down on any error. Down deletes only host links whose veth peer sits
// in this lab's netns under this lab's naming convention, and the bridge
// NAMEbr in that netns, then removes the netns; it is idempotent. Open
// rediscovers a lab from the system by name, so a separate process can run
// Status or Down; there is no state file: a bridge NAMEbr in the netns is
// what makes a lab bridged.
//
// Offloads are switched through the SIOCETHTOOL ioctl in Go
// (ETHTOOL_GSTRINGS for the feature names, then ETHTOOL_GFEATURES and
// ETHTOOL_SFEATURES), on a socket opened inside the right netns, so the ethtool
// binary is not needed. Features are picked by name patterns like ethtool's
// own table: tx-checksum-*, tx-tcp*-segmentation (which includes the newer
// tx-tcp-accecn-segmentation that the legacy ETHTOOL_STSO misses),
// tx-udp-segmentation, tx-generic-segmentation, rx-gro and rx-lro. Features a
// device cannot change are skipped, and the result is read back. The peer side
// has them off by default: the kernel's veth otherwise hands over
// CHECKSUM_PARTIAL packets and super-frames that a real wire never carries.
//
// Every lab uses the same subnets in the caller's netns (a bridged lab only
// port 0's), so only one lab can be up there at a time: Up refuses with
// ErrAddrInUse when one of its subnets is taken. Tests take turns through
// labtest.HoldSlot.
//
// # Peer bridge: two NIC ports into one switch
//
// With Options.PeerBridge (`xnic lab up --ports 2 --peer-bridge`) the peer
// ends are the ports of one Linux bridge NAMEbr inside NAME-peer, and the
// peer's addresses 198.18.0.2/24 and 2001:2::2/64 live on the bridge, not on
// the ends. Every port then opens onto the same subnets, 198.18.0.0/24 and
// 2001:2::/64, so the peer reaches an address there through whichever host
// port holds it: a guest keeps its address when it moves between ports.
//
// Host addresses: only port 0's host end has addresses, 198.18.0.1/24 and
// 2001:2::1/64; the other host ends have none (only an IPv6 link-local).
// Those ports belong to the engine's guests. One host address gives the
// host's kernel one connected route, through port 0, and leaves no doubt
// about which port its own packets leave by. Port.HostIPv4/HostIPv6 of ports
// >= 1 are the zero Addr; Port.AddrIPv4/AddrIPv6 give an address in a port's
// subnet in either kind of lab. Every host end gets arp_ignore=1 and
// arp_announce=2: Linux would otherwise answer ARP for 198.18.0.1 on every
// link that hears the request, port 1 included, and the peer would learn
// 198.18.0.1 at port 1's MAC. IPv6 needs no such setting: the kernel answers
// a neighbour solicitation only for an address of the link it came in on.
//
// The bridge is made with STP off and forward delay 0, so a port forwards as
// soon as its link is up; multicast snooping off, so multicast (a guest's
// solicited-node group) floods to every port without MLD reports; the
// default ageing time, 300 s; no duplicate address detection on it
// (accept_dad 0, addresses with IFA_F_NODAD); the lab's MTU, pinned; and a
// fixed, random, locally administered MAC, so that it does not change when a
// port goes away. The peer ends are its ports, with IPv6 off and no
// addresses. PeerOffloadsOff applies to the bridge and the peer ends alike.
//
// What the lab expects of a guest that moves to another port: the bridge
// learns a MAC from the first frame it sends from a port, and until then goes
// on sending to the old one (up to the ageing time). So the mover announces
// itself from the new port at once, with a gratuitous ARP per IPv4 address
// and an unsolicited neighbour advertisement per IPv6 address. When a port's
// link goes down (Lab.SetLinkDown, on either end), the bridge flushes what it
// learned there and floods frames for those MACs until it hears from them
// again. Lab.LearnedPort reads where the bridge has a MAC.
//
// A bridge over one port is allowed: the same switch with one cable in it,
// so a test can keep everything but the number of ports equal.
package lab
