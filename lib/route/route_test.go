package route

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/node"
)

func TestMain(m *testing.M) { os.Exit(netns.RunIsolated(m)) }

const ctlProtocol = "/pcp/route-test"

func loopbackHost(t *testing.T, cfg node.Config) host.Host {
	t.Helper()
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	h, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// meetThroughRelay makes announcer reachable only through a relay with
// limits (nil: none) and returns both ends of a stream from finder to
// announcer over the relayed connection: the authenticated stream of a
// real session.
func meetThroughRelay(t *testing.T, limits *node.RelayLimits) (announcer, finder host.Host, aCtl, fCtl network.Stream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if limits == nil {
		limits = &node.RelayLimits{}
	}
	r := loopbackHost(t, node.Config{Relay: limits})
	announcer, finder = loopbackHost(t, node.Config{}), loopbackHost(t, node.Config{})
	if _, err := client.Reserve(ctx, announcer, peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}); err != nil {
		t.Fatalf("reserve a slot on the relay: %v", err)
	}
	accepted := make(chan network.Stream, 1)
	announcer.SetStreamHandler(ctlProtocol, func(s network.Stream) { accepted <- s })
	circuit := ma.StringCast(fmt.Sprintf("%s/p2p/%s/p2p-circuit", r.Addrs()[0], r.ID()))
	if err := finder.Connect(ctx, peer.AddrInfo{ID: announcer.ID(), Addrs: []ma.Multiaddr{circuit}}); err != nil {
		t.Fatalf("connect through the relay: %v", err)
	}
	fCtl, err := finder.NewStream(network.WithAllowLimitedConn(ctx, "test"), announcer.ID(), ctlProtocol)
	if err != nil {
		t.Fatalf("stream through the relay: %v", err)
	}
	fCtl.Write([]byte{0}) // make the announcer's handler run
	select {
	case aCtl = <-accepted:
		io.ReadFull(aCtl, make([]byte, 1))
	case <-ctx.Done():
		t.Fatal("the announcer got no stream")
	}
	if Of(aCtl.Conn()).Kind != Relayed || Of(fCtl.Conn()).Kind != Relayed {
		t.Fatalf("the stream is not relayed: %s", fCtl.Conn().RemoteMultiaddr())
	}
	return announcer, finder, aCtl, fCtl
}

type settled struct {
	s    network.Stream
	path Path
	err  error
}

func wait(ctx context.Context, e *Expectation, pol Policy) <-chan settled {
	out := make(chan settled, 1)
	go func() {
		s, p, err := e.Wait(ctx, pol)
		out <- settled{s, p, err}
	}()
	return out
}

func allow(yes bool) func(context.Context, peer.ID, string) (bool, error) {
	return func(context.Context, peer.ID, string) (bool, error) { return yes, nil }
}

