package cri

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/errdefs"
)

// names reserves pod and container names so that two requests for the same
// metadata cannot both succeed.
type names struct {
	mu    sync.Mutex
	owner map[string]string
}

func (n *names) reserve(name, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.owner == nil {
		n.owner = map[string]string{}
	}
	if other, ok := n.owner[name]; ok && other != id {
		return errdefs.AlreadyExists("name %q is reserved by %s", name, other)
	}
	n.owner[name] = id
	return nil
}

func (n *names) release(name, id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.owner[name] == id {
		delete(n.owner, name)
	}
}

func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

func podName(m *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", m.GetName(), m.GetNamespace(), m.GetUid(), m.GetAttempt())
}

func containerName(c *runtimeapi.ContainerMetadata, p *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%s_%d", c.GetName(), p.GetName(), p.GetNamespace(), p.GetUid(), c.GetAttempt())
}

// matchLabels reports whether labels carry every key/value of selector.
func matchLabels(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// findByID resolves a full ID or, as crictl users type them, a unique prefix.
func findByID[T any](kind, id string, get func(string) (*T, error), all func() ([]*T, error), idOf func(*T) string) (*T, error) {
	if id == "" {
		return nil, errdefs.InvalidArgument("%s ID is empty", kind)
	}
	if rec, err := get(id); err == nil {
		return rec, nil
	} else if !errdefs.IsNotFound(err) {
		return nil, err
	}
	recs, err := all()
	if err != nil {
		return nil, err
	}
	var found *T
	for _, r := range recs {
		if strings.HasPrefix(idOf(r), id) {
			if found != nil {
				return nil, errdefs.InvalidArgument("%s ID prefix %q is ambiguous", kind, id)
			}
			found = r
		}
	}
	if found == nil {
		return nil, errdefs.NotFound("%s %q", kind, id)
	}
	return found, nil
}
