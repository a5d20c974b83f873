package bpf

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// TestCounterNamesMatchBTF: the JSON keys of every counter struct are the
// field names of its C struct in the objects' BTF, in order, the names
// bpftool map dump shows.
func TestCounterNamesMatchBTF(t *testing.T) {
	for _, c := range []struct {
		load  func() (*ebpf.CollectionSpec, error)
		cName string
		zero  any
	}{
		{loadSteer, "steer_stats", SteerStats{}},
		{loadSteer, "steer_slot_stats", SlotStats{}},
		{loadDrop, "count_stats", CountStats{}},
		{loadGen, "gen_stats", GenStats{}},
	} {
		spec, err := c.load()
		if err != nil {
			t.Fatal(err)
		}
		var st *btf.Struct
		if err := spec.Types.TypeByName(c.cName, &st); err != nil {
			t.Fatalf("%s: %v", c.cName, err)
		}
		var want []string
		for _, m := range st.Members {
			want = append(want, m.Name)
		}
		// Every counter set to its index + 1, so that the values show the
		// order too.
		v := reflect.New(reflect.TypeOf(c.zero)).Elem()
		var got []string
		for i, n := 0, 1; i < v.NumField(); i++ {
			if f := v.Type().Field(i); f.IsExported() {
				v.Field(i).SetUint(uint64(n))
				n++
				got = append(got, counterName(f.Name))
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: JSON keys %v, BTF fields %v", c.cName, got, want)
		}
		b, err := json.Marshal(v.Interface())
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]uint64
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v in %s", c.cName, err, b)
		}
		for i, name := range want {
			if m[name] != uint64(i+1) {
				t.Errorf("%s: %s = %d in %s, want %d", c.cName, name, m[name], b, i+1)
			}
		}
		back := reflect.New(v.Type())
		if err := json.Unmarshal(b, back.Interface()); err != nil {
			t.Fatalf("%s: decode %s: %v", c.cName, b, err)
		}
		if !reflect.DeepEqual(back.Elem().Interface(), v.Interface()) {
			t.Errorf("%s: round trip of %s gave %+v", c.cName, b, back.Elem().Interface())
		}
	}
	if err := json.Unmarshal([]byte(`{"RxPackets":1}`), new(SteerStats)); err == nil {
		t.Error("decoding a Go field name as a steer counter: no error")
	}
}
