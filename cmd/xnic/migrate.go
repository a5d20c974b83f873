package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/internal/cli"
)

// runMigrate is `xnic migrate`: move a guest of a running engine to
// another of its ports, over the engine's control socket.
func runMigrate(ctx context.Context, args []string) error {
	fs := cli.NewFlags("migrate", "--guest NAME --to IFACE [--ctl SOCKET] [--json]")
	guest := fs.String("guest", "", "the guest to move, by name")
	to := fs.String("to", "", "the port to move it to: one of the ports its config lists")
	ctl := fs.String("ctl", engine.DefaultControlPath, "the engine's control socket")
	asJSON := fs.Bool("json", false, "print the migration as JSON")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *guest == "" {
		return cli.FlagError("guest", "required: the name of the guest to move")
	}
	if *to == "" {
		return cli.FlagError("to", "required: the port to move the guest to")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rep, err := engine.QueryControl(ctx, *ctl, engine.ControlRequest{Op: "migrate", Guest: *guest, To: *to})
	if err != nil {
		return err
	}
	m := rep.Migration
	if m == nil {
		return fmt.Errorf("migrate: the engine gave no answer")
	}
	if *asJSON {
		return writeJSON(os.Stdout, m)
	}
	fmt.Printf("guest %s moved from %s to %s in %s (%d announcements sent from %s)\n",
		m.Guest, m.From, m.To, m.Took.Round(time.Microsecond), m.Announced, m.To)
	return nil
}

// printGuests is `xnic stats --guests`: each guest's ports, migrations and
// isolation counters (frames to another MAC not delivered; sends refused
// by spoof checking, by reason).
func printGuests(ctx context.Context, path string, asJSON bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rep, err := engine.QueryControl(ctx, path, engine.ControlRequest{Op: "guests"})
	if err != nil {
		return err
	}
	gs := rep.Guests
	if gs == nil {
		gs = []engine.GuestStats{}
	}
	if asJSON {
		return writeJSON(os.Stdout, gs)
	}
	fmt.Printf("%-12s %4s %-10s %-16s %-14s %12s %9s %9s %6s  %s\n", "guest", "id", "port", "standby", "failover", "rx packets",
		"wrong mac", "spoofed", "moves", "last move")
	for _, g := range gs {
		fo := "off"
		switch {
		case g.Failover.LinkDown && g.Failover.Failback:
			fo = "down+back"
		case g.Failover.LinkDown:
			fo = "link-down"
		}
		last := "-"
		if m := g.Migrations.Last; m != nil {
			gap := "gap not seen yet"
			if g.Migrations.GapSeen {
				gap = "traffic stopped " + g.Migrations.LastGap.Round(time.Microsecond).String()
			}
			last = fmt.Sprintf("%s -> %s (%s) at %s, took %s, %s", m.From, m.To, m.Reason,
				m.At.Format(time.TimeOnly), m.Took.Round(time.Microsecond), gap)
		}
		standby := strings.Join(g.Standby, ",")
		if standby == "" {
			standby = "-"
		}
		spoofed := fmt.Sprint(g.TxSpoofed.Total())
		if !g.SpoofCheck {
			spoofed = "unchecked"
		}
		fmt.Printf("%-12s %4d %-10s %-16s %-14s %12d %9d %9s %6d  %s\n", g.Name, g.ID, g.Port, standby, fo, g.RxPackets,
			g.RxWrongMAC, spoofed, g.Migrations.Count, last)
		if g.TxSpoofed.Total() > 0 {
			fmt.Printf("%-12s spoofed sends dropped: %s\n", "", g.TxSpoofed)
		}
	}
	return nil
}
