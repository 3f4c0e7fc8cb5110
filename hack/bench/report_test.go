package main

import (
	"slices"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      int
		want   time.Duration
	}{
		{"one sample", ms(7), 95, 7 * time.Millisecond},
		{"median of odd", ms(1, 2, 3), 50, 2 * time.Millisecond},
		{"median of even is the lower", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p95 of 20 is the 19th", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20), 95, 19 * time.Millisecond},
		{"p95 of 100 is the 95th", ms(seq(100)...), 95, 95 * time.Millisecond},
		{"none", nil, 50, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(%d) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []int
	}{
		{100, []int{10, 50, 100}},
		{50, []int{10, 50}},
		{20, []int{10, 20}},
		{2, []int{2}},
	} {
		if got := levels(tc.n, 10, 50); !slices.Equal(got, tc.want) {
			t.Errorf("levels(%d, 10, 50) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestRatio(t *testing.T) {
	r := &results{}
	r.durations("op", "ms", []time.Duration{30 * time.Millisecond}, []time.Duration{60 * time.Millisecond})
	r.value("mem", "MiB", 1, 0)
	if got := r.rows[0].ratio(); got != "0.50" {
		t.Errorf("ratio = %q, want 0.50", got)
	}
	if got := r.rows[1].ratio(); got != "–" {
		t.Errorf("ratio over zero = %q, want –", got)
	}
}

func TestParseCPULine(t *testing.T) {
	got, err := parseCPULine("351520 0 92821 11508614 5931 0 2245 35224 7 0")
	if err != nil {
		t.Fatal(err)
	}
	if want := (cpuTimes{total: 351520 + 92821 + 11508614 + 5931 + 2245 + 35224, steal: 35224}); got != want {
		t.Errorf("parseCPULine = %+v, want %+v", got, want)
	}
	if _, err := parseCPULine("1 2 x"); err == nil {
		t.Error("parseCPULine accepted a column that is not a number")
	}
}
