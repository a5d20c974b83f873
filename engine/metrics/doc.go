// Package metrics exports the engine's counters to Prometheus.
//
// A Collector reads the engine's snapshot APIs when it is scraped and
// turns them into constant metrics; it keeps no state of its own between
// scrapes and adds nothing to the data path. What a scrape reads:
//
//   - Engine.Stats: the workers' counters, which each worker publishes once
//     per pass through a seqlock (no lock is taken), and the kernel's XSK
//     statistics (one getsockopt per socket);
//   - each port's steering counters, per rx queue, from its per-CPU BPF map;
//   - Engine.GuestStats: atomics and, per guest, the migration record;
//   - Engine.ClassStats: the control plane's view of the class schedulers,
//     which runs one short function on each worker between two passes
//     (Worker.Do), as `xnic stats --classes` does;
//   - the guests' netstacks, when the caller hands them over (xnic serve).
//
// Serve runs an HTTP server with /metrics on its own registry: these
// metrics, the Go runtime's and the process's.
package metrics
