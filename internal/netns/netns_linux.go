//go:build linux

package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	// setupTimeout bounds every `ip` invocation and every command run by
	// Namespace.Run.
	setupTimeout = 30 * time.Second
	// nsWaitTimeout bounds the wait for a holder's namespace to appear and
	// for the holder to be reaped after it was killed.
	nsWaitTimeout = 5 * time.Second
	// cleanupTimeout bounds each best-effort cleanup command.
	cleanupTimeout = 5 * time.Second
	// holderSeconds is how long a holder sleeps. It is only a backstop:
	// holders are killed by New's cleanup, or by Pdeathsig when the test
	// process dies.
	holderSeconds = "1000000"
	// maxIfNameLen is the longest interface name Linux accepts (IFNAMSIZ-1).
	maxIfNameLen = 15
	// multicastNet is the IPv4 multicast range routed onto links so that
	// sockets without an explicit IP_MULTICAST_IF (mDNS) can send.
	multicastNet = "224.0.0.0/4"
)

// RunIsolated is called from a test package's TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(netns.RunIsolated(m)) }
//
// When the process is not yet inside a private network namespace made for it
// (the PCP_NETNS_ISOLATED=1 marker is absent), it re-executes the test binary
// with the same arguments in a new network namespace (CLONE_NEWNET, with
// Pdeathsig SIGKILL so the child dies with the parent), passes stdin, stdout
// and stderr through, relays SIGINT, SIGTERM and SIGQUIT to the child and
// returns the child's exit status.
//
// Inside the child (marker present, and its namespace verified to differ from
// the parent's) it brings loopback up with multicast on, routes 224.0.0.0/4
// to lo so mDNS works on loopback alone, and returns m.Run().
//
// When the namespace cannot be created (not root, clone not permitted, `ip`
// missing) it does not re-execute: it records the reason, runs m.Run() in the
// current process, and Require skips or fails every network test.
func RunIsolated(m *testing.M) int {
	own, ownErr := os.Readlink("/proc/self/ns/net")
	if ownErr != nil {
		return runWithout(m, fmt.Sprintf("cannot read this process's network namespace: %v", ownErr))
	}
	if os.Getenv(markerEnv) == "1" {
		if outer := os.Getenv(outerEnv); outer != "" && outer != own {
			return runInside(m)
		}
		// The marker was inherited or set by hand, but this process
		// shares the namespace it claims to have left: isolate again.
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return runWithout(m, fmt.Sprintf("`ip` (iproute2) is not available, so loopback cannot be configured: %v", err))
	}
	code, err := reexec(own)
	if err != nil {
		return runWithout(m, fmt.Sprintf("cannot create a network namespace (euid %d; root or CAP_SYS_ADMIN is needed): %v",
			os.Geteuid(), err))
	}
	return code
}

// runWithout runs the tests in the current (shared) namespace after
// recording why network tests must not run.
func runWithout(m *testing.M, reason string) int {
	setNotIsolated(reason)
	fmt.Fprintf(os.Stderr, "netns: WARNING: NO PRIVATE NETWORK NAMESPACE: %s; network tests will be SKIPPED (FAILED when CI=true)\n", reason)
	return m.Run()
}

// runInside configures the private namespace this process was started in
// and runs the tests.
func runInside(m *testing.M) int {
	if err := setupLoopback(); err != nil {
		setNotIsolated(fmt.Sprintf("private network namespace created but loopback setup failed: %v", err))
		fmt.Fprintf(os.Stderr, "netns: WARNING: %s\n", isolation.reason)
		return m.Run()
	}
	setIsolated()
	return m.Run()
}

