package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestLongestGap: the stall is the longest interval between two arrivals
// that overlaps the window, the one that straddles its start included, and
// none entirely before or after it.
func TestLongestGap(t *testing.T) {
	ms := func(v ...int64) []int64 {
		out := make([]int64, len(v))
		for i, x := range v {
			out[i] = x * int64(time.Millisecond)
		}
		return out
	}
	for _, c := range []struct {
		name     string
		arrivals []int64
		from, to int64 // ms
		gap      time.Duration
		at       int64 // ms
		ok       bool
	}{
		// A 50 ms gap before the window does not count.
		{"before", ms(0, 50, 51, 52, 60, 61), 55, 70, 8 * time.Millisecond, 52, true},
		// The gap from 90 to 130 straddles the window's start at 100.
		{"straddles start", ms(80, 90, 130, 131), 100, 200, 40 * time.Millisecond, 90, true},
		// The gap from 210 to 400 begins after the window ends at 200.
		{"after", ms(100, 150, 200, 210, 400), 100, 200, 50 * time.Millisecond, 100, true},
		// A gap that covers the whole window.
		{"covers", ms(0, 500), 100, 200, 500 * time.Millisecond, 0, true},
		{"one arrival", ms(150), 100, 200, 0, 0, false},
		{"all before", ms(0, 10, 20), 100, 200, 0, 0, false},
		{"all after", ms(300, 310), 100, 200, 0, 0, false},
	} {
		gap, at, ok := longestGap(c.arrivals, c.from*int64(time.Millisecond), c.to*int64(time.Millisecond))
		if ok != c.ok || gap != c.gap || ok && at != c.at*int64(time.Millisecond) {
			t.Errorf("%s: gap %s at %d ok %v; want %s at %d ms ok %v", c.name, gap, at, ok, c.gap, c.at, c.ok)
		}
	}
}

// TestDownloadTake: take hands over the arrivals since the last take,
// starting with the last one before it, so no interval is lost between
// two windows.
func TestDownloadTake(t *testing.T) {
	var d download
	d.arrivals = []int64{1, 2, 3}
	if got := d.take(); len(got) != 3 || got[2] != 3 {
		t.Fatalf("first take %v", got)
	}
	d.arrivals = append(d.arrivals, 7, 9)
	if got := d.take(); len(got) != 3 || got[0] != 3 || got[2] != 9 {
		t.Fatalf("second take %v, want [3 7 9]", got)
	}
	if got := d.take(); len(got) != 1 || got[0] != 9 {
		t.Fatalf("take without arrivals %v, want [9]", got)
	}
}

func testEvents() []MigrateEvent {
	gap := 2.0
	return []MigrateEvent{
		{Rep: 1, Kind: EventSteady, StallMs: 3, Retransmits: 1},
		{Rep: 1, Kind: EventCommand, From: "a0", To: "a1", StallMs: 5, EngineTookMs: 20, EngineGapMs: &gap},
		{Rep: 1, Kind: EventLinkDown, From: "a1", To: "a0", StallMs: 200, EngineStartMs: 3, EngineTookMs: 70, Timeouts: 1},
		{Rep: 2, Kind: EventSteady, StallMs: 4},
		{Rep: 2, Kind: EventLinkDown, From: "a0", To: "a1", StallMs: 10, EngineStartMs: 5, EngineTookMs: 72},
		{Rep: 2, Kind: EventCommand, From: "a1", To: "a0", StallMs: 9, EngineTookMs: 22, EngineGapMs: &gap},
		{Rep: 3, Kind: EventSteady, StallMs: 5},
		{Rep: 3, Kind: EventCommand, From: "a0", To: "a1", StallMs: 30, EngineTookMs: 24},
		{Rep: 3, Kind: EventLinkDown, From: "a1", To: "a0", StallMs: 12, EngineStartMs: 4, EngineTookMs: 71},
	}
}

