package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/xnic/xnic"

// listedPackage is what `go list -json` says of one package.
type listedPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// harness is everything the product must never import: the benchmark tree
// and its plotting and peer libraries, and the helpers that exist only for
// tests (the lab helpers of tests, the shared frame corpus, the test BPF
// programs).
var harness = []string{
	module + "/bench",
	module + "/tests",
	module + "/engine/lab/labtest",
	module + "/flows/corpus",
	module + "/bpf/bpftest",
	"gonum.org/v1/plot",
	"github.com/asavie/xdp",
}

// under reports whether pkg is prefix or a package below it.
func under(pkg, prefix string) bool {
	return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}

func underAny(pkg string, prefixes []string) bool {
	for _, p := range prefixes {
		if under(pkg, p) {
			return true
		}
	}
	return false
}

// isProduct: every package of the module but the harness itself.
func isProduct(pkg string) bool {
	return under(pkg, module) && !underAny(pkg, harness)
}

// checkLayout applies the layout rules of docs/architecture.md to pkgs and
// returns one line per broken rule.
func checkLayout(pkgs []listedPackage) []string {
	var bad []string
	ours := func(deps []string) []string {
		var out []string
		for _, d := range deps {
			if under(d, module) {
				out = append(out, strings.TrimPrefix(d, module+"/"))
			}
		}
		return out
	}
	onlyFrom := func(p listedPackage, allowed ...string) {
		for _, d := range ours(p.Deps) {
			if !slices.ContainsFunc(allowed, func(a string) bool { return under(d, a) }) {
				bad = append(bad, fmt.Sprintf("%s imports %s; it may import only %v", p.ImportPath, d, allowed))
			}
		}
	}
	for _, p := range pkgs {
		if !isProduct(p.ImportPath) {
			continue
		}
		rel := strings.TrimPrefix(p.ImportPath, module+"/")
		switch {
		case rel == "umem":
			onlyFrom(p) // nothing of xnic
		case under(rel, "flows"):
			onlyFrom(p, "flows")
		case rel == "bpf":
			onlyFrom(p, "flows")
		case rel == "engine":
			for _, d := range p.Deps {
				for _, no := range []string{module + "/engine/services", module + "/engine/lab", module + "/engine/gen", module + "/engine/config"} {
					if under(d, no) {
						bad = append(bad, fmt.Sprintf("engine imports %s: the data path does not depend on demo services, labs, generators or the config file", d))
					}
				}
			}
		}
		if rel == "cmd/xnic" {
			// The CLI opens one door into the harness: the xnic bench
			// subcommands. Everything else it imports is product.
			for _, d := range p.Imports {
				if underAny(d, harness) && d != module+"/bench/benchcmd" {
					bad = append(bad, fmt.Sprintf("cmd/xnic imports %s directly; only bench/benchcmd may bring in the harness", d))
				}
			}
			continue
		}
		for _, d := range p.Deps {
			if underAny(d, harness) {
				bad = append(bad, fmt.Sprintf("product package %s depends on %s", rel, d))
			}
		}
	}
	return bad
}

// TestLayout lists every package's dependencies with go list and checks the
// layout: the product never depends on the benchmark harness or on
// test-only helpers, and each package imports only the layers below it.
func TestLayout(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "list", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	seen := map[string]bool{}
	for _, p := range pkgs {
		seen[strings.TrimPrefix(p.ImportPath, module+"/")] = true
	}
	for _, want := range []string{"umem", "bpf", "flows", "flows/conn", "flows/offload", "engine", "engine/config", "cmd/xnic", "bench", "bench/benchcmd"} {
		if !seen[want] {
			t.Errorf("go list did not list %s: the layout check would check nothing there", want)
		}
	}
	for _, line := range checkLayout(pkgs) {
		t.Error(line)
	}
}

// TestLayoutRulesCatch feeds checkLayout packages that break each rule, so
// a rule that stopped matching anything shows up here.
func TestLayoutRulesCatch(t *testing.T) {
	m := func(s string) string { return module + "/" + s }
	cases := []listedPackage{
		{ImportPath: m("umem"), Deps: []string{m("flows")}},
		{ImportPath: m("flows/conn"), Deps: []string{m("flows"), m("umem")}},
		{ImportPath: m("bpf"), Deps: []string{m("flows"), m("umem")}},
		{ImportPath: m("engine"), Deps: []string{m("engine/services")}},
		{ImportPath: m("engine/stack"), Deps: []string{"gonum.org/v1/plot"}},
		{ImportPath: m("engine/gen"), Deps: []string{m("bench/internal/stat")}},
		{ImportPath: m("flows/offload"), Deps: []string{m("flows/corpus")}},
		{ImportPath: m("cmd/xnic"), Imports: []string{m("bench/connbench")}},
	}
	for _, c := range cases {
		if got := checkLayout([]listedPackage{c}); len(got) == 0 {
			t.Errorf("%s depending on %v passed the layout check", c.ImportPath, append(c.Deps, c.Imports...))
		}
	}
	fine := []listedPackage{
		{ImportPath: m("umem"), Deps: []string{"golang.org/x/sys/unix"}},
		{ImportPath: m("bpf"), Deps: []string{m("flows")}},
		{ImportPath: m("cmd/xnic"), Imports: []string{m("bench/benchcmd"), m("engine")}, Deps: []string{m("bench/benchcmd"), "gonum.org/v1/plot"}},
		{ImportPath: m("bench/connbench"), Deps: []string{"gonum.org/v1/plot", m("flows/conn")}},
	}
	if got := checkLayout(fine); len(got) != 0 {
		t.Errorf("allowed imports refused: %v", got)
	}
}
