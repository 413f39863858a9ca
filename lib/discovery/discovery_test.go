package discovery_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/discovery"
	"github.com/pcp-dev/pcp/lib/node"
	"github.com/pcp-dev/pcp/lib/status"
)

func TestMain(m *testing.M) { os.Exit(netns.RunIsolated(m)) }

func TestParseMethods(t *testing.T) {
	for _, tc := range []struct {
		in        string
		mdns, dht bool
		wantErr   bool
	}{
		{in: "mdns", mdns: true},
		{in: "dht", dht: true},
		{in: "mdns,dht", mdns: true, dht: true},
		{in: "dht,mdns", mdns: true, dht: true},
		{in: " DHT , mdns ", mdns: true, dht: true},
		{in: "MDNS", mdns: true},
		{in: "", wantErr: true},
		{in: "carrier-pigeon", wantErr: true},
		{in: "mdns,carrier-pigeon", wantErr: true},
		{in: "mdns,", wantErr: true},
		{in: "mdns dht", wantErr: true},
	} {
		mdns, dht, err := discovery.ParseMethods(tc.in)
		switch {
		case tc.wantErr && err == nil:
			t.Errorf("ParseMethods(%q) = %v, %v, nil; want an error", tc.in, mdns, dht)
		case tc.wantErr && (mdns || dht):
			t.Errorf("ParseMethods(%q) = %v, %v with error %v; want false, false", tc.in, mdns, dht, err)
		case tc.wantErr && !strings.Contains(err.Error(), "unknown discovery method"):
			t.Errorf("ParseMethods(%q): error %q does not say what is wrong", tc.in, err)
		case !tc.wantErr && err != nil:
			t.Errorf("ParseMethods(%q): %v", tc.in, err)
		case !tc.wantErr && (mdns != tc.mdns || dht != tc.dht):
			t.Errorf("ParseMethods(%q) = %v, %v; want %v, %v", tc.in, mdns, dht, tc.mdns, tc.dht)
		}
	}
}

func randomPeerID(t *testing.T) peer.ID {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestParseAddrs(t *testing.T) {
	a, b := randomPeerID(t), randomPeerID(t)
	tcp := "/ip4/192.0.2.1/tcp/4001/p2p/" + a.String()
	quic := "/ip4/192.0.2.1/udp/4001/quic-v1/p2p/" + a.String()
	other := "/ip6/2001:db8::1/tcp/4002/p2p/" + b.String()

	infos, err := discovery.ParseAddrs([]string{tcp, quic, other})
	if err != nil {
		t.Fatalf("ParseAddrs: %v", err)
	}
	got := map[peer.ID][]string{}
	for _, ai := range infos {
		for _, addr := range ai.Addrs {
			got[ai.ID] = append(got[ai.ID], addr.String())
		}
	}
	if len(infos) != 2 || len(got[a]) != 2 || len(got[b]) != 1 {
		t.Fatalf("ParseAddrs = %v, want %s with 2 addresses and %s with 1", infos, a, b)
	}
	for _, want := range []string{"/ip4/192.0.2.1/tcp/4001", "/ip4/192.0.2.1/udp/4001/quic-v1"} {
		if !strings.Contains(strings.Join(got[a], " "), want) {
			t.Errorf("addresses of %s = %v, missing %s", a, got[a], want)
		}
	}
	if got[b][0] != "/ip6/2001:db8::1/tcp/4002" {
		t.Errorf("address of %s = %v, want /ip6/2001:db8::1/tcp/4002", b, got[b])
	}

	if infos, err := discovery.ParseAddrs(nil); err != nil || len(infos) != 0 {
		t.Errorf("ParseAddrs(nil) = %v, %v; want nothing and no error", infos, err)
	}

	for _, bad := range []string{
		"/ip4/192.0.2.1/tcp/4001", // no /p2p: cannot be dialled without discovery
		"garbage",                 // not a multiaddr
		"/ip4/192.0.2.1/tcp/notaport/p2p/" + a.String(), // malformed component
		"/ip4/192.0.2.1/tcp/4001/p2p/notapeerid",
	} {
		infos, err := discovery.ParseAddrs([]string{tcp, bad})
		if err == nil {
			t.Errorf("ParseAddrs(%q) = %v, want an error", bad, infos)
			continue
		}
		if !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseAddrs(%q): error %q does not name the address", bad, err)
		}
	}
	if _, err := discovery.ParseAddrs([]string{"/ip4/192.0.2.1/tcp/4001"}); err == nil || !strings.Contains(err.Error(), "missing /p2p") {
		t.Errorf("ParseAddrs without /p2p: %v, want an error that says /p2p is missing", err)
	}
}

