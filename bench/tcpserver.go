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

// tcpClasses are the xnic-classes contender's traffic classes: the
// README's three on one guest, the guest's HTTP in its default class 0,
// so every frame it sends goes through its class scheduler.
const tcpClasses = `classes:
  - {name: interactive, id: 1, priority: 0, match: {dscp: [46]}}
  - {name: storage, id: 2, priority: 1, weight: 3, match: {ports: ["4420", "3260"]}}
  - {name: bulk, id: 3, priority: 1, weight: 1, ecn: true, red: {min: 256, max: 512, max_p: 0.1}}
`

func (b *tcpBencher) measureServer(ctx context.Context, name string, res *TCPResult) error {
	var spec receiverSpec
	target := guestTarget(b.opts.Port)
	switch name {
	case TCPXnicGROTSO, TCPXnicOff, TCPXnicClasses:
		on := name != TCPXnicOff
		classes := ""
		if name == TCPXnicClasses {
			classes = tcpClasses
		}
		var err error
		spec, err = b.srv.xnicServe(b.opts.Xnic, name, []string{fmt.Sprintf("gro: %t", on), fmt.Sprintf("tso: %t", on)},
			classes, []guestService{{kind: services.HTTP, port: b.opts.Port}})
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
