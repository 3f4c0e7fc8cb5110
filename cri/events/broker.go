// Package events fans container events out to GetContainerEvents
// subscribers. Publishing never blocks: each subscriber has a bounded
// buffer, and one that lets it fill is dropped (its stream ends with an
// error; the kubelet then subscribes again and relists), so a slow or
// vanished reader cannot hold up the runtime.
package events

import (
	"errors"
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ErrTooSlow ends the subscription of a subscriber whose buffer was full
// when an event came.
var ErrTooSlow = errors.New("event subscriber too slow: its buffer is full")

// Broker hands every published event to every subscriber. The zero value
// is not usable: build one with New.
type Broker struct {
	size int

	mu   sync.Mutex
	subs map[*Subscription]struct{}
	// held are the events published while nobody was subscribed (oldest
	// first, at most size): the next subscriber gets them first. This is
	// how transitions a restarted daemon found (exits while it was down)
	// reach the kubelet, which subscribes only after the restart.
	held []*runtimeapi.ContainerEventResponse
}

// New returns a broker whose subscribers each buffer up to size events.
func New(size int) *Broker {
	if size < 1 {
		size = 1
	}
	return &Broker{size: size, subs: map[*Subscription]struct{}{}}
}

// Subscription is one subscriber's view of the events.
type Subscription struct {
	b  *Broker
	ch chan *runtimeapi.ContainerEventResponse
	// done is closed when the subscription ends, by Close or because the
	// subscriber was dropped (err says which).
	done chan struct{}
	err  error // set before done is closed
}

// Subscribe adds a subscriber. It first receives the events held while
// nobody was subscribed.
func (b *Broker) Subscribe() *Subscription {
	s := &Subscription{b: b, ch: make(chan *runtimeapi.ContainerEventResponse, b.size), done: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ev := range b.held {
		s.ch <- ev // cannot block: len(held) <= size
	}
	b.held = nil
	b.subs[s] = struct{}{}
	return s
}

// Publish hands ev to every subscriber without waiting. A subscriber whose
// buffer is full is dropped; it reports ErrTooSlow. With no subscriber the
// event is held for the next one (the oldest held event makes room).
func (b *Broker) Publish(ev *runtimeapi.ContainerEventResponse) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subs) == 0 {
		if len(b.held) == b.size {
			b.held = b.held[1:]
		}
		b.held = append(b.held, ev)
		return
	}
	for s := range b.subs {
		select {
		case s.ch <- ev:
		default:
			b.endLocked(s, ErrTooSlow)
		}
	}
}

// Subscribers returns how many subscribers there are.
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

func (b *Broker) endLocked(s *Subscription, err error) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	s.err = err
	close(s.done)
}

// Events is the subscriber's buffer. Read it until Done is closed; events
// still buffered then may be read or ignored.
func (s *Subscription) Events() <-chan *runtimeapi.ContainerEventResponse { return s.ch }

// Done is closed when the subscription has ended.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why the subscription ended: ErrTooSlow, or nil after Close. It is
// only meaningful once Done is closed.
func (s *Subscription) Err() error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.err
}

// Close ends the subscription; idempotent.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.endLocked(s, nil)
}
