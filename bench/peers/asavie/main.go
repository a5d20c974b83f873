// Command asavie is the Go AF_XDP peer for xnic's receive benchmark: the
// receive-and-drop loop of github.com/asavie/xdp v0.3.3, written the way the
// library documents it (Fill(GetDescs(NumFreeFillSlots())), Poll, Receive).
//
// By default it loads no XDP program: it creates the library's socket and
// inserts its fd at key=queue into an XSKMAP pinned by someone else
// (-xskmap), removing it on exit, so it runs behind the same XDP program as
// the other AF_XDP peers. With -own-prog it runs as the library's users run
// it: the library's own program (xdp.NewProgram), attached to the interface,
// with the socket registered in it.
//
// Usage: asavie -iface IF (-xskmap PATH | -own-prog) [-queue Q] [-duration 5s] [-json] [-busy]
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/asavie/xdp"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/xnic/xnic/bench/peers/internal/peer"
)

// pollTimeoutMs bounds Poll so the loop notices the end of the window when
// traffic stops; under load Poll returns at once, as with Poll(-1).
const pollTimeoutMs = 20

// bindRetry is how long newSocket keeps retrying a busy queue.
const bindRetry = 5 * time.Second

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "asavie: %v\n", err)
		os.Exit(1)
	}
}

// newSocket calls xdp.NewSocket, retrying while bind reports EBUSY: a socket
// that just left this queue (the previous peer) frees it asynchronously. The
// library formats its errors with %v, so EBUSY is matched by its text.
func newSocket(ifindex, queue int, opts *xdp.SocketOptions) (*xdp.Socket, error) {
	giveUp := time.Now().Add(bindRetry)
	for {
		xsk, err := xdp.NewSocket(ifindex, queue, opts)
		if err == nil || !strings.Contains(err.Error(), unix.EBUSY.Error()) || time.Now().After(giveUp) {
			return xsk, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func run() error {
	var (
		f    peer.Flags
		opts = xdp.SocketOptions{
			NumFrames:              4096,
			FrameSize:              2048,
			FillRingNumDescs:       2048,
			CompletionRingNumDescs: 2048,
			RxRingNumDescs:         2048,
			TxRingNumDescs:         0,
		}
		busy    bool
		ownProg bool
	)
	fs := flag.NewFlagSet("asavie", flag.ContinueOnError)
	f.Register(fs, true)
	fs.IntVar(&opts.NumFrames, "frames", opts.NumFrames, "UMEM frames")
	fs.IntVar(&opts.FrameSize, "frame-size", opts.FrameSize, "UMEM frame size")
	fs.IntVar(&opts.RxRingNumDescs, "rx-size", opts.RxRingNumDescs, "rx ring entries")
	fs.IntVar(&opts.FillRingNumDescs, "fill-size", opts.FillRingNumDescs, "fill ring entries")
	fs.BoolVar(&busy, "busy", false, "spin on NumReceived instead of Poll (not the documented pattern)")
	fs.BoolVar(&ownProg, "own-prog", false, "load and attach the library's own XDP program instead of using -xskmap")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return fmt.Errorf("parse flags: %w", err)
	}
	if ownProg && f.XSKMap != "" {
		return fmt.Errorf("parse flags: -own-prog and -xskmap exclude each other")
	}
	if err := f.Validate(!ownProg); err != nil {
		return err
	}
	ifc, err := net.InterfaceByName(f.Iface)
	if err != nil {
		return fmt.Errorf("look up interface %s: %w", f.Iface, err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		fmt.Fprintf(os.Stderr, "asavie: warning: remove memlock limit: %v (continuing)\n", err)
	}

	xsk, err := newSocket(ifc.Index, f.Queue, &opts)
	if err != nil {
		return fmt.Errorf("create xsk on %s queue %d: %w", f.Iface, f.Queue, err)
	}
	defer xsk.Close()

	// Give the kernel frames before XDP can redirect here; the loop below
	// tops the fill ring up at the start of every round, as documented.
	xsk.Fill(xsk.GetDescs(xsk.NumFreeFillSlots()))
	var entry interface{ Remove() error }
	if ownProg {
		if entry, err = attachOwnProgram(ifc.Index, f.Queue, xsk.FD()); err != nil {
			return err
		}
	} else if entry, err = peer.InsertXSK(f.XSKMap, f.Queue, xsk.FD()); err != nil {
		return err
	}

	w := peer.Start(f.Duration)
	var packets uint64
	for !w.Stopped() {
		xsk.Fill(xsk.GetDescs(xsk.NumFreeFillSlots()))
		var numRx int
		if busy {
			numRx = xsk.NumReceived()
		} else {
			numRx, _, err = xsk.Poll(pollTimeoutMs)
			if err != nil {
				w.Close()
				entry.Remove()
				return fmt.Errorf("poll xsk: %w", err)
			}
		}
		rxDescs := xsk.Receive(numRx)
		packets += uint64(len(rxDescs))
	}
	elapsed := w.Close()

	if err := entry.Remove(); err != nil {
		return err
	}
	st, err := xsk.Stats()
	if err != nil {
		return fmt.Errorf("read xsk statistics: %w", err)
	}
	r := peer.Result{
		Name:    "asavie",
		Iface:   f.Iface,
		Queue:   f.Queue,
		Packets: packets,
		Elapsed: elapsed,
		Info: map[string]any{
			"frame_size": opts.FrameSize,
			"frames":     opts.NumFrames,
			"busy":       busy,
		},
		Stats: map[string]uint64{
			"rx_dropped":               st.KernelStats.Rx_dropped,
			"rx_invalid_descs":         st.KernelStats.Rx_invalid_descs,
			"tx_invalid_descs":         st.KernelStats.Tx_invalid_descs,
			"rx_ring_full":             st.KernelStats.Rx_ring_full,
			"rx_fill_ring_empty_descs": st.KernelStats.Rx_fill_ring_empty_descs,
			"tx_ring_empty_descs":      st.KernelStats.Tx_ring_empty_descs,
		},
	}
	return r.Write(os.Stdout, f.JSON)
}

// ownProgram is the library's XDP program on an interface with our socket
// registered; Remove undoes all of it.
type ownProgram struct {
	prog    *xdp.Program
	ifindex int
}

// attachOwnProgram loads the library's program, attaches it to ifindex and
// registers fd for queue, as the library's examples do.
func attachOwnProgram(ifindex, queue, fd int) (*ownProgram, error) {
	prog, err := xdp.NewProgram(queue + 1)
	if err != nil {
		return nil, fmt.Errorf("load the library's xdp program: %w", err)
	}
	if err := prog.Attach(ifindex); err != nil {
		prog.Close()
		return nil, fmt.Errorf("attach the library's xdp program: %w", err)
	}
	if err := prog.Register(queue, fd); err != nil {
		prog.Detach(ifindex)
		prog.Close()
		return nil, fmt.Errorf("register xsk in the library's program: %w", err)
	}
	return &ownProgram{prog: prog, ifindex: ifindex}, nil
}

// Remove detaches and frees the program. It does not call the library's
// Unregister, which deletes from an array map and so always fails with
// EINVAL; closing the program frees its maps with the socket's entry.
func (o *ownProgram) Remove() error {
	return errors.Join(o.prog.Detach(o.ifindex), o.prog.Close())
}
