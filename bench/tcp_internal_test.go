package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xnic/xnic/engine/services"
)

func TestPatternHasher(t *testing.T) {
	p := newPatternHasher(1000) // checkpoints every 1000 bytes: many in play
	// Out of order, across and on checkpoint boundaries, and again.
	for _, n := range []int64{0, 1, 250, 251, 999, 1000, 1001, 7777, 2500, 12345, 1000, 64 << 10} {
		got, err := p.sum(n)
		if err != nil {
			t.Fatalf("sum(%d): %v", n, err)
		}
		if want := services.PatternSHA256(n); got != want {
			t.Errorf("sum(%d) = %s, want %s", n, got, want)
		}
	}
	if _, err := p.sum(-1); err == nil {
		t.Error("sum(-1) did not fail")
	}
	if len(p.states) != 66 { // 0, 1000, ..., 65000
		t.Errorf("%d checkpoints after 64 KiB, want 66", len(p.states))
	}
}

func TestPatternWindow(t *testing.T) {
	w := patternWindow(1000)
	want := make([]byte, 1000+patternPeriod)
	io.ReadFull(services.Pattern(), want)
	if !bytes.Equal(w, want) {
		t.Fatal("patternWindow is not the pattern")
	}
}

func TestParseOffloads(t *testing.T) {
	out := "Features for xc1a2b0:\nrx-checksumming: on\ntx-checksumming: off\n\ttx-checksum-ipv4: off [fixed]\n" +
		"scatter-gather: on\ntcp-segmentation-offload: off\ngeneric-receive-offload: on\nrx-gro-hw: off [fixed]\n"
	got := parseOffloads(out)
	want := map[string]bool{"rx-checksumming": true, "tx-checksumming": false, "tx-checksum-ipv4": false,
		"scatter-gather": true, "tcp-segmentation-offload": false, "generic-receive-offload": true, "rx-gro-hw": false}
	if len(got) != len(want) {
		t.Errorf("parsed %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: got %v (present %v), want %v", k, g, ok, v)
		}
	}
}

// fakeTCPRounds: three rounds; gvisor-xdp's download fails in round 2 and
// the kernel's server in round 3.
func fakeTCPRounds() []TCPRound {
	res := func(name string, up, down, req float64) TCPResult {
		return TCPResult{Contender: name,
			Upload:   Transfer{Bytes: 1, Seconds: 1, BitsPerSec: up},
			Download: Transfer{Bytes: 1, Seconds: 1, BitsPerSec: down},
			Requests: RequestRate{Requests: 1, Seconds: 1, PerSec: req}}
	}
	var rounds []TCPRound
	for i, f := range []float64{1, 3, 2} {
		rd := TCPRound{Index: i + 1, Results: []TCPResult{
			res(TCPXnicGROTSO, 6e9*f, 8e9*f, 1000*f),
			res(TCPXnicOff, 2e9*f, 3e9*f, 900*f),
			res(TCPGvisorXDP, 1e9*f, 2e9*f, 500*f),
			res(TCPKernel, 10e9*f, 10e9*f, 2000*f),
			res(TCPXnicClasses, 5.4e9*f, 7.2e9*f, 950*f),
		}}
		switch i {
		case 1:
			rd.Results[2].Download = Transfer{Err: "byte 7 is 1, the pattern's is 7"}
		case 2:
			rd.Results[3].Err = "kernel did not stop cleanly"
			rd.Results[3].Noise.Others = 0.2
		}
		rounds = append(rounds, rd)
	}
	return rounds
}

