package bpf

import (
	"log/slog"
	"sync"

	"github.com/cilium/ebpf/rlimit"
)

var memlockOnce sync.Once

// removeMemlock lifts RLIMIT_MEMLOCK once per process for kernels that still
// charge BPF memory to it. Since 5.11 the kernel charges the memory cgroup
// instead and this is a no-op; when lifting fails (no CAP_SYS_RESOURCE) it
// only warns, since loading may still succeed.
func removeMemlock() {
	memlockOnce.Do(func() {
		if err := rlimit.RemoveMemlock(); err != nil {
			slog.Warn("bpf: remove memlock rlimit", "err", err)
		}
	})
}
