package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/lib/auth"
	"github.com/pcp-dev/pcp/lib/pipe"
	"github.com/pcp-dev/pcp/lib/rendezvous"
	"github.com/pcp-dev/pcp/lib/status"
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

// The config file fills what neither a flag nor a variable gave: flag >
// environment > file > default, and each value knows where it came from.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) {
		t.Helper()
		os.MkdirAll(filepath.Join(dir, "pcp"), 0o755)
		if err := os.WriteFile(filepath.Join(dir, "pcp", "config"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	parse := func(args []string, env map[string]string) (*Flags, error) {
		env["XDG_CONFIG_HOME"] = dir
		f := new(Flags)
		fs := NewFlagSet("test", "test", io.Discard)
		f.AddNetwork(fs, time.Minute)
		f.AddTransfer(fs, "test")
		return f, f.Parse(fs, args, func(k string) string { return env[k] })
	}
	write("# defaults of this machine\n\ndiscovery = mdns\ntimeout=45s\nallow-relay = true\noutput = /srv/in\n")
	f, err := parse(nil, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Discovery != "mdns" || f.Timeout != 45*time.Second || !f.AllowRelay {
		t.Fatalf("config file gave discovery %q, timeout %v, allow-relay %v", f.Discovery, f.Timeout, f.AllowRelay)
	}
	if src := f.Source("timeout"); !strings.HasSuffix(src, filepath.Join(dir, "pcp", "config")+":4") {
		t.Fatalf("Source(timeout) = %q, want the config file's line 4", src)
	}
	if f.Source("bootstrap") != "default" {
		t.Fatalf("Source(bootstrap) = %q, want default", f.Source("bootstrap"))
	}
	f, err = parse([]string{"--discovery", "dht"}, map[string]string{"PCP_TIMEOUT": "9s"})
	if err != nil || f.Discovery != "dht" || f.Timeout != 9*time.Second {
		t.Fatalf("flag and variable over the file: %v, discovery %q, timeout %v", err, f.Discovery, f.Timeout)
	}
	if f.Source("discovery") != "the flag --discovery" || f.Source("timeout") != "environment PCP_TIMEOUT" {
		t.Fatalf("sources %q, %q", f.Source("discovery"), f.Source("timeout"))
	}
	for text, want := range map[string]string{
		"timeout = soon\n":           "config:1: timeout = \"soon\"",
		"\ncolour = blue\n":          "config:2: unknown key \"colour\"",
		"code = able-able-able\n":    "config:1: a code never goes in the config file",
		"discovery mdns\n":           "config:1: want key = value",
		"discovery = carrier-pigeon": "discovery (config file " + filepath.Join(dir, "pcp", "config") + ":1): unknown discovery method",
	} {
		write(text)
		f, err := parse(nil, map[string]string{})
		if err == nil {
			_, err = f.Session(status.Logger{}) // values checked there
		}
		if ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: %v (exit %d), want a usage error with %q", text, err, ExitCode(err), want)
		}
	}
	os.Remove(filepath.Join(dir, "pcp", "config"))
	if _, err := parse(nil, map[string]string{}); err != nil {
		t.Fatalf("a missing config file: %v", err)
	}
}
