package cli

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// screen owns the last line of a terminal's stderr: status lines, the live
// status of a search and the progress bar take turns on it, so that none
// tears another (a status line printed while the bar was drawn used to end
// up in the middle of the bar).
type screen struct {
	w io.Writer

	mu   sync.Mutex
	live func() string            // the live status, redrawn every second; nil when none
	bar  *progressbar.ProgressBar // the bar on the last line, if any
}

// clearLine erases the last line and puts the cursor at its start.
const clearLine = "\r\033[K"

// println prints one status line above the live status or the bar, which
// are drawn again below it.
func (s *screen) println(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bar != nil {
		s.bar.Clear()
	}
	fmt.Fprint(s.w, clearLine+line+"\n")
	switch {
	case s.bar != nil:
		s.bar.RenderBlank()
	case s.live != nil:
		fmt.Fprint(s.w, s.live())
	}
}

// startLive shows text() on the last line, redrawn every second, until the
// returned stop is called (which erases it); a bar ends it too.
func (s *screen) startLive(text func() string) (stop func()) {
	s.mu.Lock()
	s.live = text
	fmt.Fprint(s.w, clearLine+text())
	s.mu.Unlock()
	done := make(chan struct{})
	var once sync.Once
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			s.mu.Lock()
			if s.live != nil && s.bar == nil {
				fmt.Fprint(s.w, clearLine+s.live())
			}
			s.mu.Unlock()
		}
	}()
	return func() {
		once.Do(func() {
			close(done)
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.live != nil && s.bar == nil {
				fmt.Fprint(s.w, clearLine)
			}
			s.live = nil
		})
	}
}

// withBar runs f, which draws or ends the bar, under the screen's lock.
func (s *screen) withBar(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// setBar records bar as the one on the last line (nil: none any more); the
// caller holds the lock (withBar). A bar ends the live status.
func (s *screen) setBar(bar *progressbar.ProgressBar) {
	if bar != nil && s.live != nil {
		fmt.Fprint(s.w, clearLine)
		s.live = nil
	}
	s.bar = bar
}
