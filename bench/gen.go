package bench

import (
	"context"
	"time"

	"github.com/xnic/xnic/engine/gen"
)

// genRun is the generator running in the background for one measurement.
type genRun struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when gen.Run returned; res, err, took are then set
	failc  chan error    // gets err if gen.Run fails

	res  gen.Result
	err  error
	took time.Duration // from the call to gen.Run to its return
}

// startGen runs the generator with opts for at most limit, until stop.
func startGen(ctx context.Context, opts gen.Options, limit time.Duration) *genRun {
	gctx, cancel := context.WithCancel(ctx)
	g := &genRun{cancel: cancel, done: make(chan struct{}), failc: make(chan error, 1)}
	opts.Duration = limit
	go func() {
		defer close(g.done)
		start := time.Now()
		g.res, g.err = gen.Run(gctx, opts)
		g.took = time.Since(start)
		if g.err != nil {
			g.failc <- g.err
		}
	}()
	return g
}

// failed delivers the generator's error if it fails before stop.
func (g *genRun) failed() <-chan error { return g.failc }

// stop ends the run and returns what it sent.
func (g *genRun) stop() (Sent, error) {
	g.cancel()
	<-g.done
	s := Sent{Packets: g.res.Packets, Seconds: g.res.Duration.Seconds(), PPS: g.res.PPS}
	if lag := g.took - g.res.Duration; lag > 0 {
		s.StartLagSec = lag.Seconds()
	}
	return s, g.err
}

// sleep waits d, or less if ctx is done or fail delivers.
func sleep(ctx context.Context, d time.Duration, fail <-chan error) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case err := <-fail:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
