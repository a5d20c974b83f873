package bpf

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"unicode"
)

// The counter structs bpf2go generates have Go field names and no JSON
// tags. In JSON they carry the names of the C struct's fields, the names
// bpftool shows from BTF (rx_packets, pass_non_ip, redirected_class0):
// counterName undoes bpf2go's renaming, and TestCounterNamesMatchBTF holds
// it to the BTF in the objects.

// MarshalJSON writes the counters under their BTF field names.
func (s SteerStats) MarshalJSON() ([]byte, error) { return marshalCounters(&s) }

// UnmarshalJSON reads what MarshalJSON wrote.
func (s *SteerStats) UnmarshalJSON(b []byte) error { return unmarshalCounters(b, s) }

// MarshalJSON writes the counters under their BTF field names.
func (s SlotStats) MarshalJSON() ([]byte, error) { return marshalCounters(&s) }

// UnmarshalJSON reads what MarshalJSON wrote.
func (s *SlotStats) UnmarshalJSON(b []byte) error { return unmarshalCounters(b, s) }

// MarshalJSON writes the counters under their BTF field names.
func (s CountStats) MarshalJSON() ([]byte, error) { return marshalCounters(&s) }

// UnmarshalJSON reads what MarshalJSON wrote.
func (s *CountStats) UnmarshalJSON(b []byte) error { return unmarshalCounters(b, s) }

// MarshalJSON writes the counters under their BTF field names.
func (s GenStats) MarshalJSON() ([]byte, error) { return marshalCounters(&s) }

// UnmarshalJSON reads what MarshalJSON wrote.
func (s *GenStats) UnmarshalJSON(b []byte) error { return unmarshalCounters(b, s) }

// counterName is the C name bpf2go made the Go field name f from:
// RxPackets is rx_packets, PassNonIp pass_non_ip, RxUnknownL4 rx_unknown_l4.
func counterName(f string) string {
	out := make([]rune, 0, len(f)+4)
	prev := rune(0)
	for _, r := range f {
		if unicode.IsUpper(r) {
			if prev != 0 && (unicode.IsLower(prev) || unicode.IsDigit(prev)) {
				out = append(out, '_')
			}
			r = unicode.ToLower(r)
		}
		out = append(out, r)
		prev = r
	}
	return string(out)
}

// marshalCounters writes the exported uint64 fields of *p, in order, as
// one JSON object keyed by counterName.
func marshalCounters(p any) ([]byte, error) {
	v := reflect.ValueOf(p).Elem()
	t := v.Type()
	b := []byte{'{'}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Type.Kind() != reflect.Uint64 {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, counterName(f.Name))
		b = append(b, ':')
		b = strconv.AppendUint(b, v.Field(i).Uint(), 10)
	}
	return append(b, '}'), nil
}

// unmarshalCounters sets the fields of *p from an object marshalCounters
// wrote; keys it does not know are an error.
func unmarshalCounters(b []byte, p any) error {
	var m map[string]uint64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	v := reflect.ValueOf(p).Elem()
	t := v.Type()
	byName := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.IsExported() && f.Type.Kind() == reflect.Uint64 {
			byName[counterName(f.Name)] = i
		}
	}
	for k, n := range m {
		i, ok := byName[k]
		if !ok {
			return fmt.Errorf("decode %s: unknown counter %q", t.Name(), k)
		}
		v.Field(i).SetUint(n)
	}
	return nil
}
