package stack

import (
	"encoding/json"
	"testing"
)

// TestDropCountsJSON: drops are an object keyed by the reasons' names,
// every reason present, and read back the same.
func TestDropCountsJSON(t *testing.T) {
	var d DropCounts
	d[RxDropCsumBad], d[TxDropClosed] = 2, 5
	b, err := json.Marshal(Stats{Drops: d})
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Drops map[string]uint64 `json:"drops"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	if len(m.Drops) != NumDropReasons || m.Drops["rx_csum_bad"] != 2 || m.Drops["tx_closed"] != 5 || m.Drops["rx_malformed"] != 0 {
		t.Errorf("drops in JSON: %v, want all %d reasons with rx_csum_bad 2 and tx_closed 5", m.Drops, NumDropReasons)
	}
	var back Stats
	if err := json.Unmarshal(b, &back); err != nil || back.Drops != d {
		t.Errorf("round trip: %v %v, want %v", err, back.Drops, d)
	}
	if err := json.Unmarshal([]byte(`{"rx_nonsense":1}`), &back.Drops); err == nil {
		t.Error("an unknown reason decoded without error")
	}
}
