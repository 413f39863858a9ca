package discovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pcp-dev/pcp/lib/node"
	"github.com/pcp-dev/pcp/lib/status"
)

// BootstrapWarning is how long the DHT may go without a bootstrap peer
// before the user is told.
const BootstrapWarning = 10 * time.Second

// DefaultBootstrap returns the public IPFS bootstrap peers.
func DefaultBootstrap() []peer.AddrInfo {
	return dht.GetDefaultBootstrapPeerAddrInfos()
}

// samePeers says whether a and b name the same peers.
func samePeers(a, b []peer.AddrInfo) bool {
	if len(a) != len(b) {
		return false
	}
	ids := make(map[peer.ID]bool, len(a))
	for _, ai := range a {
		ids[ai.ID] = true
	}
	for _, bi := range b {
		if !ids[bi.ID] {
			return false
		}
	}
	return true
}

// ParseAddrs parses full multiaddrs (ending in /p2p/<peer ID>).
func ParseAddrs(addrs []string) ([]peer.AddrInfo, error) {
	var mas []ma.Multiaddr
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("address %q: %w", s, err)
		}
		if _, err := a.ValueForProtocol(ma.P_P2P); err != nil {
			return nil, fmt.Errorf("address %q: missing /p2p/<peer ID>", s)
		}
		mas = append(mas, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(mas...)
	if err != nil {
		return nil, fmt.Errorf("addresses: %w", err)
	}
	return infos, nil
}

// DHT is a Kademlia DHT node of the standard IPFS DHT (/ipfs/kad/1.0.0).
type DHT struct {
	host      host.Host
	dht       *dht.IpfsDHT
	bootstrap []peer.AddrInfo
	log       status.Logger
	ready     chan struct{}
	readyOnce sync.Once
	// public: the bootstrap peers are the public IPFS ones, by default.
	public bool
	// met: the peer was found, by whatever method; a late warning about
	// the bootstrap peers would only worry the user.
	met atomic.Bool
	// classic: announce with kad-dht's own Provide (classic or optimistic), for
	// the benchmark's comparison only.
	classic bool
}

// PeerMet tells the DHT that the peer was found and authenticated (by any
// method): it keeps quiet about bootstrap peers from then on.
func (d *DHT) PeerMet() { d.met.Store(true) }

// StartDHT starts a DHT node on h, in server mode for `pcp node` and in
// client mode for the transfer commands (a short-lived command must not
// become a DHT server), and connects to the bootstrap peers in the
// background until ctx ends.
func StartDHT(ctx context.Context, h host.Host, server bool, bootstrap []peer.AddrInfo, log status.Logger) (*DHT, error) {
	return startDHT(ctx, h, server, bootstrap, log)
}

