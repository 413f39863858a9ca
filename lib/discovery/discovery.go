// Package discovery finds the peer that announces a channel, and announces
// one: mDNS on the local network, provider records in the IPFS Kademlia DHT
// beyond it. It only finds candidates; whether a candidate knows the code is
// for authentication to prove.
package discovery

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Candidate is a peer that announced the channel, with where it was seen.
type Candidate struct {
	peer.AddrInfo
	// Source is "mdns" or "dht".
	Source string
}

// Method is one way to announce and find a channel.
type Method interface {
	// Name is "mdns" or "dht".
	Name() string
	// Announce makes the host findable under channel until ctx ends.
	Announce(ctx context.Context, channel int) error
	// Find sends candidates for channel to out until ctx ends.
	Find(ctx context.Context, channel int, out chan<- Candidate) error
}

// ParseMethods parses a --discovery value: "mdns", "dht" or "mdns,dht".
func ParseMethods(s string) (mdns, dht bool, err error) {
	for _, m := range strings.Split(s, ",") {
		switch strings.TrimSpace(strings.ToLower(m)) {
		case "mdns":
			mdns = true
		case "dht":
			dht = true
		default:
			return false, false, fmt.Errorf("unknown discovery method %q (want mdns, dht or mdns,dht)", m)
		}
	}
	return mdns, dht, nil
}

// sleep waits for d or until ctx ends, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Static is a Method that "finds" peers given in advance (pcp-pipe recv
// --peer): it sends them once and returns.
type Static struct{ Peers []peer.AddrInfo }

// Name implements Method.
func (s Static) Name() string { return "peer" }

// Announce implements Method; a static list announces nothing.
func (s Static) Announce(ctx context.Context, channel int) error { return nil }

// Find sends the given peers and returns.
func (s Static) Find(ctx context.Context, channel int, out chan<- Candidate) error {
	for _, ai := range s.Peers {
		select {
		case out <- Candidate{AddrInfo: ai, Source: s.Name()}:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}
