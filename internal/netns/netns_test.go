//go:build unix

package netns_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/netns"
)

// helperEnv selects a helper mode when the test binary is re-executed as a
// small network tool inside a namespace; its arguments are os.Args[1:].
const helperEnv = "NETNS_TEST_HELPER"

// helperLifetime bounds how long any helper process may live.
const helperLifetime = 60 * time.Second

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	os.Exit(netns.RunIsolated(m))
}

// runHelper implements the helper modes and returns the exit code.
func runHelper(mode string, args []string) int {
	time.AfterFunc(helperLifetime, func() {
		fmt.Fprintf(os.Stderr, "helper %s: lifetime of %v exceeded\n", mode, helperLifetime)
		os.Exit(3)
	})
	var err error
	switch mode {
	case "listen":
		err = helperListen(args)
	case "dial":
		err = helperDial(args)
	case "mcastrecv":
		err = helperMulticastReceive(args)
	case "mcastsend":
		err = helperMulticastSend(args)
	case "udpecho":
		err = helperUDPEcho(args)
	case "udpprobe":
		err = helperUDPProbe(args)
	case "sink":
		err = helperSink(args)
	case "source":
		err = helperSource(args)
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", mode, err)
		return 1
	}
	return 0
}

// helperListen serves TCP on args[0], answering every connection with the
// identity of the network namespace it runs in.
func helperListen(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: listen ADDR")
	}
	id, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("read namespace: %w", err)
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Printf("READY %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		_, _ = io.WriteString(c, id+"\n")
		_ = c.Close()
	}
}

// helperDial connects to args[0] and prints the first line it receives.
func helperDial(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: dial ADDR")
	}
	c, err := net.DialTimeout("tcp", args[0], 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	fmt.Print(line)
	return nil
}

// helperMulticastReceive joins group args[1] on interface args[0], port
// args[2], and prints the first datagram and its source.
func helperMulticastReceive(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: mcastrecv IFACE GROUP PORT")
	}
	ifi, err := net.InterfaceByName(args[0])
	if err != nil {
		return fmt.Errorf("interface: %w", err)
	}
	group, err := groupAddr(args[1], args[2])
	if err != nil {
		return err
	}
	c, err := net.ListenMulticastUDP("udp4", ifi, group)
	if err != nil {
		return fmt.Errorf("join %s on %s: %w", group, ifi.Name, err)
	}
	defer c.Close()
	fmt.Println("READY")
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	buf := make([]byte, 1500)
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	fmt.Printf("GOT %s FROM %s\n", buf[:n], from.IP)
	return nil
}

// helperMulticastSend sends args[2] to group args[0] port args[1] a few
// times, relying on the namespace's multicast route to pick the interface.
func helperMulticastSend(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: mcastsend GROUP PORT PAYLOAD")
	}
	group, err := groupAddr(args[0], args[1])
	if err != nil {
		return err
	}
	c, err := net.DialUDP("udp4", nil, group)
	if err != nil {
		return fmt.Errorf("dial %s: %w", group, err)
	}
	defer c.Close()
	for range 10 {
		if _, err := c.Write([]byte(args[2])); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// groupAddr parses a multicast group and port.
func groupAddr(ip, port string) (*net.UDPAddr, error) {
	g := net.ParseIP(ip)
	if g == nil || !g.IsMulticast() {
		return nil, fmt.Errorf("%q is not a multicast address", ip)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", port, err)
	}
	return &net.UDPAddr{IP: g, Port: p}, nil
}

// testBinary returns the absolute path of this test binary.
func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("locate test binary: %v", err)
	}
	return exe
}

