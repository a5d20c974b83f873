package bench

import (
	"context"
	"fmt"
	"time"
)

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
