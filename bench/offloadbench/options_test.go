package offloadbench

import (
	"errors"
	"testing"
	"time"
)

func TestDefaultOptionsValid(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("DefaultOptions: %v", err)
	}
}

// TestValidateNamesField: every bad option is rejected, as an ErrOptions,
// naming the option as the CLI spells its flag.
func TestValidateNamesField(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Options)
		field string
	}{
		{"no rounds", func(o *Options) { o.Rounds = 0 }, "rounds"},
		{"too many rounds", func(o *Options) { o.Rounds = MaxRounds + 1 }, "rounds"},
		{"zero duration", func(o *Options) { o.Duration = 0 }, "duration"},
		{"negative duration", func(o *Options) { o.Duration = -time.Second }, "duration"},
		{"too long", func(o *Options) { o.Duration = MaxDuration + time.Second }, "duration"},
		{"cpu below -1", func(o *Options) { o.CPU = -2 }, "cpu"},
		{"cpu too high", func(o *Options) { o.CPU = MaxCPU + 1 }, "cpu"},
		{"batch zero", func(o *Options) { o.Batch = 0 }, "batch"},
		{"batch too big", func(o *Options) { o.Batch = MaxBatch + 1 }, "batch"},
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

// TestValidateAccepts: the edges of every range pass.
func TestValidateAccepts(t *testing.T) {
	for _, edit := range []func(*Options){
		func(o *Options) { o.Rounds, o.Duration, o.CPU, o.Batch = 1, MinDuration, -1, 1 },
		func(o *Options) { o.Rounds, o.Duration, o.CPU, o.Batch = MaxRounds, MaxDuration, MaxCPU, MaxBatch },
	} {
		o := DefaultOptions()
		edit(&o)
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
}
