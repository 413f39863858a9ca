// Package dhtsim runs a simulated public DHT in one process: many
// go-libp2p-kad-dht servers, the real code on every node, on go-libp2p's
// in-memory mock network. Each pair of peers has its own round-trip time;
// a share of the routing-table entries points at peers that never answer,
// whose dials hang until the dial timeout as those of NATed and departed
// peers do on the public DHT; some servers answer slowly. It is for
// benchmarks of pcp's meeting on the DHT (lib/discovery), not for tests of
// behaviour.
//
// What it leaves out: a connection costs no round trips of its own (a real
// one costs two or three before the first request: TCP, TLS, the muxer),
// servers do not refresh their routing tables (they are filled once, as a
// walk of the network would fill them), and no peer joins or leaves while
// it runs.
package dhtsim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
)

// Params are the shape of a simulated network.
type Params struct {
	// Servers is the number of DHT servers that answer.
	Servers int
	// Dead is the share of the peers that routing tables name which never
	// answer (0 to 1): there are Servers*Dead/(1-Dead) of them.
	Dead float64
	// Slow is the share of servers that answer SlowBy later than their
	// round-trip time says.
	Slow   float64
	SlowBy time.Duration
	// MedianRTT and P90RTT describe the round-trip time of a pair of
	// peers, drawn once per pair from a log-normal distribution with this
	// median and 90th percentile, and kept between 5 ms and 2 s.
	MedianRTT, P90RTT time.Duration
	// DialTimeout is how long a dial to a peer that never answers hangs
	// before it fails (go-libp2p's swarm: 15 s).
	DialTimeout time.Duration
	// BucketSize is the routing tables' k (kad-dht: 20).
	BucketSize int
	// Seed fixes the random draws (round-trip times, slow servers, the
	// order routing tables are filled in); peer IDs are new in each run.
	Seed uint64
}

// Network is a running simulated DHT.
type Network struct {
	params  Params
	mn      mocknet.Mocknet
	rng     *rand.Rand
	mu      sync.Mutex // guards rng and hosts
	hosts   []host.Host
	servers []*dht.IpfsDHT
	dead    map[peer.ID]bool
	slow    map[peer.ID]bool

	deadPeers []peer.AddrInfo
}

// New starts the servers of p, fills their routing tables and links every
// pair; Close stops them.
func New(ctx context.Context, p Params) (*Network, error) {
	n := &Network{
		params: p,
		mn:     mocknet.New(),
		rng:    rand.New(rand.NewPCG(p.Seed, p.Seed^0x9e3779b97f4a7c15)),
		dead:   map[peer.ID]bool{},
		slow:   map[peer.ID]bool{},
	}
	deadCount := int(math.Round(float64(p.Servers) * p.Dead / (1 - p.Dead)))
	for range deadCount {
		ai, err := fakePeer()
		if err != nil {
			return nil, err
		}
		n.deadPeers = append(n.deadPeers, ai)
		n.dead[ai.ID] = true
	}
	for range p.Servers {
		h, err := n.addHost()
		if err != nil {
			n.Close()
			return nil, err
		}
		if n.rng.Float64() < p.Slow {
			n.slow[h.ID()] = true
		}
	}
	if err := n.linkAll(); err != nil {
		n.Close()
		return nil, err
	}
	all := slices.Clone(n.deadPeers)
	for _, h := range n.hosts {
		all = append(all, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	}
	for _, h := range n.hosts {
		d, err := dht.New(n.wrap(h), dht.Mode(dht.ModeServer), dht.DisableAutoRefresh(), dht.BucketSize(p.BucketSize))
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("server %d: %w", len(n.servers), err)
		}
		n.servers = append(n.servers, d)
		n.fill(d, h, all)
	}
	return n, nil
}

// fakePeer is a peer ID and address that no host has.
func fakePeer() (peer.AddrInfo, error) {
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return peer.AddrInfo{}, err
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		return peer.AddrInfo{}, err
	}
	// An address no one answers on (TEST-NET-2): only the peer ID counts.
	return peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/198.51.100.1/tcp/4001")}}, nil
}

// addHost adds a host to the mock network.
func (n *Network) addHost() (host.Host, error) {
	h, err := n.mn.GenPeer()
	if err != nil {
		return nil, fmt.Errorf("mock host: %w", err)
	}
	n.mu.Lock()
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()
	return h, nil
}

