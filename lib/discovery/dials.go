package discovery

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// DHTDialTimeout bounds each connection that a transfer's DHT client opens
// to a peer a lookup or a provide names.
//
// A walk of the public DHT meets peers that never answer (NATed, gone:
// about a quarter of those a crawl finds), and go-libp2p gives up on such
// a dial only after 15 s. A provide waits for the closest peers, so one
// such peer among them held the record back by 15 s, and a walk meets
// several in a row. A live server answers a dial within a few round trips
// (a second at the tail of internet round trips), so 3 s loses almost none
// of them. On the simulated DHT of BenchmarkDHTMeeting this is what takes
// the meeting from tens of seconds to a few.
const DHTDialTimeout = 3 * time.Second

// boundedDials is the host the DHT client works on: a dial to a peer that
// it is not connected to gives up after DHTDialTimeout.
type boundedDials struct {
	host.Host
}

// Connect implements host.Host.
func (h boundedDials) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if h.Network().Connectedness(ai.ID) == network.Connected {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, DHTDialTimeout)
	defer cancel()
	return h.Host.Connect(ctx, ai)
}

// NewStream implements host.Host: the connection is bounded, the stream
// on it is not.
func (h boundedDials) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	if err := h.Connect(ctx, peer.AddrInfo{ID: p}); err != nil {
		return nil, err
	}
	return h.Host.NewStream(ctx, p, pids...)
}
