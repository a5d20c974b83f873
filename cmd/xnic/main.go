// Command xnic runs and inspects the xnic software offload NIC.
//
//	xnic lab up|down|status   build, remove and show a veth lab
//	xnic gen                  generate traffic (live frames or AF_XDP TX)
//	xnic rx                   receive and recycle on one queue, at full speed
//	xnic demo                 lab + engine + generator with live figures
//	xnic bench                the receive benchmark against its peers
//	xnic bench conns          connection processing: lookahead and the context cache
//	xnic bench tcp            guests' TCP against gVisor's AF_XDP endpoint and the kernel
//	xnic bench latency        round-trip times of small messages against the same peers
//	xnic bench offload        GRO and GSO on one core against the raw receive rate
//	xnic bench migrate        a guest's stall around a migration and a link failover
//	xnic bench soak           xnic serve's RSS, threads and fds under a long mix of load
//	xnic run --config F       the engine with guests from a YAML file
//	xnic maps                 list the pinned maps of a running engine
//	xnic stats                its steering counters, human or --json
//	xnic serve --config F     guests with their own TCP/IP stacks and services
//	xnic migrate --guest G --to IFACE   move a guest to another of its ports
//	xnic stats --guests       each guest's ports and migrations
//	xnic replay --stage S     a capture through gro, gso or csum offload, into a pcap
//	xnic config check FILE    check a config without loading anything (no root needed)
//
// Run `xnic COMMAND -h` for a command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/xnic/xnic/bench/benchcmd"
	"github.com/xnic/xnic/internal/cli"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"lab", "build, remove or show a veth lab (up|down|status)", runLab},
		{"gen", "generate UDP traffic into a lab port", runGen},
		{"rx", "receive and recycle frames on one queue and report pps", runRx},
		{"demo", "bring up a lab, run the engine under traffic with live figures, clean up", runDemo},
		{"bench", "receive benchmark: XDP_DROP, xnic rx and its peers in one run; bench conns|tcp|latency|steer-prog|offload|migrate|soak", benchcmd.Run},
		{"run", "run the engine with the ports, classes and guests of a YAML config", runRun},
		{"maps", "list the maps a running engine pinned (for bpftool)", runMaps},
		{"stats", "print a running engine's steering counters from its pinned maps", runStats},
		{"migrate", "move a running engine's guest to another of its ports (make before break)", runMigrate},
		{"serve", "run guests with their own TCP/IP stacks and built-in services (http, echo, discard)", runServe},
		{"replay", "run a pcap through GRO, GSO or checksum offload into a pcap", runReplay},
		{"config", "check a YAML config without loading anything: config check FILE... [--json]", runConfig},
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: xnic COMMAND [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'xnic COMMAND -h' for the flags of a command.\n")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	name := os.Args[1]
	for _, c := range commands {
		if c.name != name {
			continue
		}
		err := c.run(ctx, os.Args[2:])
		switch {
		case err == nil:
		case errors.Is(err, flag.ErrHelp):
		case errors.Is(err, cli.ErrUsage):
			stop()
			os.Exit(2)
		case errors.Is(err, cli.ErrReported):
			stop()
			os.Exit(1)
		default:
			fmt.Fprintf(os.Stderr, "xnic %s: %s\n", name, err)
			stop()
			os.Exit(1)
		}
		return
	}
	fmt.Fprintf(os.Stderr, "xnic: unknown command %q\n\n", name)
	usage()
	os.Exit(2)
}