func TestSummarizeTCP(t *testing.T) {
	sums, ratios := summarizeTCP(TCPContenders(), fakeTCPRounds())
	if len(sums) != 5 {
		t.Fatalf("%d summaries, want 5", len(sums))
	}
	x, g, k := sums[0], sums[3], sums[4]
	if x.Upload.Median != 12e9 || x.Upload.Min != 6e9 || x.Upload.Max != 18e9 || x.Upload.Rounds != 3 {
		t.Errorf("xnic upload %+v, want median 12e9 of 6e9..18e9 over 3 rounds", x.Upload)
	}
	if g.Download.Rounds != 2 || g.Download.Failed != 1 || g.Download.Median != 3e9 {
		t.Errorf("gvisor download %+v, want 2 rounds, 1 failed, median (2e9+4e9)/2", g.Download)
	}
	if g.Upload.Rounds != 3 || g.Upload.Failed != 0 {
		t.Errorf("gvisor upload %+v: a failed download must not fail the upload", g.Upload)
	}
	if k.Requests.Rounds != 2 || k.Requests.Failed != 1 || k.Requests.Median != 4000 || k.MaxOthers != 0.2 {
		t.Errorf("kernel %+v: a failed server fails every metric of its round", k)
	}
	want := map[string]float64{
		"upload xnic-gro-tso / gvisor-xdp":     12e9 / 2e9,
		"upload xnic-gro-tso / kernel":         12e9 / 20e9,
		"download xnic-gro-tso / gvisor-xdp":   16e9 / 3e9,
		"download xnic-gro-tso / kernel":       16e9 / 20e9,
		"upload xnic-classes / xnic-gro-tso":   (5.4e9 * 2) / (6e9 * 2),
		"download xnic-classes / xnic-gro-tso": (7.2e9 * 2) / (8e9 * 2),
	}
	if len(ratios) != len(want) {
		t.Fatalf("%d ratios, want %d", len(ratios), len(want))
	}
	for _, r := range ratios {
		w, ok := want[r.Name()]
		if !ok || r.Value == nil || *r.Value != w {
			t.Errorf("%s = %v, want %v", r.Name(), ratioString(r), w)
		}
	}
	if !ratios[0].Met() || ratios[1].Met() || !ratios[3].Met() {
		t.Errorf("met: %v %v %v, want true false true", ratios[0].Met(), ratios[1].Met(), ratios[3].Met())
	}
	// Without gVisor (and the classes contender), their ratios are not measured.
	_, ratios = summarizeTCP([]string{TCPXnicGROTSO, TCPKernel}, fakeTCPRounds())
	for _, r := range ratios {
		if (r.Den == TCPGvisorXDP || r.Num == TCPXnicClasses) != (r.Value == nil) {
			t.Errorf("%s = %s: measured iff neither gvisor-xdp nor xnic-classes is in it", r.Name(), ratioString(r))
		}
	}
}

func ratioString(r TCPRatio) string {
	if r.Value == nil {
		return "nil"
	}
	return fmt.Sprint(*r.Value)
}

func TestTCPRender(t *testing.T) {
	rep := &TCPReport{Env: TCPEnv{Machine: Machine{Date: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC), Kernel: "6.18.0",
		CPUModel: "Test CPU", Cores: 2, LoadAvg: "0.1 0.2 0.3"}, Lab: "xc0000", Rounds: 3, WindowSec: 5,
		Concurrency: 8, Contenders: TCPContenders(), ClientCPU: -1, ServerCPU: 1, Client: "a client",
		Servers: map[string]string{TCPKernel: "the kernel itself"}}}
	rep.Rounds = fakeTCPRounds()
	rep.Summary, rep.Ratios = summarizeTCP(TCPContenders(), rep.Rounds)
	var table, md, js bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"xnic-gro-tso", "12.00", "6.00", "18.00", "2000", "2/3", "20.0%",
		"download xnic-gro-tso / gvisor-xdp", "5.33", "0.60", "missed", "met", "round 2 gvisor-xdp download: byte 7",
		"round 3 kernel server: kernel did not stop cleanly", "other tasks used more than 5%", "Linux 6.18.0",
		"servers on CPU 1", "any CPU"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, table.String())
		}
	}
	for _, s := range []string{"| xnic-gro-tso | 12.00 | 6.00 | 18.00 | 16.00 | 8.00 | 24.00 | 2000 | 1000 | 3000 |",
		"| upload xnic-gro-tso / kernel | 0.60 | ≥ 0.75 (missed) |", "Run on 2025-05-01: Linux 6.18.0, Test CPU, 2 cores",
		"- kernel: the kernel itself", "Client: a client."} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("markdown lacks %q:\n%s", s, md.String())
		}
	}
	var back TCPReport
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not parse back: %v", err)
	}
	if len(back.Rounds) != 3 || back.Summary[0].Upload.Median != 12e9 || back.Rounds[1].Results[2].Download.Err == "" {
		t.Errorf("JSON round trip lost data: %+v", back.Summary)
	}
}

