package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// counterScript prints 0, 1, 2, ... one line every 10ms, forever.
const counterScript = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.01; done"

// TestKill9Recovery kills skiffd with SIGKILL while ten pods log, restarts
// it and checks that nothing was lost: every pod and container is listed in
// the right state, the containers kept running and logging while the daemon
// was down, no log line is missing or doubled, and a container that exited
// during the downtime reports its exit code.
func TestKill9Recovery(t *testing.T) {
	const pods = 10
	d := startDaemon(t)
	d.pull(t, busybox)

	type counter struct {
		pod, id, log string
	}
	var counters []counter
	podIDs := map[string]bool{}
	var firstPod string
	var firstCfg *runtimeapi.PodSandboxConfig
	for i := 0; i < pods; i++ {
		podID, podCfg := d.runPod(t, fmt.Sprintf("recover-%d", i))
		podIDs[podID] = true
		if i == 0 {
			firstPod, firstCfg = podID, podCfg
		}
		id := d.runContainer(t, podID, podCfg, "counter", "sh", "-c", counterScript)
		counters = append(counters, counter{pod: podID, id: id, log: filepath.Join(podCfg.LogDirectory, "counter.log")})
	}
	for _, c := range counters {
		d.waitState(t, c.id, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
		waitLog(t, c.log, "stdout", "5", 30*time.Second)
	}
	// Exits with 7 two seconds after start: while skiffd is down.
	exiter := d.runContainer(t, firstPod, firstCfg, "exiter", "sh", "-c", "sleep 2; exit 7")
	d.waitState(t, exiter, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)

	d.kill9()
	before := make([]int, len(counters))
	for i, c := range counters {
		before[i] = len(readLog(t, c.log))
	}
	time.Sleep(3 * time.Second)
	after := make([]int, len(counters))
	for i, c := range counters {
		after[i] = len(readLog(t, c.log))
		if after[i] <= before[i] {
			t.Errorf("container %s: log did not grow while skiffd was down (%d lines, then %d)", c.id, before[i], after[i])
		}
	}
	d.restart()
	ctx := ctxT(t, 5*time.Minute)

	podList, err := d.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatalf("ListPodSandbox after restart: %v", err)
	}
	if len(podList.Items) != pods {
		t.Errorf("ListPodSandbox after restart: %d pods, want %d", len(podList.Items), pods)
	}
	for _, p := range podList.Items {
		if !podIDs[p.Id] {
			t.Errorf("unknown pod %s listed after restart", p.Id)
		}
		if p.State != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Errorf("pod %s after restart: %s, want READY", p.Id, p.State)
		}
	}
	ctrList, err := d.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatalf("ListContainers after restart: %v", err)
	}
	states := map[string]runtimeapi.ContainerState{}
	for _, c := range ctrList.Containers {
		states[c.Id] = c.State
	}
	if len(states) != pods+1 {
		t.Errorf("ListContainers after restart: %d containers, want %d", len(states), pods+1)
	}
	for _, c := range counters {
		if states[c.id] != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("counter %s after restart: listed %s, want RUNNING", c.id, states[c.id])
		}
		if st := d.containerStatus(t, c.id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("counter %s after restart: status %s, want RUNNING", c.id, st.State)
		}
	}
	st := d.containerStatus(t, exiter)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 7 || st.Reason != "Error" {
		t.Errorf("exiter after restart: state %s exit code %d reason %q, want EXITED 7 Error", st.State, st.ExitCode, st.Reason)
	}
	if states[exiter] != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("exiter after restart: listed %s, want EXITED", states[exiter])
	}

	// The logs keep growing under the restarted daemon.
	for i, c := range counters {
		if n := len(readLog(t, c.log)); n <= after[i] {
			waitLog(t, c.log, "stdout", strconv.Itoa(after[i]+10), 30*time.Second)
		}
	}

	// The restarted daemon runs new pods as before.
	newPod, newCfg := d.runPod(t, "after-restart")
	fresh := d.runContainer(t, newPod, newCfg, "fresh", "sh", "-c", "echo fresh; exit 0")
	if st := d.waitState(t, fresh, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second); st.ExitCode != 0 {
		t.Errorf("container started after the restart: exit code %d, want 0", st.ExitCode)
	}
	waitLog(t, filepath.Join(newCfg.LogDirectory, "fresh.log"), "stdout", "fresh", 30*time.Second)

	// Stop through the restarted daemon (its shims reconnected), then every
	// log must count 0, 1, 2, ... with no gap or duplicate.
	for p := range podIDs {
		if _, err := d.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p}); err != nil {
			t.Errorf("StopPodSandbox %s after restart: %v", p, err)
		}
	}
	for i, c := range counters {
		if st := d.containerStatus(t, c.id); st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
			t.Errorf("counter %s after StopPodSandbox: %s, want EXITED", c.id, st.State)
		}
		lines := readLog(t, c.log)
		var last string
		for n, l := range lines {
			if l.Stream != "stdout" || l.Tag != "F" {
				t.Errorf("%s:%d: %+v, want full stdout lines only", c.log, n+1, l)
				break
			}
			if l.Text != strconv.Itoa(n) {
				t.Errorf("%s:%d: %q after %q, want %d: a line was lost or doubled", c.log, n+1, l.Text, last, n)
				break
			}
			last = l.Text
		}
		t.Logf("%s: %d lines (%d at kill -9, %d at restart)", filepath.Base(filepath.Dir(c.log)), len(lines), before[i], after[i])
	}
}

// TestRestartKeepsEveryState restarts skiffd (kill -9) with objects in every
// state: a stopped pod, a created container that starts only after the
// restart, an exited one, and a graceful restart (SIGTERM) after that.
func TestRestartKeepsEveryState(t *testing.T) {
	d := startDaemon(t)
	d.pull(t, busybox)
	ctx := ctxT(t, 5*time.Minute)

	stopped, _ := d.runPod(t, "stopped")
	if _, err := d.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: stopped}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	podID, podCfg := d.runPod(t, "live")
	created := d.createContainer(t, podID, podCfg, containerConfig("created", busybox, "sh", "-c", "echo started-late; sleep 1000"))
	exited := d.runContainer(t, podID, podCfg, "exited", "sh", "-c", "exit 4")
	d.waitState(t, exited, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)

	check := func(when string) {
		t.Helper()
		for id, want := range map[string]runtimeapi.PodSandboxState{stopped: runtimeapi.PodSandboxState_SANDBOX_NOTREADY, podID: runtimeapi.PodSandboxState_SANDBOX_READY} {
			st, err := d.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
			if err != nil {
				t.Fatalf("%s: PodSandboxStatus %s: %v", when, id, err)
			}
			if st.Status.State != want {
				t.Errorf("%s: pod %s is %s, want %s", when, st.Status.Metadata.Name, st.Status.State, want)
			}
		}
		if st := d.containerStatus(t, exited); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 4 {
			t.Errorf("%s: exited container: %s code %d, want EXITED 4", when, st.State, st.ExitCode)
		}
	}
	d.kill9()
	d.restart()
	check("after kill -9")
	if st := d.containerStatus(t, created); st.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("after kill -9: created container is %s, want CREATED", st.State)
	}
	// The container created before the crash starts now.
	d.startContainer(t, created)
	d.waitState(t, created, runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	waitLog(t, filepath.Join(podCfg.LogDirectory, "created.log"), "stdout", "started-late", 30*time.Second)

	d.stop()
	d.restart()
	check("after SIGTERM")
	if st := d.containerStatus(t, created); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after a graceful restart: container is %s, want RUNNING (skiffd's exit must not stop containers)", st.State)
	}
}