// startDHT is StartDHT with more of kad-dht's options (for the benchmark's
// comparisons).
func startDHT(ctx context.Context, h host.Host, server bool, bootstrap []peer.AddrInfo, log status.Logger, extra ...dht.Option) (*DHT, error) {
	mode := dht.ModeClient
	if server {
		mode = dht.ModeServer
	}
	on := h
	if !server {
		on = boundedDials{h} // see DHTDialTimeout
	}
	kad, err := dht.New(on, append([]dht.Option{dht.Mode(mode), dht.BootstrapPeers(bootstrap...)}, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("start dht: %w", err)
	}
	d := &DHT{host: h, dht: kad, bootstrap: bootstrap, log: log, ready: make(chan struct{}), public: samePeers(bootstrap, DefaultBootstrap())}
	go d.connect(ctx)
	return d, nil
}

// Close stops the DHT node.
func (d *DHT) Close() error { return d.dht.Close() }

// Name implements Method.
func (d *DHT) Name() string { return "dht" }

// Ready is closed once the routing table holds a peer.
func (d *DHT) Ready() <-chan struct{} { return d.ready }

// connect dials the bootstrap peers until the routing table is non-empty,
// and tells the user if that takes longer than BootstrapWarning.
func (d *DHT) connect(ctx context.Context) {
	start := time.Now()
	warned := false
	for attempt := 0; ; attempt++ {
		if attempt%500 == 0 { // every 5 s
			for _, ai := range d.bootstrap {
				if ai.ID == d.host.ID() {
					continue
				}
				go func() {
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					defer cancel()
					if err := d.host.Connect(cctx, ai); err != nil {
						d.log.Debugf("dht: bootstrap peer %s: %v", node.ShortID(ai.ID), err)
					}
				}()
			}
		}
		if d.dht.RoutingTable().Size() > 0 {
			d.log.Debugf("dht: %d peers in the routing table after %v", d.dht.RoutingTable().Size(), since(start))
			d.readyOnce.Do(func() { close(d.ready) })
			return
		}
		if !warned && len(d.bootstrap) > 0 && time.Since(start) > BootstrapWarning && !d.met.Load() {
			warned = true
			if d.public {
				d.log.Infof("dht: none of the public IPFS bootstrap peers answered within %v; still trying (no internet here? --discovery mdns looks on the LAN only)", BootstrapWarning)
			} else {
				d.log.Infof("dht: no bootstrap peer answered within %v; still trying (is --bootstrap right?)", BootstrapWarning)
			}
		}
		if sleep(ctx, 10*time.Millisecond) != nil {
			return
		}
	}
}

func (d *DHT) waitReady(ctx context.Context) error {
	select {
	case <-d.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Announce writes a provider record under the channel's key for the current
// time bucket, again at every bucket boundary and whenever the host's
// addresses change, until ctx ends.
func (d *DHT) Announce(ctx context.Context, channel int) error {
	if err := d.waitReady(ctx); err != nil {
		return nil
	}
	sub, err := d.host.EventBus().Subscribe(new(event.EvtLocalAddressesUpdated))
	if err != nil {
		return fmt.Errorf("subscribe to address updates: %w", err)
	}
	defer sub.Close()
	for {
		now := time.Now()
		retry := time.Until(now.Truncate(Bucket).Add(Bucket))
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		var stored, asked int
		if d.classic {
			err = d.dht.Provide(pctx, Key(channel, now), true)
		} else {
			stored, asked, err = d.provide(pctx, Key(channel, now), start)
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			d.log.Infof("dht: announcing failed, retrying: %v", err)
			retry = min(retry, 5*time.Second)
		case d.classic:
			d.log.Debugf("dht: announced channel %d in %v (kad-dht's own provide)", channel, since(start))
		default:
			d.log.Debugf("dht: announced channel %d in %v: its record is stored at %d of %d servers near its key", channel, since(start), stored, asked)
		}
		select {
		case <-time.After(retry):
		case <-sub.Out():
			d.log.Debugf("dht: addresses changed, announcing again")
		case <-ctx.Done():
			return nil
		}
	}
}

// Find looks up the providers of the channel's keys for the previous,
// current and next time bucket, again and again, and sends each to out
// until ctx ends. A round of lookups starts 1, 2, 4 and then every 8
// seconds after the one before, whether or not that one has ended: on the
// public DHT a lookup that started before the sender's record was stored
// walks on for seconds, waiting for servers that never answer, after the
// record has become findable. At most two rounds run at once.
func (d *DHT) Find(ctx context.Context, channel int, out chan<- Candidate) error {
	var rounds sync.WaitGroup
	defer rounds.Wait()
	rounds.Go(func() { d.askBootstrap(ctx, channel, out) })
	if err := d.waitReady(ctx); err != nil {
		return nil
	}
	running := make(chan struct{}, 2)
	for pause := time.Second; ; pause = min(2*pause, 8*time.Second) {
		select {
		case running <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		keys := FindKeys(channel, time.Now())
		rounds.Go(func() {
			defer func() { <-running }()
			var wg sync.WaitGroup
			for _, key := range keys {
				wg.Go(func() { d.findProviders(ctx, key, out) })
			}
			wg.Wait()
		})
		if sleep(ctx, pause) != nil {
			return nil
		}
	}
}

// askBootstrap puts the first question of the first lookup to each
// bootstrap peer as soon as it is connected. A lookup waits for the routing
// table, which takes a peer only once identify and a test query have
// answered (two round trips after the connection), and the routing-table
// refresh that kad-dht starts at that moment queues ahead of the lookup's
// questions on every peer (another one or two). In a private network the
// bootstrap peers hold the sender's record, so the finder meets it that much
// sooner; in the public DHT they answer with closer peers, whom the lookups
// that follow ask anyway.
func (d *DHT) askBootstrap(ctx context.Context, channel int, out chan<- Candidate) {
	sub, err := d.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		return
	}
	defer sub.Close()
	pending := map[peer.ID]bool{}
	for _, ai := range d.bootstrap {
		if ai.ID != d.host.ID() {
			pending[ai.ID] = true
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ask := func(p peer.ID) {
		delete(pending, p)
		for _, key := range FindKeys(channel, time.Now()) {
			wg.Go(func() {
				providers, err := askProviders(ctx, d.host, p, key)
				if err != nil {
					if ctx.Err() == nil {
						d.log.Debugf("dht: asking %s for providers: %v", node.ShortID(p), err)
					}
					return
				}
				for _, ai := range providers {
					if ai.ID == d.host.ID() {
						continue
					}
					select {
					case out <- Candidate{AddrInfo: ai, Source: d.Name()}:
					case <-ctx.Done():
						return
					}
				}
			})
		}
	}
	for p := range pending {
		if d.host.Network().Connectedness(p) == network.Connected {
			ask(p)
		}
	}
	for len(pending) > 0 {
		select {
		case e := <-sub.Out():
			ev, ok := e.(event.EvtPeerConnectednessChanged)
			if ok && pending[ev.Peer] && ev.Connectedness == network.Connected {
				ask(ev.Peer)
			}
		case <-d.ready: // the lookups take over
			return
		case <-ctx.Done():
			return
		}
	}
}

func (d *DHT) findProviders(ctx context.Context, key cid.Cid, out chan<- Candidate) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for ai := range d.dht.FindProvidersAsync(lctx, key, 0) {
		if ai.ID == d.host.ID() {
			continue
		}
		if len(ai.Addrs) == 0 {
			fctx, cancel := context.WithTimeout(lctx, 10*time.Second)
			found, err := d.dht.FindPeer(fctx, ai.ID)
			cancel()
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					d.log.Debugf("dht: provider %s without addresses: %v", node.ShortID(ai.ID), err)
				}
				continue
			}
			ai = found
		}
		select {
		case out <- Candidate{AddrInfo: ai, Source: d.Name()}:
		case <-ctx.Done():
			return
		}
	}
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }
