package connbench

import (
	"errors"
	"testing"
)

func TestDefaultOptionsValid(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("DefaultOptions: %v", err)
	}
}

// TestValidateNamesField: every bad option is rejected, as an ErrOptions,
// naming the option (as the CLI spells its flag).
func TestValidateNamesField(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Options)
		field string
	}{
		{"no conns", func(o *Options) { o.Conns = nil }, "conns"},
		{"zero conns", func(o *Options) { o.Conns = []int{0} }, "conns"},
		{"too many conns", func(o *Options) { o.Conns = []int{16, MaxConns + 1} }, "conns"},
		{"conns twice", func(o *Options) { o.Conns = []int{16, 1000, 16} }, "conns"},
		{"no cache", func(o *Options) { o.CacheSizes = []int{} }, "cache"},
		{"cache not a power of two", func(o *Options) { o.CacheSizes = []int{64, 500} }, "cache"},
		{"cache too big", func(o *Options) { o.CacheSizes = []int{MaxCache * 2} }, "cache"},
		{"no window", func(o *Options) { o.Windows = nil }, "window"},
		{"window zero", func(o *Options) { o.Windows = []int{0, 64} }, "window"},
		{"window too big", func(o *Options) { o.Windows = []int{1 << 17} }, "window"},
		{"window twice", func(o *Options) { o.Windows = []int{64, 64} }, "window"},
		{"ways not a power of two", func(o *Options) { o.Ways = 3 }, "ways"},
		{"ways too many", func(o *Options) { o.Ways = 128 }, "ways"},
		{"unknown model", func(o *Options) { o.Model = "poisson" }, "model"},
		{"spread zero", func(o *Options) { o.Spread = 0 }, "spread"},
		{"burst zero", func(o *Options) { o.Burst = 0 }, "burst"},
		{"burst over spread", func(o *Options) { o.Burst, o.Spread = 8, 4 }, "burst"},
		{"blocks need a multiple", func(o *Options) { o.Burst, o.Spread = 3, 64 }, "spread"},
		{"batch zero", func(o *Options) { o.Batch = 0 }, "batch"},
		{"too few packets", func(o *Options) { o.Packets = MinPackets - 1 }, "packets"},
		{"too many packets", func(o *Options) { o.Packets = MaxPackets + 1 }, "packets"},
		{"no rounds", func(o *Options) { o.Rounds = 0 }, "rounds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := DefaultOptions()
			c.edit(&o)
			err := o.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrOptions) {
				t.Errorf("%v: not an ErrOptions", err)
			}
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Field != c.field {
				t.Errorf("%v: want field %q", err, c.field)
			}
		})
	}
}

// TestValidateAccepts: odd but valid settings pass.
func TestValidateAccepts(t *testing.T) {
	o := DefaultOptions()
	o.Model, o.Burst, o.Spread = ModelOverlap, 3, 100 // overlap needs no multiple
	o.Windows = []int{256, 1}
	o.CacheSizes = []int{1}
	o.Ways = 64 // more than the cache: clamped
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
}
