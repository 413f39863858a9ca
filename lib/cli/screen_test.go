package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/schollz/progressbar/v3"
)

// A status line printed while the bar is drawn goes above the bar, on a
// line of its own, and the bar is drawn again below it.
func TestStatusLineDoesNotTearTheBar(t *testing.T) {
	var out syncWriter
	s := &screen{w: &out}
	bar := progressbar.NewOptions64(100, progressbar.OptionSetWriter(&out), progressbar.OptionSetDescription("sending"))
	s.withBar(func() {
		s.setBar(bar)
		bar.Set64(40)
	})
	s.println("pcp: dht: a warning")
	got := out.String()
	i := strings.Index(got, "pcp: dht: a warning\n")
	if i < 0 {
		t.Fatalf("the status line is not on a line of its own: %q", got)
	}
	before, after := got[:i], got[i:]
	if !strings.HasSuffix(before, clearLine) {
		t.Fatalf("the bar's line was not cleared before the status line: %q", before)
	}
	if !strings.Contains(after, "sending") || !strings.Contains(after, "40%") {
		t.Fatalf("the bar was not drawn again below the status line: %q", after)
	}
}

// The live status is redrawn every second on the last line, stays below
// status lines, and is erased when it stops or a bar comes.
func TestLiveStatus(t *testing.T) {
	var out syncWriter
	s := &screen{w: &out}
	n := 0
	stop := s.startLive(func() string { n++; return "looking… " + strings.Repeat("x", n) })
	time.Sleep(1200 * time.Millisecond)
	s.println("pcp: a line")
	stop()
	got := out.String()
	if !strings.Contains(got, clearLine+"looking… x") || !strings.Contains(got, clearLine+"looking… xx") {
		t.Fatalf("the live status was not drawn and redrawn: %q", got)
	}
	if !strings.Contains(got, clearLine+"pcp: a line\n"+"looking… ") {
		t.Fatalf("the live status was not drawn again below the status line: %q", got)
	}
	if !strings.HasSuffix(got, clearLine) {
		t.Fatalf("stopping did not erase the live status: %q", got)
	}
	stop() // twice is harmless
	s.println("pcp: after")
	if strings.HasSuffix(out.String(), "looking… ") || !strings.HasSuffix(out.String(), "pcp: after\n") {
		t.Fatalf("the live status came back after it stopped: %q", out.String())
	}
}
