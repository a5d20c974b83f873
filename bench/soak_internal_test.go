package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// soakCurve is a soak sampled every 10 s for 10 minutes whose RSS (MiB) at
// time t (s) is rss(t), with healthy totals.
func soakCurve(rss func(t float64) float64) ([]SoakSample, SoakTotals) {
	var s []SoakSample
	for t := 0.0; t <= 600; t += 10 {
		kib := uint64(rss(t) * 1024)
		s = append(s, SoakSample{T: t, RSSKiB: kib, HWMKiB: kib, Threads: 12, FDs: 20, Requests: uint64(t) * 1000})
	}
	return s, SoakTotals{Requests: 600_000, Downloads: 120, DownloadBytes: 120 << 22, Echoes: 50_000}
}

func TestJudgeSoak(t *testing.T) {
	const warmup, window = time.Minute, time.Minute
	flat := func(t float64) float64 {
		// A warm-up ramp, then flat with noise of ±1 MiB; a spike of 30
		// MiB inside each window moves no median.
		switch {
		case t < 60:
			return 40 + t/2
		case t == 90 || t == 570:
			return 100
		}
		return 70 + float64(int(t/10)%3-1)
	}
	t.Run("flat passes", func(t *testing.T) {
		s, tot := soakCurve(flat)
		v := judgeSoak(s, tot, "", warmup, window, 10)
		if !v.Pass || len(v.Reasons) != 0 {
			t.Fatalf("verdict %+v, want a pass", v)
		}
		if v.FirstFrom != 60 || v.FirstTo != 120 || v.LastFrom != 540 || v.LastTo != 600 {
			t.Errorf("windows %v–%v and %v–%v, want 60–120 and 540–600", v.FirstFrom, v.FirstTo, v.LastFrom, v.LastTo)
		}
		if v.FirstSamples != 7 || v.LastSamples != 7 {
			t.Errorf("%d and %d samples in the windows, want 7 and 7", v.FirstSamples, v.LastSamples)
		}
		// First window 60..120: 69 70 71 (100) 70 71 69 → median 70; the
		// last, 540..600: 69 70 71 (100) 70 71 69 → 70.
		if v.FirstMiB != 70 || v.LastMiB != 70 || v.GrowthPct != 0 {
			t.Errorf("medians %v → %v (%v%%), want 70 → 70 (0%%)", v.FirstMiB, v.LastMiB, v.GrowthPct)
		}
		if v.PeakMiB != 69 {
			t.Errorf("peak %v MiB, want the last sample's VmHWM, 69", v.PeakMiB)
		}
	})
	t.Run("leak fails", func(t *testing.T) {
		// 2 MiB a minute: 70 MiB at 90 s, 87 MiB at 570 s, +18%.
		s, tot := soakCurve(func(t float64) float64 { return 67 + t/30 })
		v := judgeSoak(s, tot, "", warmup, window, 10)
		if v.Pass {
			t.Fatalf("verdict %+v, want a failure", v)
		}
		if v.FirstMiB != 70 || v.LastMiB != 86 {
			t.Errorf("medians %v → %v, want 70 → 86", v.FirstMiB, v.LastMiB)
		}
		if len(v.Reasons) != 1 || !strings.Contains(v.Reasons[0], "RSS grew 16.0 MiB") {
			t.Errorf("reasons %q, want one on the RSS growth", v.Reasons)
		}
		// The same leak under a looser bound passes.
		if v := judgeSoak(s, tot, "", warmup, window, 25); !v.Pass {
			t.Errorf("with a 25%% bound: %+v, want a pass", v)
		}
	})
	t.Run("errors fail", func(t *testing.T) {
		s, base := soakCurve(flat)
		for _, c := range []struct {
			name string
			set  func(*SoakTotals)
			want string
		}{
			{"request", func(t *SoakTotals) { t.RequestErrors = 1 }, "1 requests failed"},
			{"download", func(t *SoakTotals) { t.DownloadErrors = 2 }, "2 downloads failed"},
			{"echo lost", func(t *SoakTotals) { t.EchoLost = 3 }, "3 udp echoes lost"},
			{"echo run", func(t *SoakTotals) { t.EchoErrors = 1 }, "1 udp echo runs failed"},
			{"sample", func(t *SoakTotals) { t.SampleErrors = 1 }, "1 samples failed"},
			{"no downloads", func(t *SoakTotals) { t.Downloads = 0 }, "no download succeeded"},
			{"no requests", func(t *SoakTotals) { t.Requests = 0 }, "no request succeeded"},
		} {
			tot := base
			c.set(&tot)
			v := judgeSoak(s, tot, "", warmup, window, 10)
			if v.Pass || len(v.Reasons) != 1 || v.Reasons[0] != c.want {
				t.Errorf("%s: pass %v, reasons %q, want a failure %q", c.name, v.Pass, v.Reasons, c.want)
			}
		}
		v := judgeSoak(s, base, "xnic exited during the measurement", warmup, window, 10)
		if v.Pass || len(v.Reasons) != 1 || !strings.HasPrefix(v.Reasons[0], "server: xnic exited") {
			t.Errorf("server error: %+v, want a failure naming the server", v)
		}
	})
	t.Run("short soak fails", func(t *testing.T) {
		// The server died at 100 s: the last window would start before the
		// first one ends.
		s, tot := soakCurve(flat)
		v := judgeSoak(s[:11], tot, "", warmup, window, 10)
		if v.Pass || len(v.Reasons) != 1 || !strings.Contains(v.Reasons[0], "before its last window") {
			t.Errorf("verdict %+v, want a failure on the windows", v)
		}
		if v := judgeSoak(nil, tot, "", warmup, window, 10); v.Pass || v.Reasons[0] != "no sample" {
			t.Errorf("no samples: %+v, want a failure", v)
		}
	})
	t.Run("unread RSS is not a sample", func(t *testing.T) {
		s, tot := soakCurve(flat)
		for i := range s {
			if s[i].T >= 60 && s[i].T <= 120 {
				s[i].RSSKiB = 0
			}
		}
		v := judgeSoak(s, tot, "", warmup, window, 10)
		if v.Pass || v.FirstSamples != 0 {
			t.Errorf("verdict %+v, want a failure with no sample in the first window", v)
		}
	})
}

