package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/internal/cli"
)

const labUsage = `usage: xnic lab up|down|status [flags]

  up       build a veth lab: NAME<i> here, NAMEp<i> in netns NAME-peer
  down     remove it
  status   show it

Run 'xnic lab VERB -h' for the flags of a verb.`

func runLab(ctx context.Context, args []string) error { return labCmd(ctx, args, os.Stdout) }

// labCmd runs `xnic lab VERB` and writes its report to out.
func labCmd(_ context.Context, args []string, out io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprintln(os.Stderr, labUsage)
		return flag.ErrHelp
	}
	if len(args) == 0 || (args[0] != "up" && args[0] != "down" && args[0] != "status") {
		fmt.Fprintln(os.Stderr, labUsage)
		return cli.ErrUsage
	}
	verb := args[0]
	fs := cli.NewFlags("lab "+verb, "[--name NAME] ...")
	name := fs.String("name", "xnic", "lab name: netns NAME-peer, host links NAME<i>, peer links NAMEp<i>, peer bridge NAMEbr")
	var ports, queues, mtu *int
	var hostOff, noIPv6, bridge *bool
	if verb == "up" {
		d := lab.DefaultOptions()
		ports = fs.Int("ports", d.Ports, "number of veth pairs")
		queues = fs.Int("queues", d.Queues, "rx/tx queues per veth")
		mtu = fs.Int("mtu", d.MTU, "MTU of both ends")
		hostOff = fs.Bool("host-offloads-off", false, "also turn checksum/TSO/GSO/GRO offloads off on the host ends")
		noIPv6 = fs.Bool("no-ipv6", false, "IPv4 only")
		bridge = fs.Bool("peer-bridge", false, "join the peer ends under one bridge NAMEbr holding the peer's 198.18.0.2/24 and 2001:2::2/64: "+
			"two NIC ports into one switch; only port 0's host end has addresses")
	}
	asJSON := fs.Bool("json", false, "one JSON object on stdout: the lab's status (up, status) or what was removed (down)")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	switch verb {
	case "up":
		o := lab.DefaultOptions()
		o.Name, o.Ports, o.Queues, o.MTU = *name, *ports, *queues, *mtu
		o.HostOffloadsOff = *hostOff
		o.IPv6 = !*noIPv6
		o.PeerBridge = *bridge
		l, err := lab.Up(o)
		if err != nil {
			return err
		}
		if *asJSON {
			// What was built, as lab status shows it.
			st, err := l.Status()
			if err != nil {
				return err
			}
			printLab(os.Stderr, l)
			return writeJSON(out, st)
		}
		printLab(out, l)
		fmt.Fprintf(out, "lab %s is up; remove it with: xnic lab down --name %s\n", l.Name, l.Name)
		return nil
	case "down":
		l, err := lab.Open(*name)
		if errors.Is(err, lab.ErrNotFound) {
			if *asJSON {
				return writeJSON(out, labDown{Name: *name, Removed: false})
			}
			fmt.Fprintf(out, "lab %s: nothing to remove\n", *name)
			return nil
		}
		if err != nil {
			// A lab Open cannot read (a port deleted below the last one)
			// still goes: Down needs only the names.
			fmt.Fprintf(os.Stderr, "xnic lab down: %v; removing what is there\n", err)
			l = &lab.Lab{Name: *name, Netns: lab.NetnsName(*name)}
		}
		if err := l.Down(); err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(out, labDown{Name: *name, Removed: true})
		}
		fmt.Fprintf(out, "lab %s removed\n", *name)
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
			return writeJSON(out, st)
		}
		fmt.Fprint(out, st.String())
		return nil
	}
}

// labDown is `xnic lab down --json`.
type labDown struct {
	Name    string `json:"name"`
	Removed bool   `json:"removed"` // false: there was no such lab
}

// printLab prints what Up built, one line per port (and the bridge first).
func printLab(out io.Writer, l *lab.Lab) {
	if b := l.Bridge; b != nil {
		fmt.Fprintf(out, "bridge %s: %s (netns %s)\n", b.Name,
			prefixes(b.IPv4, b.IPv6), l.Netns)
		for _, p := range l.Ports {
			host := prefixes(p.HostIPv4, p.HostIPv6)
			if host == "" {
				host = "(no address)"
			}
			fmt.Fprintf(out, "port %d: %s %s  <->  %s (bridge port of %s)\n", p.Index, p.Host, host, p.Peer, b.Name)
		}
		return
	}
	for _, p := range l.Ports {
		fmt.Fprintf(out, "port %d: %s %s/%d  <->  %s %s/%d (netns %s)\n", p.Index,
			p.Host, p.HostIPv4, lab.PrefixLenIPv4, p.Peer, p.PeerIPv4, lab.PrefixLenIPv4, l.Netns)
	}
}

// prefixes prints the valid ones of v4 and v6 with the lab's prefix lengths.
func prefixes(v4, v6 netip.Addr) string {
	s := ""
	if v4.IsValid() {
		s = netip.PrefixFrom(v4, lab.PrefixLenIPv4).String()
	}
	if v6.IsValid() {
		if s != "" {
			s += " "
		}
		s += netip.PrefixFrom(v6, lab.PrefixLenIPv6).String()
	}
	return s
}
