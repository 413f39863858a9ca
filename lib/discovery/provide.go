package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/pcp-dev/pcp/lib/node"
)

// closestPeers is how many of the servers closest to a key store its
// record: kad-dht's k, as the public DHT uses it.
const closestPeers = 20

// provide stores the sender's provider record for key at the DHT servers
// closest to it, storing while it walks instead of after the walk.
//
// kad-dht's Provide first walks to the 20 closest servers and only then
// stores the record there. The walk finds the neighbourhood of the key
// within a few round trips, but does not end until it has heard from, or
// given up on, every server that might be closer, and on the public DHT a
// third of those never answer (each dial to one waits out DHTDialTimeout).
// So provide stores the record at each server that answers the walk while
// it is among the 20 closest the walk has heard of, and when the walk ends,
// at those of the final 20 that did not have it yet. The record is
// findable from the first store near the key, seconds before the walk
// ends; a store goes to a few more servers than a classic provide's 20 (the
// near servers that closer ones later push out), and the walk is the same.
//
// Each store is confirmed (see putProvider). It returns how many servers
// stored the record and how many were asked; the first confirmed store is
// reported once, as the moment the code became findable.
func (d *DHT) provide(ctx context.Context, key cid.Cid, start time.Time) (stored, asked int, err error) {
	self := peer.AddrInfo{ID: d.host.ID(), Addrs: d.dht.FilteredAddrs()}
	if len(self.Addrs) == 0 {
		return 0, 0, errors.New("this host has no address to announce")
	}
	target := kb.ConvertKey(string(key.Hash()))
	distance := func(p peer.ID) []byte { return kb.Xor(kb.ConvertPeerID(p), target) }

	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	qctx, events := routing.RegisterForQueryEvents(qctx)
	type walk struct {
		peers []peer.ID
		err   error
	}
	walked := make(chan walk, 1)
	go func() {
		peers, err := d.dht.GetClosestPeers(qctx, string(key.Hash()))
		walked <- walk{peers, err}
	}()

	var (
		wg       sync.WaitGroup
		n        atomic.Int64
		tried    = map[peer.ID]bool{}
		known    = map[peer.ID][]byte{} // every server the walk heard of, and its distance to the key
		findable sync.Once
	)
	store := func(p peer.ID) {
		if tried[p] || p == self.ID {
			return
		}
		tried[p] = true
		wg.Go(func() {
			if err := putProvider(ctx, d.host, p, key, self); err != nil {
				if ctx.Err() == nil {
					d.log.Debugf("dht: storing the record at %s: %v", node.ShortID(p), err)
				}
				return
			}
			n.Add(1)
			findable.Do(func() {
				d.log.Debugf("dht: findable after %v: the record is stored at a server near the channel's key", since(start))
			})
		})
	}
	// near says whether p is among the closestPeers servers nearest the
	// key of all the walk has heard of so far.
	near := func(p peer.ID) bool {
		dp, closer := known[p], 0
		for _, dq := range known {
			if bytes.Compare(dq, dp) < 0 {
				if closer++; closer >= closestPeers {
					return false
				}
			}
		}
		return true
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil // the walk's context ended; its result follows
				continue
			}
			if ev.Type != routing.PeerResponse {
				continue
			}
			known[ev.ID] = distance(ev.ID)
			for _, ai := range ev.Responses {
				if _, seen := known[ai.ID]; !seen && ai.ID != self.ID {
					known[ai.ID] = distance(ai.ID)
				}
			}
			if near(ev.ID) {
				store(ev.ID)
			}
		case w := <-walked:
			for _, p := range w.peers {
				store(p)
			}
			wg.Wait()
			stored, asked = int(n.Load()), len(tried)
			switch {
			case stored > 0:
				return stored, asked, nil
			case w.err != nil:
				return 0, asked, fmt.Errorf("walk to the key: %w", w.err)
			}
			return 0, asked, fmt.Errorf("none of the %d servers asked stored the record", asked)
		}
	}
}
