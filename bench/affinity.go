package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pinProcess sets the CPU affinity of every thread of this process to cpu
// and returns a function that gives them all the mask the calling thread
// had before. Threads created later inherit the mask of the thread that
// creates them, which is then pinned too. cpu < 0 changes nothing.
func pinProcess(cpu int) (restore func() error, err error) {
	if cpu < 0 {
		return func() error { return nil }, nil
	}
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("get cpu affinity: %w", err)
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := setAllThreads(&set); err != nil {
		setAllThreads(&old)
		return nil, fmt.Errorf("pin process to cpu %d: %w", cpu, err)
	}
	return func() error {
		if err := setAllThreads(&old); err != nil {
			return fmt.Errorf("restore cpu affinity: %w", err)
		}
		return nil
	}, nil
}

// setAllThreads applies set to every thread in /proc/self/task, twice, so
// that a thread created during the first pass is caught by the second.
func setAllThreads(set *unix.CPUSet) error {
	for range 2 {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("list threads: %w", err)
		}
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			err = unix.SchedSetaffinity(tid, set)
			if err != nil && !errors.Is(err, unix.ESRCH) { // ESRCH: the thread exited
				return fmt.Errorf("set affinity of thread %d: %w", tid, err)
			}
		}
	}
	return nil
}

// startPinned starts cmd with every thread of the new process on cpu: it
// forks from a locked thread whose own affinity is cpu for the moment, and
// a child inherits the affinity of the thread that forks it. cpu < 0 is a
// plain cmd.Start.
func startPinned(cmd *exec.Cmd, cpu int) error {
	if cpu < 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get cpu affinity: %w", err)
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("pin to cpu %d for fork: %w", cpu, err)
	}
	startErr := cmd.Start()
	if err := unix.SchedSetaffinity(0, &old); err != nil {
		// Leave the thread locked: the runtime ends it with this goroutine
		// instead of reusing a thread with the wrong affinity.
		return errors.Join(startErr, fmt.Errorf("restore cpu affinity after fork: %w", err))
	}
	runtime.UnlockOSThread()
	return startErr
}

// processCPUs returns the union of the CPUs the threads of process pid
// may run on, as a list like "1" or "0-1"; "" when unknown.
func processCPUs(pid int) string {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	cpus := map[int]bool{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				for _, c := range parseCPUList(strings.TrimSpace(v)) {
					cpus[c] = true
				}
			}
		}
	}
	var list []int
	for c := range cpus {
		list = append(list, c)
	}
	sort.Ints(list)
	return formatCPUList(list)
}

// parseCPUList parses the kernel's list format: "0-2,5".
func parseCPUList(s string) []int {
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out
}

// formatCPUList writes sorted CPUs in the kernel's list format.
func formatCPUList(cpus []int) string {
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(cpus[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", cpus[i], cpus[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}
