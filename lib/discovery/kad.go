package discovery

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/pcp-dev/pcp/lib/node"
)

// maxKadMessage bounds a DHT server's answer: providers and closer peers,
// each with a few addresses, take a few KiB.
const maxKadMessage = 1 << 20

// askTimeout bounds one direct question to a DHT server.
const askTimeout = 10 * time.Second

// sendKad sends msg to the DHT server p, to which h is connected, on a
// stream of its own that ctx bounds (its deadline, and a reset when ctx
// ends). done resets the stream: call it when finished with it.
func sendKad(ctx context.Context, h host.Host, p peer.ID, msg *pb.Message) (network.Stream, func(), error) {
	req, err := proto.Marshal(msg)
	if err != nil {
		return nil, nil, fmt.Errorf("encode request: %w", err)
	}
	// s is not a named result: a failed send returns nil for the stream,
	// while the reset on ctx, already started, may yet run.
	s, err := node.NewStream(ctx, h, p, dht.ProtocolDHT)
	if err != nil {
		return nil, nil, err
	}
	deadline, _ := ctx.Deadline()
	s.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	done := func() {
		stop()
		s.Reset()
	}
	if _, err := s.Write(append(binary.AppendUvarint(nil, uint64(len(req))), req...)); err != nil {
		done()
		return nil, nil, fmt.Errorf("send request: %w", err)
	}
	return s, done, nil
}

// askProviders asks the DHT server p, to which h is connected, for the
// providers of key, on a stream of its own: the message a lookup sends
// first, without waiting for the routing table. Providers that come without
// addresses are left out (a lookup finds their addresses).
func askProviders(ctx context.Context, h host.Host, p peer.ID, key cid.Cid) ([]peer.AddrInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	s, done, err := sendKad(ctx, h, p, pb.NewMessage(pb.Message_GET_PROVIDERS, key.Hash(), 0))
	if err != nil {
		return nil, err
	}
	defer done() // one question, one answer: nothing else to wait for
	r := bufio.NewReader(s)
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	if n > maxKadMessage {
		return nil, fmt.Errorf("answer of %d bytes (limit %d)", n, maxKadMessage)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	var resp pb.Message
	if err := proto.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	if resp.GetType() != pb.Message_GET_PROVIDERS || !bytes.Equal(resp.GetKey(), key.Hash()) {
		return nil, errors.New("the answer is not about the key asked for")
	}
	var out []peer.AddrInfo
	for _, ai := range pb.PBPeersToPeerInfos(resp.GetProviderPeers()) {
		if ai.ID.Validate() == nil && len(ai.Addrs) > 0 {
			out = append(out, *ai)
		}
	}
	return out, nil
}

// putProvider asks the DHT server p to store self as a provider of key
// (an ADD_PROVIDER message, as kad-dht's Provide sends it) and waits until
// p has handled it: p answers nothing, but closes the stream cleanly once
// the message is handled and resets it when the handler failed, so the
// end of the stream is the receipt.
func putProvider(ctx context.Context, h host.Host, p peer.ID, key cid.Cid, self peer.AddrInfo) error {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	msg := pb.NewMessage(pb.Message_ADD_PROVIDER, key.Hash(), 0)
	msg.ProviderPeers = pb.RawPeerInfosToPBPeers([]peer.AddrInfo{self})
	s, done, err := sendKad(ctx, h, p, msg)
	if err != nil {
		return err
	}
	defer done() // after a clean end a reset does nothing
	if err := s.CloseWrite(); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	var b [1]byte
	switch n, err := s.Read(b[:]); {
	case n > 0:
		return errors.New("an answer to a message that has none")
	case err == io.EOF:
		return nil
	default:
		return fmt.Errorf("not stored: %w", err)
	}
}
