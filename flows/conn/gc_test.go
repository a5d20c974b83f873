package conn

import (
	"reflect"
	"runtime"
	"runtime/metrics"
	"slices"
	"testing"
	"time"

	"github.com/xnic/xnic/flows"
)

// hasPointers reports whether values of type t hold pointers the GC would
// have to follow.
func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Pointer, reflect.UnsafePointer, reflect.Slice, reflect.Map, reflect.Chan,
		reflect.Func, reflect.Interface, reflect.String:
		return true
	}
	return false
}

func TestPointerFree(t *testing.T) {
	for _, v := range []any{Context{}, Entry{}, flows.Key{}, Handle(0)} {
		if hasPointers(reflect.TypeOf(v)) {
			t.Errorf("%T holds pointers", v)
		}
	}
	// The checker itself must see pointers where they are.
	type withString struct {
		a int
		s string
	}
	if !hasPointers(reflect.TypeOf(withString{})) || !hasPointers(reflect.TypeOf([2]*int{})) {
		t.Fatal("hasPointers misses pointers")
	}
	// Every backing array of a table and a cache is pointer-free.
	tb := mustTable(t, 4)
	c := mustCache(t, tb, 4, 2)
	for _, s := range []any{tb.ctx, tb.index, tb.free, c.tag, c.stamp, c.handle, c.ctx} {
		if typ := reflect.TypeOf(s).Elem(); hasPointers(typ) {
			t.Errorf("backing array of %v holds pointers", typ)
		}
	}
}

var scanSample = []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}

// scannableHeap is the heap the GC has to scan, as of a fresh collection.
func scannableHeap() uint64 {
	runtime.GC()
	metrics.Read(scanSample)
	return scanSample[0].Value.Uint64()
}

func gcTime() time.Duration {
	var d []time.Duration
	for range 5 {
		t0 := time.Now()
		runtime.GC()
		d = append(d, time.Since(t0))
	}
	slices.Sort(d)
	return d[len(d)/2]
}

var keepAlive any

// TestTableNotScanned: a table of 1M contexts (over 140 MiB) adds almost
// nothing to the heap the GC scans, where a slice of 1M pointers to
// contexts adds megabytes. It logs GC times too, for the record.
func TestTableNotScanned(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 150 MiB")
	}
	baseScan, baseGC := scannableHeap(), gcTime()

	tb := mustTable(t, 1<<20)
	for i := range 1 << 20 {
		k := testKey(i, flows.ProtoUDP)
		if _, v := tb.Insert(&k, 0); v != Inserted {
			t.Fatalf("insert %d: %v", i, v)
		}
	}
	keepAlive = tb
	tableScan, tableGC := scannableHeap(), gcTime()
	keepAlive = nil

	ptrs := make([]*Context, 1<<20)
	for i := range ptrs {
		ptrs[i] = &tb.ctx[i]
	}
	keepAlive = ptrs
	ptrScan, ptrGC := scannableHeap(), gcTime()
	keepAlive = nil

	bytes := len(tb.ctx)*ContextSize + len(tb.index)*8 + len(tb.free)*4
	t.Logf("table %d MiB: scannable heap +%d KiB, GC %v -> %v; 1M pointers: +%d KiB, GC %v",
		bytes>>20, int64(tableScan-baseScan)>>10, baseGC, tableGC, int64(ptrScan-baseScan)>>10, ptrGC)
	if d := int64(tableScan) - int64(baseScan); d > 1<<20 {
		t.Errorf("the 1M-context table adds %d bytes of scannable heap", d)
	}
	if d := int64(ptrScan) - int64(baseScan); d < 8<<20 {
		t.Errorf("1M pointers add only %d bytes of scannable heap: the metric does not work", d)
	}
	runtime.KeepAlive(tb)
}

// BenchmarkGC times a full collection with and without a live 1M-context
// table.
func BenchmarkGC(b *testing.B) {
	for _, withTable := range []bool{false, true} {
		name := "empty"
		if withTable {
			name = "table1M"
		}
		b.Run(name, func(b *testing.B) {
			if withTable {
				tb := mustTable(b, 1<<20)
				for i := range 1 << 20 {
					k := testKey(i, flows.ProtoUDP)
					tb.Insert(&k, 0)
				}
				keepAlive = tb
				defer func() { keepAlive = nil }()
			}
			runtime.GC()
			b.ResetTimer()
			for b.Loop() {
				runtime.GC()
			}
		})
	}
}
