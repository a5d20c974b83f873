package tests

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xnic/xnic/engine/lab/labtest"
)

// scrapeMetrics gets url and parses it with Prometheus' text parser.
func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return mf
}

// sample is the value of family name's sample whose labels include want
// (summed over the samples that match), and whether any matched. It checks
// the family's type.
func sample(t *testing.T, mf map[string]*dto.MetricFamily, name string, typ dto.MetricType, want map[string]string) (float64, bool) {
	t.Helper()
	f, ok := mf[name]
	if !ok {
		return 0, false
	}
	if f.GetType() != typ {
		t.Fatalf("%s: type %s, want %s", name, f.GetType(), typ)
	}
	var sum float64
	found := false
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		found = true
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum, found
}

// TestCLIServeMetrics runs `xnic serve --metrics-addr` on a lab, scrapes
// /metrics before and after traffic to the guest (a download and an upload
// over its HTTP service, on a class of its own), and checks with the
// Prometheus text parser that the receive, GRO, send, class and stack
// counters moved.
func TestCLIServeMetrics(t *testing.T) {
	if r := runXnic(t, 20*time.Second, "serve", "--config", "none.yaml", "--metrics-addr", "9100"); r.code != 2 || !strings.Contains(r.stderr, "--metrics-addr") {
		t.Fatalf("serve --metrics-addr 9100: exit %d, %q; want 2 and the flag named", r.code, r.stderr)
	}
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	dir := t.TempDir()
	cfg := "ports:\n  - iface: " + p.Host + "\nclasses:\n  - {name: http, id: 1, priority: 1, weight: 1, match: {ports: [\"80\"]}}\n" +
		"guests:\n  - name: web\n    mac: 02:00:00:00:00:10\n    ipv4: [198.18.0.10/24]\n    services:\n      - {kind: http}\n"
	if err := os.WriteFile(dir+"/serve.yaml", []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	srv := exec.CommandContext(ctx, xnic(t), "serve", "--config", dir+"/serve.yaml", "--ctl", "", "--quiet",
		"--metrics-addr", "127.0.0.1:0")
	stderr := &syncBuffer{}
	srv.Stderr = stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(stderr.String(), "xnic serve: ready"); {
		if time.Now().After(deadline) {
			t.Fatalf("serve never got ready:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	m := regexp.MustCompile(`msg="xnic serve: metrics" url=(http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("serve did not say where its metrics are:\n%s", stderr.String())
	}
	url := m[1]

	before := scrapeMetrics(t, url)
	peer := func(args ...string) string {
		t.Helper()
		o, err := l.PeerCommand(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s\nserve: %s", strings.Join(args, " "), err, o, stderr.String())
		}
		return string(o)
	}
	if got := peer("sh", "-c", "curl -sS --max-time 30 -o /dev/null -w '%{size_download}' http://198.18.0.10/bytes/2000000"); got != "2000000" {
		t.Fatalf("download: %q bytes", got)
	}
	if up := peer("sh", "-c", "head -c 3000000 /dev/zero | curl -sS --max-time 30 --data-binary @- http://198.18.0.10/upload"); !strings.Contains(up, `"bytes":3000000`) {
		t.Fatalf("upload: %q", up)
	}
	after := scrapeMetrics(t, url)

	counter, gauge := dto.MetricType_COUNTER, dto.MetricType_GAUGE
	port := map[string]string{"port": p.Host}
	web := map[string]string{"guest": "web"}
	webHTTP := map[string]string{"port": p.Host, "guest": "web", "class": "http"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64 // the least it must have grown by
	}{
		{"xnic_steer_rx_packets_total", port, 2000},         // 3 MB up and the ACKs of 2 MB down
		{"xnic_steer_rx_bytes_total", port, 3000000},        // the upload at least
		{"xnic_steer_redirected_total", port, 2000},         // all of it to the guest's sockets
		{"xnic_worker_rx_packets_total", nil, 2000},         // taken by the workers
		{"xnic_pipeline_packets_total", nil, 2000},          // through the pipeline
		{"xnic_gro_segments_total", nil, 2000},              // the upload's segments through GRO
		{"xnic_guest_rx_packets_total", web, 2000},          // delivered to the guest
		{"xnic_guest_rx_bytes_total", web, 3000000},         //
		{"xnic_class_rx_packets_total", webHTTP, 2000},      // port 80 is class http
		{"xnic_class_tx_sent_packets_total", webHTTP, 1000}, // the download, 2 MB in MTU frames at least
		{"xnic_tx_segments_total", nil, 1000},               //
		{"xnic_tx_bytes_total", nil, 2000000},               //
		{"xnic_stack_rx_packets_total", web, 100},           // aggregates: fewer packets than frames
		{"xnic_stack_tx_bytes_total", web, 2000000},         //
	} {
		b, _ := sample(t, before, c.name, counter, c.labels)
		a, ok := sample(t, after, c.name, counter, c.labels)
		if !ok {
			t.Errorf("%s%v: not in the scrape", c.name, c.labels)
			continue
		}
		t.Logf("%s %v: +%v", c.name, c.labels, a-b)
		if a-b < c.min {
			t.Errorf("%s%v: %v -> %v, want it up by %v at least", c.name, c.labels, b, a, c.min)
		}
	}
	// GRO merged the upload: fewer aggregates than segments.
	if h := after["xnic_gro_aggregate_segments"]; h == nil || h.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("xnic_gro_aggregate_segments: %v", h)
	} else if hist := h.GetMetric()[0].GetHistogram(); float64(hist.GetSampleCount()) >= hist.GetSampleSum() {
		t.Errorf("gro: %d aggregates of %v segments: nothing merged", hist.GetSampleCount(), hist.GetSampleSum())
	}
	if _, ok := sample(t, after, "xnic_pipeline_connections", gauge, nil); !ok {
		t.Error("xnic_pipeline_connections: not in the scrape")
	}
	if v, ok := sample(t, after, "xnic_guest_info", gauge, map[string]string{"guest": "web", "port": p.Host}); !ok || v != 1 {
		t.Errorf("xnic_guest_info{guest=web,port=%s} = %v, %v", p.Host, v, ok)
	}
	if v, ok := sample(t, after, "xnic_build_info", gauge, nil); !ok || v != 1 {
		t.Errorf("xnic_build_info = %v, %v", v, ok)
	}
	for _, name := range []string{"xnic_xsk_rx_ring_full_total", "xnic_xsk_fill_ring_empty_total", "xnic_stack_tcp_retransmits_total",
		"xnic_stack_tcp_checksum_errors_total", "xnic_guest_migrations_total", "xnic_worker_sleeps_total"} {
		if _, ok := sample(t, after, name, counter, nil); !ok {
			t.Errorf("%s: not in the scrape", name)
		}
	}

	srv.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Fatalf("serve exit: %v\n%s", err, stderr.String())
	}
	if _, err := http.Get(url); err == nil {
		t.Error("/metrics still answers after serve exited")
	}
}

// TestCLIRunMetrics: `xnic run --metrics-addr` serves the same metrics;
// frames generated to a guest move its steering, worker and guest
// counters between two scrapes.
func TestCLIRunMetrics(t *testing.T) {
	l := labtest.New(t, labOptions(1))
	p := l.Ports[0]
	dir := t.TempDir()
	cfg := "ports:\n  - iface: " + p.Host + "\nguests:\n  - name: web\n    ipv4: [198.18.0.10]\n    rules:\n      - {proto: udp, ports: 9}\n"
	if err := os.WriteFile(dir+"/run.yaml", []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := exec.CommandContext(ctx, xnic(t), "run", "--config", dir+"/run.yaml", "--ctl", "", "--quiet", "--metrics-addr", "127.0.0.1:0")
	stderr := &syncBuffer{}
	run.Stderr = stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer run.Process.Kill()
	re := regexp.MustCompile(`msg="xnic run: metrics" url=(http://127\.0\.0\.1:\d+/metrics)`)
	var m []string
	for deadline := time.Now().Add(20 * time.Second); m == nil; m = re.FindStringSubmatch(stderr.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("run did not say where its metrics are:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := scrapeMetrics(t, m[1])
	if g := runXnic(t, 20*time.Second, "gen", "--lab", l.Name, "--count", "1000", "--dst-ip", "198.18.0.10", "--duration", "0"); g.code != 0 {
		t.Fatalf("gen: %s", g.stderr)
	}
	time.Sleep(200 * time.Millisecond) // the workers publish after their pass
	after := scrapeMetrics(t, m[1])
	for _, c := range []struct {
		name   string
		labels map[string]string
		extra  float64 // frames the peer's own kernel may send meanwhile (ARP, neighbour discovery): seen, not steered
	}{
		{"xnic_steer_rx_packets_total", map[string]string{"port": p.Host, "queue": "0"}, 10},
		{"xnic_steer_redirected_total", map[string]string{"port": p.Host}, 0},
		{"xnic_worker_rx_packets_total", nil, 0},
		{"xnic_pipeline_packets_total", nil, 0},
		{"xnic_guest_rx_packets_total", map[string]string{"guest": "web"}, 0},
	} {
		b, _ := sample(t, before, c.name, dto.MetricType_COUNTER, c.labels)
		a, ok := sample(t, after, c.name, dto.MetricType_COUNTER, c.labels)
		t.Logf("%s %v: %v -> %v", c.name, c.labels, b, a)
		// gen sends 1000 frames; the guest gets all of them but for
		// what a full ring drops (none is expected at this rate).
		if !ok || a-b < 900 || a-b > 1000+c.extra {
			t.Errorf("%s%v: %v -> %v, want it up by 900 to %v", c.name, c.labels, b, a, 1000+c.extra)
		}
	}
	if _, ok := after["xnic_stack_tcp_retransmits_total"]; ok {
		t.Error("xnic run has no guest stacks, yet sends their metrics")
	}
	run.Process.Signal(syscall.SIGTERM)
	if err := run.Wait(); err != nil {
		t.Fatalf("run exit: %v\n%s", err, stderr.String())
	}
}
