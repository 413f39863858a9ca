//go:build !linux

package netns

import (
	"errors"
	"os/exec"
	"runtime"
	"testing"

	"github.com/pcp-dev/pcp/internal/linkem"
)

// errUnsupported is returned by commands on platforms without network
// namespaces.
var errUnsupported = errors.New("netns: network namespaces require linux")

// RunIsolated is called from a test package's TestMain. Network namespaces
// exist only on Linux, so on this platform it records why, runs m.Run() in
// the current process and returns its code; Require then skips (or, with
// CI=true, fails) every network test.
func RunIsolated(m *testing.M) int {
	setNotIsolated("network namespaces are only available on linux, not " + runtime.GOOS)
	return m.Run()
}

// New would create an extra network namespace; on this platform Require
// always skips or fails the test, so it never returns.
func New(t testing.TB, name string) *Namespace {
	t.Helper()
	Require(t)
	t.Fatalf("netns %q: %v", name, errUnsupported)
	return nil
}

// Command returns a command whose Start always fails on this platform.
func (n *Namespace) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Err = errUnsupported
	return cmd
}

// Run fails the test: there are no network namespaces on this platform.
func (n *Namespace) Run(t testing.TB, name string, args ...string) {
	t.Helper()
	t.Fatalf("netns: run %s: %v", name, errUnsupported)
}

// Link fails (or skips) the test: there are no network namespaces on this
// platform.
func Link(t testing.TB, a *Namespace, ifA, addrA string, b *Namespace, ifB, addrB string) {
	t.Helper()
	Require(t)
	t.Fatalf("netns: link %s-%s: %v", ifA, ifB, errUnsupported)
}

// Emulate fails (or skips) the test: there are no network namespaces on
// this platform.
func Emulate(t testing.TB, a *Namespace, ifA, addrA string, b *Namespace, ifB, addrB string, ab, ba linkem.Shape, seed uint64) *linkem.Link {
	t.Helper()
	Require(t)
	t.Fatalf("netns: emulate %s-%s: %v", ifA, ifB, errUnsupported)
	return nil
}
