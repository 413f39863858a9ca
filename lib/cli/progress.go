package cli

import (
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Progress returns a progress callback for pipe.Options (bytes, rate, and
// ETA when total is known; total < 0 means unknown) that draws on stderr,
// and a func that finishes the bar. Both do nothing when stderr is not a
// terminal or the user asked for quiet.
func (f *Flags) Progress(description string, total int64) (update func(n int64), finish func()) {
	if f.Quiet || !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil, func() {}
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(description),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(total > 0),
		progressbar.OptionClearOnFinish(),
	)
	return func(n int64) { bar.Set64(n) }, func() { bar.Finish() }
}
