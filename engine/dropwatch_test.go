package engine

import (
	"strings"
	"testing"
	"time"
)

// TestDropWatch: a kind of drop is logged once when it starts, once a
// minute at most while it goes on, and once when it has stayed quiet; the
// counters' first values and a counter that goes back log nothing.
func TestDropWatch(t *testing.T) {
	var d dropWatch
	t0 := time.Unix(1000, 0)
	st := Stats{Tx: TxStats{NoFrames: 500}}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	if l := d.observe(at(0), &st); len(l) != 0 {
		t.Fatalf("first look: %q", l)
	}
	st.Tx.NoFrames += 3
	l := d.observe(at(1), &st)
	if len(l) != 1 || !strings.HasPrefix(l[0], "drops started: guests' sends dropped for want of a free frame: 3") {
		t.Fatalf("start: %q", l)
	}
	var all []string
	for s := 2; s <= 90; s++ { // drops every second for a minute and a half
		st.Tx.NoFrames += 2
		all = append(all, d.observe(at(s), &st)...)
	}
	if len(all) != 1 || !strings.Contains(all[0], "drops go on") || !strings.Contains(all[0], ": 120 in the last 1m0s") {
		t.Fatalf("ongoing: %q", all)
	}
	all = nil
	for s := 91; s <= 100; s++ { // quiet
		all = append(all, d.observe(at(s), &st)...)
	}
	if len(all) != 1 || !strings.HasPrefix(all[0], "drops stopped") || !strings.HasSuffix(all[0], ": 181 in all") {
		t.Fatalf("stop: %q", all)
	}
	st.Tx.NoFrames = 0 // a counter that went back
	if l := d.observe(at(101), &st); len(l) != 0 {
		t.Fatalf("after a reset: %q", l)
	}
	st.Pipeline.CsumBad = 7
	if l := d.observe(at(102), &st); len(l) != 1 || !strings.Contains(l[0], "bad checksum: 7") {
		t.Fatalf("another kind: %q", l)
	}
}
