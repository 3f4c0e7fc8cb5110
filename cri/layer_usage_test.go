package cri

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLayerUsage: a tree is walked on the request path only the first
// time; later requests get the cached value and, once it is old, start one
// background walk whose result the next request sees.
func TestLayerUsage(t *testing.T) {
	var walks atomic.Int32
	var size atomic.Uint64
	size.Store(100)
	release := make(chan struct{})
	block := atomic.Bool{}
	l := newLayerUsage(func(ctx context.Context, dir string) (uint64, uint64, error) {
		walks.Add(1)
		if block.Load() {
			<-release
		}
		return size.Load(), 1, nil
	})
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ctx := context.Background()
	get := func() uint64 {
		b, _, err := l.get(ctx, ctx, "/layer")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	if b := get(); b != 100 || walks.Load() != 1 {
		t.Fatalf("first get = %d after %d walks, want 100 after 1", b, walks.Load())
	}
	size.Store(200)
	if b := get(); b != 100 || walks.Load() != 1 {
		t.Fatalf("fresh get = %d after %d walks, want the cached 100 and no walk", b, walks.Load())
	}
	// Old: the request still gets the cached value, and one walk starts,
	// however many requests come while it runs.
	advance(l.maxAge + time.Second)
	block.Store(true)
	for range 5 {
		if b := get(); b != 100 {
			t.Fatalf("get while refreshing = %d, want the cached 100", b)
		}
	}
	close(release)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		done := !l.entries["/layer"].refreshing
		l.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background refresh did not finish")
		}
	}
	if walks.Load() != 2 {
		t.Fatalf("%d walks, want 2 (one background refresh)", walks.Load())
	}
	if b := get(); b != 200 {
		t.Fatalf("get after the refresh = %d, want 200", b)
	}
	// A forgotten tree is walked again when asked for.
	block.Store(false)
	l.forget("/layer")
	size.Store(300)
	if b := get(); b != 300 || walks.Load() != 3 {
		t.Fatalf("get after forget = %d after %d walks, want 300 after 3", b, walks.Load())
	}
}
