package discovery

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/node"
	"github.com/pcp-dev/pcp/lib/status"
)

func kadHost(t *testing.T) host.Host {
	t.Helper()
	h, err := node.New(node.Config{Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// answerProviders makes h a DHT server that knows only how to answer
// GET_PROVIDERS, with what answer returns as raw bytes after the length
// prefix (or, if long is set, with a length prefix of long). It never
// answers anything else, so it never enters a routing table.
func answerProviders(h host.Host, answer func(req *pb.Message) []byte, long uint64) {
	h.SetStreamHandler(dht.ProtocolDHT, func(s network.Stream) {
		defer s.Close()
		r := bufio.NewReader(s)
		for {
			n, err := binary.ReadUvarint(r)
			if err != nil || n > 1<<20 {
				return
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				return
			}
			var req pb.Message
			if proto.Unmarshal(b, &req) != nil || req.GetType() != pb.Message_GET_PROVIDERS {
				time.Sleep(time.Minute) // no answer: no lookup check passes
				return
			}
			resp := answer(&req)
			if long > 0 {
				s.Write(binary.AppendUvarint(nil, long))
				s.Write(resp)
				continue
			}
			s.Write(append(binary.AppendUvarint(nil, uint64(len(resp))), resp...))
		}
	})
}

func providersAnswer(t *testing.T, provider host.Host, key []byte) func(*pb.Message) []byte {
	return func(req *pb.Message) []byte {
		if key == nil {
			key = req.GetKey()
		}
		resp := pb.NewMessage(pb.Message_GET_PROVIDERS, key, 0)
		resp.ProviderPeers = pb.RawPeerInfosToPBPeers([]peer.AddrInfo{{ID: provider.ID(), Addrs: provider.Addrs()}})
		b, err := proto.Marshal(resp)
		if err != nil {
			t.Error(err)
		}
		return b
	}
}

func TestFindAsksBootstrapPeersBeforeTheRoutingTableFills(t *testing.T) {
	netns.Require(t)
	announcer, server := kadHost(t), kadHost(t)
	answerProviders(server, providersAnswer(t, announcer, nil), 0)
	h := kadHost(t)
	d, err := StartDHT(t.Context(), h, false, []peer.AddrInfo{{ID: server.ID(), Addrs: server.Addrs()}}, status.Logger{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	out := make(chan Candidate)
	go d.Find(ctx, 12, out)
	select {
	case c := <-out:
		if c.ID != announcer.ID() || len(c.Addrs) == 0 || c.Source != "dht" {
			t.Fatalf("candidate %s with %v from %q, want %s with its addresses from dht", c.ID, c.Addrs, c.Source, announcer.ID())
		}
	case <-ctx.Done():
		t.Fatal("no candidate within 5 s from a bootstrap peer that holds the record")
	}
	select {
	case <-d.Ready():
		t.Fatal("the routing table took a peer that answers no lookup check: the test proves nothing")
	default:
	}
}

func TestAskProvidersRefusesBadAnswers(t *testing.T) {
	netns.Require(t)
	announcer := kadHost(t)
	key := FindKeys(3, time.Now())[0]
	for _, tc := range []struct {
		name   string
		answer func(*pb.Message) []byte
		long   uint64
		want   string
	}{
		{"another key", providersAnswer(t, announcer, []byte("another key")), 0, "not about the key"},
		{"too long", providersAnswer(t, announcer, nil), maxKadMessage + 1, "limit"},
		{"garbage", func(*pb.Message) []byte { return []byte{0xff, 0xff, 0xff} }, 0, "decode"},
		{"cut short", providersAnswer(t, announcer, nil), 4000, "read answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, h := kadHost(t), kadHost(t)
			answerProviders(server, tc.answer, tc.long)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := node.Connect(ctx, h, peer.AddrInfo{ID: server.ID(), Addrs: server.Addrs()}); err != nil {
				t.Fatal(err)
			}
			if tc.name == "cut short" {
				go func() { time.Sleep(200 * time.Millisecond); server.Close() }()
			}
			got, err := askProviders(ctx, h, server.ID(), key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("askProviders = %v, %v; want an error about %q", got, err, tc.want)
			}
		})
	}
}

// putProvider returns only once a real kad-dht server has stored the
// record, and fails when the server refuses it or speaks no DHT.
func TestPutProviderIsConfirmed(t *testing.T) {
	netns.Require(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	server := kadHost(t)
	kad, err := dht.New(server, dht.Mode(dht.ModeServer))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kad.Close() })
	h := kadHost(t)
	if err := h.Connect(ctx, peer.AddrInfo{ID: server.ID(), Addrs: server.Addrs()}); err != nil {
		t.Fatal(err)
	}
	key := Key(77, time.Now())
	self := peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
	if err := putProvider(ctx, h, server.ID(), key, self); err != nil {
		t.Fatalf("putProvider to a DHT server: %v", err)
	}
	providers, err := kad.ProviderStore().GetProviders(ctx, key.Hash())
	if err != nil {
		t.Fatal(err)
	}
	if len(providers) != 1 || providers[0].ID != h.ID() {
		t.Fatalf("the server holds providers %v once putProvider returned, want %s", providers, h.ID())
	}

	refuser := kadHost(t)
	refuser.SetStreamHandler(dht.ProtocolDHT, func(s network.Stream) {
		io.ReadAll(io.LimitReader(s, 1<<10)) // the whole message, then a refusal
		s.Reset()
	})
	if err := h.Connect(ctx, peer.AddrInfo{ID: refuser.ID(), Addrs: refuser.Addrs()}); err != nil {
		t.Fatal(err)
	}
	if err := putProvider(ctx, h, refuser.ID(), key, self); err == nil {
		t.Fatal("putProvider to a server that reset the stream: no error")
	}

	mute := kadHost(t)
	if err := h.Connect(ctx, peer.AddrInfo{ID: mute.ID(), Addrs: mute.Addrs()}); err != nil {
		t.Fatal(err)
	}
	if err := putProvider(ctx, h, mute.ID(), key, self); err == nil {
		t.Fatal("putProvider to a host that speaks no DHT: no error")
	}
}
