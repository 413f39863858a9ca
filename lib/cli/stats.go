package cli

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"time"
)

// StatsVariable names the environment variable that makes every command
// print a line about its own resources on stderr at an interval (a Go
// duration, e.g. PCP_STATS=1s): for long transfers and long-running nodes,
// whose memory, goroutines and open files should stay flat.
const StatsVariable = "PCP_STATS"

// reportStats writes a stats line to w every interval until ctx ends.
func reportStats(ctx context.Context, prog string, w io.Writer, interval time.Duration) {
	every(ctx, interval, func() { fmt.Fprintf(w, "%s: stats: %s\n", prog, statsLine()) })
}

// every calls f every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// statsLine describes the process's resources now: goroutines, the Go heap
// in use, and where the system tells, the resident set and open files.
func statsLine() string {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	line := fmt.Sprintf("goroutines=%d heap_mib=%.1f", runtime.NumGoroutine(), float64(m.HeapInuse)/(1<<20))
	if rss, ok := residentBytes(); ok {
		line += fmt.Sprintf(" rss_mib=%.1f", float64(rss)/(1<<20))
	}
	if n, ok := openFiles(); ok {
		line += fmt.Sprintf(" fds=%d", n)
	}
	return line
}