// setupLoopback brings lo up with multicast enabled and routes the IPv4
// multicast range to it.
func setupLoopback() error {
	steps := [][]string{
		{"link", "set", "lo", "up"},
		{"link", "set", "lo", "multicast", "on"},
		{"route", "replace", multicastNet, "dev", "lo"},
	}
	for _, args := range steps {
		if out, err := runIP(args...); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// runIP runs `ip args...` in the current namespace with a timeout and
// returns its combined output.
func runIP(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return out, fmt.Errorf("timed out after %v: %w", setupTimeout, ctx.Err())
	}
	return out, err
}

// reexec starts this test binary again in a new network namespace and waits
// for it. The returned error is non-nil only if the child could not be
// started, i.e. the namespace could not be created. The wait itself is
// bounded by the child's own -test.timeout and by the go command.
func reexec(outerID string) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, markerEnv+"=") || strings.HasPrefix(kv, outerEnv+"=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, markerEnv+"=1", outerEnv+"="+outerID)

	cmd := &exec.Cmd{
		Path:   exe,
		Args:   os.Args,
		Env:    env,
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWNET,
			Pdeathsig:  syscall.SIGKILL,
		},
	}

	// Pdeathsig fires when the *thread* that forked the child exits, not
	// the process. Keep this goroutine on one thread until the child is
	// reaped so the Go runtime can never retire that thread early.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sigs)

	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s in a new network namespace: %w", exe, err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	waitErr := cmd.Wait()
	close(done)
	return exitCode(cmd.ProcessState, waitErr), nil
}

// exitCode converts a child's final state into a code for os.Exit, using the
// shell convention 128+N for death by signal N.
func exitCode(ps *os.ProcessState, waitErr error) int {
	if ps == nil {
		fmt.Fprintf(os.Stderr, "netns: waiting for isolated test process: %v\n", waitErr)
		return 1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// stableThread runs functions on one goroutine locked to an OS thread that
// never exits. Holders are started there so their Pdeathsig (which is tied to
// the forking thread) only fires when the whole test process dies.
var stableThread struct {
	once sync.Once
	reqs chan func()
}

// onStableThread runs f on the stable thread and waits for it to return.
func onStableThread(f func()) {
	stableThread.once.Do(func() {
		stableThread.reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives forever
			for req := range stableThread.reqs {
				req()
			}
		}()
	})
	done := make(chan struct{})
	stableThread.reqs <- func() {
		defer close(done)
		f()
	}
	<-done
}

// lookTool returns the path of a required external tool, or skips (fails in
// CI) the test loudly when it is missing.
func lookTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		unavailable(t, fmt.Sprintf("required tool %q not found: %v", name, err))
	}
	return p
}

// New creates an extra network namespace named name (used in messages only)
// held open by a holder process, with loopback up and multicast on. It calls
// Require first, so it only ever runs inside RunIsolated's namespace. It
// registers a t.Cleanup that kills the process group of every command started
// through Command or Run and then the holder, also when the test fails.
func New(t testing.TB, name string) *Namespace {
	t.Helper()
	Require(t)
	sleepPath := lookTool(t, "sleep")
	lookTool(t, "nsenter")
	lookTool(t, "ip")

	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatalf("netns %q: read own network namespace: %v", name, err)
	}

	holder := exec.Command(sleepPath, holderSeconds)
	holder.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET,
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	var startErr error
	onStableThread(func() { startErr = holder.Start() })
	if startErr != nil {
		t.Fatalf("netns %q: start namespace holder: %v", name, startErr)
	}

	n := &Namespace{
		name:   name,
		holder: holder,
		pid:    holder.Process.Pid,
		exited: make(chan struct{}),
	}
	go func() {
		_ = holder.Wait()
		close(n.exited)
	}()
	t.Cleanup(func() { n.cleanup(t) })

	id, err := waitForNamespace(n.pid, own, n.exited, nsWaitTimeout)
	if err != nil {
		t.Fatalf("netns %q: %v", name, err)
	}
	n.netID = id

	n.Run(t, "ip", "link", "set", "dev", "lo", "up")
	n.Run(t, "ip", "link", "set", "dev", "lo", "multicast", "on")
	return n
}

