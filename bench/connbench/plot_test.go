package connbench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRows is a grid of made-up figures (the plot and the tables do not
// care where they come from).
func fakeRows() []Row {
	var rows []Row
	for i, n := range []int{16, 1000, 100_000, 1_000_000} {
		for _, cache := range []int{64, 512} {
			for _, w := range []int{1, 64} {
				ns := 40 + 50*float64(i)
				exp := 1.0
				if w == 64 {
					ns *= 0.7
					exp = 0.25
				}
				rows = append(rows, Row{
					Conns: n, Cache: cache, Ways: 8, Window: w, Batch: 64,
					Model: ModelBlocks, Burst: 4, Spread: 64, Packets: 1 << 20, Rounds: 5,
					NsPerPacket: ns, NsMin: ns - 1, NsMax: ns + 1, Mpps: 1000 / ns,
					LoadsPerPacket: 0.25 * float64(i) / 3, ExpectedLoads: exp, PacketsPerConn: 1 / exp,
					Baseline: 1, Speedup: map[int]float64{1: 1, 64: 1 / 0.7}[w],
				})
			}
		}
	}
	return rows
}

func TestWriteSVG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "conns.svg")
	rows := fakeRows()
	if err := WriteSVG(rows, path, "2026-01-02", "Test CPU, 2 cores"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	svg := string(b)
	if !strings.HasPrefix(svg, "<?xml") || !strings.Contains(svg[:300], "<svg") || !strings.HasSuffix(strings.TrimSpace(svg), "</svg>") {
		t.Fatalf("not an SVG document:\n%.300s", svg)
	}
	want := []string{
		SeriesName(64, 1), SeriesName(64, 64), SeriesName(512, 1), SeriesName(512, 64),
		expectedName(64), "2026-01-02", "Test CPU, 2 cores",
		"context loads per packet", "connections N", "Mpps", ">1M<", ">100k<", ">16<",
	}
	for _, s := range want {
		if !strings.Contains(svg, s) {
			t.Errorf("SVG lacks %q", s)
		}
	}
	if strings.Contains(svg, expectedName(1)) {
		t.Errorf("SVG plots the trivial expectation of W=1")
	}
}

func TestWriteSVGRejects(t *testing.T) {
	dir := t.TempDir()
	bad := map[string]func([]Row) []Row{
		"no rows":    func([]Row) []Row { return nil },
		"zero conns": func(r []Row) []Row { r[3].Conns = 0; return r },
		"NaN loads":  func(r []Row) []Row { r[2].LoadsPerPacket = math.NaN(); return r },
		"infinite":   func(r []Row) []Row { r[1].Mpps = math.Inf(1); return r },
		"negative":   func(r []Row) []Row { r[0].ExpectedLoads = -1; return r },
	}
	for name, edit := range bad {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".svg")
		if err := WriteSVG(edit(fakeRows()), path, "d", "m"); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%s: wrote %s anyway", name, path)
		}
	}
	if err := WriteSVG(fakeRows(), filepath.Join(dir, "missing", "x.svg"), "d", "m"); err == nil {
		t.Error("wrote into a missing directory")
	}
}

// TestWriteSVGOnePoint: a grid of one N still draws (the axis gets room
// on both sides).
func TestWriteSVGOnePoint(t *testing.T) {
	var rows []Row
	for _, r := range fakeRows() {
		if r.Conns == 1000 {
			rows = append(rows, r)
		}
	}
	if err := WriteSVG(rows, filepath.Join(t.TempDir(), "one.svg"), "d", "m"); err != nil {
		t.Fatal(err)
	}
}

func TestRenderMarkdown(t *testing.T) {
	rows := fakeRows()
	md := RenderMarkdown(rows)
	lines := strings.Split(strings.TrimSpace(md), "\n")
	if len(lines) != 2+len(rows) {
		t.Fatalf("%d lines, want a header, a rule and %d rows:\n%s", len(lines), len(rows), md)
	}
	if !strings.Contains(lines[0], "speedup vs W=1") || !strings.HasPrefix(lines[1], "|---:") {
		t.Errorf("header:\n%s\n%s", lines[0], lines[1])
	}
	for i, l := range lines {
		if strings.Count(l, "|") != 9 {
			t.Errorf("line %d has %d cells: %s", i, strings.Count(l, "|")-1, l)
		}
	}
	// N=100k, cache 512, W=64: the 8th row of its N.
	r := rows[2*4+3]
	want := "| 100k | 512 | 64 | 98.0 | 10.20 | 0.167 | 0.250 | 1.43x |"
	if r.Conns != 100_000 || lines[2+2*4+3] != want {
		t.Errorf("row:\n%s\nwant\n%s", lines[2+2*4+3], want)
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	rows := fakeRows()
	if err := WriteTable(&b, rows); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "bursts of 4 packets") || !strings.Contains(out, "vs W=1") {
		t.Errorf("table lacks its description or header:\n%s", out)
	}
	if got := strings.Count(out, "\n"); got != 3+len(rows) {
		t.Errorf("%d lines, want %d:\n%s", got, 3+len(rows), out)
	}
}

func TestFormatConns(t *testing.T) {
	for n, want := range map[int]string{16: "16", 1000: "1k", 1500: "1500", 100_000: "100k", 1_000_000: "1M", 1 << 20: "1048576", 2_000_000: "2M"} {
		if got := formatConns(n); got != want {
			t.Errorf("formatConns(%d) = %q, want %q", n, got, want)
		}
	}
}
