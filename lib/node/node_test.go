package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pcp-dev/pcp/internal/netns"
)

func TestRankTCPFirst(t *testing.T) {
	addrs := []ma.Multiaddr{
		ma.StringCast("/ip4/1.2.3.4/udp/4001/quic-v1"),
		ma.StringCast("/ip4/1.2.3.4/tcp/4001"),
		ma.StringCast("/ip4/5.6.7.8/tcp/4001/p2p/12D3KooWAfzA2AUZ3ByHfmd37sPqjn1yAEceeRgR8dHYQDJRoznP/p2p-circuit"),
	}
	got := map[string]int64{}
	for _, d := range RankTCPFirst(addrs) {
		got[d.Addr.String()] = int64(d.Delay)
	}
	tcp, quic, relay := got[addrs[1].String()], got[addrs[0].String()], got[addrs[2].String()]
	if !(tcp == 0 && quic == int64(QUICDelay) && relay == int64(RelayDelay) && quic > int64(time.Second)) {
		t.Fatalf("delays: tcp %d, quic %d, relay %d; want tcp 0, quic %d (after TCP's first SYN retransmission), relay %d", tcp, quic, relay, QUICDelay, RelayDelay)
	}
}

func TestLoadIdentityIsStableAndPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	k1, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("identity file mode %v, want 0600", info.Mode().Perm())
	}
	k2, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := peer.IDFromPrivateKey(k1)
	id2, _ := peer.IDFromPrivateKey(k2)
	if id1 != id2 {
		t.Fatalf("peer ID changed on reload: %s, then %s", id1, id2)
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, err := LoadIdentity(path); err == nil {
		t.Fatal("a corrupt identity file was accepted")
	}
}

func TestShortID(t *testing.T) {
	id, err := peer.Decode("12D3KooWAfzA2AUZ3ByHfmd37sPqjn1yAEceeRgR8dHYQDJRoznP")
	if err != nil {
		t.Fatal(err)
	}
	if got := ShortID(id); got != "…JRoznP" {
		t.Fatalf("ShortID = %q, want …JRoznP", got)
	}
}

func TestMain(m *testing.M) { os.Exit(netns.RunIsolated(m)) }

func loopbackHost(t *testing.T, cfg Config) host.Host {
	t.Helper()
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// counter counts what b has read so far.
type counter struct{ n atomic.Int64 }

func (c *counter) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	return len(b), nil
}

// relayedPair makes b reachable only through relay r and returns a stream
// from a to b over the relayed connection, the count of what b reads from
// it, and a channel that yields the total once b's side ends.
func relayedPair(t *testing.T, r host.Host) (network.Stream, *counter, <-chan int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	a, b := loopbackHost(t, Config{}), loopbackHost(t, Config{})
	rinfo := peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}
	if _, err := client.Reserve(ctx, b, rinfo); err != nil {
		t.Fatalf("reserve a slot on the relay: %v", err)
	}
	read := make(chan int64, 1)
	got := &counter{}
	b.SetStreamHandler("/pcp/relay-test", func(s network.Stream) {
		n, _ := io.Copy(got, s)
		read <- n
	})
	circuit := ma.StringCast(fmt.Sprintf("%s/p2p/%s/p2p-circuit", r.Addrs()[0], r.ID()))
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: []ma.Multiaddr{circuit}}); err != nil {
		t.Fatalf("connect through the relay: %v", err)
	}
	s, err := a.NewStream(network.WithAllowLimitedConn(ctx, "test"), b.ID(), "/pcp/relay-test")
	if err != nil {
		t.Fatalf("stream through the relay: %v", err)
	}
	if !IsRelayed(s.Conn().RemoteMultiaddr()) || Transport(s.Conn()) != "relayed" {
		t.Fatalf("the connection to b is not relayed: %s", s.Conn().RemoteMultiaddr())
	}
	return s, got, read
}

// A relay with limits cuts a relayed connection after its data limit.
func TestRelayLimitsData(t *testing.T) {
	netns.Require(t)
	r := loopbackHost(t, Config{Relay: &RelayLimits{Data: 64 << 10, Duration: time.Minute}, NATService: true})
	s, got, _ := relayedPair(t, r)
	if !s.Conn().Stat().Limited {
		t.Error("a connection through a limited relay is not marked limited")
	}
	s.SetWriteDeadline(time.Now().Add(5 * time.Second))
	written, err := s.Write(make([]byte, 1<<20))
	if err == nil {
		t.Fatalf("1 MiB went out through a relay limited to 64 KiB")
	}
	time.Sleep(200 * time.Millisecond) // what was on its way arrives
	if n := got.n.Load(); n > 64<<10 {
		t.Fatalf("%d bytes went through a relay limited to %d (the sender wrote %d before %v)", n, 64<<10, written, err)
	}
}

