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
