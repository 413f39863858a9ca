package node

import (
	"context"
	"slices"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// NAT configures a host that may sit behind a NAT: it reserves a slot on a
// relay, advertises the relayed address, and punches a hole (DCUtR) to a
// peer that reaches it through the relay.
type NAT struct {
	// Relays are the relays to reserve a slot on (--relay). When empty,
	// FindRelays offers candidates and those that run a relay service are used.
	Relays []peer.AddrInfo
	// FindRelays offers relay candidates (the DHT's peers); it is called
	// whenever the host needs more.
	FindRelays func(ctx context.Context, n int) <-chan peer.AddrInfo
	// Tracer, if set, sees every hole punching event.
	Tracer holepunch.EventTracer
	// Interfaces lists the host's interface addresses; nil means the
	// machine's. A host with no public one is behind a NAT (see options).
	Interfaces func() ([]ma.Multiaddr, error)
}

// options returns the libp2p options for n.
//
// A host whose interfaces have no public address cannot be reached from
// outside whatever AutoNAT would conclude, so it calls itself private at
// once and reserves a relay slot at once; AutoNAT's first probe comes only
// after 15 s. A host with a public address leaves the question to AutoNAT
// (a firewall may still make it private).
func (n *NAT) options() []libp2p.Option {
	var hp []holepunch.Option
	if n.Tracer != nil {
		hp = append(hp, holepunch.WithTracer(n.Tracer))
	}
	// The defaults wait for 4 candidates and 3 minutes before the first
	// reservation.
	ar := []autorelay.Option{autorelay.WithMinCandidates(1), autorelay.WithBootDelay(0)}
	opts := []libp2p.Option{libp2p.EnableHolePunching(hp...)}
	switch {
	case len(n.Relays) > 0:
		opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(n.Relays, ar...))
	case n.FindRelays != nil:
		opts = append(opts, libp2p.EnableAutoRelayWithPeerSource(n.FindRelays, ar...))
	}
	if n.Private() {
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	return opts
}

// Private reports whether none of the host's interfaces has a public
// address: then it is behind a NAT, and needs a relay to be reached.
func (n *NAT) Private() bool {
	interfaces := n.Interfaces
	if interfaces == nil {
		interfaces = manet.InterfaceMultiaddrs
	}
	addrs, err := interfaces()
	return err == nil && !slices.ContainsFunc(addrs, manet.IsPublicAddr)
}

// HolePunchReady reports whether h can take part in a hole punch: go-libp2p
// serves DCUtR only once the host has seen a public address of its own, and
// a relayed connection made before that is never upgraded.
func HolePunchReady(h host.Host) bool {
	return slices.Contains(h.Mux().Protocols(), holepunch.Protocol)
}

// RelayAddrs returns h's relayed addresses: those of its relay reservations.
func RelayAddrs(h host.Host) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, a := range h.Addrs() {
		if IsRelayed(a) {
			out = append(out, a)
		}
	}
	return out
}

// OnInternet reports whether h has a connection to a public address, i.e.
// whether it can expect to learn a public address of its own.
func OnInternet(h host.Host) bool {
	for _, c := range h.Network().Conns() {
		if a := c.RemoteMultiaddr(); !IsRelayed(a) && manet.IsPublicAddr(a) {
			return true
		}
	}
	return false
}

// IsLAN reports whether a (a connection's remote address) is on a local
// network: loopback, link-local or a private range.
func IsLAN(a ma.Multiaddr) bool {
	return !IsRelayed(a) && (manet.IsPrivateAddr(a) || manet.IsIPLoopback(a) || manet.IsIP6LinkLocal(a))
}

// SameHost reports whether a direct connection from local to remote stays
// on this machine: remote is a loopback address, or local's own.
func SameHost(local, remote ma.Multiaddr) bool {
	if IsRelayed(remote) {
		return false
	}
	r, err := manet.ToIP(remote)
	if err != nil {
		return false
	}
	l, err := manet.ToIP(local)
	return r.IsLoopback() || err == nil && r.Equal(l)
}

// RelayOf returns the relay of a relayed connection's remote address
// (/…/p2p/RELAY/p2p-circuit), or "" if there is none.
func RelayOf(a ma.Multiaddr) peer.ID {
	if !IsRelayed(a) {
		return ""
	}
	v, err := a.ValueForProtocol(ma.P_P2P)
	if err != nil {
		return ""
	}
	id, err := peer.Decode(v)
	if err != nil {
		return ""
	}
	return id
}
