package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/xnic/xnic/engine/lab"
)

// prepare is the start every lab benchmark shares: root, the binaries it
// runs (check), a log (io.Discard for nil), and the lab slot when slotPath is
// set, held until release. what prefixes errors.
func prepare(ctx context.Context, what string, check func() error, log io.Writer, slotPath string) (_ io.Writer, release func(), err error) {
	if os.Geteuid() != 0 {
		return nil, nil, fmt.Errorf("%s: %w: it builds a netns and a veth pair and loads XDP programs", what, ErrNotRoot)
	}
	if err := check(); err != nil {
		return nil, nil, err
	}
	if log == nil {
		log = io.Discard
	}
	release = func() {}
	if slotPath != "" {
		slot, err := lab.AcquireSlot(ctx, slotPath, func() {
			fmt.Fprintf(log, "waiting for the lab slot %s: another lab is up\n", slotPath)
		})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		release = func() { slot.Close() }
	}
	return log, release, nil
}

// runRounds measures every contender once per round, in order, pausing
// between measurements, and hands each result to record (with its round,
// from 1). what prefixes errors ("bench", "bench tcp"). It stops at once when
// ctx is done, and fails with ErrFailed when any measurement failed.
func runRounds[R interface{ OK() bool }](ctx context.Context, what string, rounds int, names []string, pause time.Duration,
	measure func(ctx context.Context, name string) R, record func(round int, r R)) error {
	failed, total := 0, 0
	for i := 1; i <= rounds; i++ {
		for _, name := range names {
			res := measure(ctx, name)
			if ctx.Err() != nil {
				return fmt.Errorf("%s: round %d, %s: %w", what, i, name, ctx.Err())
			}
			record(i, res)
			total++
			if !res.OK() {
				failed++
			}
			if err := sleep(ctx, pause, nil); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%s: %d of %d measurements: %w", what, failed, total, ErrFailed)
	}
	return nil
}
