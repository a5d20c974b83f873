package metrics

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xnic/xnic/engine"
	"github.com/xnic/xnic/engine/stack"
	"github.com/xnic/xnic/flows"
	"github.com/xnic/xnic/flows/offload"
)

// fakeSource is a Source of fixed counters.
type fakeSource struct {
	stats    engine.Stats
	queues   []QueueStats
	guests   []engine.GuestStats
	classes  []engine.ClassStats
	queueErr error
}

func (f *fakeSource) Stats() (engine.Stats, error)             { return f.stats, nil }
func (f *fakeSource) GuestStats() []engine.GuestStats          { return f.guests }
func (f *fakeSource) ClassStats() ([]engine.ClassStats, error) { return f.classes, nil }
func (f *fakeSource) QueueStats() ([]QueueStats, error)        { return f.queues, f.queueErr }

type fakeStack stack.Stats

func (f *fakeStack) Stats() stack.Stats { return stack.Stats(*f) }

func newFake() *fakeSource {
	f := &fakeSource{}
	f.stats.RxPackets, f.stats.RxBytes, f.stats.Sleeps = 1000, 64000, 7
	p := &f.stats.Pipeline
	p.Packets, p.CacheLoads, p.CacheHits, p.Conns, p.CsumBad, p.GROAcks = 900, 30, 870, 12, 3, 44
	p.GROSegments = 1 + 2*3 + 5*20
	p.SegsHist[0], p.SegsHist[1], p.SegsHist[2], p.SegsHist[8] = 1, 2, 5, 1 // 1, 3, 20 ... and one of 256
	p.GROFlush[offload.FlushByPush], p.GROFlush[offload.FlushBySize] = 5, 3
	f.stats.Tx = engine.TxStats{Requests: 50, Segments: 80, Bytes: 120000, Dropped: 9, LinkDown: 4, Spoofed: 2, QueueDrops: 6}
	q0 := QueueStats{Port: "p0", Queue: 0}
	q0.Steer.RxPackets, q0.Steer.RxBytes, q0.Steer.Redirected, q0.Steer.PassUnmatched = 600, 38400, 590, 10
	q0.Steer.DropBadIpv4 = 2
	q0.XSK.RxRingFull, q0.XSK.RxFillRingEmptyDescs = 11, 13
	q1 := QueueStats{Port: "p1", Queue: 3}
	q1.Steer.RxPackets = 400
	f.queues = []QueueStats{q0, q1}
	g := engine.GuestStats{Name: "web", ID: 1, Port: "p1", RxPackets: 500, RxBytes: 32000, RxWrongMAC: 1}
	g.TxSpoofed.SrcIP = 3
	g.Migrations = engine.MigrationStats{Count: 2, LastGap: 1500 * time.Microsecond, GapSeen: true}
	f.guests = []engine.GuestStats{g}
	f.classes = []engine.ClassStats{
		{Port: "p0", Guest: "web", Class: 1, Name: "storage", RxPackets: 70, Sent: 99, SentBytes: 9900, DropTail: 5},
		{Port: "p1", Guest: "web", Class: 1, Name: "storage", Active: true, RxPackets: 30,
			Sent: 40, SentBytes: 4000, DropTail: 1, DropRED: 2, DropPolicer: 3, Depth: 17, ECNMarks: 4},
	}
	return f
}

