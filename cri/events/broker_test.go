package events

import (
	"errors"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func ev(id string) *runtimeapi.ContainerEventResponse {
	return &runtimeapi.ContainerEventResponse{ContainerId: id}
}

func TestFanOutInOrder(t *testing.T) {
	b := New(4)
	a, c := b.Subscribe(), b.Subscribe()
	defer a.Close()
	defer c.Close()
	b.Publish(ev("1"))
	b.Publish(ev("2"))
	for _, s := range []*Subscription{a, c} {
		for _, want := range []string{"1", "2"} {
			if got := (<-s.Events()).ContainerId; got != want {
				t.Fatalf("got event %s, want %s", got, want)
			}
		}
	}
}

func TestSlowSubscriberDropped(t *testing.T) {
	b := New(2)
	slow, fast := b.Subscribe(), b.Subscribe()
	defer fast.Close()
	for i := range 3 {
		b.Publish(ev(string(rune('a' + i))))
		<-fast.Events()
	}
	select {
	case <-slow.Done():
	default:
		t.Fatal("a subscriber whose buffer is full is still subscribed")
	}
	if !errors.Is(slow.Err(), ErrTooSlow) {
		t.Fatalf("Err = %v, want ErrTooSlow", slow.Err())
	}
	if n := b.Subscribers(); n != 1 {
		t.Fatalf("%d subscribers, want 1", n)
	}
	// The buffered events stay readable.
	if got := len(slow.Events()); got != 2 {
		t.Fatalf("%d buffered events, want 2", got)
	}
}

func TestClose(t *testing.T) {
	b := New(1)
	s := b.Subscribe()
	s.Close()
	s.Close()
	<-s.Done()
	if s.Err() != nil {
		t.Fatalf("Err after Close = %v", s.Err())
	}
	b.Publish(ev("x")) // held, not sent to the closed subscriber
	if len(s.Events()) != 0 {
		t.Fatal("a closed subscriber got an event")
	}
}

func TestHeldForNextSubscriber(t *testing.T) {
	b := New(2)
	for _, id := range []string{"1", "2", "3"} {
		b.Publish(ev(id))
	}
	s := b.Subscribe()
	defer s.Close()
	for _, want := range []string{"2", "3"} {
		if got := (<-s.Events()).ContainerId; got != want {
			t.Fatalf("got held event %s, want %s (oldest dropped)", got, want)
		}
	}
	// Given once: a second subscriber starts empty.
	s2 := b.Subscribe()
	defer s2.Close()
	if len(s2.Events()) != 0 {
		t.Fatal("held events given twice")
	}
}