// A relay without limits carries everything, and its connections are not
// marked limited: only an explicit check can tell they are relayed.
func TestRelayWithoutLimits(t *testing.T) {
	netns.Require(t)
	r := loopbackHost(t, Config{Relay: &RelayLimits{}})
	s, _, read := relayedPair(t, r)
	if s.Conn().Stat().Limited {
		t.Error("a connection through an unlimited relay is marked limited")
	}
	const size = 1 << 20
	s.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	select {
	case n := <-read:
		if n != size {
			t.Fatalf("%d of %d bytes went through a relay without limits", n, size)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the relayed stream did not end")
	}
}

// A host without a relay service gives no reservation.
func TestNoRelayService(t *testing.T) {
	netns.Require(t)
	r := loopbackHost(t, Config{})
	b := loopbackHost(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Reserve(ctx, b, peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}); err == nil {
		t.Fatal("a host without a relay service granted a reservation")
	}
}

// unreadWindow opens a stream from a new host to receiver whose reader takes
// one byte and then stops, and returns how much the sender could write
// before it had to wait for the receiver: its receive window.
func unreadWindow(t *testing.T, receiver host.Host) int64 {
	t.Helper()
	const proto = "/pcp/test/window"
	first := make(chan struct{})
	receiver.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		s.Read(make([]byte, 1)) // the first read sends the first window update
		close(first)
		time.Sleep(10 * time.Second)
	})
	sender := loopbackHost(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sender.Connect(ctx, peer.AddrInfo{ID: receiver.ID(), Addrs: receiver.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := sender.NewStream(ctx, receiver.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	if _, err := s.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	<-first
	buf := make([]byte, 64<<10)
	n := int64(0)
	for {
		s.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		m, err := s.Write(buf)
		n += int64(m)
		if err != nil {
			return n
		}
	}
}

func TestReceiverGrantsTheFullWindowAtOnce(t *testing.T) {
	netns.Require(t)
	if got := unreadWindow(t, loopbackHost(t, Config{})); got > 1<<20 {
		t.Fatalf("a default host took %d unread bytes; its window should start at 256 KiB", got)
	}
	receiver := loopbackHost(t, Config{Receiver: true})
	if got := unreadWindow(t, receiver); got < localWindow-256<<10 || got > localWindow+1<<20 {
		t.Fatalf("a receiver took %d unread bytes from a peer on loopback, want its local window of %d at once", got, localWindow)
	}
	for _, p := range receiver.Mux().Protocols() {
		if p == ping.ID {
			t.Fatalf("a receiver serves %s, whose handler stops reading", p)
		}
	}

	// A peer at a public address (here on this namespace's loopback device,
	// so that the connection comes from it) gets the wide window.
	const public = "203.0.113.7"
	if out, err := exec.Command("ip", "addr", "add", public+"/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v: %s", err, out)
	}
	defer exec.Command("ip", "addr", "del", public+"/32", "dev", "lo").Run()
	wide, err := New(Config{Listen: []string{"/ip4/" + public + "/tcp/0"}, Receiver: true})
	if err != nil {
		t.Fatal(err)
	}
	defer wide.Close()
	if got := unreadWindow(t, wide); got < wideWindow-256<<10 {
		t.Fatalf("a receiver took %d unread bytes from a peer at a public address, want its wide window of %d at once", got, wideWindow)
	}
}

func TestIsLocal(t *testing.T) {
	for _, c := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, true},
		{&net.TCPAddr{IP: net.ParseIP("::1")}, true},
		{&net.TCPAddr{IP: net.ParseIP("192.168.1.20")}, true},
		{&net.TCPAddr{IP: net.ParseIP("10.1.2.3")}, true},
		{&net.TCPAddr{IP: net.ParseIP("172.20.0.5")}, true},
		{&net.TCPAddr{IP: net.ParseIP("fd12::5")}, true},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1")}, true},
		{&net.TCPAddr{IP: net.ParseIP("169.254.3.4")}, true},
		{&net.TCPAddr{IP: net.ParseIP("100.64.1.1")}, false}, // carrier-grade NAT, and Tailscale across the world
		{&net.TCPAddr{IP: net.ParseIP("203.0.113.7")}, false},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1")}, false},
		{&net.UDPAddr{IP: net.ParseIP("127.0.0.1")}, false},
	} {
		if got := IsLocal(c.addr); got != c.want {
			t.Errorf("IsLocal(%v %v) = %v, want %v", c.addr.Network(), c.addr, got, c.want)
		}
	}
}

func TestRankQUICFirstForPeersWithoutData(t *testing.T) {
	rank := ranker([]ma.Multiaddr{ma.StringCast("/ip4/1.2.3.4/tcp/4001"), ma.StringCast("/ip4/1.2.3.4/udp/4001/quic-v1")})
	got := map[string]time.Duration{}
	for _, d := range rank([]ma.Multiaddr{
		ma.StringCast("/ip4/1.2.3.4/udp/4001/quic-v1"),
		ma.StringCast("/ip4/1.2.3.4/tcp/4001"),
		// A sender on the bootstrap peer's host: TCP first.
		ma.StringCast("/ip4/1.2.3.4/udp/39001/quic-v1"),
		ma.StringCast("/ip4/1.2.3.4/tcp/39001"),
	}) {
		got[d.Addr.String()] = d.Delay
	}
	want := map[string]time.Duration{
		"/ip4/1.2.3.4/udp/4001/quic-v1": 0, "/ip4/1.2.3.4/tcp/4001": bootstrapTCPDelay,
		"/ip4/1.2.3.4/udp/39001/quic-v1": QUICDelay, "/ip4/1.2.3.4/tcp/39001": 0,
	}
	for a, d := range want {
		if got[a] != d {
			t.Errorf("%s dialled after %v, want %v", a, got[a], d)
		}
	}
}

func TestSameHost(t *testing.T) {
	m := ma.StringCast
	for _, c := range []struct {
		local, remote string
		want          bool
	}{
		{"/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/tcp/4002", true},
		{"/ip6/::1/tcp/4001", "/ip6/::1/udp/4002/quic-v1", true},
		{"/ip4/10.1.0.2/tcp/4001", "/ip4/10.1.0.2/tcp/4002", true},
		{"/ip4/10.1.0.2/tcp/4001", "/ip4/10.1.0.3/tcp/4002", false},
		{"/ip4/10.1.0.2/tcp/4001", "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWAp6n9j2dqnKY8zyDkjczY2PiQ6iHBzsBzAgZsqjKuC3P/p2p-circuit", false},
	} {
		if got := SameHost(m(c.local), m(c.remote)); got != c.want {
			t.Errorf("SameHost(%s, %s) = %v, want %v", c.local, c.remote, got, c.want)
		}
	}
}
