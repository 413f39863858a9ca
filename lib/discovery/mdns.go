package discovery

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/zeroconf/v2"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pcp-dev/pcp/lib/node"
	"github.com/pcp-dev/pcp/lib/status"
)

const (
	mdnsDomain    = "local."
	dnsaddrPrefix = "dnsaddr="
)

// MDNS announces and finds channels on the local network with multicast
// DNS. The announcer registers the service _pcp-{channel}._udp with its
// addresses in TXT records; the finder only browses and never advertises.
type MDNS struct {
	Host host.Host
	Log  status.Logger
}

// Name implements Method.
func (m *MDNS) Name() string { return "mdns" }

func serviceName(channel int) string { return fmt.Sprintf("_pcp-%d._udp", channel) }

// ErrNoMulticast reports a host where mDNS cannot work: no network
// interface is up with multicast.
var ErrNoMulticast = errors.New("no network interface can multicast, so mDNS cannot work here (--discovery dht looks beyond the LAN)")

// Announce registers the channel's service until ctx ends.
func (m *MDNS) Announce(ctx context.Context, channel int) error {
	if len(multicastInterfaces()) == 0 {
		return fmt.Errorf("mdns: %w", ErrNoMulticast)
	}
	addrs, err := m.Host.Network().InterfaceListenAddresses()
	if err != nil {
		return fmt.Errorf("mdns: listen addresses: %w", err)
	}
	var txt, ips []string
	seenIP := map[string]bool{}
	for _, a := range addrs {
		if !lanAddr(a) {
			continue
		}
		full := a.Encapsulate(ma.StringCast("/p2p/" + m.Host.ID().String()))
		txt = append(txt, dnsaddrPrefix+full.String())
		first, _ := ma.SplitFirst(a)
		if ip := first.Value(); !seenIP[ip] {
			seenIP[ip] = true
			ips = append(ips, ip)
		}
	}
	if len(txt) == 0 {
		return fmt.Errorf("mdns: no address to announce")
	}
	id := m.Host.ID().String()
	// The port is required by DNS-SD but unused: the addresses are in TXT.
	server, err := zeroconf.RegisterProxy(id, serviceName(channel), mdnsDomain, 4001, id, ips, txt, nil)
	if err != nil {
		return fmt.Errorf("mdns: register: %w", err)
	}
	m.Log.Debugf("mdns: announcing %s", serviceName(channel))
	<-ctx.Done()
	server.Shutdown()
	return nil
}

// Find browses for the channel's service and sends each announcer to out
// until ctx ends: every answer that names a peer with addresses not sent
// before, so that a stranger's answer under an announcer's peer ID (which
// is public) cannot hide the announcer's own.
func (m *MDNS) Find(ctx context.Context, channel int, out chan<- Candidate) error {
	answers := make(chan peer.AddrInfo, 16)
	errc := make(chan error, 1)
	go func() {
		errc <- browse(ctx, serviceName(channel)+"."+mdnsDomain, func(txt []string) {
			ai, ok := parseTXT(txt)
			if !ok || ai.ID == m.Host.ID() {
				return
			}
			select {
			case answers <- ai:
			case <-ctx.Done():
			}
		})
	}()
	sent := map[string]bool{} // peer ID and address, of what was sent
	for {
		select {
		case err := <-errc:
			if errors.Is(err, ErrNoMulticast) {
				return fmt.Errorf("mdns: %w", err)
			}
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("mdns: browse: %w", err)
			}
			return nil
		case ai := <-answers:
			fresh := peer.AddrInfo{ID: ai.ID}
			for _, a := range ai.Addrs {
				if k := ai.ID.String() + a.String(); !sent[k] && len(sent) < maxAnswers {
					sent[k] = true
					fresh.Addrs = append(fresh.Addrs, a)
				}
			}
			if len(fresh.Addrs) == 0 {
				continue
			}
			select {
			case out <- Candidate{AddrInfo: fresh, Source: m.Name()}:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// maxAnswers bounds the addresses Find remembers having sent: beyond it, a
// flood of answers is ignored.
const maxAnswers = 4096

// parseTXT reads the peer and its addresses from an answer's TXT strings;
// answers that name more than one peer are ignored.
func parseTXT(txt []string) (peer.AddrInfo, bool) {
	var addrs []ma.Multiaddr
	for _, t := range txt {
		s, ok := strings.CutPrefix(t, dnsaddrPrefix)
		if !ok {
			continue
		}
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		addrs = append(addrs, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil || len(infos) != 1 {
		return peer.AddrInfo{}, false
	}
	return infos[0], true
}

// lanAddr reports whether a is a direct IP address worth announcing on the
// local network (no relay circuits, no DNS names).
func lanAddr(a ma.Multiaddr) bool {
	first, _ := ma.SplitFirst(a)
	if first == nil {
		return false
	}
	switch first.Protocol().Code {
	case ma.P_IP4, ma.P_IP6:
	default:
		return false
	}
	return !node.IsRelayed(a)
}
