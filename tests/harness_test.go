// Package tests runs the built pcp commands end to end, as a user would,
// inside private network namespaces: a local DHT of `pcp node` processes on
// 127.0.0.1, mDNS on loopback, and namespaces joined by veth pairs.
package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/code"
)

func TestMain(m *testing.M) { os.Exit(netns.RunIsolated(m)) }

// binDir holds the commands under test: $PCP_BIN (make test builds it), or
// a build of ./cmd/... made once for this test run.
var binDir = sync.OnceValues(func() (string, error) {
	if dir := os.Getenv("PCP_BIN"); dir != "" {
		return dir, nil
	}
	dir, err := os.MkdirTemp("", "pcp-bin-")
	if err != nil {
		return "", err
	}
	out, err := exec.Command("go", "build", "-o", dir+"/", "../cmd/...").CombinedOutput()
	if err != nil {
		return "", errors.New("go build: " + err.Error() + "\n" + string(out))
	}
	return dir, nil
})

func binary(t testing.TB, name string) string {
	t.Helper()
	dir, err := binDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// lan makes two namespaces joined by a veth pair, name-a at SUBNET.1 and
// name-b at SUBNET.2 (a /24), each on its eth0: two machines on a LAN.
func lan(t testing.TB, name, subnet string) (a, b *netns.Namespace) {
	t.Helper()
	a, b = netns.New(t, name+"-a"), netns.New(t, name+"-b")
	netns.Link(t, a, "eth0", subnet+".1/24", b, "eth0", subnet+".2/24")
	return a, b
}

// newCode returns a fresh random code, so that tests never share a channel
// by accident more often than chance allows.
func newCode(t testing.TB) string {
	c, err := code.Generate(code.DefaultWords, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.String()
}

// wrongCode returns a code on the same channel as c but with other secret words.
func wrongCode(t testing.TB, c string) string {
	for {
		other := newCode(t)
		words := strings.SplitN(other, "-", 2)
		candidate := strings.SplitN(c, "-", 2)[0] + "-" + words[1]
		if candidate != c {
			return candidate
		}
	}
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// proc is a command under test, with its output captured.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func (s *syncBuffer) String() string { return string(s.Bytes()) }

// command makes a pcp command; cmd may come from a netns.Namespace.
func command(t testing.TB, name string, args ...string) *exec.Cmd {
	return exec.Command(binary(t, name), args...)
}

// start starts cmd with stdin (nil: empty) and registers a cleanup that
// kills it if it still runs when the test ends.
func start(t testing.TB, cmd *exec.Cmd, stdin io.Reader) *proc {
	t.Helper()
	p := &proc{t: t, name: filepath.Base(cmd.Path) + " " + strings.Join(cmd.Args[1:], " "), cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdin = stdin
	if cmd.Stdout == nil {
		cmd.Stdout = p.stdout
	}
	cmd.Stderr = p.stderr
	// The test's own variables come last and win; nothing leaks in from the
	// caller, nor from a config file of the caller's.
	cmd.Env = append(append(os.Environ(), "PCP_BOOTSTRAP=", "PCP_RELAY=", "PCP_CODE=", "PCP_DISCOVERY=", "PCP_TIMEOUT=", "XDG_CONFIG_HOME=/nonexistent/pcp-tests"), cmd.Env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s\nstderr:\n%s", p.name, p.stderr.String())
		}
	})
	return p
}

// wait waits up to timeout for the command to exit and returns its status.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Signal(syscall.SIGQUIT) // a goroutine dump for the log
		time.Sleep(200 * time.Millisecond)
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("%s did not exit within %v\nstderr:\n%s", p.name, timeout, p.stderr.String())
	}
	var exit *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	}
	p.t.Fatalf("%s: %v", p.name, p.err)
	return -1
}

// expectExit waits and fails the test unless the status is want.
func (p *proc) expectExit(timeout time.Duration, want int) {
	p.t.Helper()
	if got := p.wait(timeout); got != want {
		p.t.Fatalf("%s exited %d, want %d\nstderr:\n%s", p.name, got, want, p.stderr.String())
	}
}

// waitStderr waits until the command's stderr contains s.
func (p *proc) waitStderr(s string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.stderr.String(), s) {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: %q not on stderr within %v\nstderr:\n%s", p.name, s, timeout, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStdout waits until the command has written at least n bytes to stdout.
func (p *proc) waitStdout(n int, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for len(p.stdout.Bytes()) < n {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: fewer than %d bytes on stdout within %v\nstderr:\n%s", p.name, n, timeout, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nodeFirstLine starts `pcp node ARGS` and returns the first line it prints.
func nodeFirstLine(t testing.TB, args ...string) (*proc, string) {
	t.Helper()
	return startNode(t, command(t, "pcp", append([]string{"node"}, args...)...))
}

// startNode starts cmd, a `pcp node` command, and returns the first line it
// prints: its address.
func startNode(t testing.TB, cmd *exec.Cmd) (*proc, string) {
	t.Helper()
	out, w := io.Pipe()
	cmd.Stdout = w
	p := start(t, cmd, nil)
	t.Cleanup(func() { w.Close() })
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		s.Scan()
		line <- s.Text()
		io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		return p, l
	case <-time.After(10 * time.Second):
		t.Fatalf("pcp node printed nothing within 10s\nstderr:\n%s", p.stderr.String())
	}
	return nil, ""
}

// startDHT starts n `pcp node` processes on 127.0.0.1, each bootstrapping
// from the first, and returns their multiaddrs as a --bootstrap value.
func startDHT(t testing.TB, n int) string {
	t.Helper()
	var addrs []string
	for i := range n {
		args := []string{"--listen", "/ip4/127.0.0.1/tcp/0"}
		if i > 0 {
			args = append(args, "--bootstrap", addrs[0])
		}
		p, l := nodeFirstLine(t, args...)
		if !strings.HasPrefix(l, "/ip4/127.0.0.1/tcp/") || !strings.Contains(l, "/p2p/12D3") {
			t.Fatalf("pcp node printed %q, want a full multiaddr\nstderr:\n%s", l, p.stderr.String())
		}
		addrs = append(addrs, l)
	}
	return strings.Join(addrs, ",")
}

// slowReader yields random data forever, a chunk at a time, so that a
// transfer is still running when the test interferes with it.
type slowReader struct{ ctx context.Context }

func (r slowReader) Read(b []byte) (int, error) {
	select {
	case <-r.ctx.Done():
		return 0, io.EOF
	case <-time.After(5 * time.Millisecond):
	}
	n := min(len(b), 32<<10)
	rand.Read(b[:n])
	return n, nil
}