// TestMigrateSummary: medians and extremes per kind, and the targets
// judged on the median stall and the totals of lost frames and resets.
func TestMigrateSummary(t *testing.T) {
	r := &MigrateReport{Events: testEvents()}
	r.summarize()
	if len(r.Summary) != 3 {
		t.Fatalf("%d summaries, want 3", len(r.Summary))
	}
	cmd, ld := r.summary(EventCommand), r.summary(EventLinkDown)
	if cmd.Reps != 3 || cmd.StallMedianMs != 9 || cmd.StallMinMs != 5 || cmd.StallMaxMs != 30 ||
		cmd.EngineTookMs != 22 || cmd.EngineGapMs == nil || *cmd.EngineGapMs != 2 {
		t.Errorf("command: %+v", *cmd)
	}
	if ld.StallMedianMs != 12 || ld.StallMaxMs != 200 || ld.EngineStartMs != 4 || ld.Timeouts != 1 || ld.EngineGapMs != nil {
		t.Errorf("link-down: %+v", *ld)
	}
	if !r.Targets[0].Met || !r.Targets[1].Met {
		t.Errorf("targets %+v, want both met", r.Targets)
	}

	// A lost frame misses the commanded target; a reset the link-down one;
	// a failed repetition misses its kind's target whatever the others say.
	for _, c := range []struct {
		name   string
		change func(evs []MigrateEvent)
		met    [2]bool
	}{
		{"lost", func(evs []MigrateEvent) { evs[5].TxRefused = 1 }, [2]bool{false, true}},
		{"steady loss", func(evs []MigrateEvent) { evs[0].XSKLost = 1 }, [2]bool{true, true}},
		{"reset", func(evs []MigrateEvent) { evs[4].Resets = 1 }, [2]bool{true, false}},
		{"failed", func(evs []MigrateEvent) { evs[1].Err = "no" }, [2]bool{false, true}},
		{"slow", func(evs []MigrateEvent) { evs[1].StallMs, evs[5].StallMs = 25, 21 }, [2]bool{false, true}},
	} {
		r := &MigrateReport{Events: testEvents()}
		c.change(r.Events)
		r.summarize()
		if got := [2]bool{r.Targets[0].Met, r.Targets[1].Met}; got != c.met {
			t.Errorf("%s: met %v, want %v", c.name, got, c.met)
		}
	}
}

// TestMigrateRender: the table and the Markdown carry every kind, the
// reference line saying it is not a measurement, and the verdicts; every
// Markdown row has the header's columns; the JSON decodes back.
func TestMigrateRender(t *testing.T) {
	r := &MigrateReport{
		Env:     MigrateEnv{Machine: ThisMachine(time.Now()), Reps: 3, SettleSec: 0.5, Lab: "xm0000"},
		Goodput: []PortGoodput{{Port: "xm00000", Bytes: 1 << 30, Seconds: 3, BitsPerSec: 2.86e9}, {Port: "xm00001", BitsPerSec: 2.5e9}},
		Events:  testEvents(),
	}
	r.Events[7].Err = "no payload around the event"
	r.summarize()
	var tab, md, js bytes.Buffer
	if err := r.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"steady", "command", "link-down", "2.86", "miimon 100 ms", "not a measurement",
		"command: stall <= 20 ms median, no frame lost", "1 of 3 reps failed", "missed", "met",
		"rep 3 command: no payload around the event"} {
		if !strings.Contains(tab.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tab.String())
		}
	}
	cols := -1
	for _, line := range strings.Split(md.String(), "\n") {
		if !strings.HasPrefix(line, "| event |") && !strings.HasPrefix(line, "| steady |") &&
			!strings.HasPrefix(line, "| command |") && !strings.HasPrefix(line, "| link-down |") && !strings.Contains(line, "(reference)") {
			continue
		}
		n := strings.Count(line, "|")
		if cols < 0 {
			cols = n
		}
		if n != cols {
			t.Errorf("markdown row with %d columns, header %d: %s", n-1, cols-1, line)
		}
	}
	if cols != len(summaryHeader)+1 || !strings.Contains(md.String(), "≤ 250 ms") {
		t.Errorf("markdown:\n%s", md.String())
	}
	var back MigrateReport
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Events) != 9 || len(back.Summary) != 3 || back.Reference.IntervalMs != 100 || back.Targets[0].Met {
		t.Errorf("json round trip: %d events, %d summaries, %+v, %+v", len(back.Events), len(back.Summary), back.Reference, back.Targets)
	}
}

// TestMigrateOptionsValidate: each bad field is named.
func TestMigrateOptionsValidate(t *testing.T) {
	if err := DefaultMigrateOptions().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		field  string
		change func(*MigrateOptions)
	}{
		{"reps", func(o *MigrateOptions) { o.Reps = 0 }},
		{"settle", func(o *MigrateOptions) { o.Settle = time.Millisecond }},
		{"goodput", func(o *MigrateOptions) { o.Goodput = 0 }},
		{"resume timeout", func(o *MigrateOptions) { o.ResumeTimeout = o.Settle / 2 }},
		{"poll ms", func(o *MigrateOptions) { o.PollMs = -1 }},
		{"lab prefix", func(o *MigrateOptions) { o.LabPrefix = "toolong" }},
	} {
		o := DefaultMigrateOptions()
		c.change(&o)
		var oe *OptionError
		if err := o.Validate(); !errors.As(err, &oe) || oe.Field != c.field {
			t.Errorf("%s: %v", c.field, err)
		}
	}
}
