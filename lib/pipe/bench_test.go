package pipe

import (
	"context"
	"io"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/node"
)

// BenchmarkLibp2p measures the pipe over a real libp2p connection on
// loopback (TCP, TLS, yamux, as the commands use), 256 MiB per operation.
func BenchmarkLibp2p(b *testing.B) {
	netns.Require(b)
	ctx := context.Background()
	hosts := make([]interface{ Close() error }, 0, 2)
	b.Cleanup(func() {
		for _, h := range hosts {
			h.Close()
		}
	})
	ha, err := node.New(node.Config{Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		b.Fatal(err)
	}
	hosts = append(hosts, ha)
	hb, err := node.New(node.Config{Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		b.Fatal(err)
	}
	hosts = append(hosts, hb)
	const proto = protocol.ID("/pcp/pipe-bench/1.0.0")
	const size = 256 << 20
	errs := make(chan error, 1)
	hb.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		_, err := Receive(ctx, s, io.Discard, Options{})
		errs <- err
	})
	if err := ha.Connect(ctx, peer.AddrInfo{ID: hb.ID(), Addrs: hb.Addrs()}); err != nil {
		b.Fatal(err)
	}
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
