package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseRate reads a rate as tc(8) writes one and returns bytes per second:
// a number of bits per second with an optional unit bit, kbit, mbit, gbit
// or tbit (powers of 1000), or bytes per second with bps, kbps, mbps, gbps
// or tbps. "500mbit" is 62,500,000 bytes per second.
func ParseRate(s string) (uint64, error) {
	num, unit := splitUnit(s)
	bits := map[string]float64{"": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}
	bytes := map[string]float64{"bps": 1, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9, "tbps": 1e12}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) {
		return 0, fmt.Errorf("want a rate such as 500mbit or 10gbit, got %q", s)
	}
	var bps float64
	if m, ok := bits[unit]; ok {
		bps = v * m / 8
	} else if m, ok := bytes[unit]; ok {
		bps = v * m
	} else {
		return 0, fmt.Errorf("rate %q: unknown unit %q (bit, kbit, mbit, gbit, tbit; bps, kbps, mbps, gbps for bytes)", s, unit)
	}
	if bps < 1000 || bps > 1e13 {
		return 0, fmt.Errorf("rate %q: want 8kbit..80tbit", s)
	}
	return uint64(bps), nil
}

// ParseSize reads a size in bytes as tc(8) writes one: a number with an
// optional unit b, k or kb, m or mb, g or gb (powers of 1024).
func ParseSize(s string) (uint64, error) {
	num, unit := splitUnit(s)
	mult := map[string]uint64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (b, kb, mb, gb)", s, unit)
	}
	v, err := strconv.ParseUint(num, 10, 64)
	if err != nil || v == 0 || v > (1<<40)/m {
		return 0, fmt.Errorf("want a size such as 64kb, got %q", s)
	}
	return v * m, nil
}

// splitUnit splits "500mbit" into "500" and "mbit", lower-cased.
func splitUnit(s string) (string, string) {
	s = strings.ToLower(strings.TrimSpace(s))
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}
