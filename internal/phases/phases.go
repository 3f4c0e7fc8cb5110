// Package phases times the steps of one operation for the debug log: one
// line per operation with each step's duration, which hack/profile.sh sums
// up into the cost breakdown docs/performance.md quotes, measured without a
// tracer slowing every syscall down.
package phases

import (
	"context"
	"log/slog"
	"time"
)

// Timer records the steps of one operation. It is not safe for concurrent
// use: a step run on another goroutine is timed there and handed to Took.
type Timer struct {
	last  time.Time
	attrs []slog.Attr
}

// Start starts timing the first step.
func Start() *Timer { return &Timer{last: time.Now()} }

// Done records the time since the previous step (or the start) as name.
func (t *Timer) Done(name string) {
	now := time.Now()
	t.attrs = append(t.attrs, slog.Duration(name, now.Sub(t.last)))
	t.last = now
}

// Took records d, a step timed apart, as name.
func (t *Timer) Took(name string, d time.Duration) {
	t.attrs = append(t.attrs, slog.Duration(name, d))
}

// Log writes msg, the attributes that say what was timed, then the steps,
// as one debug line.
func (t *Timer) Log(ctx context.Context, l *slog.Logger, msg string, what ...slog.Attr) {
	if !l.Enabled(ctx, slog.LevelDebug) {
		return
	}
	l.LogAttrs(ctx, slog.LevelDebug, msg, append(what, t.attrs...)...)
}