// refused reports whether s, opened to the announcer, was refused: reset
// before any byte of an answer.
func refused(s network.Stream) bool {
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := s.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// The announcer takes the data stream only from the peer that
// authenticated, and only over a direct connection; the finder moves to
// the direct connection once there is one.
func TestDataStreamOnlyFromThePeerDirectly(t *testing.T) {
	netns.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	announcer, finder, aCtl, fCtl := meetThroughRelay(t, nil)
	e := Expect(announcer, aCtl)
	done := wait(ctx, e, Policy{})
	direct := peer.AddrInfo{ID: announcer.ID(), Addrs: announcer.Addrs()}

	// Someone else, directly: refused.
	intruder := loopbackHost(t, node.Config{})
	if err := intruder.Connect(ctx, direct); err != nil {
		t.Fatal(err)
	}
	if s, err := intruder.NewStream(ctx, announcer.ID(), Protocol); err == nil && !refused(s) {
		t.Fatal("the announcer took a data stream from a peer that did not authenticate")
	}
	// The peer, through the relay: refused.
	if s, err := finder.NewStream(network.WithAllowLimitedConn(ctx, "test"), announcer.ID(), Protocol); err == nil && !refused(s) {
		t.Fatal("the announcer took a data stream over the relay")
	}
	select {
	case r := <-done:
		t.Fatalf("the announcer settled on a refused stream: %+v", r)
	default:
	}

	// The peer connects directly (as a hole punch would): the finder moves.
	if err := finder.Connect(network.WithForceDirectDial(ctx, "test"), direct); err != nil {
		t.Fatal(err)
	}
	fData, fPath, err := Finder(ctx, finder, fCtl, Policy{})
	if err != nil {
		t.Fatalf("finder: %v", err)
	}
	if fPath.Kind != Punched || node.IsRelayed(fData.Conn().RemoteMultiaddr()) {
		t.Fatalf("finder path %v over %s, want a direct one after the relay", fPath, fData.Conn().RemoteMultiaddr())
	}
	fData.Write([]byte("data"))
	r := <-done
	if r.err != nil {
		t.Fatalf("announcer: %v", r.err)
	}
	if r.path.Kind != Punched || !strings.HasPrefix(r.path.String(), "directly after hole punching (tcp") {
		t.Fatalf("announcer path %q", r.path)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(r.s, got); err != nil || string(got) != "data" {
		t.Fatalf("the announcer's data stream read %q, %v", got, err)
	}
}

// Without a direct connection, the data goes through a relay without limits
// only when both sides consent; a limited relay is refused whatever they say.
func TestRelayNeedsConsentAndAnUnlimitedRelay(t *testing.T) {
	netns.Require(t)
	public := node.DefaultRelayLimits()
	for _, tc := range []struct {
		name             string
		limits           *node.RelayLimits
		finder, announce bool
		want             string // in both errors; "" means relayed
	}{
		{"both consent", nil, true, true, ""},
		{"the finder refuses", nil, false, true, "only with consent (--allow-relay)"},
		{"the announcer refuses", nil, true, false, "the peer did not allow the relay"},
		{"a limited relay", &public, true, true, "cuts relayed connections off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			announcer, finder, aCtl, fCtl := meetThroughRelay(t, tc.limits)
			done := wait(ctx, Expect(announcer, aCtl), Policy{AllowRelay: allow(tc.announce)})
			start := time.Now()
			fData, fPath, err := Finder(ctx, finder, fCtl, Policy{AllowRelay: allow(tc.finder), PunchWait: 300 * time.Millisecond})
			r := <-done
			if time.Since(start) > 5*time.Second {
				t.Errorf("settling took %v", time.Since(start))
			}
			if tc.want == "" {
				if err != nil || r.err != nil {
					t.Fatalf("finder: %v; announcer: %v", err, r.err)
				}
				if fPath.Kind != Relayed || r.path.Kind != Relayed || fData != fCtl || r.s != aCtl {
					t.Fatalf("paths %v and %v, want both through the relay on the authenticated stream", fPath, r.path)
				}
				return
			}
			var nd *NoDirectError
			if !errors.As(err, &nd) || !strings.Contains(err.Error(), "no direct connection to the peer (no hole punch succeeded within 300ms)") {
				t.Fatalf("finder: %v, want a *NoDirectError that says why", err)
			}
			if r.err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("finder: %v; announcer: %v; want both to say %q", err, r.err, tc.want)
			}
			if !strings.Contains(r.err.Error(), "no direct connection") {
				t.Fatalf("announcer: %v, want it to say why", r.err)
			}
		})
	}
}

func TestPathString(t *testing.T) {
	relay, _ := peer.Decode("12D3KooWAfzA2AUZ3ByHfmd37sPqjn1yAEceeRgR8dHYQDJRoznP")
	for _, tc := range []struct {
		p    Path
		want string
	}{
		{Path{Kind: LAN, Transport: "tcp"}, "over the LAN (tcp)"},
		{Path{Kind: Direct, Transport: "quic"}, "directly (quic)"},
		{Path{Kind: Punched, Transport: "tcp", Punch: 21 * time.Millisecond}, "directly after hole punching (tcp, 21ms)"},
		{Path{Kind: Relayed, Transport: "relayed", Relay: relay}, "through relay …JRoznP"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.p, got, tc.want)
		}
	}
}
