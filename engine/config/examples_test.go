package config

import (
	"errors"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// TestExamples: every examples/*.yaml parses and resolves, and each says
// what its comments say it does.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("want at least the four common set-ups in examples/, got %v", files)
	}
	got := map[string]*Resolved{}
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		r, err := c.Resolve()
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if err := r.Options.Validate(); err != nil {
			t.Errorf("%s: engine options: %v", f, err)
		}
		got[filepath.Base(f)] = r
		// The examples meant for xnic run have nothing it would ignore.
		if b := filepath.Base(f); b == "one-port.yaml" || b == "classes.yaml" {
			if w := c.Ignored(Run); len(w) != 0 {
				t.Errorf("%s: xnic run would ignore %v", f, w)
			}
		}
	}
	if r := got["one-port.yaml"]; r == nil || len(r.Options.Ifaces) != 1 || len(r.Guests) != 1 {
		t.Errorf("one-port.yaml: %+v", r)
	}
	if r := got["failover.yaml"]; r == nil || len(r.Options.Ifaces) != 2 || len(r.Guests[0].Standby) != 1 ||
		!r.Guests[0].Failover.LinkDown || !r.Guests[0].Failover.Failback {
		t.Errorf("failover.yaml: %+v", r)
	}
	if r := got["classes.yaml"]; r == nil || len(r.Options.Classes) != 3 || r.DSCP[46] != 1 ||
		r.Options.Classes[2].Rate != 62_500_000 || r.Guests[0].Rate != 125_000_000 {
		t.Errorf("classes.yaml: %+v", r)
	}
	if r := got["serve.yaml"]; r == nil || len(r.Guests) != 2 || len(r.Guests[0].Services) != 3 ||
		r.Guests[1].Services[0] != (Service{Kind: "discard", Port: 9000}) {
		t.Errorf("serve.yaml: %+v", r)
	}
}

// FuzzParse: no input makes Parse panic, and every error it returns is an
// *Error naming a field.
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte(classConfig))
	f.Add([]byte(twoPortConfig))
	f.Add([]byte("ports: [{iface: [a]}]\nguests: {x: 1}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := Parse("fuzz.yaml", b)
		if err == nil {
			return
		}
		var ce *Error
		if !errors.As(err, &ce) || ce.Field == "" || ce.File != "fuzz.yaml" || !utf8.ValidString(ce.Field) {
			t.Fatalf("error %q (%T) is not an *Error naming a field", err, err)
		}
	})
}
