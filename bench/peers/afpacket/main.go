// Command afpacket is the kernel-socket peer for xnic's receive benchmark:
// an AF_PACKET TPACKET_V3 receive-and-drop loop on golang.org/x/sys/unix.
//
// It maps a PACKET_RX_RING of blocks, waits (poll) for a block the kernel
// has retired to user space, counts its packets without touching them,
// and hands the block back. At the end it reports PACKET_STATISTICS.
//
// AF_PACKET is not per queue: -queue is accepted for a uniform command line
// and reported, but the socket sees every queue of the interface. It needs no
// XDP program; if one is attached, it sees what that program passes.
//
// Usage: afpacket -iface IF [-queue Q] [-duration 5s] [-json]
//
//	[-block-size 4194304] [-blocks 64] [-frame-size 2048] [-retire 2ms] [-busy]
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/bench/peers/internal/peer"
)

// Offsets inside struct tpacket_block_desc: version(4), offset_to_priv(4),
// then struct tpacket_hdr_v1 {block_status, num_pkts, ...}.
const (
	blockStatusOff = 8
	numPktsOff     = 12
)

// pollTimeoutMs bounds the wait for a block so the loop notices the end of
// the window when traffic stops.
const pollTimeoutMs = 10

// ringOptions size the TPACKET_V3 rx ring.
type ringOptions struct {
	blockSize int
	blocks    int
	frameSize int
	retire    time.Duration
}

func (o ringOptions) validate() error {
	pg := unix.Getpagesize()
	switch {
	case o.blockSize < pg || o.blockSize%pg != 0 || o.blockSize&(o.blockSize-1) != 0:
		return fmt.Errorf("validate ring: block size %d is not a power-of-two multiple of the page size", o.blockSize)
	case o.blocks <= 0:
		return fmt.Errorf("validate ring: %d blocks", o.blocks)
	case o.frameSize < unix.TPACKET_ALIGNMENT || o.frameSize%unix.TPACKET_ALIGNMENT != 0 || o.frameSize > o.blockSize:
		return fmt.Errorf("validate ring: frame size %d", o.frameSize)
	case o.retire < time.Millisecond:
		return fmt.Errorf("validate ring: retire timeout %s is below 1ms", o.retire)
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "afpacket: %v\n", err)
		os.Exit(1)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func run() error {
	var (
		f    peer.Flags
		ro   = ringOptions{blockSize: 1 << 22, blocks: 64, frameSize: 2048, retire: 2 * time.Millisecond}
		busy bool
	)
	fs := flag.NewFlagSet("afpacket", flag.ContinueOnError)
	f.Register(fs, false)
	fs.IntVar(&ro.blockSize, "block-size", ro.blockSize, "ring block size in bytes")
	fs.IntVar(&ro.blocks, "blocks", ro.blocks, "ring blocks")
	fs.IntVar(&ro.frameSize, "frame-size", ro.frameSize, "ring frame size (tp_frame_size)")
	fs.DurationVar(&ro.retire, "retire", ro.retire, "block retire timeout (ms granularity)")
	fs.BoolVar(&busy, "busy", false, "spin on the block status instead of poll()")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return fmt.Errorf("parse flags: %w", err)
	}
	if err := f.Validate(false); err != nil {
		return err
	}
	if err := ro.validate(); err != nil {
		return err
	}
	ifc, err := net.InterfaceByName(f.Iface)
	if err != nil {
		return fmt.Errorf("look up interface %s: %w", f.Iface, err)
	}

	// Protocol 0: the socket receives nothing until bound below, so no
	// other interface's packets land in the ring.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open packet socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("set TPACKET_V3: %w", err)
	}
	req := unix.TpacketReq3{
		Block_size:     uint32(ro.blockSize),
		Block_nr:       uint32(ro.blocks),
		Frame_size:     uint32(ro.frameSize),
		Frame_nr:       uint32(ro.blockSize / ro.frameSize * ro.blocks),
		Retire_blk_tov: uint32(ro.retire / time.Millisecond),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("set up rx ring (%d blocks of %d bytes): %w", ro.blocks, ro.blockSize, err)
	}
	ring, err := unix.Mmap(fd, 0, ro.blockSize*ro.blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("map rx ring: %w", err)
	}
	defer unix.Munmap(ring)

	sa := unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}
	if err := unix.Bind(fd, &sa); err != nil {
		return fmt.Errorf("bind packet socket to %s: %w", f.Iface, err)
	}
	// Reading PACKET_STATISTICS resets it: start the counters with the window.
	if _, err := unix.GetsockoptTpacketStatsV3(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err != nil {
		return fmt.Errorf("reset packet statistics: %w", err)
	}

	w := peer.Start(f.Duration)
	packets, blocks, waits := rxLoop(fd, ring, ro, busy, w)
	elapsed := w.Close()

	st, err := unix.GetsockoptTpacketStatsV3(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return fmt.Errorf("read packet statistics: %w", err)
	}
	r := peer.Result{
		Name:    "afpacket",
		Iface:   f.Iface,
		Queue:   f.Queue,
		Packets: packets,
		Elapsed: elapsed,
		Info: map[string]any{
			"block_size": ro.blockSize,
			"blocks":     ro.blocks,
			"frame_size": ro.frameSize,
			"busy":       busy,
		},
		Stats: map[string]uint64{
			"tp_packets":      uint64(st.Packets),
			"tp_drops":        uint64(st.Drops),
			"tp_freeze_q_cnt": uint64(st.Freeze_q_cnt),
			"blocks_returned": blocks,
			"poll_waits":      waits,
		},
	}
	return r.Write(os.Stdout, f.JSON)
}

// rxLoop walks the ring block by block: wait until the kernel hands block i
// to user space (TP_STATUS_USER), count its packets, give it back
// (TP_STATUS_KERNEL), move on. The kernel fills blocks in order, so the next
// block to retire is always block i.
func rxLoop(fd int, ring []byte, ro ringOptions, busy bool, w *peer.Window) (packets, blocks, waits uint64) {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLERR}}
	i := 0
	for !w.Stopped() {
		base := unsafe.Pointer(&ring[i*ro.blockSize])
		status := (*uint32)(unsafe.Add(base, blockStatusOff))
		// Only the kernel sets TP_STATUS_USER; the acquire load orders
		// it before the read of num_pkts.
		if atomic.LoadUint32(status)&unix.TP_STATUS_USER == 0 {
			if !busy {
				waits++
				unix.Poll(pfd, pollTimeoutMs)
			}
			continue
		}
		packets += uint64(*(*uint32)(unsafe.Add(base, numPktsOff)))
		// Hand the block back; the release store publishes it to the kernel.
		atomic.StoreUint32(status, unix.TP_STATUS_KERNEL)
		blocks++
		i++
		if i == ro.blocks {
			i = 0
		}
	}
	return packets, blocks, waits
}
