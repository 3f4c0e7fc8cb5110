package cri

import "testing"

func TestCPURates(t *testing.T) {
	r := newCPURates()
	const sec = int64(1e9)
	steps := []struct {
		at    int64
		usage uint64
		want  uint64
		ok    bool
	}{
		{at: 10 * sec, usage: 5e9, ok: false},                   // first reading: no rate
		{at: 12 * sec, usage: 6e9, want: 500_000_000, ok: true}, // 1 s of CPU in 2 s: half a core
		{at: 12 * sec, usage: 7e9, ok: false},                   // not newer: ignored
		{at: 13 * sec, usage: 8e9, want: 2_000_000_000, ok: true},
		{at: 14 * sec, usage: 1e9, ok: false}, // went back: a new cgroup
		{at: 15 * sec, usage: 1e9, want: 0, ok: true},
	}
	for i, s := range steps {
		got, ok := r.rate("p", s.at, s.usage)
		if got != s.want || ok != s.ok {
			t.Errorf("step %d: rate = %d, %v; want %d, %v", i, got, ok, s.want, s.ok)
		}
	}
	r.forget("p")
	if _, ok := r.rate("p", 20*sec, 9e9); ok {
		t.Error("a forgotten pod has a rate on its next reading")
	}
}