// scrape serves c, gets /metrics and parses it with the text parser.
func scrape(t *testing.T, c *Collector, log *slog.Logger) map[string]*dto.MetricFamily {
	t.Helper()
	s, err := Serve("127.0.0.1:0", c, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	resp, err := http.Get("http://" + s.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mf
}

// value finds the sample of family name whose labels include want.
func value(t *testing.T, mf map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := mf[name]
	if !ok {
		t.Fatalf("%s: missing", name)
	}
	for _, m := range f.GetMetric() {
		if hasLabels(m, want) {
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			}
			t.Fatalf("%s: type %s", name, f.GetType())
		}
	}
	t.Fatalf("%s: no sample with labels %v", name, want)
	return 0
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func TestCollectorNamesTypesLabels(t *testing.T) {
	web := fakeStack{TCPRetransmits: 8, TCPChecksumErrors: 1, TCPCurrentEstab: 3, RxPackets: 450}
	web.Drops[stack.RxDropCsumBad] = 2
	mf := scrape(t, New(newFake(), Options{Stacks: []GuestStack{{Guest: "web", Stack: &web}}}), nil)

	allowed := map[string]bool{lPort: true, lQueue: true, lGuest: true, lClass: true, lReason: true, "id": true}
	for _, f := range registry {
		name := f.name
		got, ok := mf[name]
		if !ok {
			t.Errorf("%s: not in the scrape", name)
			continue
		}
		switch f.typ {
		case prometheus.CounterValue:
			if got.GetType() != dto.MetricType_COUNTER || !strings.HasSuffix(name, "_total") {
				t.Errorf("%s: type %s: a counter must be one and end in _total", name, got.GetType())
			}
		case prometheus.GaugeValue:
			if got.GetType() != dto.MetricType_GAUGE || strings.HasSuffix(name, "_total") {
				t.Errorf("%s: type %s: want a gauge not named _total", name, got.GetType())
			}
		}
		for _, m := range got.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !allowed[lp.GetName()] {
					t.Errorf("%s: label %s", name, lp.GetName())
				}
			}
		}
	}

	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"xnic_worker_rx_packets_total", nil, 1000},
		{"xnic_worker_sleeps_total", nil, 7},
		{"xnic_pipeline_context_loads_total", nil, 30},
		{"xnic_pipeline_context_cache_hits_total", nil, 870},
		{"xnic_pipeline_connections", nil, 12},
		{"xnic_pipeline_checksum_errors_total", nil, 3},
		{"xnic_gro_acks_coalesced_total", nil, 44},
		{"xnic_gro_flushes_total", map[string]string{lReason: "push"}, 5},
		{"xnic_gro_flushes_total", map[string]string{lReason: "size"}, 3},
		{"xnic_gro_flushes_total", map[string]string{lReason: "evict"}, 0},
		{"xnic_tx_request_drops_total", map[string]string{lReason: "malformed"}, 5},
		{"xnic_tx_request_drops_total", map[string]string{lReason: "link_down"}, 4},
		{"xnic_tx_request_drops_total", map[string]string{lReason: "spoofed"}, 2},
		{"xnic_tx_queue_drops_total", nil, 6},
		{"xnic_tx_bytes_total", nil, 120000},
		{"xnic_steer_rx_packets_total", map[string]string{lPort: "p0", lQueue: "0"}, 600},
		{"xnic_steer_rx_packets_total", map[string]string{lPort: "p1", lQueue: "3"}, 400},
		{"xnic_steer_rx_bytes_total", map[string]string{lPort: "p0", lQueue: "0"}, 38400},
		{"xnic_steer_passed_total", map[string]string{lPort: "p0", lQueue: "0", lReason: "unmatched"}, 10},
		{"xnic_steer_drops_total", map[string]string{lPort: "p0", lQueue: "0", lReason: flows.ReasonBadIPv4.String()}, 2},
		{"xnic_xsk_rx_ring_full_total", map[string]string{lPort: "p0", lQueue: "0"}, 11},
		{"xnic_xsk_fill_ring_empty_total", map[string]string{lPort: "p0", lQueue: "0"}, 13},
		{"xnic_guest_info", map[string]string{lGuest: "web", "id": "1", lPort: "p1"}, 1},
		{"xnic_guest_rx_packets_total", map[string]string{lGuest: "web"}, 500},
		{"xnic_guest_tx_spoofed_total", map[string]string{lGuest: "web", lReason: "src_ip"}, 3},
		{"xnic_guest_migrations_total", map[string]string{lGuest: "web"}, 2},
		{"xnic_guest_last_migration_gap_seconds", map[string]string{lGuest: "web"}, 0.0015},
		{"xnic_class_rx_packets_total", map[string]string{lPort: "p0", lGuest: "web", lClass: "storage"}, 70},
		{"xnic_class_rx_packets_total", map[string]string{lPort: "p1", lGuest: "web", lClass: "storage"}, 30},
		{"xnic_class_tx_sent_bytes_total", map[string]string{lPort: "p1", lGuest: "web", lClass: "storage"}, 4000},
		{"xnic_class_tx_drops_total", map[string]string{lPort: "p1", lClass: "storage", lReason: "red"}, 2},
		{"xnic_class_tx_drops_total", map[string]string{lPort: "p1", lClass: "storage", lReason: "policer"}, 3},
		{"xnic_class_tx_queue_depth", map[string]string{lPort: "p1", lClass: "storage"}, 17},
		{"xnic_class_tx_ecn_marks_total", map[string]string{lPort: "p1", lClass: "storage"}, 4},
		{"xnic_stack_tcp_retransmits_total", map[string]string{lGuest: "web"}, 8},
		{"xnic_stack_tcp_checksum_errors_total", map[string]string{lGuest: "web"}, 1},
		{"xnic_stack_tcp_established_connections", map[string]string{lGuest: "web"}, 3},
		{"xnic_stack_drops_total", map[string]string{lGuest: "web", lReason: "rx_csum_bad"}, 2},
	}
	for _, c := range checks {
		if got := value(t, mf, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// The standby port's row sends no send counters (they live on the
	// active port), so a move does not look like a counter reset.
	for _, m := range mf["xnic_class_tx_sent_bytes_total"].GetMetric() {
		if hasLabels(m, map[string]string{lPort: "p0"}) {
			t.Errorf("xnic_class_tx_sent_bytes_total on the standby port: %v", m)
		}
	}

	// The GRO histogram: cumulative buckets, count and sum.
	h := mf["xnic_gro_aggregate_segments"]
	if h.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("xnic_gro_aggregate_segments: type %s", h.GetType())
	}
	hist := h.GetMetric()[0].GetHistogram()
	if hist.GetSampleCount() != 9 || hist.GetSampleSum() != 107 {
		t.Errorf("gro histogram: count %d sum %v, want 9 and 107", hist.GetSampleCount(), hist.GetSampleSum())
	}
	want := map[float64]uint64{1: 1, 3: 3, 7: 8, 255: 8}
	for _, b := range hist.GetBucket() {
		if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
			t.Errorf("gro histogram: le %v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
	}

	// Build info, and the runtime's own collectors.
	bi := mf["xnic_build_info"]
	if bi == nil || len(bi.GetMetric()) != 1 || bi.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Fatalf("xnic_build_info: %v", bi)
	}
	got := map[string]string{}
	for _, lp := range bi.GetMetric()[0].GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	if got["goversion"] == "" || got["version"] == "" || got["revision"] == "" {
		t.Errorf("xnic_build_info labels: %v", got)
	}
	if _, ok := mf["go_goroutines"]; !ok {
		t.Error("go_goroutines: missing")
	}
}

