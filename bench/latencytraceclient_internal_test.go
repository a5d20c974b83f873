package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xnic/xnic/engine/services"
)

// TestRunTraceClient runs the trace's client against echo servers on the
// loopback and checks its report: every request stamped at its write, its
// kernel's receive and its read, in that order, on the wall clock of this
// process, and nothing lost.
func TestRunTraceClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	var c services.Counters
	done := make(chan struct{}, 2)
	go func() { services.ServeEcho(ln, &c); done <- struct{}{} }()
	go func() { services.ServeUDPEcho(pc, &c); done <- struct{}{} }()
	defer func() { ln.Close(); pc.Close(); <-done; <-done }()

	for _, kind := range LatencyKinds() {
		spec := TraceClientSpec{Kind: kind, Addr: ln.Addr().String(), Size: 64, Warmup: 5, Requests: 50, Timeout: time.Second}
		b, _ := json.Marshal(spec)
		var out bytes.Buffer
		before := time.Now().UnixNano()
		if err := RunTraceClient(context.Background(), string(b), &out); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		after := time.Now().UnixNano()
		var res traceClientResult
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("%s: the report is not JSON: %v: %s", kind, err, out.String())
		}
		if res.Lost != 0 || res.Err != "" || len(res.Stamps) != spec.Warmup+spec.Requests {
			t.Fatalf("%s: lost %d, error %q, %d requests reported", kind, res.Lost, res.Err, len(res.Stamps))
		}
		prev := before
		for seq, st := range res.Stamps {
			// The kernel's receive is after the write; the read after both;
			// each request after the one before.
			if st[0] < prev || st[1] < st[0] || st[2] < st[1] || st[2] > after {
				t.Fatalf("%s: request %d: write %d, kernel rx %d, read %d (window %d..%d, previous %d)",
					kind, seq, st[0], st[1], st[2], before, after, prev)
			}
			prev = st[2]
		}
	}
}

// TestRunTraceClientSpec: a bad spec is refused with the field named, and
// a failed dial still writes a report.
func TestRunTraceClientSpec(t *testing.T) {
	for field, spec := range map[string]string{
		"spec":     `{"kind":`,
		"kind":     `{"kind":"sctp","addr":"198.18.0.1:7","size":64,"requests":1,"timeout_ns":1000000000}`,
		"addr":     `{"kind":"tcp","addr":"nowhere","size":64,"requests":1,"timeout_ns":1000000000}`,
		"size":     `{"kind":"tcp","addr":"198.18.0.1:7","size":1,"requests":1,"timeout_ns":1000000000}`,
		"requests": `{"kind":"tcp","addr":"198.18.0.1:7","size":64,"requests":0,"timeout_ns":1000000000}`,
	} {
		var out bytes.Buffer
		err := RunTraceClient(context.Background(), spec, &out)
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var out bytes.Buffer
	spec := `{"kind":"tcp","addr":"` + addr + `","size":64,"requests":3,"timeout_ns":1000000000}`
	if err := RunTraceClient(context.Background(), spec, &out); err == nil {
		t.Fatal("a refused dial did not fail")
	}
	var res traceClientResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Err == "" || len(res.Stamps) != 3 {
		t.Errorf("report of a failed run: %v, %+v", err, res)
	}
}
