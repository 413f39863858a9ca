package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/lib/auth"
	"github.com/pcp-dev/pcp/lib/pipe"
	"github.com/pcp-dev/pcp/lib/rendezvous"
)

func TestExitCode(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("context: %w", err) }
	tests := []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("boom"), ExitFailure},
		{Usagef("bad flag"), ExitUsage},
		{wrap(auth.ErrWrongCode), ExitAuth},
		{&rendezvous.TooManyGuessesError{N: 4}, ExitAuth},
		{wrap(&rendezvous.NotFoundError{}), ExitNotFound},
		{wrap(&pipe.IntegrityError{Reason: "truncated"}), ExitIntegrity},
		{wrap(context.Canceled), ExitInterrupted},
		{&pipe.PeerError{Message: "interrupted"}, ExitFailure},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestFlagBeatsVariable(t *testing.T) {
	env := map[string]string{"PCP_TIMEOUT": "7s", "PCP_DISCOVERY": "dht", "PCP_CODE": "zoo-zoo-zoo"}
	var f Flags
	fs := NewFlagSet("test", "test", io.Discard)
	f.AddCode(fs, true)
	f.AddNetwork(fs, time.Minute)
	if err := f.Parse(fs, []string{"--discovery", "mdns"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if f.Discovery != "mdns" {
		t.Errorf("--discovery mdns with PCP_DISCOVERY=dht gave %q", f.Discovery)
	}
	if f.Timeout != 7*time.Second {
		t.Errorf("PCP_TIMEOUT=7s gave %v", f.Timeout)
	}
	// PCP_CODE is used when nothing else gives a code, and yields to an argument.
	if c, ok, err := f.ReadCode(nil); err != nil || !ok || c.String() != "zoo-zoo-zoo" {
		t.Errorf("ReadCode without argument = %v, %v, %v; want zoo-zoo-zoo", c, ok, err)
	}
	if c, _, err := f.ReadCode([]string{"able", "able", "able"}); err != nil || c.String() != "able-able-able" {
		t.Errorf("ReadCode with an argument = %v, %v; want able-able-able", c, err)
	}
}

func TestBadVariableIsUsageError(t *testing.T) {
	var f Flags
	fs := NewFlagSet("test", "test", io.Discard)
	f.AddNetwork(fs, time.Minute)
	err := f.Parse(fs, nil, func(k string) string {
		if k == "PCP_TIMEOUT" {
			return "soon"
		}
		return ""
	})
	if ExitCode(err) != ExitUsage {
		t.Fatalf("PCP_TIMEOUT=soon gave %v (exit %d), want a usage error", err, ExitCode(err))
	}
}

func TestCodeGivenTwice(t *testing.T) {
	var f Flags
	fs := NewFlagSet("test", "test", io.Discard)
	f.AddCode(fs, true)
	if err := f.Parse(fs, []string{"--code", "able-able-able"}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.ReadCode([]string{"zoo-zoo-zoo"}); ExitCode(err) != ExitUsage {
		t.Fatalf("a code as flag and argument gave %v, want a usage error", err)
	}
}

// PCP_STATS makes Main print a line about the process at its interval
// while the command runs; a value that is no duration is a usage error
// before the command runs.
func TestStatsVariable(t *testing.T) {
	t.Setenv(StatsVariable, "20ms")
	var out syncWriter
	code := Main("pcp-test", nil, &out, func(ctx context.Context, _ []string) error {
		time.Sleep(150 * time.Millisecond)
		return nil
	})
	if code != ExitOK {
		t.Fatalf("Main returned %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := regexp.MustCompile(`^pcp-test: stats: goroutines=\d+ heap_mib=[\d.]+( rss_mib=[\d.]+ fds=\d+)?$`)
	if len(lines) < 3 || !want.MatchString(lines[0]) {
		t.Fatalf("want several stats lines, got:\n%s", out.String())
	}

	t.Setenv(StatsVariable, "often")
	out = syncWriter{}
	ran := false
	code = Main("pcp-test", nil, &out, func(context.Context, []string) error { ran = true; return nil })
	if code != ExitUsage || ran || !strings.Contains(out.String(), "PCP_STATS") {
		t.Fatalf("PCP_STATS=often: exit %d, ran %v, output %q; want exit 2 before the command, naming the variable", code, ran, out.String())
	}
}

// syncWriter is a bytes.Buffer that may be written from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// An interrupted command says "interrupted", not Go's "context canceled",
// and exits 130.
func TestInterruptedSaysSo(t *testing.T) {
	var out syncWriter
	code := Main("pcp-test", nil, &out, func(ctx context.Context, _ []string) error {
		syscall.Kill(os.Getpid(), syscall.SIGINT)
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting: %w", ctx.Err())
		case <-time.After(5 * time.Second):
			return errors.New("no signal")
		}
	})
	if code != ExitInterrupted || out.String() != "pcp-test: error: interrupted\n" {
		t.Fatalf("exit %d, stderr %q; want 130 and \"pcp-test: error: interrupted\"", code, out.String())
	}
}
