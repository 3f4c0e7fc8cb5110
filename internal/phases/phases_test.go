package phases

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestTimerLogsEveryStep(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tm := Start()
	time.Sleep(2 * time.Millisecond)
	tm.Done("first")
	tm.Took("apart", 5*time.Millisecond)
	tm.Done("second")
	tm.Log(context.Background(), l, "rpc steps", slog.String("rpc", "X"))
	line := buf.String()
	for _, want := range []string{`msg="rpc steps"`, "rpc=X", "first=", "apart=5ms", "second="} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %q lacks %q", line, want)
		}
	}
	if strings.Index(line, "rpc=X") > strings.Index(line, "first=") {
		t.Errorf("log line %q: what was timed should come before the steps", line)
	}

	buf.Reset()
	info := slog.New(slog.NewTextHandler(&buf, nil))
	tm.Log(context.Background(), info, "rpc steps")
	if buf.Len() != 0 {
		t.Errorf("logged %q at info level", buf.String())
	}
}
