package config

import "runtime"

// Where a run's GOMAXPROCS comes from (GoMaxProcs).
const (
	ProcsAuto   = "auto: one per worker"
	ProcsConfig = "engine.gomaxprocs"
	ProcsEnv    = "the GOMAXPROCS environment variable"
)

// GoMaxProcs decides the GOMAXPROCS of an engine with workers workers, as
// xnic run and xnic serve apply it: engine.gomaxprocs when the config sets
// it (cfg > 0, Resolved.GoMaxProcs), else the environment's GOMAXPROCS
// when set (env, which the runtime has applied already), else one P per
// worker. It returns the number and where it came from; it sets nothing.
//
// One P per worker is the default because a worker runs its guests'
// goroutines itself: a delivery makes a guest's stack or application
// runnable, and the worker's next yield runs it on the worker's own P
// (engine's Worker.yield). A spare P only makes the runtime wake another
// thread for it, a thread wake-up per request that competes for the CPUs
// with the applications the guests talk to. On the 2-vCPU VM, xnic bench
// latency's TCP p99 went from 202 to 154 us (medians of four alternating
// runs) and xnic bench tcp's upload from 0.86-0.99x to 1.29-1.37x the
// kernel's (docs/benchmarks.md, "2026-12-06 (late night)"). A guest whose
// application needs more CPUs than the engine has workers sets
// engine.gomaxprocs.
func GoMaxProcs(cfg, workers int, env string) (int, string) {
	switch {
	case cfg > 0:
		return cfg, ProcsConfig
	case env != "":
		return runtime.GOMAXPROCS(0), ProcsEnv
	default:
		return max(workers, 1), ProcsAuto
	}
}