func TestSoakOptionsValidate(t *testing.T) {
	ok := DefaultSoakOptions()
	ok.Xnic = "/bin/xnic"
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if w, win := ok.windows(); w != time.Minute || win != time.Minute {
		t.Errorf("10m: warm-up %s, window %s, want 1m and 1m", w, win)
	}
	short := ok
	short.Duration = 2 * time.Minute
	if w, win := short.windows(); w != 12*time.Second || win != 30*time.Second {
		t.Errorf("2m: warm-up %s, window %s, want 12s and 30s", w, win)
	}
	if err := short.Validate(); err != nil {
		t.Errorf("2m: %v", err)
	}
	for _, c := range []struct {
		field string
		set   func(*SoakOptions)
	}{
		{"interval", func(o *SoakOptions) { o.Interval = time.Millisecond }},
		{"duration", func(o *SoakOptions) { o.Duration = 30 * time.Second }},
		{"duration", func(o *SoakOptions) { o.Warmup, o.Window = 5*time.Minute, 3*time.Minute }},
		{"window", func(o *SoakOptions) { o.Window = time.Second }},
		{"max growth", func(o *SoakOptions) { o.MaxGrowthPct = 0 }},
		{"clients", func(o *SoakOptions) { o.Clients = 0 }},
		{"download size", func(o *SoakOptions) { o.DownloadSize = 1 }},
		{"http port", func(o *SoakOptions) { o.HTTPPort = 0 }},
		{"xnic", func(o *SoakOptions) { o.Xnic = "" }},
	} {
		o := ok
		c.set(&o)
		var oe *OptionError
		if err := o.Validate(); !errors.As(err, &oe) || oe.Field != c.field {
			t.Errorf("%s: Validate = %v, want an error of field %q", c.field, err, c.field)
		}
	}
}

func TestParseProcStatus(t *testing.T) {
	text := "Name:\txnic\nVmPeak:\t 2000000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   80000 kB\nThreads:\t14\n"
	var s SoakSample
	if err := parseProcStatus(text, &s); err != nil {
		t.Fatal(err)
	}
	if s.RSSKiB != 80000 || s.HWMKiB != 81234 || s.Threads != 14 {
		t.Errorf("got rss %d hwm %d threads %d, want 80000 81234 14", s.RSSKiB, s.HWMKiB, s.Threads)
	}
	for _, bad := range []string{"VmRSS:\t1 kB\nThreads:\t3\n", "VmRSS:\tx kB\nVmHWM:\t1 kB\nThreads:\t3\n", "VmRSS:\t1 MB\nVmHWM:\t1 kB\nThreads:\t3\n"} {
		if err := parseProcStatus(bad, &SoakSample{}); err == nil {
			t.Errorf("parseProcStatus(%q) succeeded", bad)
		}
	}
	// This process's own status parses.
	if err := readProcStatus(os.Getpid(), &s); err != nil || s.RSSKiB == 0 || s.Threads < 1 {
		t.Errorf("own status: %v (%+v)", err, s)
	}
}

func TestSoakReportOutputs(t *testing.T) {
	s, tot := soakCurve(func(t float64) float64 { return 67 + t/30 })
	rep := &SoakReport{Env: SoakEnv{Machine: ThisMachine(time.Now()), DurationSec: 600, IntervalSec: 10,
		Clients: 4, DownloadSize: 4 << 20, DownloadEverySec: 5, ServerCPU: -1}, Samples: s, Totals: tot,
		Errors: []SoakError{{T: 42, What: "download", Err: "byte 7 is 1, the pattern's is 7"}}}
	rep.Verdict = judgeSoak(s, tot, "", time.Minute, time.Minute, 10)
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"xnic bench soak: 10m0s of load", "RSS MiB", "600s", "FAIL: RSS median 70.0 MiB", "+22.9%", "at 42s, download: byte 7"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n < len(s) {
		t.Errorf("table has %d lines for %d samples", n, len(s))
	}
	b.Reset()
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	if md := b.String(); !strings.Contains(md, "| time | RSS MiB |") || strings.Count(md, "\n| ") != len(s)+1 {
		t.Errorf("markdown has not one row per sample:\n%s", md)
	}
	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back SoakReport
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Samples) != len(s) || back.Verdict.Pass || back.Verdict.LastMiB != rep.Verdict.LastMiB {
		t.Errorf("JSON round trip: %d samples, verdict %+v", len(back.Samples), back.Verdict)
	}
	svg := filepath.Join(t.TempDir(), "soak.svg")
	if err := rep.WritePlot(svg); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(svg); err != nil || !bytes.Contains(data, []byte("<svg")) || !bytes.Contains(data, []byte("VmRSS")) {
		t.Errorf("plot: %v, %d bytes without an SVG of VmRSS", err, len(data))
	}
	if err := (&SoakReport{Samples: s[:1]}).WritePlot(svg); err == nil {
		t.Error("plot of one sample succeeded")
	}
}