// waitForNamespace polls until /proc/PID/ns/net differs from own and returns
// its identity. It gives up after timeout or when the holder exits.
func waitForNamespace(pid int, own string, exited <-chan struct{}, timeout time.Duration) (string, error) {
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	deadline := time.Now().Add(timeout)
	for {
		id, err := os.Readlink(path)
		if err == nil && id != own {
			return id, nil
		}
		select {
		case <-exited:
			return "", fmt.Errorf("holder pid %d exited before its network namespace was ready", pid)
		default:
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("still in the caller's network namespace")
			}
			return "", fmt.Errorf("holder pid %d: no private network namespace after %v: %w", pid, timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// check verifies that the holder is alive and still owns the namespace, so
// a recycled pid can never redirect nsenter or `ip link set netns` into an
// unrelated namespace.
func (n *Namespace) check() error {
	select {
	case <-n.exited:
		return fmt.Errorf("netns %q: holder pid %d has exited", n.name, n.pid)
	default:
	}
	if n.netID == "" {
		return nil // still being created by New
	}
	id, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", n.pid))
	if err != nil {
		return fmt.Errorf("netns %q: holder pid %d: %w", n.name, n.pid, err)
	}
	if id != n.netID {
		return fmt.Errorf("netns %q: pid %d is in %s, not in the namespace %s it created", n.name, n.pid, id, n.netID)
	}
	return nil
}

// Command returns an *exec.Cmd that runs name with args inside the
// namespace through `nsenter -t PID -n -- name args...`. The command gets its
// own process group (Setpgid) and Pdeathsig SIGKILL; callers that replace
// SysProcAttr lose both. The caller starts it; New's cleanup kills its
// process group if it is still running at the end of the test. If the
// namespace is already gone, Start returns an error.
func (n *Namespace) Command(name string, args ...string) *exec.Cmd {
	nsArgs := make([]string, 0, len(args)+5)
	nsArgs = append(nsArgs, "-t", strconv.Itoa(n.pid), "-n", "--", name)
	nsArgs = append(nsArgs, args...)
	cmd := exec.Command("nsenter", nsArgs...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if err := n.check(); err != nil && cmd.Err == nil {
		cmd.Err = err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		if cmd.Err == nil {
			cmd.Err = fmt.Errorf("netns %q: namespace already cleaned up", n.name)
		}
		return cmd
	}
	n.cmds = append(n.cmds, cmd)
	return cmd
}

// Run runs name with args inside the namespace and fails the test with the
// command's combined output if it fails or does not finish within 30s.
func (n *Namespace) Run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := n.combinedOutput(setupTimeout, name, args...)
	if err != nil {
		t.Fatalf("netns %q: %s: %v\n%s", n.name, strings.Join(append([]string{name}, args...), " "), err, out)
	}
}

// combinedOutput runs a command in the namespace, killing its process group
// if it outlives timeout.
func (n *Namespace) combinedOutput(timeout time.Duration, name string, args ...string) ([]byte, error) {
	cmd := n.Command(name, args...)
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(timeout, func() {
		timedOut.Store(true)
		killGroup(cmd)
	})
	err := cmd.Wait()
	timer.Stop()
	if timedOut.Load() {
		return buf.Bytes(), fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	return buf.Bytes(), err
}

// killGroup SIGKILLs the process group of a started command, falling back to
// the process itself if it is not a group leader.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		_ = cmd.Process.Kill()
	}
}

// cleanup kills every command started in the namespace, then the holder, and
// waits (bounded) for the holder to be reaped.
func (n *Namespace) cleanup(t testing.TB) {
	n.mu.Lock()
	n.closed = true
	cmds := n.cmds
	n.cmds = nil
	n.mu.Unlock()

	for _, cmd := range cmds {
		killGroup(cmd)
	}
	killGroup(n.holder)
	select {
	case <-n.exited:
	case <-time.After(nsWaitTimeout):
		t.Errorf("netns %q: holder pid %d still running %v after SIGKILL", n.name, n.pid, nsWaitTimeout)
	}
}

// linkSeq makes temporary veth names unique within this process.
var linkSeq atomic.Uint32

// Link joins namespaces a and b with a veth pair. The pair is created in
// the caller's (RunIsolated's private) namespace under unique temporary
// names, one end is moved into each namespace and renamed ifA and ifB there,
// addrA and addrB (CIDR strings such as "10.77.0.1/24") are assigned, both
// ends are set up with multicast on, and 224.0.0.0/4 is routed onto each end.
// It fails the test on error. The pair disappears with either namespace; a
// best-effort cleanup deletes it earlier, at the end of t.
func Link(t testing.TB, a *Namespace, ifA, addrA string, b *Namespace, ifB, addrB string) {
	t.Helper()
	Require(t)
	for _, name := range []string{ifA, ifB} {
		if err := validIfName(name); err != nil {
			t.Fatalf("netns: link: %v", err)
		}
	}
	if a == b && ifA == ifB {
		t.Fatalf("netns: link: both ends are named %q in namespace %q", ifA, a.name)
	}
	for _, addr := range []string{addrA, addrB} {
		if _, _, err := net.ParseCIDR(addr); err != nil {
			t.Fatalf("netns: link: address %q is not in CIDR form: %v", addr, err)
		}
	}
	for _, n := range []*Namespace{a, b} {
		if err := n.check(); err != nil {
			t.Fatalf("netns: link: %v", err)
		}
	}

	seq := linkSeq.Add(1) % 100000
	tmpA := fmt.Sprintf("pv%d_%da", os.Getpid()%100000, seq)
	tmpB := fmt.Sprintf("pv%d_%db", os.Getpid()%100000, seq)

	t.Cleanup(func() {
		// Deleting either end removes the pair; errors only mean it is
		// already gone.
		_, _ = runIP("link", "del", "dev", tmpA)
		_, _ = runIP("link", "del", "dev", tmpB)
		for _, end := range []struct {
			n     *Namespace
			names []string
		}{{a, []string{ifA, tmpA}}, {b, []string{ifB, tmpB}}} {
			for _, name := range end.names {
				_, _ = end.n.combinedOutput(cleanupTimeout, "ip", "link", "del", "dev", name)
			}
		}
	})

	hostIP(t, "link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
	hostIP(t, "link", "set", "dev", tmpA, "netns", strconv.Itoa(a.pid))
	hostIP(t, "link", "set", "dev", tmpB, "netns", strconv.Itoa(b.pid))
	a.configureLink(t, tmpA, ifA, addrA)
	b.configureLink(t, tmpB, ifB, addrB)
}

// validIfName reports whether name is usable as a Linux interface name.
func validIfName(name string) error {
	if name == "" || len(name) > maxIfNameLen {
		return fmt.Errorf("interface name %q must be 1 to %d bytes long", name, maxIfNameLen)
	}
	if name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n") {
		return fmt.Errorf("interface name %q contains characters Linux rejects", name)
	}
	return nil
}

// hostIP runs `ip args...` in the caller's namespace and fails t on error.
func hostIP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := runIP(args...); err != nil {
		t.Fatalf("netns: ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// configureLink renames a veth end that was moved into n and brings it up
// with an address, multicast, and a multicast route.
func (n *Namespace) configureLink(t testing.TB, tmp, ifName, addr string) {
	t.Helper()
	n.Run(t, "ip", "link", "set", "dev", tmp, "name", ifName)
	n.Run(t, "ip", "link", "set", "dev", ifName, "multicast", "on")
	n.Run(t, "ip", "addr", "add", addr, "dev", ifName)
	n.Run(t, "ip", "link", "set", "dev", ifName, "up")
	out, err := n.combinedOutput(setupTimeout, "ip", "route", "add", multicastNet, "dev", ifName)
	if err == nil {
		return
	}
	if !bytes.Contains(out, []byte("File exists")) {
		t.Fatalf("netns %q: ip route add %s dev %s: %v\n%s", n.name, multicastNet, ifName, err, out)
	}
	// Another link in this namespace already carries the multicast route
	// (a router joining two LANs); keep it and add this one beside it.
	n.Run(t, "ip", "route", "append", multicastNet, "dev", ifName)
}
