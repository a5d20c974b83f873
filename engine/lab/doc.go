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
// born inside the netns, so every link of a lab dies with its netns. Up refuses
// to reuse names that exist and unwinds through Down on any error. Down deletes
// only host links whose veth peer sits in this lab's netns under this lab's
// naming convention, then removes the netns; it is idempotent. Open rediscovers
// a lab from the system by name, so a separate process can run Status or Down;
// there is no state file.
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
// Every lab uses the same subnets in the caller's netns, so only one lab can
// be up there at a time: Up refuses with ErrAddrInUse when one of its subnets
// is taken. Tests take turns through labtest.HoldSlot.
package lab
