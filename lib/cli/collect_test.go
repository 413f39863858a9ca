package cli

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestShouldCollect(t *testing.T) {
	last := heapSample{allocated: 1000, cycles: 5}
	for _, c := range []struct {
		name string
		now  heapSample
		want bool
	}{
		{"garbage, no cycle", heapSample{allocated: 1000 + 300, cycles: 5}, true},
		{"exactly the least garbage", heapSample{allocated: 1000 + 256, cycles: 5}, true},
		{"too little garbage", heapSample{allocated: 1000 + 255, cycles: 5}, false},
		{"the pacer collected", heapSample{allocated: 1000 + 9000, cycles: 6}, false},
		{"idle", last, false},
	} {
		if got := shouldCollect(last, c.now, 256); got != c.want {
			t.Errorf("%s: shouldCollect = %v, want %v", c.name, got, c.want)
		}
	}
}

// garbage is where TestCollectSteadily puts what it allocates, so that the
// compiler cannot keep it on the stack.
var garbage []byte

// With the pacer switched off, garbage that trickles in is collected by
// collectSteadily alone, and an idle program is left alone.
func TestCollectSteadily(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	m := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { collectSteadily(ctx, 20*time.Millisecond, 128<<10); close(done) }()
	defer func() { cancel(); <-done }()

	before := readHeapSample(m)
	for range 64 { // 4 MiB in 200 ms
		garbage = make([]byte, 64<<10)
		time.Sleep(3 * time.Millisecond)
	}
	garbage = nil
	time.Sleep(60 * time.Millisecond)
	after := readHeapSample(m)
	if after.cycles == before.cycles {
		t.Fatalf("no collection while 4 MiB of garbage came in at 20 MiB/s with the pacer off")
	}

	time.Sleep(100 * time.Millisecond) // a look or two at an idle heap
	idle := readHeapSample(m)
	time.Sleep(200 * time.Millisecond)
	if now := readHeapSample(m); now.cycles != idle.cycles {
		t.Fatalf("%d collections while nothing was allocated (%d bytes)", now.cycles-idle.cycles, now.allocated-idle.allocated)
	}
}
