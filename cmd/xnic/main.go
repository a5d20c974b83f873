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
//	xnic status [--json]      XDP programs, port owners, pins and control socket
//	xnic clean [--iface IF]   remove what a dead engine left
//	xnic version              module version, VCS revision, Go version
//
// Run `xnic help COMMAND` or `xnic COMMAND -h` for a command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/xnic/xnic/bench/benchcmd"
	"github.com/xnic/xnic/engine/metrics"
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
		{"status", "XDP programs, the engines owning the ports (alive or not), pins and control socket", runStatus},
		{"clean", "remove what a dead engine left: pins, its XDP program, a stale control socket", runClean},
		{"config", "check a YAML config without loading anything: config check FILE... [--json]", runConfig},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: xnic COMMAND [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-8s %s\n", "version", "print the module version, VCS revision and Go version (also --version)")
	fmt.Fprintf(w, "  %-8s %s\n", "help", "help CMD: the flags of a command")
	fmt.Fprintf(w, "\nRun 'xnic help COMMAND' or 'xnic COMMAND -h' for the flags of a command.\n")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := xnicMain(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// xnicMain runs the command args name and returns the exit status: 0 on
// success and for -h, 2 on a usage error, 1 on any other failure. Every
// error it prints names the command: "xnic run: --config: required".
func xnicMain(ctx context.Context, args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		usage(os.Stderr)
		return 0
	case "-version", "--version":
		name, args = "version", []string{"version"}
	case "help":
		if len(args) == 1 {
			usage(os.Stderr)
			return 0
		}
		if len(args) > 2 {
			fmt.Fprintf(os.Stderr, "xnic help: unexpected argument %q: give one command\n", args[2])
			return 2
		}
		// `xnic help CMD` is `xnic CMD -h`.
		name, args = args[1], []string{args[1], "-h"}
	}
	run := func(ctx context.Context, args []string) error { return runVersion(args, os.Stdout) }
	if name != "version" {
		run = nil
		for _, c := range commands {
			if c.name == name {
				run = c.run
			}
		}
	}
	if run == nil {
		fmt.Fprintf(os.Stderr, "xnic: unknown command %q\n\n", name)
		usage(os.Stderr)
		return 2
	}
	err := run(ctx, args[1:])
	var ue *cli.UsageError
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue):
		cmd := ue.Cmd
		if cmd == "" {
			cmd = "xnic " + name
		}
		fmt.Fprintf(os.Stderr, "%s: %s\n", cmd, err)
		return 2
	case errors.Is(err, cli.ErrUsage):
		return 2
	case errors.Is(err, cli.ErrReported):
		return 1
	default:
		fmt.Fprintf(os.Stderr, "xnic %s: %s\n", name, err)
		return 1
	}
	return 0
}

// versionJSON is `xnic version --json`.
type versionJSON struct {
	Version  string `json:"version"`
	Revision string `json:"revision"`
	Go       string `json:"go"`
}

// runVersion is `xnic version`: the build information of the binary.
func runVersion(args []string, out io.Writer) error {
	fs := cli.NewFlags("version", "[--json]")
	asJSON := fs.Bool("json", false, "one JSON object: version, revision, go")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	b := metrics.ReadBuildInfo()
	if *asJSON {
		return writeJSON(out, versionJSON{b.Version, b.Revision, b.GoVersion})
	}
	fmt.Fprintf(out, "xnic version %s\nrevision %s\ngo %s\n", b.Version, b.Revision, b.GoVersion)
	return nil
}
