package main

import (
	"runtime"
	"testing"
)

func TestGoMaxProcs(t *testing.T) {
	cur := runtime.GOMAXPROCS(0)
	for _, c := range []struct {
		name         string
		cfg, workers int
		env          string
		wantN        int
		wantFrom     string
	}{
		{"auto, one worker", 0, 1, "", 1, procsAuto},
		{"auto, two queues", 0, 2, "", 2, procsAuto},
		{"auto, no worker yet", 0, 0, "", 1, procsAuto},
		{"the environment over auto", 0, 2, "7", cur, procsEnv},
		{"the config over the environment", 3, 1, "7", 3, procsConfig},
		{"the config", 4, 1, "", 4, procsConfig},
	} {
		n, from := goMaxProcs(c.cfg, c.workers, c.env)
		if n != c.wantN || from != c.wantFrom {
			t.Errorf("%s: %d from %q, want %d from %q", c.name, n, from, c.wantN, c.wantFrom)
		}
	}
	if runtime.GOMAXPROCS(0) != cur {
		t.Fatalf("goMaxProcs changed GOMAXPROCS: only applyGoMaxProcs may")
	}
}
