package bench

import (
	"context"
	"fmt"

	"github.com/xnic/xnic/engine/services"
)

// measure measures one contender once: it starts its server, runs the
// three metrics against it and stops it. Errors go into the result.
func (b *tcpBencher) measure(ctx context.Context, name string) TCPResult {
	res := TCPResult{Contender: name}
	if err := b.measureServer(ctx, name, &res); err != nil {
		res.Err = err.Error()
	}
	return res
}

func (b *tcpBencher) measureServer(ctx context.Context, name string, res *TCPResult) error {
	var spec receiverSpec
	target := guestTarget(b.opts.Port)
	switch name {
	case TCPXnicGROTSO, TCPXnicOff:
		on := name == TCPXnicGROTSO
		var err error
		spec, err = b.srv.xnicServe(b.opts.Xnic, name, []string{fmt.Sprintf("gro: %t", on), fmt.Sprintf("tso: %t", on)},
			[]guestService{{kind: services.HTTP, port: b.opts.Port}})
		if err != nil {
			return err
		}
	case TCPGvisorXDP:
		spec = b.srv.gvisorXDP(b.opts.GvisorXDP, b.opts.Port)
	case TCPKernel:
		target = b.srv.kernelTarget(b.opts.Port)
		spec = kernelServer(b.opts.Xnic, "bench", "tcp", "--serve-kernel", target.String())
	default:
		return fmt.Errorf("unknown contender %q", name)
	}
	c := &tcpClient{dial: b.srv.dial, base: "http://" + target.String(), dur: b.opts.Duration,
		conc: b.opts.Concurrency, hash: b.hash}
	run, err := b.srv.withServer(ctx, spec, b.opts.ServerCPU, name == TCPKernel, func(ctx context.Context, _ int, _ <-chan struct{}) {
		res.Upload = c.upload(ctx)
		res.Download = c.download(ctx)
		res.Requests = c.requests(ctx)
	})
	res.ServerCPUs, res.Noise, res.Server = run.cpus, run.noise, run.report
	return err
}
