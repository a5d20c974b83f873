package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xnic/xnic/bpf"
	"github.com/xnic/xnic/engine/lab"
	"github.com/xnic/xnic/engine/lab/labtest"
)

// TestLoadFailureLeavesNoPinDir: when a port's steering program fails to
// load (a verifier that refuses it, maps that cannot be made), New fails
// naming the port and leaves no pin directory behind, neither the port's
// nor the root it made; pins kept from before stay.
func TestLoadFailureLeavesNoPinDir(t *testing.T) {
	lo := lab.DefaultOptions()
	lo.Name = ""
	l := labtest.New(t, lo)
	port := l.Ports[0].Host
	injected := errors.New("injected load failure")
	loadSteer = func(bpf.SteerOptions) (*bpf.Steer, error) { return nil, injected }
	t.Cleanup(func() { loadSteer = bpf.LoadSteer })

	root := filepath.Join(t.TempDir(), "pins")
	o := DefaultOptions()
	o.Ifaces = []string{port}
	o.PinDir = root
	if e, err := New(o, nil); !errors.Is(err, injected) || !strings.Contains(err.Error(), "port "+port) {
		if e != nil {
			e.Close()
		}
		t.Fatalf("New with a failing load: %v; want the load's error, naming port %s", err, port)
	}
	if _, err := os.Lstat(root); !errors.Is(err, os.ErrNotExist) {
		ents, _ := os.ReadDir(filepath.Join(root, port))
		t.Fatalf("the failed start left %s behind (%v; the port's directory holds %d entries)", root, err, len(ents))
	}

	// A port directory that holds something from before is not removed.
	kept := filepath.Join(root, port, "kept")
	if err := os.MkdirAll(kept, 0o700); err != nil {
		t.Fatal(err)
	}
	o.ReusePins = true
	if e, err := New(o, nil); !errors.Is(err, injected) {
		if e != nil {
			e.Close()
		}
		t.Fatalf("New with a failing load over a kept directory: %v", err)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("the failed start removed what the port's directory held: %v", err)
	}
}