// testClient is a tcpClient against a local server with the handler h.
func testClient(t *testing.T, h http.Handler) *tcpClient {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	var d net.Dialer
	return &tcpClient{dial: d.DialContext, base: srv.URL, dur: 200 * time.Millisecond, conc: 4,
		hash: newPatternHasher(1 << 20)}
}

// TestTCPClient runs the three metrics against the real HTTP service on
// loopback, and against services that lie, which must fail the metric.
func TestTCPClient(t *testing.T) {
	var c services.Counters
	good := testClient(t, services.HTTPHandler("test", &c, nil))
	ctx := context.Background()
	up := good.upload(ctx)
	if !up.OK() || up.Bytes == 0 || up.BitsPerSec <= 0 || up.SHA256 != services.PatternSHA256(up.Bytes) {
		t.Errorf("upload %+v", up)
	}
	if up.Seconds < 0.2 {
		t.Errorf("upload took %.3fs, less than the window", up.Seconds)
	}
	down := good.download(ctx)
	if !down.OK() || down.Bytes == 0 || down.BitsPerSec <= 0 || down.Seconds < 0.2 {
		t.Errorf("download %+v", down)
	}
	req := good.requests(ctx)
	if !req.OK() || req.Requests == 0 || req.PerSec <= 0 {
		t.Errorf("requests %+v", req)
	}
	if got := int64(c.Requests.Load()); got != req.Requests+2 { // + upload + download
		t.Errorf("server counted %d requests, client %d + 2", got, req.Requests)
	}

	liar := http.NewServeMux()
	liar.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, `{"bytes":%d,"sha256":"%s"}`, n, services.PatternSHA256(n-1))
	})
	liar.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		b := patternWindow(100 << 10)
		b[70000]++ // one wrong byte
		w.Write(b)
	})
	liar.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	bad := testClient(t, liar)
	if up := bad.upload(ctx); up.OK() || !strings.Contains(up.Err, "sha256") {
		t.Errorf("upload with a wrong hash: %+v", up)
	}
	if down := bad.download(ctx); down.OK() || !strings.Contains(down.Err, "byte 70000 ") {
		t.Errorf("download with a wrong byte: %+v", down)
	}
	if req := bad.requests(ctx); req.OK() || !strings.Contains(req.Err, "hello") {
		t.Errorf("requests with a wrong greeting: %+v", req)
	}

	short := http.NewServeMux()
	short.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		io.CopyN(io.Discard, r.Body, 1000)
		fmt.Fprintf(w, `{"bytes":1000,"sha256":"%s"}`, services.PatternSHA256(1000))
	})
	short.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		w.Write(patternWindow(1000)[:1000]) // ends long before the window
	})
	cut := testClient(t, short)
	if up := cut.upload(ctx); up.OK() {
		t.Errorf("upload the server read only 1000 bytes of: %+v", up)
	}
	if down := cut.download(ctx); down.OK() || down.Bytes != 1000 {
		t.Errorf("download that ended early: %+v", down)
	}
}

func TestServeKernel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ready, report := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- ServeKernel(ctx, addr, ready, report) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.HasPrefix(ready.String(), KernelServerReady) {
		if time.Now().After(deadline) {
			t.Fatalf("no ready line: %q", ready.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "xnic guest kernel\n" {
		t.Errorf("GET / = %q", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeKernel: %v", err)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(report.String()), &rep); err != nil || rep["requests"] != 1.0 {
		t.Errorf("report %q (%v), want requests 1", report.String(), err)
	}
	if err := ServeKernel(context.Background(), "not an address", io.Discard, io.Discard); err == nil {
		t.Error("ServeKernel on a bad address did not fail")
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLastJSONLine(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
	}{
		{"guest web: 3 packets\n{\"requests\":3}\n", `{"requests":3}`},
		{"guest web: 3 packets\n[{\"name\":\"web\",\"requests\":3}]\n\n", `{"guests":[{"name":"web","requests":3}]}`},
		{"{\"type\":\"interval\",\"guests\":[]}\n{\"type\":\"summary\",\"guests\":[{\"name\":\"web\"}]}\n",
			`{"guests":[{"name":"web"}],"type":"summary"}`},
		{"no json here\n", "null"},
		{"", "null"},
		{"7\n", "null"},
	} {
		b, _ := json.Marshal(lastJSONLine(c.in))
		if string(b) != c.want {
			t.Errorf("lastJSONLine(%q) = %s, want %s", c.in, b, c.want)
		}
	}
}
