package replay

import (
	"flag"
	"os"
	"testing"
)

// fuzzMinimize bounds, unless -test.fuzzminimizetime is given, what the
// fuzzer spends minimizing an input. Go minimizes every input that adds
// coverage, in time that grows with the square of its length; a replay
// input of a few frames would hold a worker for the 60 s default, and go
// test counts none of those executions until it is done
// (golang/go#51484), so -fuzztime 10s showed 0 execs/s. Bounded by count,
// a minimization takes well under a second; pass -fuzzminimizetime 60s to
// minimize a failing input further.
const fuzzMinimize = "1000x"

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.fuzzminimizetime" })
	if !set {
		if err := flag.Set("test.fuzzminimizetime", fuzzMinimize); err != nil {
			panic(err) // the testing package renamed its flag
		}
	}
	os.Exit(m.Run())
}
