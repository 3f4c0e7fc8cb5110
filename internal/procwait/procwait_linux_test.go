package procwait

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Threads:" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

// TestExitedHoldsNoThread waits for many children at once: each wait parks
// a goroutine, not a thread, and returns when its child exits, leaving
// the exit status for Wait.
func TestExitedHoldsNoThread(t *testing.T) {
	const n = 40
	var cmds []*exec.Cmd
	var stdins []io.Closer
	t.Cleanup(func() {
		for _, c := range cmds {
			if c.ProcessState == nil {
				c.Process.Kill()
				c.Wait()
			}
		}
	})
	for i := 0; i < n; i++ {
		c := exec.Command("/bin/sh", "-c", "read x; exit 7")
		w, err := c.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		cmds = append(cmds, c)
		stdins = append(stdins, w)
	}
	before := threads(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- Exited(c.Process.Pid)
		}()
	}
	time.Sleep(300 * time.Millisecond)
	during := threads(t)
	t.Logf("threads: %d before %d waits, %d during", before, n, during)
	if during-before >= n/4 {
		t.Errorf("%d waits took %d threads more (from %d), want them parked in the poller", n, during-before, before)
	}
	select {
	case err := <-errs:
		t.Fatalf("Exited returned before its child exited: %v", err)
	default:
	}
	// stdin closes: each child reads EOF and exits 7.
	for _, w := range stdins {
		w.Close()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Exited: %v", err)
		}
	}
	for _, c := range cmds {
		err := c.Wait()
		if c.ProcessState == nil || c.ProcessState.ExitCode() != 7 {
			t.Errorf("child %d after Exited: %v, state %v, want exit 7 left for Wait", c.Process.Pid, err, c.ProcessState)
		}
	}
}

// TestExitedAlreadyGone returns at once for a child that exited before the
// call, and errs for a pid that is no child of this process.
func TestExitedAlreadyGone(t *testing.T) {
	c := exec.Command("/bin/true")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- Exited(c.Process.Pid) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Exited of an exited child: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Exited of an exited child did not return")
	}
	if err := c.Wait(); err != nil {
		t.Errorf("Wait after Exited: %v", err)
	}
	if err := Exited(1); err == nil {
		t.Error("Exited(1), not a child: no error")
	}
}
