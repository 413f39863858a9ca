package node

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pcp-dev/pcp/internal/netns"
)

func TestNewStreamSpeaksAtOnce(t *testing.T) {
	netns.Require(t)
	server := loopbackHost(t, Config{})
	server.SetStreamHandler("/pcp/test/echo", func(s network.Stream) {
		defer s.Close()
		io.Copy(s, s)
	})
	client := loopbackHost(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ai := peer.AddrInfo{ID: server.ID(), Addrs: server.Addrs()}
	if err := Connect(ctx, client, ai); err != nil {
		t.Fatal(err)
	}
	if err := Connect(ctx, client, ai); err != nil { // connected: nothing to do
		t.Fatal(err)
	}
	if n := len(client.Network().ConnsToPeer(server.ID())); n != 1 {
		t.Fatalf("%d connections after connecting twice, want 1", n)
	}

	s, err := NewStream(ctx, client, server.ID(), "/pcp/test/echo")
	if err != nil {
		t.Fatal(err)
	}
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "hello" {
		t.Fatalf("echo = %q, %v; want hello", got, err)
	}
	s.Close()

	// A protocol the server does not speak fails the first read.
	s, err = NewStream(ctx, client, server.ID(), "/pcp/test/nothing")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	s.Write([]byte("hello"))
	if n, err := s.Read(make([]byte, 10)); err == nil {
		t.Fatalf("read %d bytes from a protocol the peer does not speak", n)
	}
}
