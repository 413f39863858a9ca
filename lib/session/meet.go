package session

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pcp-dev/pcp/lib/code"
	"github.com/pcp-dev/pcp/lib/discovery"
	"github.com/pcp-dev/pcp/lib/node"
	"github.com/pcp-dev/pcp/lib/rendezvous"
)

// await returns the next authenticated finder that wants want. On the way it
// answers the others: a finder that only wants to meet (pcp-find) is
// accepted and told goodbye, one that wants what is not offered is refused.
func (s *Session) await(ctx context.Context, a *rendezvous.Announcer, want string) (*rendezvous.Peer, error) {
	for {
		p, err := a.Next(ctx)
		if err != nil {
			return nil, err
		}
		switch p.Want {
		case want:
			return p, nil
		case rendezvous.WantRendezvous:
			s.log.Infof("peer %s proved the code and asked only to meet; still waiting", node.ShortID(p.ID))
			p.Meet()
		default:
			s.log.Infof("peer %s proved the code but asked for %q, which is not offered here", node.ShortID(p.ID), p.Want)
			p.Reject(fmt.Sprintf("this peer does not offer %q", p.Want))
		}
	}
}

// Announce announces c and calls report for each finder that proves the
// code and asks to meet, until timeout (0: no limit); unless keep, it
// returns after the first. It returns how many finders were reported, and a
// *rendezvous.NotFoundError when the time ran out before any.
func (s *Session) Announce(ctx context.Context, c code.Code, timeout time.Duration, keep bool, report func(*rendezvous.Peer)) (int, error) {
	wctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	a := rendezvous.Announce(ctx, s.rendezvous(c))
	defer a.Close()
	met := 0
	for {
		p, err := s.await(wctx, a, rendezvous.WantRendezvous)
		if err != nil {
			if met > 0 && ctx.Err() == nil && wctx.Err() != nil {
				return met, nil // --keep until --timeout: the time is up
			}
			return met, s.waitError(ctx, err, true)
		}
		s.met()
		if err := p.Meet(); err != nil {
			s.log.Infof("peer %s: %v", node.ShortID(p.ID), err)
			continue
		}
		report(p)
		met++
		if !keep {
			return met, nil
		}
	}
}

// Find finds and authenticates c's announcer within timeout (0: no limit),
// asking only to meet, and returns it with its stream closed.
func (s *Session) Find(ctx context.Context, c code.Code, timeout time.Duration) (*rendezvous.Peer, error) {
	wctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	p, err := rendezvous.Find(wctx, s.rendezvous(c), rendezvous.WantRendezvous)
	if err != nil {
		return nil, s.waitError(ctx, err, false)
	}
	s.met()
	p.Stream.Close()
	return p, nil
}

// Candidates reports each peer that discovery offers for c's channel,
// without authenticating, until timeout (0: until ctx ends). It returns how
// many it reported.
func (s *Session) Candidates(ctx context.Context, c code.Code, timeout time.Duration, report func(discovery.Candidate)) (int, error) {
	wctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	found := make(chan discovery.Candidate)
	for _, m := range s.methods {
		go func() {
			if err := m.Find(wctx, c.Channel(), found); err != nil {
				s.log.Infof("%v", err)
			}
		}()
	}
	seen := map[peer.ID]bool{}
	for {
		select {
		case cand := <-found:
			if !seen[cand.ID] {
				seen[cand.ID] = true
				report(cand)
			}
		case <-wctx.Done():
			if ctx.Err() != nil {
				return len(seen), ctx.Err()
			}
			if len(seen) == 0 {
				return 0, s.dhtUnreached(&rendezvous.NotFoundError{DHT: s.dht != nil})
			}
			return len(seen), nil
		}
	}
}
