package node

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multistream"
)

// NewStream opens a stream to p, to which h must already be connected, and
// speaks proto on it at once: the protocol is proposed together with the
// first bytes written, as go-libp2p does once identify has told it which
// protocols the peer speaks, but without waiting for identify, which costs
// a round trip on a new connection. A peer that does not speak proto fails
// the first read with a multistream.ErrNotSupported.
func NewStream(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID) (network.Stream, error) {
	s, err := h.Network().NewStream(network.WithNoDial(ctx, "connected before"), p)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	if err := s.SetProtocol(proto); err != nil {
		s.Reset()
		return nil, fmt.Errorf("open stream: %w", err)
	}
	return &lazyStream{Stream: s, rw: multistream.NewMSSelect(s, proto)}, nil
}

// lazyStream is a stream whose protocol negotiation rides on its first
// write and first read.
type lazyStream struct {
	network.Stream
	rw io.ReadWriteCloser
}

func (s *lazyStream) Read(b []byte) (int, error)  { return s.rw.Read(b) }
func (s *lazyStream) Write(b []byte) (int, error) { return s.rw.Write(b) }

// negotiationWait bounds how long Close waits for the peer's answer to the
// protocol proposal, which the lazy negotiation reads before it closes.
const negotiationWait = 10 * time.Second

func (s *lazyStream) Close() error {
	s.Stream.SetReadDeadline(time.Now().Add(negotiationWait))
	return s.rw.Close()
}

// CloseWrite sends the proposal, if nothing was written yet, then closes
// the stream for writing.
func (s *lazyStream) CloseWrite() error {
	if f, ok := s.rw.(interface{ Flush() error }); ok {
		f.Flush() // a failure shows on the next read
	}
	return s.Stream.CloseWrite()
}

// Connect connects h to ai as host.Connect does, but returns as soon as the
// connection is up: host.Connect then waits for identify, a round trip more,
// which pcp need not wait for before it speaks (see NewStream).
func Connect(ctx context.Context, h host.Host, ai peer.AddrInfo) error {
	h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
	limitedOK, _ := network.GetAllowLimitedConn(ctx)
	switch h.Network().Connectedness(ai.ID) {
	case network.Connected:
		return nil
	case network.Limited:
		if limitedOK {
			return nil
		}
	}
	if _, err := h.Network().DialPeer(ctx, ai.ID); err != nil {
		return fmt.Errorf("failed to dial: %w", err)
	}
	return nil
}