// A part the source cannot read does not take the rest of the scrape down.
func TestCollectorPartialFailure(t *testing.T) {
	f := newFake()
	f.queueErr = errors.New("port p1: map closed")
	f.queues = f.queues[:1]
	var logged strings.Builder
	mf := scrape(t, New(f, Options{}), slog.New(slog.NewTextHandler(&logged, nil)))
	if got := value(t, mf, "xnic_steer_rx_packets_total", map[string]string{lPort: "p0"}); got != 600 {
		t.Errorf("steer rx of p0 = %v, want 600", got)
	}
	if got := value(t, mf, "xnic_worker_rx_packets_total", nil); got != 1000 {
		t.Errorf("worker rx = %v, want 1000", got)
	}
	if !strings.Contains(logged.String(), "read queue stats: port p1: map closed") {
		t.Errorf("the failed read was not logged: %q", logged.String())
	}
	if _, ok := mf["xnic_stack_tcp_retransmits_total"]; ok {
		t.Error("stack metrics without a stack")
	}
}

// The Grafana dashboard reads only metrics the collector sends, through
// its Prometheus data source variable.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct{ Name, Type, Query any }
		}
		Panels []struct {
			Type, Title string
			Datasource  struct{ Type, UID string }
			Targets     []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	ds := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			ds = true
		}
	}
	if !ds {
		t.Error("no Prometheus data source variable")
	}
	known := map[string]bool{"xnic_build_info": true}
	for _, f := range registry {
		known[f.name] = true
		known[f.name+"_bucket"], known[f.name+"_count"], known[f.name+"_sum"] = true, true, true
	}
	re := regexp.MustCompile(`\bxnic_[a-z0-9_]+`)
	used := map[string]bool{}
	graphs := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		graphs++
		if p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, name := range re.FindAllString(tg.Expr, -1) {
				used[name] = true
				if !known[name] {
					t.Errorf("panel %q: %s is not a metric xnic sends", p.Title, name)
				}
			}
		}
	}
	for _, want := range []string{"xnic_steer_rx_packets_total", "xnic_class_tx_sent_bytes_total", "xnic_gro_segments_total",
		"xnic_class_tx_drops_total", "xnic_guest_migrations_total", "xnic_steer_drops_total"} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
	if graphs < 10 {
		t.Errorf("%d panels", graphs)
	}
}
