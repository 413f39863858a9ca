package cli

import (
	"context"
	"runtime"
	"runtime/metrics"
	"time"
)

// A long transfer makes a little garbage at a steady rate: crypto/tls
// allocates 24 bytes for each read of the connection and yamux takes a new
// 64 KiB buffer whenever its pool runs dry, about 0.6 MB a second at
// 0.5 GB/s. Go's pacer collects only when the heap has doubled, so a
// receiver's heap climbed from 7 to 16 MiB over the first 20 s of a stream,
// and its resident set with it (make soak: +28 %). Collecting once a second
// while garbage trickles in keeps the heap within a second's garbage of
// what is live; it costs a cycle over a heap of a few MiB a second, and
// nothing while the program is idle or the pacer collects often anyway.
const (
	// collectEvery is how often collectSteadily looks.
	collectEvery = time.Second
	// collectAfter is the least garbage that makes it collect.
	collectAfter = 256 << 10
)

// heapSample is what collectSteadily reads at each look.
type heapSample struct {
	allocated uint64 // bytes allocated since the program started
	cycles    uint64 // completed garbage collections
}

// readHeapSample reads the runtime's counters into s.
func readHeapSample(m []metrics.Sample) heapSample {
	metrics.Read(m)
	var s heapSample
	if m[0].Value.Kind() == metrics.KindUint64 {
		s.allocated = m[0].Value.Uint64()
	}
	if m[1].Value.Kind() == metrics.KindUint64 {
		s.cycles = m[1].Value.Uint64()
	}
	return s
}

// shouldCollect says whether to run a collection now, given the counters
// at the last look and now: only when at least min bytes were allocated and
// no cycle ran in between.
func shouldCollect(last, now heapSample, min uint64) bool {
	return now.cycles == last.cycles && now.allocated-last.allocated >= min
}

// collectSteadily runs the garbage collector every interval in which the
// program allocated at least min bytes and the pacer did not collect,
// until ctx ends.
func collectSteadily(ctx context.Context, interval time.Duration, min uint64) {
	m := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	last := readHeapSample(m)
	every(ctx, interval, func() {
		now := readHeapSample(m)
		if shouldCollect(last, now, min) {
			runtime.GC()
			now = readHeapSample(m)
		}
		last = now
	})
}