// helperCommand returns a command running this test binary as helper mode
// inside ns.
func helperCommand(t *testing.T, ns *netns.Namespace, mode string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := ns.Command(testBinary(t), args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	return cmd
}

// startHelper starts a long-running helper in ns and waits until it prints
// a line starting with READY. It returns the command and its remaining
// output lines.
func startHelper(t *testing.T, ns *netns.Namespace, mode string, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := helperCommand(t, ns, mode, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("stdout pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper %s: %v", mode, err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	line := nextLine(t, lines, 5*time.Second)
	if !strings.HasPrefix(line, "READY") {
		t.Fatalf("helper %s: expected READY, got %q", mode, line)
	}
	return cmd, lines
}

// nextLine returns the next output line, failing the test after timeout.
func nextLine(t *testing.T, lines <-chan string, timeout time.Duration) string {
	t.Helper()
	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatal("helper exited without the expected output")
		}
		return line
	case <-time.After(timeout):
		t.Fatalf("no helper output within %v", timeout)
	}
	return ""
}

// runHelperOutput runs a short-lived helper in ns and returns its stdout,
// killing it and failing the test if it does not finish within timeout.
func runHelperOutput(t *testing.T, ns *netns.Namespace, timeout time.Duration, mode string, args ...string) string {
	t.Helper()
	cmd := helperCommand(t, ns, mode, args...)
	return string(outputWithin(t, cmd, timeout))
}

// outputWithin runs cmd and returns its stdout, killing its process group and
// failing the test if it does not finish within timeout.
func outputWithin(t *testing.T, cmd *exec.Cmd, timeout time.Duration) []byte {
	t.Helper()
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(timeout, func() {
		timedOut.Store(true)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	err := cmd.Wait()
	timer.Stop()
	if timedOut.Load() {
		t.Fatalf("%v: timed out after %v", cmd.Args, timeout)
	}
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, stdout.Bytes())
	}
	return stdout.Bytes()
}

// nsID returns the network namespace identity of a process.
func nsID(t *testing.T, pid string) string {
	t.Helper()
	id, err := os.Readlink("/proc/" + pid + "/ns/net")
	if err != nil {
		t.Fatalf("read network namespace of %s: %v", pid, err)
	}
	return id
}

func TestIsolatedNamespace(t *testing.T) {
	netns.Require(t)

	self := nsID(t, "self")
	parent := nsID(t, strconv.Itoa(os.Getppid()))
	if self == parent {
		t.Fatalf("test process shares network namespace %s with its parent (the outer test process)", self)
	}
	if init, err := os.Readlink("/proc/1/ns/net"); err == nil {
		if init == self {
			t.Fatalf("test process is in pid 1's network namespace %s", init)
		}
	} else if os.Geteuid() == 0 {
		// Some sandboxes refuse cross-namespace access to pid 1 even for
		// root; the parent comparison above already proved isolation.
		t.Logf("cannot read /proc/1/ns/net (%v); compared with the parent process instead", err)
	}

	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatalf("list interfaces: %v", err)
	}
	if len(ifaces) != 1 || ifaces[0].Name != "lo" {
		names := make([]string, 0, len(ifaces))
		for _, ifi := range ifaces {
			names = append(names, ifi.Name)
		}
		t.Fatalf("private namespace should only contain lo, found %v", names)
	}
	if want := net.FlagUp | net.FlagMulticast; ifaces[0].Flags&want != want {
		t.Fatalf("lo flags %v, want up and multicast", ifaces[0].Flags)
	}

	t.Run("tcp over loopback", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		defer ln.Close()
		accepted := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, err = io.WriteString(c, "pong\n")
				_ = c.Close()
			}
			accepted <- err
		}()
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", ln.Addr(), err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "pong\n" {
			t.Fatalf("read %q, %v; want pong", line, err)
		}
		select {
		case err := <-accepted:
			if err != nil {
				t.Fatalf("accept: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("server did not finish")
		}
	})

	t.Run("multicast over loopback", func(t *testing.T) {
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			t.Fatalf("lo: %v", err)
		}
		group := &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}
		rc, err := net.ListenMulticastUDP("udp4", lo, group)
		if err != nil {
			t.Fatalf("join %s on lo: %v", group, err)
		}
		defer rc.Close()
		// No IP_MULTICAST_IF: the 224.0.0.0/4 route on lo must carry it.
		sc, err := net.DialUDP("udp4", nil, group)
		if err != nil {
			t.Fatalf("dial %s: %v", group, err)
		}
		defer sc.Close()
		if _, err := sc.Write([]byte("mdns-on-lo")); err != nil {
			t.Fatalf("send: %v", err)
		}
		_ = rc.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		n, _, err := rc.ReadFromUDP(buf)
		if err != nil || string(buf[:n]) != "mdns-on-lo" {
			t.Fatalf("received %q, %v; want mdns-on-lo", buf[:n], err)
		}
	})
}

// linkedPair creates two namespaces joined by a veth pair on 10.77.0.0/24.
func linkedPair(t *testing.T) (a, b *netns.Namespace) {
	t.Helper()
	a = netns.New(t, "hostA")
	b = netns.New(t, "hostB")
	netns.Link(t, a, "lanA", "10.77.0.1/24", b, "lanB", "10.77.0.2/24")
	return a, b
}

