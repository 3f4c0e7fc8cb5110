package cri

import (
	"context"
	"path/filepath"
	"sync"
	"time"
)

// layerUsageMaxAge is how old a cached usage may get before a request
// starts a refresh. The kubelet asks for stats every 10 to 15 seconds.
const layerUsageMaxAge = 10 * time.Second

// layerUsage caches the disk usage of directory trees (containers'
// writable layers, the tree holding them all): a walk costs time in the
// number of files, and the stats RPCs, which the kubelet calls for every
// pod every few seconds, must not pay it. A request gets the cached value
// and, when it is older than layerUsageMaxAge, starts one background walk
// that refreshes it. Only a tree never seen is walked on the request path,
// which for a new writable layer is nearly empty.
type layerUsage struct {
	walk   func(ctx context.Context, dir string) (bytes, inodes uint64, err error)
	maxAge time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*usageEntry
}

type usageEntry struct {
	bytes, inodes uint64
	at            time.Time
	refreshing    bool
}

func newLayerUsage(walk func(ctx context.Context, dir string) (uint64, uint64, error)) *layerUsage {
	return &layerUsage{walk: walk, maxAge: layerUsageMaxAge, now: time.Now, entries: map[string]*usageEntry{}}
}

// get returns dir's usage. bg bounds the background refresh (the daemon's
// life, not the request's).
func (l *layerUsage) get(ctx, bg context.Context, dir string) (bytes, inodes uint64, err error) {
	l.mu.Lock()
	e, ok := l.entries[dir]
	if ok {
		if !e.refreshing && l.now().Sub(e.at) > l.maxAge {
			e.refreshing = true
			go l.refresh(bg, dir)
		}
		b, i := e.bytes, e.inodes
		l.mu.Unlock()
		return b, i, nil
	}
	l.mu.Unlock()
	b, i, err := l.walk(ctx, dir)
	if err != nil {
		return 0, 0, err
	}
	l.mu.Lock()
	if _, ok := l.entries[dir]; !ok {
		l.entries[dir] = &usageEntry{bytes: b, inodes: i, at: l.now()}
	}
	l.mu.Unlock()
	return b, i, nil
}

func (l *layerUsage) refresh(ctx context.Context, dir string) {
	b, i, err := l.walk(ctx, dir)
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[dir]
	if !ok {
		return // forgotten meanwhile
	}
	e.refreshing = false
	if err == nil {
		e.bytes, e.inodes, e.at = b, i, l.now()
	}
}

// forget drops dir (a removed container's layer).
func (l *layerUsage) forget(dir string) {
	l.mu.Lock()
	delete(l.entries, dir)
	l.mu.Unlock()
}

// writableLayer is the directory of container id's writable layer, as
// image/rootfs lays it out under RootfsRoot.
func (s *Server) writableLayer(id string) string {
	return filepath.Join(s.rootfsRoot, id, "upper")
}
