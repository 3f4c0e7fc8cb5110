package cri

import (
	"bytes"
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffcri/skiff/meta"
)

// listedConfig is what a container's entry in ListContainers takes from its
// config beside what the record holds (labels, annotations, image).
type listedConfig struct {
	raw       []byte // the record's protojson config this was decoded from
	name      string
	attempt   uint32
	userImage string
}

// listedConfigs keeps each container's listedConfig, decoded once: a config
// never changes after create, and decoding its protojson for every
// container on every ListContainers (the kubelet's PLEG lists every second)
// was most of the call. An entry is used only while the record's config is
// byte for byte the one it was decoded from.
type listedConfigs struct {
	mu sync.Mutex
	m  map[string]listedConfig
}

// listedConfigOf takes what a listing needs from cfg.
func listedConfigOf(cfg *runtimeapi.ContainerConfig) listedConfig {
	return listedConfig{
		name:      cfg.GetMetadata().GetName(),
		attempt:   cfg.GetMetadata().GetAttempt(),
		userImage: cfg.GetImage().GetImage(),
	}
}

func newListedConfigs() *listedConfigs {
	return &listedConfigs{m: map[string]listedConfig{}}
}

// of returns rec's listedConfig.
func (l *listedConfigs) of(rec *meta.Container) (listedConfig, error) {
	l.mu.Lock()
	c, ok := l.m[rec.ID]
	l.mu.Unlock()
	if ok && bytes.Equal(c.raw, rec.Config) {
		return c, nil
	}
	cfg, err := containerConfig(rec)
	if err != nil {
		return listedConfig{}, err
	}
	c = listedConfigOf(cfg)
	c.raw = bytes.Clone(rec.Config)
	l.mu.Lock()
	l.m[rec.ID] = c
	l.mu.Unlock()
	return c, nil
}

// retain drops every container not in ids (removed).
func (l *listedConfigs) retain(ids map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.m {
		if !ids[id] {
			delete(l.m, id)
		}
	}
}
