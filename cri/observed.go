package cri

import "sync"

// observedStates remembers the last lifecycle status skiffd saw of each
// container, so that ListContainers, which the kubelet's PLEG calls every
// second, answers without waking every pod's shim. The shims stay the
// owners of container state: this only records what skiffd learnt from
// them (every containerState read, a pod's States) and the transitions it
// made itself (create, start), and every exit reaches it because every path
// that learns of one goes through containerState (noteExitLocked). The
// status only moves forward (created, running, exited), so a slow read that
// started before an exit cannot bring a container back to life. Unknown is
// never recorded: such a container is asked about again.
type observedStates struct {
	mu sync.Mutex
	m  map[string]string
}

func newObservedStates() *observedStates {
	return &observedStates{m: map[string]string{}}
}

// statusRank orders the statuses a container goes through; 0 is one that
// is not recorded.
func statusRank(status string) int {
	switch status {
	case StateCreated:
		return 1
	case StateRunning:
		return 2
	case StateExited:
		return 3
	}
	return 0
}

// note records that container id was seen in status, unless it was
// already seen further on.
func (o *observedStates) note(id, status string) {
	r := statusRank(status)
	if r == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if statusRank(o.m[id]) < r {
		o.m[id] = status
	}
}

// status returns the last status seen of container id.
func (o *observedStates) status(id string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st, ok := o.m[id]
	return st, ok
}

// forget drops container id (removed).
func (o *observedStates) forget(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, id)
}

// retain drops every container not in ids: what a read that raced with a
// removal noted after the removal forgot it.
func (o *observedStates) retain(ids map[string]bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for id := range o.m {
		if !ids[id] {
			delete(o.m, id)
		}
	}
}
