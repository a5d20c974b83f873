package config

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
		{"auto, one worker", 0, 1, "", 1, ProcsAuto},
		{"auto, two queues", 0, 2, "", 2, ProcsAuto},
		{"auto, no worker yet", 0, 0, "", 1, ProcsAuto},
		{"the environment over auto", 0, 2, "7", cur, ProcsEnv},
		{"the config over the environment", 3, 1, "7", 3, ProcsConfig},
		{"the config", 4, 1, "", 4, ProcsConfig},
	} {
		n, from := GoMaxProcs(c.cfg, c.workers, c.env)
		if n != c.wantN || from != c.wantFrom {
			t.Errorf("%s: %d from %q, want %d from %q", c.name, n, from, c.wantN, c.wantFrom)
		}
	}
	if runtime.GOMAXPROCS(0) != cur {
		t.Fatalf("GoMaxProcs changed GOMAXPROCS: it only decides")
	}
}
