// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"slices"
	"time"
)

// Stats summarizes a sample of durations, in microseconds.
type Stats struct {
	N      int     `json:"n"`
	Min    float64 `json:"min_us"`
	Median float64 `json:"median_us"`
	P90    float64 `json:"p90_us"`
	P99    float64 `json:"p99_us"`
	Max    float64 `json:"max_us"`
}

// summarize returns the statistics of d (which it sorts).
func summarize(d []time.Duration) Stats {
	if len(d) == 0 {
		return Stats{}
	}
	slices.Sort(d)
	return Stats{N: len(d), Min: us(d[0]), Median: us(percentile(d, 50)), P90: us(percentile(d, 90)),
		P99: us(percentile(d, 99)), Max: us(d[len(d)-1])}
}

// percentile returns the p-th percentile of sorted by the nearest-rank method.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(len(sorted)-1, i-1))]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// medianFloat returns the median of v (which it sorts).
func medianFloat(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// ratio returns a/b, or 0 when b is 0 (a baseline that was not measured).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
