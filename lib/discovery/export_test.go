package discovery

import (
	"context"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pcp-dev/pcp/lib/status"
)

// UseClassicProvide makes d announce with kad-dht's own Provide, which walks
// to the closest servers first and stores the record after the walk: the
// benchmark's figure to compare with.
func UseClassicProvide(d *DHT) { d.classic = true }

// StartOptimisticDHT starts a DHT client like StartDHT, but one that
// announces with kad-dht's optimistic provide (which falls back to the
// classic one while it lacks an estimate of the network's size).
func StartOptimisticDHT(ctx context.Context, h host.Host, bootstrap []peer.AddrInfo, log status.Logger) (*DHT, error) {
	d, err := startDHT(ctx, h, false, bootstrap, log, dht.EnableOptimisticProvide())
	if err == nil {
		d.classic = true
	}
	return d, err
}
