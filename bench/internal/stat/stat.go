// Package stat has the small statistics the benchmarks share.
package stat

import "slices"

// Median is the median of a non-empty slice (the mean of the two middle
// values for an even length). It sorts a copy; v is left as it was.
func Median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
