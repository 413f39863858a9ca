package cli

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Progress draws a progress bar on stderr (bytes, rate, and ETA when the
// total is known) when stderr is a terminal and the user did not ask for
// quiet; otherwise it does nothing. The bar appears on the first update, so
// a total learnt late (from the sender's header) still gives an ETA.
type Progress struct {
	description string
	enabled     bool
	bar         *progressbar.ProgressBar
	screen      *screen // the terminal's last line, shared with status lines
}

// drawnFrom passes writes on to w from a time on, and drops those before.
type drawnFrom struct {
	w    io.Writer
	from time.Time
}

func (d *drawnFrom) Write(b []byte) (int, error) {
	if time.Now().Before(d.from) {
		return len(b), nil
	}
	return d.w.Write(b)
}

// firstDraw is how long after the first update the bar appears: its rate
// is then an average over that time, not the first buffers' size over a
// few microseconds (which read "172 GB/s"). Until then its drawing is
// dropped.
const firstDraw = 600 * time.Millisecond

// Progress returns the progress bar for a transfer.
func (f *Flags) Progress(description string) *Progress {
	return &Progress{description: description, enabled: !f.Quiet && f.screen != nil, screen: f.screen}
}

// Update shows done bytes of total (total < 0: unknown).
func (p *Progress) Update(done, total int64) {
	if !p.enabled {
		return
	}
	p.screen.withBar(func() { p.update(done, total) })
}

// update is Update under the screen's lock.
func (p *Progress) update(done, total int64) {
	if p.bar == nil {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(&drawnFrom{w: os.Stderr, from: time.Now().Add(firstDraw)}),
			progressbar.OptionSetDescription(p.description),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionUseIECUnits(true), // MiB/s, as the summary line
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetPredictTime(total > 0),
			progressbar.OptionClearOnFinish(),
		)
		p.screen.setBar(p.bar)
	}
	p.bar.Set64(done)
}

// Bytes shows done bytes of an unknown total; it fits pipe.Options.Progress.
func (p *Progress) Bytes(done int64) { p.Update(done, -1) }

// Of returns a pipe.Options.Progress that shows done bytes of total (-1:
// unknown).
func (p *Progress) Of(total int64) func(done int64) {
	return func(done int64) { p.Update(done, total) }
}

// StdinSize is the size of stdin when it is a regular file, else -1.
func StdinSize() int64 {
	if info, err := os.Stdin.Stat(); err == nil && info.Mode().IsRegular() {
		return info.Size()
	}
	return -1
}

// Finish removes the bar.
func (p *Progress) Finish() {
	if !p.enabled {
		return
	}
	p.screen.withBar(func() {
		if p.bar != nil {
			p.bar.Finish()
			p.screen.setBar(nil)
		}
	})
}

// QuietWithoutTerminal applies the rule of the pcp wrapper: when stderr is
// not a terminal (a script, a cron job), only errors and a generated code
// are printed, unless -v asks for more.
func (f *Flags) QuietWithoutTerminal() {
	if !f.Verbose && !term.IsTerminal(int(os.Stderr.Fd())) {
		f.Quiet = true
	}
}