func TestVethLinkTCP(t *testing.T) {
	a, b := linkedPair(t)

	self := nsID(t, "self")
	idA := nsID(t, strconv.Itoa(a.PID()))
	idB := nsID(t, strconv.Itoa(b.PID()))
	if idA == self || idB == self || idA == idB {
		t.Fatalf("namespaces not distinct: self %s, A %s, B %s", self, idA, idB)
	}

	startHelper(t, b, "listen", "10.77.0.2:7777")
	got := strings.TrimSpace(runHelperOutput(t, a, 10*time.Second, "dial", "10.77.0.2:7777"))
	if got != idB {
		t.Fatalf("server reached from A runs in %q, want namespace B %q", got, idB)
	}

	linksA := string(outputWithin(t, a.Command("ip", "-o", "link"), 10*time.Second))
	if !strings.Contains(linksA, " lanA@") || strings.Contains(linksA, "lanB") {
		t.Fatalf("namespace A links should contain lanA only:\n%s", linksA)
	}
	addrsB := string(outputWithin(t, b.Command("ip", "-o", "-4", "addr", "show", "dev", "lanB"), 10*time.Second))
	if !strings.Contains(addrsB, "10.77.0.2/24") {
		t.Fatalf("namespace B lanB lacks 10.77.0.2/24:\n%s", addrsB)
	}

	// The pair left nothing behind in the test's own namespace, which has
	// no route to the LAN.
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatalf("list interfaces: %v", err)
	}
	if len(ifaces) != 1 {
		t.Fatalf("own namespace has %d interfaces after Link, want only lo: %v", len(ifaces), ifaces)
	}
	if c, err := net.DialTimeout("tcp", "10.77.0.2:7777", time.Second); err == nil {
		c.Close()
		t.Fatal("LAN address reachable from the test's own namespace")
	}
}

func TestVethMulticast(t *testing.T) {
	a, b := linkedPair(t)

	_, lines := startHelper(t, b, "mcastrecv", "lanB", "224.0.0.251", "5353")
	runHelperOutput(t, a, 10*time.Second, "mcastsend", "224.0.0.251", "5353", "hello-mdns")
	got := nextLine(t, lines, 5*time.Second)
	if want := "GOT hello-mdns FROM 10.77.0.1"; got != want {
		t.Fatalf("receiver in B printed %q, want %q", got, want)
	}
}

func TestCleanupKillsEverything(t *testing.T) {
	netns.Require(t)

	var (
		ns        *netns.Namespace
		holderPID int
		server    *exec.Cmd
	)
	t.Run("use", func(t *testing.T) {
		ns = netns.New(t, "short-lived")
		holderPID = ns.PID()
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", holderPID)); err != nil {
			t.Fatalf("holder pid %d not running: %v", holderPID, err)
		}
		server, _ = startHelper(t, ns, "listen", "127.0.0.1:7000")
	})

	if _, err := os.Stat(fmt.Sprintf("/proc/%d", holderPID)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("holder pid %d still exists after cleanup (stat: %v)", holderPID, err)
	}

	waited := make(chan error, 1)
	go func() { waited <- server.Wait() }()
	select {
	case err := <-waited:
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			t.Fatalf("server wait: %v, want killed", err)
		}
		ws, ok := exitErr.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("server ended with %v, want SIGKILL from cleanup", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server started in the namespace still running after cleanup")
	}

	if err := ns.Command("true").Start(); err == nil {
		t.Fatal("Command on a cleaned-up namespace started")
	}
}

func TestRequireIsLoudWithoutNamespace(t *testing.T) {
	netns.Require(t)

	// Re-run this binary with `ip` unreachable: RunIsolated cannot make a
	// namespace, so Require must skip loudly, or fail when CI=true.
	run := func(ci string) (string, error) {
		cmd := exec.Command(testBinary(t), "-test.run=^TestIsolatedNamespace$", "-test.v", "-test.timeout=30s")
		env := []string{"PATH=/nonexistent", "CI=" + ci}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "CI=") &&
				!strings.HasPrefix(kv, "PCP_NETNS_") {
				env = append(env, kv)
			}
		}
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var out bytes.Buffer
		cmd.Stdout = &out
		cmd.Stderr = &out
		cmd.WaitDelay = time.Second
		if err := cmd.Start(); err != nil {
			t.Fatalf("start: %v", err)
		}
		timer := time.AfterFunc(30*time.Second, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
		defer timer.Stop()
		err := cmd.Wait()
		return out.String(), err
	}

	out, err := run("false")
	if err != nil || !strings.Contains(out, "SKIPPED NETWORK TEST:") || !strings.Contains(out, "`ip`") {
		t.Fatalf("without CI: err %v, want a loud skip naming `ip`:\n%s", err, out)
	}
	out, err = run("true")
	if err == nil || !strings.Contains(out, "NETWORK TEST CANNOT RUN") || !strings.Contains(out, "--- FAIL") {
		t.Fatalf("with CI=true: err %v, want a failure:\n%s", err, out)
	}
}
