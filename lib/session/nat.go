package session

import (
	"context"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pcp-dev/pcp/lib/discovery"
	"github.com/pcp-dev/pcp/lib/node"
)

// ReachWait bounds the waits that make hole punching possible: the
// announcer's for a relay reservation before it publishes its addresses in
// the DHT, and either side's for go-libp2p to serve hole punching.
const ReachWait = 5 * time.Second

// relayCandidates offers the peers that might relay for us: the bootstrap
// peers and every peer we are connected to (the DHT's). go-libp2p keeps
// those that run a relay service.
func (s *Session) relayCandidates(ctx context.Context, n int) <-chan peer.AddrInfo {
	out := make(chan peer.AddrInfo, n)
	go func() {
		defer close(out)
		select {
		case <-s.started: // the host exists
		case <-ctx.Done():
			return
		}
		seen := map[peer.ID]bool{}
		offer := func(ai peer.AddrInfo) bool {
			if seen[ai.ID] || ai.ID == s.Host.ID() || len(ai.Addrs) == 0 {
				return true
			}
			seen[ai.ID] = true
			select {
			case out <- ai:
				return len(seen) < n
			case <-ctx.Done():
				return false
			}
		}
		for _, ai := range s.bootstrap {
			if !offer(ai) {
				return
			}
		}
		// go-libp2p asks again only after 30 s: offer the DHT's peers too,
		// once there are some.
		if s.dht != nil {
			select {
			case <-s.dht.Ready():
			case <-time.After(ReachWait):
			case <-ctx.Done():
				return
			}
		}
		for _, id := range s.Host.Network().Peers() {
			if !offer(s.Host.Peerstore().PeerInfo(id)) {
				return
			}
		}
	}()
	return out
}

// reachable waits, at most ReachWait, until a peer on the internet can reach
// this host: once the DHT is connected, for a relay reservation (when the
// host is behind a NAT) and for hole punching to be served. On a network
// without public addresses (a LAN, loopback) there is nothing to wait for.
func (s *Session) reachable(ctx context.Context) {
	select {
	case <-s.dht.Ready():
	case <-ctx.Done():
		return
	}
	start := time.Now()
	private := s.nat.Private()
	ready := func() bool {
		if !node.OnInternet(s.Host) {
			return true
		}
		relayed := !private || len(node.RelayAddrs(s.Host)) > 0
		return relayed && node.HolePunchReady(s.Host)
	}
	if waitFor(ctx, ready) {
		took := time.Since(start).Round(time.Millisecond)
		if relays := node.RelayAddrs(s.Host); len(relays) > 0 {
			s.log.Debugf("reachable %v after the DHT: relayed at %v", took, relays)
		} else {
			s.log.Debugf("reachable %v after the DHT, directly", took)
		}
	} else {
		s.log.Debugf("no relay reservation or hole punching within %v; announcing anyway", ReachWait)
	}
}

// beforeDial waits, at most ReachWait and only once, for hole punching to
// be served before a candidate is dialled through a relay: a relayed
// connection made before that is never upgraded to a direct one.
func (s *Session) beforeDial(ctx context.Context, c discovery.Candidate) {
	if !slices.ContainsFunc(c.Addrs, node.IsRelayed) || !node.OnInternet(s.Host) {
		return
	}
	s.punchWait.Do(func() {
		if !waitFor(ctx, func() bool { return node.HolePunchReady(s.Host) }) {
			s.log.Debugf("hole punching not ready after %v; dialling %s anyway", ReachWait, node.ShortID(c.ID))
		}
	})
}

// waitFor polls cond until it holds (true), ReachWait passes or ctx ends.
func waitFor(ctx context.Context, cond func() bool) bool {
	deadline := time.Now().Add(ReachWait)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-time.After(25 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return true
}

// gated is a discovery method whose announcements wait for ready.
type gated struct {
	discovery.Method
	ready func(context.Context)
}

func (g gated) Announce(ctx context.Context, channel int) error {
	g.ready(ctx)
	return g.Method.Announce(ctx, channel)
}
