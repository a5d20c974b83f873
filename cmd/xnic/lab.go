package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/internal/cli"
)

func runLab(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "up" && args[0] != "down" && args[0] != "status") {
		fmt.Fprintln(os.Stderr, "usage: xnic lab up|down|status [flags]")
		return cli.ErrUsage
	}
	verb := args[0]
	fs := cli.NewFlags("lab "+verb, "[--name NAME] ...")
	name := fs.String("name", "xnic", "lab name: netns NAME-peer, host links NAME<i>, peer links NAMEp<i>")
	var ports, queues, mtu *int
	var hostOff, noIPv6 *bool
	if verb == "up" {
		d := lab.DefaultOptions()
		ports = fs.Int("ports", d.Ports, "number of veth pairs")
		queues = fs.Int("queues", d.Queues, "rx/tx queues per veth")
		mtu = fs.Int("mtu", d.MTU, "MTU of both ends")
		hostOff = fs.Bool("host-offloads-off", false, "also turn checksum/TSO/GSO/GRO offloads off on the host ends")
		noIPv6 = fs.Bool("no-ipv6", false, "IPv4 only")
	}
	asJSON := fs.Bool("json", false, "status as JSON")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	switch verb {
	case "up":
		o := lab.DefaultOptions()
		o.Name, o.Ports, o.Queues, o.MTU = *name, *ports, *queues, *mtu
		o.HostOffloadsOff = *hostOff
		o.IPv6 = !*noIPv6
		l, err := lab.Up(o)
		if err != nil {
			return err
		}
		for _, p := range l.Ports {
			fmt.Printf("port %d: %s %s/%d  <->  %s %s/%d (netns %s)\n", p.Index,
				p.Host, p.HostIPv4, 24, p.Peer, p.PeerIPv4, 24, l.Netns)
		}
		fmt.Printf("lab %s is up; remove it with: xnic lab down --name %s\n", l.Name, l.Name)
		return nil
	case "down":
		l, err := lab.Open(*name)
		if errors.Is(err, lab.ErrNotFound) {
			fmt.Printf("lab %s: nothing to remove\n", *name)
			return nil
		}
		if err != nil {
			return err
		}
		if err := l.Down(); err != nil {
			return err
		}
		fmt.Printf("lab %s removed\n", *name)
		return nil
	default:
		l, err := lab.Open(*name)
		if err != nil {
			return err
		}
		st, err := l.Status()
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		fmt.Print(st.String())
		return nil
	}
}
