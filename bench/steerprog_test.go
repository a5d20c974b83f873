package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/xnic/xnic/engine/lab/labtest"
)

// TestSteerProg runs every case of `xnic bench steer-prog` briefly: each
// must steer its frame (XDP_REDIRECT; the early drop XDP_DROP) and report
// a time. The times themselves are the benchmark's to compare, on a quiet
// machine: two short rounds beside the rest of the suite resolve nothing.
func TestSteerProg(t *testing.T) {
	labtest.RequireRoot(t, "loads XDP programs and binds an AF_XDP socket")
	o := DefaultSteerProgOptions()
	o.Rounds, o.Repeat = 2, 20000
	rep, err := RunSteerProg(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != len(SteerProgCases()) {
		t.Fatalf("%d rows, want %d", len(rep.Rows), len(SteerProgCases()))
	}
	bare := rep.Rows[0]
	if bare.Case != SteerBare || bare.Median <= 0 {
		t.Fatalf("first row %+v, want the bare program with a time", bare)
	}
	for _, row := range rep.Rows {
		if row.Verdict != SteerProgVerdict(row.Case) || len(row.Rounds) != 2 || !(row.Median > 0) {
			t.Errorf("%s: verdict %s, %d rounds, median %.1f ns", row.Case, row.Verdict, len(row.Rounds), row.Median)
		}
	}
	var tbl, js bytes.Buffer
	if err := rep.WriteTable(&tbl); err != nil || !strings.Contains(tbl.String(), "rules-10k-flows-100k") {
		t.Errorf("table: %v\n%s", err, tbl.String())
	}
	var back SteerProgReport
	if err := rep.WriteJSON(&js); err != nil || json.Unmarshal(js.Bytes(), &back) != nil || len(back.Rows) != len(rep.Rows) {
		t.Errorf("json: %v\n%s", err, js.String())
	}
}

func TestSteerProgOptions(t *testing.T) {
	for _, o := range []SteerProgOptions{{Rounds: 0, Repeat: 1}, {Rounds: 1, Repeat: 0}, {Rounds: 1, Repeat: 1, Only: []string{"2 rules"}}} {
		var oe *OptionError
		if err := o.Validate(); err == nil || !errors.As(err, &oe) {
			t.Errorf("%+v: %v, want an OptionError", o, err)
		}
	}
}