func TestStatic(t *testing.T) {
	peers := []peer.AddrInfo{{ID: randomPeerID(t)}, {ID: randomPeerID(t)}}
	s := discovery.Static{Peers: peers}
	if s.Name() != "peer" {
		t.Fatalf("Name() = %q, want peer", s.Name())
	}
	out := make(chan discovery.Candidate, len(peers))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Find(ctx, 1, out); err != nil {
		t.Fatal(err)
	}
	close(out)
	i := 0
	for c := range out {
		if c.ID != peers[i].ID || c.Source != "peer" {
			t.Fatalf("candidate %d = %s from %q, want %s from peer", i, c.ID, c.Source, peers[i].ID)
		}
		i++
	}
	if i != len(peers) {
		t.Fatalf("Find sent %d candidates, want %d", i, len(peers))
	}
	// Nobody reads: Find gives up when its context ends.
	ctx, cancel = context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := s.Find(ctx, 1, make(chan discovery.Candidate)); err != nil {
		t.Fatal(err)
	}
}

// discLog collects status lines without touching t after the test ends.
type discLog struct {
	mu    sync.Mutex
	lines []string
}

func newDiscLog(t *testing.T, name string) status.Logger {
	l := &discLog{}
	t.Cleanup(func() {
		if t.Failed() {
			l.mu.Lock()
			defer l.mu.Unlock()
			for _, line := range l.lines {
				t.Logf("%s: %s", name, line)
			}
		}
	})
	add := func(level string) func(string, ...any) {
		return func(f string, args ...any) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.lines = append(l.lines, level+fmt.Sprintf(f, args...))
		}
	}
	return status.Logger{Info: add("info: "), Debug: add("debug: ")}
}

