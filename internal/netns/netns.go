// Package netns provides test helpers that keep pcp's network tests out of the
// machine's root network namespace.
//
// A test package that opens sockets wires RunIsolated into its TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(netns.RunIsolated(m)) }
//
// RunIsolated re-executes the test binary inside a fresh, private network
// namespace that only has a loopback interface, so mDNS multicast cannot leave
// the machine and DHT bootstrap cannot reach the internet. Every test that
// opens a socket starts with Require, which skips (or, with CI=true, fails)
// the test when that namespace could not be made.
//
// For topologies with several hosts, New creates extra anonymous namespaces
// held open by a holder process, and Link joins two of them with a veth pair.
// New and Link only work inside RunIsolated's namespace, so they can never
// modify the root namespace.
package netns

import (
	"os"
	"os/exec"
	"sync"
	"testing"
)

// Environment variables used between the outer test process and the
// re-executed one.
const (
	// markerEnv is set to "1" in the re-executed test binary.
	markerEnv = "PCP_NETNS_ISOLATED"
	// outerEnv carries the outer process's network namespace identity
	// (the target of /proc/self/ns/net) so the child can verify that it
	// really lives in a different namespace.
	outerEnv = "PCP_NETNS_OUTER"
)

// isolation records whether this process runs inside a private network
// namespace made by RunIsolated, and why not if it does not. It is written by
// RunIsolated before m.Run starts any test and only read afterwards.
var isolation struct {
	called   bool
	isolated bool
	reason   string
}

// setNotIsolated records why network tests cannot run in this process.
func setNotIsolated(reason string) {
	isolation.called = true
	isolation.isolated = false
	isolation.reason = reason
}

// setIsolated records that this process runs in its own network namespace.
func setIsolated() {
	isolation.called = true
	isolation.isolated = true
	isolation.reason = ""
}

// notIsolatedReason returns why network tests cannot run, or "" if they can.
func notIsolatedReason() string {
	if !isolation.called {
		return "netns.RunIsolated was not called; add " +
			"`func TestMain(m *testing.M) { os.Exit(netns.RunIsolated(m)) }` to the test package"
	}
	if isolation.isolated {
		return ""
	}
	return isolation.reason
}

// Require is called at the start of every test that opens a socket. If the
// process is not inside the private network namespace made by RunIsolated it
// skips the test with a loud "SKIPPED NETWORK TEST: ..." reason explaining why
// the namespace could not be made; when the environment variable CI is "true"
// it fails the test with the same reason instead, so CI can never pass by
// skipping network tests.
func Require(t testing.TB) {
	t.Helper()
	reason := notIsolatedReason()
	if reason == "" {
		return
	}
	unavailable(t, reason)
}

// unavailable skips t loudly, or fails it when running in CI.
func unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("NETWORK TEST CANNOT RUN (CI=true forbids skipping): %s", reason)
	}
	t.Skipf("SKIPPED NETWORK TEST: %s", reason)
}

// Namespace is an extra, anonymous network namespace held open by a holder
// process; the namespace dies with the holder. It is used to build
// topologies such as two LAN hosts joined by a veth pair. Loopback is up with
// multicast enabled inside it. Create it with New.
type Namespace struct {
	name   string
	holder *exec.Cmd
	pid    int
	// netID is the namespace identity (readlink of /proc/PID/ns/net)
	// observed when the namespace was created.
	netID string
	// exited is closed once the holder process has been reaped.
	exited chan struct{}

	mu     sync.Mutex
	cmds   []*exec.Cmd
	closed bool
}

// PID returns the holder process's pid, usable with
// `ip link set DEV netns PID`.
func (n *Namespace) PID() int {
	return n.pid
}
