package bpf

import (
	"testing"

	"github.com/cilium/ebpf/rlimit"
	"github.com/xnic/xnic/engine/lab/labtest"
)

// TestRemoveMemlock documents what rlimit.RemoveMemlock does here: with
// memory cgroup accounting (5.11+) it leaves the limit alone and succeeds.
func TestRemoveMemlock(t *testing.T) {
	labtest.RequireRoot(t, "memlock probe loads a map")
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Logf("RemoveMemlock failed (loading must still work, see TestLoadWithoutMemlock): %v", err)
	}
}

// BenchmarkLoad measures loading each program with its maps (the verifier
// runs every time), then closing it.
func BenchmarkLoad(b *testing.B) {
	labtest.RequireRoot(b, "load BPF programs")
	loads := map[string]func() (interface{ Close() error }, error){
		"steer": func() (interface{ Close() error }, error) { return LoadSteer(DefaultSteerOptions()) },
		"drop":  func() (interface{ Close() error }, error) { return LoadDrop() },
		"pass":  func() (interface{ Close() error }, error) { return LoadPass() },
		"gen":   func() (interface{ Close() error }, error) { return LoadGen(DefaultGenOptions()) },
	}
	for name, load := range loads {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				o, err := load()
				if err != nil {
					b.Fatal(err)
				}
				o.Close()
			}
		})
	}
}
