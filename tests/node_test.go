package tests

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/netns"
)

// pcp node prints full multiaddrs, keeps its peer ID across restarts with
// --identity, and exits 0 when interrupted.
func TestNodeIdentityIsStable(t *testing.T) {
	netns.Require(t)
	identity := filepath.Join(t.TempDir(), "node.key")
	var ids []string
	for range 2 {
		p, addr := nodeFirstLine(t, "--listen", "/ip4/127.0.0.1/tcp/0", "--identity", identity)
		_, id, ok := strings.Cut(addr, "/p2p/")
		if !strings.HasPrefix(addr, "/ip4/127.0.0.1/tcp/") || !ok || !strings.HasPrefix(id, "12D3KooW") {
			t.Fatalf("pcp node printed %q, want /ip4/127.0.0.1/tcp/PORT/p2p/12D3KooW…", addr)
		}
		ids = append(ids, id)
		p.cmd.Process.Signal(syscall.SIGINT)
		p.expectExit(5*time.Second, 0)
	}
	if ids[0] != ids[1] {
		t.Fatalf("the peer ID changed across restarts with the same --identity: %s, then %s", ids[0], ids[1])
	}
	_, other := nodeFirstLine(t, "--listen", "/ip4/127.0.0.1/tcp/0")
	if strings.HasSuffix(other, ids[0]) {
		t.Fatalf("a node without --identity reused the stored peer ID")
	}
}

// A second pcp node on a TCP port that another one holds fails at once,
// in one line, instead of sharing the port (SO_REUSEPORT would split the
// connections between the two).
func TestNodeOnATakenPortFails(t *testing.T) {
	netns.Require(t)
	first, addr := nodeFirstLine(t, "--listen", "/ip4/127.0.0.1/tcp/0")
	defer first.cmd.Process.Signal(syscall.SIGINT)
	listen, _, _ := strings.Cut(addr, "/p2p/")
	second := start(t, command(t, "pcp", "node", "--listen", listen), nil)
	second.expectExit(10*time.Second, 1)
	stderr := second.stderr.String()
	if !strings.Contains(stderr, "address already in use") {
		t.Fatalf("the second node did not say that the port is in use:\n%s", stderr)
	}
	if lines := strings.Count(strings.TrimSpace(stderr), "\n") + 1; lines != 1 {
		t.Fatalf("the second node printed %d lines, want one:\n%s", lines, stderr)
	}
}

// On a host where no interface can multicast, --discovery mdns fails at
// once on both sides, in pcp's words, and no library logs its own lines.
func TestNoMulticastInterface(t *testing.T) {
	netns.Require(t)
	ns := netns.New(t, "no-multicast")
	ns.Run(t, "ip", "link", "set", "lo", "multicast", "off")
	c := newCode(t)
	send := start(t, ns.Command(binary(t, "pcp-pipe"), "send", "--discovery", "mdns", "--code", c), strings.NewReader("x"))
	recv := start(t, ns.Command(binary(t, "pcp-pipe"), "recv", "--discovery", "mdns", "--timeout", "20s", c), nil)
	send.expectExit(10*time.Second, 1)
	recv.expectExit(10*time.Second, 1)
	for _, p := range []*proc{send, recv} {
		stderr := p.stderr.String()
		if !strings.Contains(stderr, "no network interface can multicast") || !strings.Contains(stderr, "--discovery dht") {
			t.Errorf("stderr does not say that mDNS cannot work here:\n%s", stderr)
		}
		if strings.Contains(stderr, "[zeroconf]") || strings.Contains(stderr, "ts=") {
			t.Errorf("a library logged on stderr:\n%s", stderr)
		}
	}
}
