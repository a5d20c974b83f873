package offloadbench

import (
	"errors"
	"fmt"
	"time"
)

// Limits of the options.
const (
	MaxRounds   = 1000
	MinDuration = time.Millisecond
	MaxDuration = 10 * time.Minute
	MaxBatch    = 256
	// MaxCPU is the highest CPU number an affinity mask holds.
	MaxCPU = 1023
)

// Options configure a run.
type Options struct {
	// Rounds is how many times every configuration is measured; rows show
	// the median. 1..MaxRounds.
	Rounds int
	// Duration is the length of one measurement, MinDuration..MaxDuration.
	Duration time.Duration
	// CPU is the CPU the measuring thread is pinned to; -1 leaves it to the
	// scheduler (the thread is still locked to its goroutine).
	CPU int
	// Batch is the frames GRO receives between two Flush calls (a receive
	// batch), 1..MaxBatch.
	Batch int
}

// DefaultOptions: 3 rounds of 2 s on CPU 1 (where `xnic bench` runs its
// receivers), receive batches of 64.
func DefaultOptions() Options {
	return Options{Rounds: 3, Duration: 2 * time.Second, CPU: 1, Batch: 64}
}

// ErrOptions matches every invalid option (errors.Is).
var ErrOptions = errors.New("invalid options")

// OptionError names the option that failed validation. Field is the name of
// the option as `xnic bench offload` spells its flag: "rounds", "duration",
// "cpu", "batch".
type OptionError struct {
	Field string
	Msg   string
}

func (e *OptionError) Error() string { return "offloadbench: " + e.Field + ": " + e.Msg }

// Is makes errors.Is(err, ErrOptions) true.
func (e *OptionError) Is(target error) bool { return target == ErrOptions }

func optErr(field, format string, a ...any) error {
	return &OptionError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Validate checks the options and names the first bad one. Whether CPU is
// one this process may run on is checked by Run.
func (o Options) Validate() error {
	if o.Rounds < 1 || o.Rounds > MaxRounds {
		return optErr("rounds", "must be 1..%d, got %d", MaxRounds, o.Rounds)
	}
	if o.Duration < MinDuration || o.Duration > MaxDuration {
		return optErr("duration", "must be %s..%s, got %s", MinDuration, MaxDuration, o.Duration)
	}
	if o.CPU < -1 || o.CPU > MaxCPU {
		return optErr("cpu", "must be -1 (unpinned) or 0..%d, got %d", MaxCPU, o.CPU)
	}
	if o.Batch < 1 || o.Batch > MaxBatch {
		return optErr("batch", "must be 1..%d, got %d", MaxBatch, o.Batch)
	}
	return nil
}
