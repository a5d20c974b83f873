package engine

import (
	"encoding/json"
	"reflect"
	"slices"
	"sync"
	"testing"
	"unsafe"

	"github.com/xnic/xnic/flows/offload"
)

// TestWorkerStatsWords: WorkerStats is made of uint64 words only, so that
// publishing, loading and summing it word by word covers every counter.
func TestWorkerStatsWords(t *testing.T) {
	var words func(ty reflect.Type, path string) int
	words = func(ty reflect.Type, path string) int {
		switch ty.Kind() {
		case reflect.Uint64:
			return 1
		case reflect.Array:
			return ty.Len() * words(ty.Elem(), path+"[]")
		case reflect.Struct:
			n := 0
			for f := range ty.Fields() {
				n += words(f.Type, path+"."+f.Name)
			}
			return n
		}
		t.Fatalf("%s is a %s, not a uint64", path, ty)
		return 0
	}
	n := words(reflect.TypeFor[WorkerStats](), "WorkerStats")
	if n != statsWords || uintptr(n)*8 != unsafe.Sizeof(WorkerStats{}) {
		t.Fatalf("%d counters, statsWords %d, size %d bytes", n, statsWords, unsafe.Sizeof(WorkerStats{}))
	}
}

// TestWorkerStatsAdd: add sums every counter, the arrays included.
func TestWorkerStatsAdd(t *testing.T) {
	a := WorkerStats{RxPackets: 1, Sleeps: 2, Pipeline: PipelineStats{Conns: 3, CsumBad: 4}}
	a.Pipeline.GROFlush[offload.FlushByPush] = 5
	a.Pipeline.SegsHist[8] = 6
	var sum WorkerStats
	sum.add(&a)
	sum.add(&a)
	want := WorkerStats{RxPackets: 2, Sleeps: 4, Pipeline: PipelineStats{Conns: 6, CsumBad: 8}}
	want.Pipeline.GROFlush[offload.FlushByPush] = 10
	want.Pipeline.SegsHist[8] = 12
	if sum != want {
		t.Fatalf("sum %+v, want %+v", sum, want)
	}
}

// TestStatsBoardNeverTorn: readers racing a writer only ever load a
// snapshot that was published whole. Each publish sets every word to the
// same value, and some publishes change only a few words; a reader that
// mixed two publishes would see two values.
func TestStatsBoardNeverTorn(t *testing.T) {
	var b statsBoard
	const rounds = 200000
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				s := b.load()
				w := s.words()
				for i := range w {
					if w[i] != w[0] {
						t.Errorf("torn read: word %d is %d, word 0 is %d", i, w[i], w[0])
						return
					}
				}
				select {
				case <-done:
					return
				default:
				}
			}
		})
	}
	var s WorkerStats
	w := s.words()
	for k := range uint64(rounds) {
		for i := range w {
			w[i] = k / 2 // every other publish changes nothing
		}
		b.publish(&s)
	}
	close(done)
	wg.Wait()
	if got := b.load(); got != s {
		t.Fatalf("last load %+v, want the last publish", got)
	}
}

// TestStatsJSONShape: the JSON of Stats keeps its field names, and the
// flush counts are an object of the reasons that are not zero, which reads
// back into the same counts.
func TestStatsJSONShape(t *testing.T) {
	var st Stats
	st.Pipeline.GROFlush[offload.FlushByPush] = 3
	st.Pipeline.GROFlush[offload.DeliverPassThrough] = 4
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]json.RawMessage) []string {
		var k []string
		for s := range m {
			k = append(k, s)
		}
		slices.Sort(k)
		return k
	}
	want := []string{"empty_passes", "pipeline", "rx_bytes", "rx_packets", "rx_wakeups", "rx_wrong_mac", "sleeps", "steer", "tx", "tx_spoofed", "xsk"}
	if got := keys(m); !slices.Equal(got, want) {
		t.Fatalf("stats keys %v, want %v", got, want)
	}
	var tm map[string]json.RawMessage
	if err := json.Unmarshal(m["tx"], &tm); err != nil {
		t.Fatal(err)
	}
	want = []string{"bytes", "completed", "dropped", "gso_requests", "link_down", "mss_clamped", "no_frames", "queue_drops", "queued", "requests", "segments", "send_queue_full", "spoofed"}
	if got := keys(tm); !slices.Equal(got, want) {
		t.Fatalf("tx keys %v, want %v", got, want)
	}
	var pm map[string]json.RawMessage
	if err := json.Unmarshal(m["pipeline"], &pm); err != nil {
		t.Fatal(err)
	}
	want = []string{"aged_out", "aggregates", "cache_hits", "cache_loads", "conns", "csum_bad", "evictions",
		"gro_acks_coalesced", "gro_flush", "gro_merged", "gro_segments", "groups", "malformed", "no_conn",
		"packets", "segs_hist", "table_full"}
	if got := keys(pm); !slices.Equal(got, want) {
		t.Fatalf("pipeline keys %v, want %v", got, want)
	}
	if got := string(pm["gro_flush"]); got != `{"pass_through":4,"push":3}` {
		t.Fatalf("gro_flush %s", got)
	}
	var back Stats
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Pipeline.GROFlush != st.Pipeline.GROFlush {
		t.Fatalf("gro_flush read back as %v, want %v", back.Pipeline.GROFlush, st.Pipeline.GROFlush)
	}
	b, err = json.Marshal(PipelineStats{})
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &pm); err != nil || string(pm["gro_flush"]) != "null" {
		t.Fatalf("no flushes: gro_flush %s (%v), want null", pm["gro_flush"], err)
	}
}
