package bench

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Noise is how much else ran during a measurement. The generator and the
// receiver own a CPU each; anything else that ran took time from them.
type Noise struct {
	// Others is the share of all CPUs' busy time (user, system, irq and
	// softirq) that this process and its receivers did not account for:
	// builds, tests, kernel threads, 0..1, at the 10 ms resolution of
	// /proc/stat. Softirq work done in another task's context counts as
	// that task's.
	Others float64 `json:"others"`
	// Steal is the share of CPU time the hypervisor gave to other guests
	// (/proc/stat steal over all CPUs), 0..1.
	Steal float64 `json:"steal"`
}

// NoisyOthers is the share of CPU time of other tasks above which a
// measurement is flagged.
const NoisyOthers = 0.05

// clockTick is the unit of /proc/stat, USER_HZ, which is 100 on Linux.
const clockTick = 10 * time.Millisecond

// noiseSample is a reading of the counters Noise is computed from.
type noiseSample struct {
	at          time.Time
	busy        time.Duration // all CPUs: user + nice + system + irq + softirq
	steal, all  time.Duration
	ours        time.Duration // this process and its reaped children
	statUnknown bool
}

func sampleNoise() noiseSample {
	s := noiseSample{at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		s.statUnknown = true
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		s.statUnknown = true
		return s
	}
	for i := 1; i <= 8; i++ {
		n, _ := strconv.ParseUint(f[i], 10, 64)
		d := time.Duration(n) * clockTick
		s.all += d
		switch i {
		case 1, 2, 3, 6, 7:
			s.busy += d
		case 8:
			s.steal = d
		}
	}
	for _, who := range []int{unix.RUSAGE_SELF, unix.RUSAGE_CHILDREN} {
		var ru unix.Rusage
		if unix.Getrusage(who, &ru) == nil {
			s.ours += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return s
}

// noiseBetween computes Noise from a sample taken before the measurement
// and one taken after its receiver was reaped.
func noiseBetween(a, b noiseSample) Noise {
	var n Noise
	if a.statUnknown || b.statUnknown {
		return n
	}
	if wall := b.at.Sub(a.at) * time.Duration(runtime.NumCPU()); wall > 0 {
		others := (b.busy - a.busy) - (b.ours - a.ours)
		n.Others = min(max(float64(others)/float64(wall), 0), 1)
	}
	if t := b.all - a.all; t > 0 && b.steal >= a.steal {
		n.Steal = float64(b.steal-a.steal) / float64(t)
	}
	return n
}
