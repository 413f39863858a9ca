// Package node builds the libp2p host that every pcp command runs on: TCP
// and QUIC over IPv4 and IPv6, TLS 1.3 preferred over Noise, yamux, the
// resource manager, and a dial ranker that tries TCP before QUIC because TCP
// carries data several times faster here.
package node

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// DefaultListen returns the addresses a host listens on unless told
// otherwise: every interface, a random port, TCP and QUIC, IPv4 and IPv6.
func DefaultListen() []string {
	return []string{
		"/ip4/0.0.0.0/tcp/0",
		"/ip6/::/tcp/0",
		"/ip4/0.0.0.0/udp/0/quic-v1",
		"/ip6/::/udp/0/quic-v1",
	}
}

// Config says how to build a host.
type Config struct {
	// Listen are multiaddrs to listen on; empty means DefaultListen.
	Listen []string
	// Identity is the host's key; nil means a new ephemeral one.
	Identity crypto.PrivKey
	// Relay, if set, makes the host a circuit relay (v2) for peers behind NAT.
	// Such a host is taken to be publicly reachable: go-libp2p serves as a
	// relay only then, and AutoNAT never calls a host on a private network
	// public.
	Relay *RelayLimits
	// NATService makes the host answer AutoNAT dial-back requests, so that
	// peers can learn whether they are reachable (pcp node).
	NATService bool
	// OwnPorts makes the host listen without SO_REUSEPORT, so that a TCP
	// port that another process holds is an error, not a port shared with
	// it (connections would be split between the two). A server wants
	// this; a host behind a NAT needs SO_REUSEPORT to dial from its
	// listening port for hole punching.
	OwnPorts bool
	// NAT, if set, prepares the host to be reached from behind a NAT:
	// relay reservations, hole punching, and the reachability it assumes.
	NAT *NAT
	// QUICFirst are the addresses of peers that carry no data (bootstrap
	// peers): they are dialled QUIC first.
	QUICFirst []ma.Multiaddr
	// Receiver makes a host that receives a transfer: every stream's receive
	// window is granted in full from the start (see fullWindows), and the host does
	// not answer pings (whose handler stops reading while its echo waits,
	// and so would let a peer park a full window of data in it).
	Receiver bool
}

// RelayLimits bound each relayed connection of a relay service. Public relays
// allow 128 KiB and 2 minutes: enough to coordinate a hole punch, not to
// carry data. Zero means no limit.
type RelayLimits struct {
	Data     int64         // bytes in each direction
	Duration time.Duration // how long
}

// DefaultRelayLimits are the limits of public circuit v2 relays.
func DefaultRelayLimits() RelayLimits {
	return RelayLimits{Data: 128 << 10, Duration: 2 * time.Minute}
}

func (l RelayLimits) option() libp2p.Option {
	if l.Data <= 0 && l.Duration <= 0 {
		return libp2p.EnableRelayService(relayv2.WithInfiniteLimits())
	}
	limit := &relayv2.RelayLimit{Data: l.Data, Duration: l.Duration}
	if limit.Data <= 0 {
		limit.Data = math.MaxInt64
	}
	if limit.Duration <= 0 {
		limit.Duration = math.MaxInt64
	}
	return libp2p.EnableRelayService(relayv2.WithLimit(limit))
}

// New starts a libp2p host.
func New(cfg Config) (host.Host, error) {
	listen := cfg.Listen
	if len(listen) == 0 {
		listen = DefaultListen()
	}
	opts := []libp2p.Option{
		libp2p.ListenAddrStrings(listen...),
		libp2p.Security(libp2ptls.ID, newBatchedTLS),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Transport(quic.NewTransport),
		libp2p.SwarmOpts(swarm.WithDialRanker(ranker(cfg.QUICFirst))),
		libp2p.DisableMetrics(),
	}
	if cfg.OwnPorts {
		opts = append(opts, libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()))
	} else {
		opts = append(opts, libp2p.Transport(tcp.NewTCPTransport))
	}
	if cfg.Identity != nil {
		opts = append(opts, libp2p.Identity(cfg.Identity))
	}
	if cfg.Receiver {
		opts = append(opts, libp2p.Muxer(yamux.ID, newFullWindows()), libp2p.Ping(false))
	} else {
		opts = append(opts, libp2p.Muxer(yamux.ID, wholeMessages()))
	}
	if cfg.Relay != nil {
		opts = append(opts, cfg.Relay.option(), libp2p.ForceReachabilityPublic())
	}
	if cfg.NATService {
		opts = append(opts, libp2p.EnableNATService())
	}
	if cfg.NAT != nil {
		opts = append(opts, cfg.NAT.options()...)
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}
	return h, nil
}