// linkAll links every pair of hosts with its own latency.
func (n *Network) linkAll() error {
	for i, a := range n.hosts {
		for _, b := range n.hosts[:i] {
			if err := n.link(a, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// link links a and b with half a round-trip time each way, plus the
// delay of a slow end.
func (n *Network) link(a, b host.Host) error {
	l, err := n.mn.LinkPeers(a.ID(), b.ID())
	if err != nil {
		return fmt.Errorf("link: %w", err)
	}
	oneWay := n.RTT() / 2
	if n.slow[a.ID()] || n.slow[b.ID()] {
		oneWay += n.params.SlowBy / 2
	}
	l.SetOptions(mocknet.LinkOptions{Latency: oneWay})
	return nil
}

// RTT draws a round-trip time.
func (n *Network) RTT() time.Duration {
	n.mu.Lock()
	z := n.rng.NormFloat64()
	n.mu.Unlock()
	median := float64(n.params.MedianRTT)
	sigma := math.Log(float64(n.params.P90RTT)/median) / 1.2816 // the 90th percentile of N(0,1)
	rtt := time.Duration(median * math.Exp(sigma*z))
	return min(max(rtt, 5*time.Millisecond), 2*time.Second)
}

// fill puts into d's routing table, for each common-prefix length with
// h, up to BucketSize peers of all (dead ones included) in random order:
// the table a walk of the whole network would leave.
func (n *Network) fill(d *dht.IpfsDHT, h host.Host, all []peer.AddrInfo) {
	self := kb.ConvertPeerID(h.ID())
	n.mu.Lock()
	order := n.rng.Perm(len(all))
	n.mu.Unlock()
	taken := map[int]int{}
	for _, i := range order {
		ai := all[i]
		if ai.ID == h.ID() {
			continue
		}
		cpl := kb.CommonPrefixLen(self, kb.ConvertPeerID(ai.ID))
		if taken[cpl] >= n.params.BucketSize {
			continue
		}
		h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
		if ok, _ := d.RoutingTable().TryAddPeer(ai.ID, true, false); ok {
			taken[cpl]++
		}
	}
}

// Client adds a host linked to every server, as a command's host is
// reachable from the DHT, whose dials to dead peers hang like the
// servers'. It closes with the network.
func (n *Network) Client() (host.Host, error) {
	h, err := n.addHost()
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	others := slices.Clone(n.hosts[:len(n.hosts)-1])
	n.mu.Unlock()
	for _, o := range others {
		if err := n.link(h, o); err != nil {
			return nil, err
		}
	}
	return n.wrap(h), nil
}

// Bootstrap is k servers, drawn at random, as bootstrap peers.
func (n *Network) Bootstrap(k int) []peer.AddrInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []peer.AddrInfo
	for _, i := range n.rng.Perm(len(n.servers))[:k] {
		h := n.servers[i].Host()
		out = append(out, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	}
	return out
}

// DeadPeers are the peers that never answer.
func (n *Network) DeadPeers() []peer.AddrInfo { return slices.Clone(n.deadPeers) }

// Close stops every server and host.
func (n *Network) Close() error {
	for _, d := range n.servers {
		d.Close()
	}
	return n.mn.Close()
}

// hanging is a host whose dials to the network's dead peers hang until
// the dial timeout (or the caller's deadline) and then fail, and which
// counts the messages it sends on the streams it opens.
type hanging struct {
	host.Host
	n    *Network
	sent *atomic.Int64
}

// Sent is how many messages h, a host of Client, has sent on the streams
// it opened (each DHT request is one write).
func Sent(h host.Host) int64 {
	if hh, ok := h.(*hanging); ok {
		return hh.sent.Load()
	}
	return 0
}

// counted is a stream that counts its writes.
type counted struct {
	network.Stream
	sent *atomic.Int64
}

// Write implements network.Stream.
func (s counted) Write(p []byte) (int, error) {
	s.sent.Add(1)
	return s.Stream.Write(p)
}

// errDialTimeout is the error of a dial to a dead peer.
var errDialTimeout = errors.New("dial timed out (simulated peer that never answers)")

func (n *Network) wrap(h host.Host) host.Host {
	return &hanging{Host: h, n: n, sent: new(atomic.Int64)}
}

func (h *hanging) hang(ctx context.Context) error {
	t := time.NewTimer(h.n.params.DialTimeout)
	defer t.Stop()
	select {
	case <-t.C:
		return errDialTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Connect implements host.Host.
func (h *hanging) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if h.n.dead[ai.ID] {
		return h.hang(ctx)
	}
	return h.Host.Connect(ctx, ai)
}

// NewStream implements host.Host.
func (h *hanging) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	if h.n.dead[p] {
		return nil, h.hang(ctx)
	}
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return counted{Stream: s, sent: h.sent}, nil
}