func newLoopbackHost(t *testing.T) host.Host {
	t.Helper()
	h, err := node.New(node.Config{Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// collect runs find until ctx ends and returns what it sent, and its error.
func collect(ctx context.Context, find func(context.Context, int, chan<- discovery.Candidate) error, channel int, match func(discovery.Candidate) bool) (*discovery.Candidate, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make(chan discovery.Candidate)
	errc := make(chan error, 1)
	go func() { errc <- find(ctx, channel, out) }()
	for {
		select {
		case c := <-out:
			if match(c) {
				cancel()
				return &c, <-errc
			}
		case err := <-errc:
			return nil, err
		}
	}
}

func TestMDNS(t *testing.T) {
	netns.Require(t)
	a, b := newLoopbackHost(t), newLoopbackHost(t)
	am := &discovery.MDNS{Host: a, Log: newDiscLog(t, "announcer")}
	bm := &discovery.MDNS{Host: b, Log: newDiscLog(t, "finder")}
	if am.Name() != "mdns" {
		t.Fatalf("Name() = %q, want mdns", am.Name())
	}

	actx, stop := context.WithCancel(t.Context())
	defer stop()
	announced := make(chan error, 1)
	go func() { announced <- am.Announce(actx, 7) }()

	start := time.Now()
	fctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := collect(fctx, bm.Find, 7, func(discovery.Candidate) bool { return true })
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	if c == nil {
		t.Fatalf("Find for channel 7 found nothing in 5 s")
	}
	t.Logf("found over mDNS in %v", time.Since(start).Round(time.Millisecond))
	if c.ID != a.ID() || c.Source != "mdns" {
		t.Fatalf("candidate %s from %q, want %s from mdns", c.ID, c.Source, a.ID())
	}
	if len(c.Addrs) == 0 {
		t.Fatal("the candidate has no addresses")
	}
	listening := map[string]bool{}
	for _, addr := range a.Addrs() {
		listening[addr.String()] = true
	}
	for _, addr := range c.Addrs {
		if !listening[addr.String()] {
			t.Errorf("candidate address %s is not one that %s listens on (%v)", addr, a.ID(), a.Addrs())
		}
	}
	// The candidate's addresses are dialable.
	cctx, ccancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer ccancel()
	if err := b.Connect(cctx, c.AddrInfo); err != nil {
		t.Fatalf("connect to the candidate: %v", err)
	}

	// Another channel does not see the announcer.
	fctx, cancel = context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	start = time.Now()
	c, err = collect(fctx, bm.Find, 8, func(discovery.Candidate) bool { return true })
	if c != nil {
		t.Fatalf("Find for channel 8 found %s, which announces channel 7", c.ID)
	}
	if err != nil {
		t.Fatalf("Find for channel 8: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Find for channel 8 returned %v after it started, its context ended after 1.5 s", d)
	}

	stop()
	select {
	case err := <-announced:
		if err != nil {
			t.Fatalf("Announce: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Announce did not return after its context ended")
	}
}

// startDHTServers starts n server-mode DHT nodes, each bootstrapping from
// the first, and returns their addresses.
func startDHTServers(t *testing.T, n int) ([]peer.AddrInfo, []*discovery.DHT) {
	t.Helper()
	var infos []peer.AddrInfo
	var nodes []*discovery.DHT
	for i := range n {
		h := newLoopbackHost(t)
		var boot []peer.AddrInfo
		if len(infos) > 0 {
			boot = infos[:1]
		}
		d, err := discovery.StartDHT(t.Context(), h, true, boot, newDiscLog(t, fmt.Sprintf("server %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		infos = append(infos, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
		nodes = append(nodes, d)
	}
	return infos, nodes
}

func waitReady(t *testing.T, name string, d *discovery.DHT, timeout time.Duration) {
	t.Helper()
	select {
	case <-d.Ready():
	case <-time.After(timeout):
		t.Fatalf("%s: Ready() did not close within %v", name, timeout)
	}
}

func TestDHT(t *testing.T) {
	netns.Require(t)
	servers, nodes := startDHTServers(t, 3)
	client := func(name string) (host.Host, *discovery.DHT) {
		h := newLoopbackHost(t)
		d, err := discovery.StartDHT(t.Context(), h, false, servers, newDiscLog(t, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return h, d
	}
	a, ad := client("announcer")
	_, bd := client("finder")
	if ad.Name() != "dht" {
		t.Fatalf("Name() = %q, want dht", ad.Name())
	}
	for i, d := range nodes {
		waitReady(t, fmt.Sprintf("server %d", i), d, 10*time.Second)
	}
	waitReady(t, "announcer", ad, 10*time.Second)
	waitReady(t, "finder", bd, 10*time.Second)

	actx, stop := context.WithCancel(t.Context())
	defer stop()
	announced := make(chan error, 1)
	go func() { announced <- ad.Announce(actx, 9) }()

	start := time.Now()
	fctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var others []peer.ID
	c, err := collect(fctx, bd.Find, 9, func(c discovery.Candidate) bool {
		if c.ID == a.ID() {
			return true
		}
		others = append(others, c.ID)
		return false
	})
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	if c == nil {
		t.Fatalf("Find for channel 9 did not yield the announcer within 10 s (others: %v)", others)
	}
	t.Logf("found through the DHT in %v", time.Since(start).Round(time.Millisecond))
	if len(others) > 0 {
		t.Errorf("Find yielded peers that never announced channel 9: %v", others)
	}
	if c.Source != "dht" || len(c.Addrs) == 0 {
		t.Fatalf("candidate from %q with addresses %v, want from dht with addresses", c.Source, c.Addrs)
	}

	// Channel 10 has no provider.
	fctx, cancel = context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if c, err := collect(fctx, bd.Find, 10, func(discovery.Candidate) bool { return true }); c != nil || err != nil {
		t.Fatalf("Find for channel 10 = %v, %v; want nothing", c, err)
	}

	stop()
	select {
	case err := <-announced:
		if err != nil {
			t.Fatalf("Announce: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Announce did not return after its context ended")
	}
}

func TestDHTUnreachableBootstrap(t *testing.T) {
	netns.Require(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there any more
	dead := peer.AddrInfo{ID: randomPeerID(t), Addrs: []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port))}}

	h := newLoopbackHost(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	d, err := discovery.StartDHT(ctx, h, false, []peer.AddrInfo{dead}, newDiscLog(t, "client"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })

	// Announce and Find wait for a routing table that never fills.
	done := make(chan string, 2)
	go func() {
		d.Announce(ctx, 11)
		done <- "Announce"
	}()
	go func() {
		d.Find(ctx, 11, make(chan discovery.Candidate))
		done <- "Find"
	}()
	select {
	case <-d.Ready():
		t.Fatal("Ready() closed with no reachable bootstrap peer")
	case which := <-done:
		t.Fatalf("%s returned before its context ended", which)
	case <-time.After(time.Second):
	}

	cancel()
	for range 2 {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Announce or Find did not return after the context ended")
		}
	}
	select {
	case <-d.Ready():
		t.Fatal("Ready() closed after the context ended, with no bootstrap peer")
	default:
	}
}
