package main

import (
	"log/slog"
	"os"
	"runtime"

	"github.com/xnic/xnic/engine/config"
)

// applyGoMaxProcs sets the process's GOMAXPROCS for an engine with
// workers workers, as config.GoMaxProcs decides, and logs it.
func applyGoMaxProcs(log *slog.Logger, cfg, workers int) {
	n, src := config.GoMaxProcs(cfg, workers, os.Getenv("GOMAXPROCS"))
	if src != config.ProcsEnv {
		runtime.GOMAXPROCS(n)
	}
	if log != nil {
		log.Info("gomaxprocs", "procs", n, "workers", workers, "from", src)
	}
}
