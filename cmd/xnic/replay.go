package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/xnic/xnic/flows/replay"
	"github.com/xnic/xnic/internal/cli"
)

// replayFlagStages says which stages each stage-specific flag of replay
// applies to.
var replayFlagStages = map[string][]replay.Stage{
	"batch":         {replay.StageGRO},
	"flush-timeout": {replay.StageGRO},
	"coalesce-acks": {replay.StageGRO},
	"no-verify":     {replay.StageGRO, replay.StageGSO},
	"csum-partial":  {replay.StageGRO, replay.StageGSO},
	"mss":           {replay.StageGSO},
	"mtu":           {replay.StageGSO},
	"udp-gso":       {replay.StageGSO},
	"fixed-id":      {replay.StageGSO},
	"fix":           {replay.StageCsum},
}

func runReplay(ctx context.Context, args []string) error {
	fs := cli.NewFlags("replay", "--in X.pcap --out Y.pcap --stage gro|gso|csum [flags]")
	in := fs.String("in", "", "capture to read: pcap or pcapng (gzip too), Ethernet or Linux SLL (required)")
	out := fs.String("out", "", "pcap file to write, Ethernet; replaced only when the run succeeds (required)")
	stageName := fs.String("stage", "", "gro: merge TCP segments; gso: split large TCP segments; csum: verify and complete checksums (required)")
	batch := fs.Int("batch", replay.DefaultBatchSize, "gro: frames per receive batch, flushed at its end")
	flushTimeout := fs.Duration("flush-timeout", 0, "gro: flush by gro_flush_timeout on the capture's timestamps instead of per batch")
	coalesceAcks := fs.Bool("coalesce-acks", false, "gro: fold runs of a flow's pure ACKs into the last one, as the engine does for guests")
	noVerify := fs.Bool("no-verify", false, "gro, gso: trust the input checksums instead of verifying them")
	csumPartial := fs.Bool("csum-partial", false, "gro, gso: write pseudo-header-only TCP/UDP checksums (CHECKSUM_PARTIAL)")
	mss := fs.Int("mss", 0, "gso: payload bytes per segment (gso_size for UDP); 0: --mtu minus the IP and TCP/UDP headers of each frame")
	mtu := fs.Int("mtu", replay.DefaultMTU, "gso: the MTU --mss 0 derives the MSS from")
	udpGSO := fs.Bool("udp-gso", false, "gso: split UDP datagrams longer than the MSS too, like UDP_SEGMENT")
	fixedID := fs.Bool("fixed-id", false, "gso: keep the IPv4 ID of the large frame in every segment")
	fix := fs.Bool("fix", false, "csum: rewrite bad checksums too (default: count them, keep them)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object instead of text")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *in == "" {
		return cli.FlagError("in", "required")
	}
	if *out == "" {
		return cli.FlagError("out", "required")
	}
	if *stageName == "" {
		return cli.FlagError("stage", "required: gro, gso or csum")
	}
	stage, err := replay.ParseStage(*stageName)
	if err != nil {
		return cli.FlagError("stage", "want gro, gso or csum, got %q", *stageName)
	}
	var misplaced error
	fs.Visit(func(f *flag.Flag) {
		stages, ok := replayFlagStages[f.Name]
		if !ok || misplaced != nil {
			return
		}
		for _, s := range stages {
			if s == stage {
				return
			}
		}
		misplaced = cli.FlagError(f.Name, "does not apply to --stage %s (only to %v)", stage, stages)
	})
	if misplaced != nil {
		return misplaced
	}

	o := replay.DefaultOptions()
	o.Stage = stage
	o.Verify = !*noVerify
	o.CsumPartial = *csumPartial
	if *batch < 1 || *batch > replay.MaxBatchSize {
		return cli.FlagError("batch", "must be 1..%d, got %d", replay.MaxBatchSize, *batch)
	}
	o.BatchSize = *batch
	if *flushTimeout < 0 {
		return cli.FlagError("flush-timeout", "must be >= 0, got %s", *flushTimeout)
	}
	o.FlushTimeout = *flushTimeout
	o.CoalesceAcks = *coalesceAcks
	if *mss < 0 || *mss > replay.MaxMSS {
		return cli.FlagError("mss", "must be 0..%d, got %d", replay.MaxMSS, *mss)
	}
	o.MSS = *mss
	if *mtu < replay.MinMTU || *mtu > replay.MaxMTU {
		return cli.FlagError("mtu", "must be %d..%d, got %d", replay.MinMTU, replay.MaxMTU, *mtu)
	}
	o.MTU = *mtu
	o.UDPGSO, o.FixedID, o.Fix = *udpGSO, *fixedID, *fix

	rep, err := replay.RunFile(ctx, *in, *out, o)
	if err != nil {
		return err
	}
	if rep.TruncatedTail {
		fmt.Fprintf(os.Stderr, "xnic replay: warning: %s ends inside its last record, which was dropped\n", *in)
	}
	if *asJSON {
		b, err := rep.JSON()
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	}
	return rep.WriteText(os.Stdout)
}