// Dial delays. A peer's data rides the connection the peers met on, so QUIC
// waits longer than TCP's first retransmission of a lost SYN (1 s): over
// the emulated WAN (0.5 % loss), a handshake packet lost now and then let
// QUIC win the race at 250 ms, and quic-go, with the small UDP buffers of
// a default Linux, then moved the data ten times slower than TCP. Hole
// punching dials every address at once, whatever the ranker says.
const (
	// QUICDelay is how long the dialer waits for TCP before it also tries QUIC.
	QUICDelay = 1500 * time.Millisecond
	// RelayDelay is how long it waits before it also tries relayed addresses.
	RelayDelay = 500 * time.Millisecond
	// bootstrapTCPDelay is how long it waits for QUIC before it also tries
	// TCP, for peers that carry no data.
	bootstrapTCPDelay = 250 * time.Millisecond
)

// RankTCPFirst is a dial ranker: TCP addresses at once, relayed addresses
// after RelayDelay, QUIC after QUICDelay.
func RankTCPFirst(addrs []ma.Multiaddr) []network.AddrDelay { return ranker(nil)(addrs) }

// ranker returns the dial ranker of a host: TCP first (RankTCPFirst),
// except for the addresses in quicFirst, of peers that carry no data
// (bootstrap peers): of those, QUIC at once and TCP after
// bootstrapTCPDelay, as a QUIC handshake takes one round trip and TCP with
// TLS three. Addresses match exactly: a sender on the same host as a
// bootstrap peer is still dialled over TCP, which carries data faster.
func ranker(quicFirst []ma.Multiaddr) network.DialRanker {
	listed := map[string]bool{}
	for _, a := range quicFirst {
		listed[a.String()] = true
	}
	return func(addrs []ma.Multiaddr) []network.AddrDelay {
		out := make([]network.AddrDelay, 0, len(addrs))
		for _, a := range addrs {
			tcp, quic := time.Duration(0), QUICDelay
			if listed[a.String()] {
				tcp, quic = bootstrapTCPDelay, 0
			}
			delay := RelayDelay
			switch {
			case IsRelayed(a):
			case hasProtocol(a, ma.P_TCP):
				delay = tcp
			case hasProtocol(a, ma.P_QUIC_V1):
				delay = quic
			}
			out = append(out, network.AddrDelay{Addr: a, Delay: delay})
		}
		return out
	}
}

// IsRelayed reports whether a is a relayed (/p2p-circuit) address.
func IsRelayed(a ma.Multiaddr) bool { return hasProtocol(a, ma.P_CIRCUIT) }

func hasProtocol(a ma.Multiaddr, code int) bool {
	_, err := a.ValueForProtocol(code)
	return err == nil
}

// FullAddrs returns the host's listen addresses as full multiaddrs ending in
// /p2p/<peer ID>, the form that a peer can dial without discovery.
func FullAddrs(h host.Host) []ma.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	if err != nil {
		return nil
	}
	return addrs
}

// Transport names how a connection carries its data, e.g. "tcp", "quic-v1",
// or "relayed" for a circuit.
func Transport(c network.Conn) string {
	a := c.RemoteMultiaddr()
	switch {
	case IsRelayed(a):
		return "relayed"
	case hasProtocol(a, ma.P_QUIC_V1):
		return "quic"
	case hasProtocol(a, ma.P_TCP):
		return "tcp"
	}
	return a.String()
}

// LoadIdentity reads a private key from path, creating it (mode 0600) with a
// new Ed25519 key if the file does not exist, so that a node keeps its peer
// ID across restarts.
func LoadIdentity(path string) (crypto.PrivKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("identity %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, fmt.Errorf("generate identity: %w", err)
	}
	b, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode identity: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".identity-*")
	if err != nil {
		return nil, fmt.Errorf("create identity: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write identity: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write identity: %w", err)
	}
	// Link, not rename: if another process created the file meanwhile, keep theirs.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadIdentity(path)
		}
		return nil, fmt.Errorf("create identity: %w", err)
	}
	return k, nil
}

// ShortID shortens a peer ID for status lines: its last 6 characters, which
// are as distinctive as any (the first ones are the same for every key type).
func ShortID(id peer.ID) string {
	s := id.String()
	if len(s) <= 8 {
		return s
	}
	return "…" + s[len(s)-6:]
}
