//go:build linux

package netns

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/pcp-dev/pcp/internal/linkem"
)

// Emulate joins namespaces a and b like Link, but through a link emulated
// in this process (internal/linkem): a's frames reach b shaped by ab, b's
// reach a shaped by ba. Each end is a TAP device, created here under a
// unique temporary name, moved into its namespace, renamed ifA or ifB and
// configured like a veth end of Link (address, up, multicast and its route).
// The emulator runs until the end of t, then the devices are removed. seed
// makes the random losses repeatable.
func Emulate(t testing.TB, a *Namespace, ifA, addrA string, b *Namespace, ifB, addrB string, ab, ba linkem.Shape, seed uint64) *linkem.Link {
	t.Helper()
	Require(t)
	if a == b {
		t.Fatalf("netns: emulate: both ends are in namespace %q", a.name)
	}
	for _, name := range []string{ifA, ifB} {
		if err := validIfName(name); err != nil {
			t.Fatalf("netns: emulate: %v", err)
		}
	}
	seq := linkSeq.Add(1) % 100000
	var taps [2]*os.File
	for i, end := range []struct {
		n          *Namespace
		name, addr string
	}{{a, ifA, addrA}, {b, ifB, addrB}} {
		if err := end.n.check(); err != nil {
			t.Fatalf("netns: emulate: %v", err)
		}
		tmp := fmt.Sprintf("pt%d_%d%c", os.Getpid()%100000, seq, 'a'+i)
		tap, err := linkem.OpenTAP(tmp)
		if err != nil {
			if i == 1 {
				taps[0].Close()
			}
			unavailable(t, fmt.Sprintf("netns: emulate: %v", err))
		}
		taps[i] = tap
		hostIP(t, "link", "set", "dev", tmp, "netns", strconv.Itoa(end.n.pid))
		end.n.configureLink(t, tmp, end.name, end.addr)
	}
	// A path across the internet starts at a router on the LAN, whose
	// address is resolved at LAN speed: fixed neighbour entries keep ARP
	// off the emulated link, so that its delay is not paid twice on first
	// contact.
	a.neighbour(t, ifA, addrB, b.mac(t, ifB))
	b.neighbour(t, ifB, addrA, a.mac(t, ifA))
	l := linkem.Start(taps[0], taps[1], ab, ba, seed)
	t.Cleanup(func() { l.Close() })
	return l
}

// mac returns the hardware address of interface name in n.
func (n *Namespace) mac(t testing.TB, name string) string {
	t.Helper()
	out, err := n.combinedOutput(setupTimeout, "ip", "-o", "link", "show", "dev", name)
	if err != nil {
		t.Fatalf("netns %q: ip link show %s: %v\n%s", n.name, name, err, out)
	}
	_, after, ok := strings.Cut(string(out), "link/ether ")
	mac, _, _ := strings.Cut(after, " ")
	if !ok || mac == "" {
		t.Fatalf("netns %q: no hardware address for %s in %q", n.name, name, out)
	}
	return mac
}

// neighbour fixes the hardware address of the host at addr (CIDR) on
// interface name in n.
func (n *Namespace) neighbour(t testing.TB, name, addr, mac string) {
	t.Helper()
	ip, _, _ := strings.Cut(addr, "/")
	n.Run(t, "ip", "neigh", "replace", ip, "lladdr", mac, "dev", name, "nud", "permanent")
}
