package bench

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The kernel's HTB as the QoS benchmark's reference, set up with tc(8) on
// the lab's host veth: a parent class 1:1 of the whole rate, and under it
// class 1:(10+i) for bulk class i, with rate the weight's share of the
// whole and ceil the whole, all at prio 0, so that each class is
// guaranteed its share and may borrow what another leaves; a u32 filter
// on the IPv4 source port puts each server's frames into its class.
// Unclassified frames (ARP) go out unshaped (default 0).

// htbQuantum is the bytes a class may send per turn when it borrows, per
// unit of weight: an MTU frame with its Ethernet header.
const htbQuantum = 1514

// htbCommands are the tc commands that set HTB up on dev for rate (bits
// per second) shared by weights, the bulk classes' ports in order.
func htbCommands(dev string, rate uint64, weights []int) [][]string {
	total := 0
	for _, w := range weights {
		total += w
	}
	bit := func(v uint64) string { return strconv.FormatUint(v, 10) + "bit" }
	cmds := [][]string{
		{"qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "0"},
		{"class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", bit(rate), "ceil", bit(rate)},
	}
	for i, w := range weights {
		_, port := bulkClass(i)
		id := fmt.Sprintf("1:%x", 0x10+i)
		share := rate * uint64(w) / uint64(total)
		cmds = append(cmds,
			[]string{"class", "add", "dev", dev, "parent", "1:1", "classid", id, "htb",
				"rate", bit(share), "ceil", bit(rate), "prio", "0", "quantum", strconv.Itoa(htbQuantum * w)},
			[]string{"filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
				"match", "ip", "sport", strconv.Itoa(port), "0xffff", "flowid", id})
	}
	return cmds
}

// addHTB sets HTB up on dev; on failure it removes what it added.
func addHTB(ctx context.Context, dev string, rate uint64, weights []int) error {
	for _, args := range htbCommands(dev, rate, weights) {
		if err := runTC(ctx, args); err != nil {
			return errors.Join(fmt.Errorf("set up htb: %w", err), delHTB(dev))
		}
	}
	return nil
}

// delHTB removes dev's root qdisc, HTB with its classes and filters. It
// runs on its own context: cleanup must happen even after a cancel.
func delHTB(dev string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := runTC(ctx, []string{"qdisc", "del", "dev", dev, "root"}); err != nil {
		return fmt.Errorf("remove htb: %w", err)
	}
	return nil
}

// runTC runs tc with args.
func runTC(ctx context.Context, args []string) error {
	out, err := exec.CommandContext(ctx, "tc", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tc %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
