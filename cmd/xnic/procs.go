package main

import (
	"log/slog"
	"os"
	"runtime"
)

// Where a run's GOMAXPROCS comes from.
const (
	procsAuto   = "auto: one per worker"
	procsConfig = "engine.gomaxprocs"
	procsEnv    = "the GOMAXPROCS environment variable"
)

// goMaxProcs decides the GOMAXPROCS of an engine with workers workers:
// engine.gomaxprocs when the config sets it (cfg > 0), else the
// environment's GOMAXPROCS when set (the runtime has applied it already),
// else one P per worker.
//
// One P per worker is the default because a worker runs its guests'
// goroutines itself: a delivery makes a guest's stack or application
// runnable, and the worker's next yield runs it on the worker's own P
// (Worker.yield). A spare P only makes the runtime wake another thread for
// it, a thread wake-up per request that competes for the CPUs with the
// applications the guests talk to. On the 2-vCPU VM, xnic bench latency's
// TCP p99 went from 202 to 154 us (medians of four alternating runs) and
// xnic bench tcp's upload from 0.86-0.99x to 1.29-1.37x the kernel's
// (docs/benchmarks.md, "2026-12-06 (late night)").
// A guest whose application needs more CPUs than the engine has workers
// sets engine.gomaxprocs.
func goMaxProcs(cfg, workers int, env string) (int, string) {
	switch {
	case cfg > 0:
		return cfg, procsConfig
	case env != "":
		return runtime.GOMAXPROCS(0), procsEnv
	default:
		return max(workers, 1), procsAuto
	}
}

// applyGoMaxProcs sets the process's GOMAXPROCS for an engine with
// workers workers and logs it.
func applyGoMaxProcs(log *slog.Logger, cfg, workers int) {
	n, src := goMaxProcs(cfg, workers, os.Getenv("GOMAXPROCS"))
	if src != procsEnv {
		runtime.GOMAXPROCS(n)
	}
	if log != nil {
		log.Info("gomaxprocs", "procs", n, "workers", workers, "from", src)
	}
}
