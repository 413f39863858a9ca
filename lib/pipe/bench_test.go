package pipe

import (
	"context"
	"io"
	"testing"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/node"
)

// connectedHosts starts two libp2p hosts on 127.0.0.1, made as the commands
// make them, and connects the first to the second; both close with tb.
func connectedHosts(tb testing.TB) (a, b host.Host) {
	tb.Helper()
	for _, h := range []*host.Host{&a, &b} {
		var err error
		if *h, err = node.New(node.Config{Listen: []string{"/ip4/127.0.0.1/tcp/0"}}); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { (*h).Close() })
	}
	if err := a.Connect(context.Background(), peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		tb.Fatalf("connect: %v", err)
	}
	return a, b
}

// BenchmarkLibp2p measures the pipe over a real libp2p connection on
// loopback (TCP, TLS, yamux, as the commands use), 256 MiB per operation.
func BenchmarkLibp2p(b *testing.B) {
	netns.Require(b)
	ctx := context.Background()
	ha, hb := connectedHosts(b)
	const proto = protocol.ID("/pcp/pipe-bench/1.0.0")
	const size = 256 << 20
	errs := make(chan error, 1)
	hb.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		_, err := Receive(ctx, s, io.Discard, Options{})
		errs <- err
	})
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		s, err := ha.NewStream(ctx, hb.ID(), proto)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Send(ctx, s, Header{Kind: KindRaw, Size: size}, io.LimitReader(endless{}, size), Options{}); err != nil {
			b.Fatal(err)
		}
		s.Close()
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}
