package linkem

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestAdmitSerialisesQueuesAndDelays(t *testing.T) {
	// 8 Mbit/s: a 1000-byte frame takes 1 ms on the wire.
	d := newDirection(Shape{Rate: 8_000_000, Delay: 10 * time.Millisecond, Queue: 3}, rand.New(rand.NewPCG(1, 1)))
	t0 := time.Unix(1000, 0)
	var dues []time.Duration
	for range 5 { // a burst at one instant
		due, ok := d.admit(t0, 1000)
		if !ok {
			dues = append(dues, -1)
			continue
		}
		dues = append(dues, due.Sub(t0))
	}
	// The first is on the wire at once, the next three wait in the queue,
	// the fifth overflows it.
	want := []time.Duration{11 * time.Millisecond, 12 * time.Millisecond, 13 * time.Millisecond, 14 * time.Millisecond, -1}
	for i := range want {
		if dues[i] != want[i] {
			t.Fatalf("frame %d due after %v, want %v (all: %v)", i, dues[i], want[i], dues)
		}
	}
	if got := d.stats().Overflowed; got != 1 {
		t.Errorf("%d frames overflowed, want 1", got)
	}
	// 2.5 ms later two more have gone onto the wire: room for two.
	later := t0.Add(2500 * time.Microsecond)
	for i, want := range []time.Duration{15 * time.Millisecond, 16 * time.Millisecond, -1} {
		due, ok := d.admit(later, 1000)
		got := due.Sub(t0)
		if !ok {
			got = -1
		}
		if got != want {
			t.Fatalf("frame %d after the burst due after %v, want %v", i, got, want)
		}
	}
	// An idle link sends at once.
	idle := t0.Add(time.Second)
	if due, ok := d.admit(idle, 1000); !ok || due.Sub(idle) != 11*time.Millisecond {
		t.Fatalf("frame on an idle link due after %v, want 11ms", due.Sub(idle))
	}
}

func TestAdmitLosesAtTheGivenRate(t *testing.T) {
	d := newDirection(Shape{Loss: 0.1}, rand.New(rand.NewPCG(3, 4)))
	now := time.Unix(0, 0)
	kept := 0
	for range 100000 {
		if _, ok := d.admit(now, 100); ok {
			kept++
		}
	}
	if lost := d.stats().Lost; lost < 9500 || lost > 10500 || int64(kept)+lost != 100000 {
		t.Fatalf("lost %d of 100000 at 10%%, kept %d", lost, kept)
	}
}
