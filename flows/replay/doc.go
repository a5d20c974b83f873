// Package replay runs the offload stages of package offload over a capture
// file: it reads a pcap or pcapng file, feeds every frame through one stage
// (GRO, GSO or checksum) and writes what the stage made to a pcap file,
// with a Report of what it did. It is xnic's offline mode: the same code
// the engine runs on UMEM frames, driven by a file instead of a ring, so a
// capture from a real link can be aggregated, segmented or checked, and the
// result opened in Wireshark or fed back in.
//
// Input. Classic pcap (micro- or nanosecond timestamps, either byte order)
// and pcapng (enhanced, simple and obsolete packet blocks, any number of
// sections and interfaces, all of the first interface's link type),
// either one gzip-compressed, with link type Ethernet. Linux cooked
// captures (SLL and SLL2, what `tcpdump -i any` writes) are accepted too:
// each record's cooked header is replaced with an Ethernet header carrying
// the same EtherType (source MAC from the cooked header when it is 6 bytes
// long, destination MAC zero), so the output is always Ethernet. Any other
// link type is ErrLinkType.
//
// Output. Classic pcap, link type Ethernet, snap length MaxSnaplen, with
// nanosecond timestamps if the input's (for pcapng, its first
// interface's) are finer than microseconds, microseconds otherwise. A
// frame a stage leaves alone is written byte for byte with its capture
// record (timestamp, captured and original length). A packet a stage
// builds takes the timestamp of the last input frame it contains: a GRO
// aggregate is complete, and could be handed up, no earlier than its last
// segment arrived; every segment GSO cuts from a frame has that frame's
// timestamp.
//
// Stages. GRO feeds the frames to offload.GRO in batches of
// Options.BatchSize and flushes after each one (or by FlushTimeout on
// the capture's clock); every delivery becomes one packet, merged TCP
// segments as one large segment and anything else as it came. GSO splits
// every TCP segment (and with UDPGSO every UDP datagram) whose payload is
// longer than the MSS with offload.GSO, and completes CHECKSUM_PARTIAL
// sums of the frames it passes. The checksum stage verifies IPv4 header
// and TCP/UDP checksums, completes partial ones and, with Fix, repairs bad
// ones. GRO verifies full checksums only, like the engine: a capture taken
// where the kernel leaves CHECKSUM_PARTIAL sums (the sending side of a
// veth) should go through the checksum stage first, or GRO runs with
// Verify off.
//
// Buffer lifecycle. Each record is copied once from the reader's buffer
// into a frame slot the replay owns. In the GRO stage a slot stays held,
// under its slot index as the GRO handle, until the aggregate it belongs to
// is delivered and written; then it returns to a free list. The GSO and
// checksum stages use one slot, rewritten in place, and GSO writes its
// segments into buffers reused from frame to frame. After warm-up a replay
// allocates nothing per frame.
//
// Malformed frames (flows.Reason.Malformed) are counted by reason and
// written unchanged in every stage; a replay never panics on frame bytes.
// A file that is not a capture, or breaks off inside its header, is an
// error; a last record cut short is reported in Report.TruncatedTail and
// everything before it is replayed.
//
// Hostile files. The readers (pcap and pcapng, the package's own) trust
// no length in a file. Snap lengths in headers and interface descriptions
// size nothing: a record's captured length is checked against MaxSnaplen,
// and a pcapng packet's against the block that holds it, before it is
// read; a pcapng block that is shorter than its fields, not a multiple of
// 4 or, for the blocks interpreted (section header, interface description,
// packet blocks), longer than a MaxSnaplen packet with 128 KiB of options
// is an error, as is a trailing length that differs from the leading one.
// Options and blocks of other types stream past unread, so they cost no
// memory whatever their length; a block that runs past the end of the
// file is a truncated tail. Errors name the block or record, the field,
// its value and its offset in the (uncompressed) file. Record data is read
// into a buffer that grows only as bytes arrive: what the reader allocates
// follows what the file holds, up to one MaxSnaplen record, whatever its
// lengths announce.
package replay
