// Package session composes the parts of pcp into what the commands do: a
// libp2p host with its discovery methods, announcing or finding a code's
// peer, and moving a stream over the authenticated connection.
package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pcp-dev/pcp/lib/code"
	"github.com/pcp-dev/pcp/lib/discovery"
	"github.com/pcp-dev/pcp/lib/node"
	"github.com/pcp-dev/pcp/lib/pipe"
	"github.com/pcp-dev/pcp/lib/rendezvous"
	"github.com/pcp-dev/pcp/lib/route"
	"github.com/pcp-dev/pcp/lib/status"
)

// Config says how a session finds and reaches peers.
type Config struct {
	// Listen are multiaddrs to listen on; empty means node.DefaultListen().
	Listen []string
	// IdentityFile keeps the peer ID across runs; empty means ephemeral.
	IdentityFile string
	// MDNS and DHT choose the discovery methods.
	MDNS, DHT bool
	// Bootstrap are the DHT's bootstrap peers.
	Bootstrap []peer.AddrInfo
	// Peers, if set, are dialled directly instead of discovering (recv --peer).
	Peers []peer.AddrInfo
	// Relays are the relays to reserve a slot on (--relay); without them,
	// relays are looked for among the DHT's peers.
	Relays []peer.AddrInfo
	// AllowRelay is asked whether data may go through a relay when no
	// direct connection could be made; nil means never (see route.Policy).
	AllowRelay func(ctx context.Context, relay peer.ID, reason string) (bool, error)
	// Receiver tells that the session will receive a transfer (see
	// node.Config.Receiver).
	Receiver bool
	// Log receives status lines.
	Log status.Logger
	// Met, if set, is called once, as soon as a peer proved the code
	// (before the data path is settled).
	Met func()
	// Rejoin is how long the two sides of a transfer whose connection
	// broke try to reach each other again; 0 means not at all.
	Rejoin time.Duration
}

// Session is a running host with its discovery methods.
type Session struct {
	Host    host.Host
	dht     *discovery.DHT
	methods []discovery.Method
	log     status.Logger
	cancel  context.CancelFunc

	nat        *node.NAT // nil when the session does not reach beyond the LAN
	punches    *route.Tracker
	allowRelay func(ctx context.Context, relay peer.ID, reason string) (bool, error)
	bootstrap  []peer.AddrInfo
	started    chan struct{} // closed once Host and dht are set
	punchWait  sync.Once     // the finder waits for hole punching once at most
	onMet      func()
	metOnce    sync.Once
	rejoin     time.Duration
}

// met tells Config.Met, once, that a peer proved the code.
func (s *Session) met() {
	if s.onMet != nil {
		s.metOnce.Do(s.onMet)
	}
}

// Start starts the host and, unless cfg.Peers is set, the discovery methods.
func Start(ctx context.Context, cfg Config) (*Session, error) {
	start := time.Now()
	s := &Session{log: cfg.Log, punches: route.NewTracker(), allowRelay: cfg.AllowRelay, bootstrap: cfg.Bootstrap, started: make(chan struct{}), onMet: cfg.Met, rejoin: cfg.Rejoin}
	ncfg := node.Config{Listen: cfg.Listen, Receiver: cfg.Receiver}
	for _, ai := range cfg.Bootstrap {
		ncfg.QUICFirst = append(ncfg.QUICFirst, ai.Addrs...)
	}
	if cfg.IdentityFile != "" {
		k, err := node.LoadIdentity(cfg.IdentityFile)
		if err != nil {
			return nil, err
		}
		ncfg.Identity = k
	}
	if (cfg.DHT && len(cfg.Peers) == 0) || len(cfg.Relays) > 0 || relayedPeer(cfg.Peers) {
		// Beyond the LAN: relay reservations and hole punching.
		s.nat = &node.NAT{Relays: cfg.Relays, Tracer: s.punches}
		if cfg.DHT && len(cfg.Peers) == 0 {
			s.nat.FindRelays = s.relayCandidates
		}
		ncfg.NAT = s.nat
	}
	h, err := node.New(ncfg)
	if err != nil {
		return nil, err
	}
	s.Host = h
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	switch {
	case len(cfg.Peers) > 0:
		s.methods = append(s.methods, discovery.Static{Peers: cfg.Peers})
	default:
		if cfg.MDNS {
			s.methods = append(s.methods, &discovery.MDNS{Host: h, Log: cfg.Log})
		}
		if cfg.DHT {
			d, err := discovery.StartDHT(ctx, h, false, cfg.Bootstrap, cfg.Log)
			if err != nil {
				s.Close()
				return nil, err
			}
			s.dht = d
			s.methods = append(s.methods, gated{Method: d, ready: s.reachable})
		}
	}
	close(s.started)
	cfg.Log.Debugf("host %s started in %v", node.ShortID(h.ID()), time.Since(start).Round(time.Millisecond))
	for _, a := range node.FullAddrs(h) {
		cfg.Log.Debugf("listening on %s", a)
	}
	return s, nil
}

// relayedPeer reports whether a peer to dial (--peer) has a relayed address.
func relayedPeer(peers []peer.AddrInfo) bool {
	for _, ai := range peers {
		if slices.ContainsFunc(ai.Addrs, node.IsRelayed) {
			return true
		}
	}
	return false
}

// CloseWait bounds how long Close waits for the host to shut down: a
// connection to a peer that vanished would otherwise hold it for seconds
// (TLS gives its close alert 5 s).
const CloseWait = time.Second

// Close stops discovery and the host, waiting at most CloseWait.
func (s *Session) Close() error {
	s.cancel()
	done := make(chan error, 1)
	go func() {
		if s.dht != nil {
			s.dht.Close()
		}
		done <- s.Host.Close()
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(CloseWait):
		return nil
	}
}

func (s *Session) rendezvous(c code.Code) rendezvous.Config {
	cfg := rendezvous.Config{Host: s.Host, Code: c, Methods: s.methods, Log: s.log}
	if s.nat != nil {
		cfg.BeforeDial = s.beforeDial
	}
	return cfg
}

func (s *Session) policy() route.Policy {
	return route.Policy{AllowRelay: s.allowRelay, Tracker: s.punches, Log: s.log}
}

// Result describes a finished transfer.
type Result struct {
	Peer     *rendezvous.Peer
	Path     route.Path // the connection that carried the data
	Bytes    int64
	Transfer time.Duration // the data phase: from the receiver's consent to the end

	accepted time.Time
}

// timed makes opt record in res when the data phase begins.
func timed(opt *pipe.Options, res *Result) pipe.Options {
	o := *opt
	o.Accepted = func() {
		res.accepted = time.Now()
		if opt.Accepted != nil {
			opt.Accepted()
		}
	}
	return o
}

func (r *Result) finish() {
	if !r.accepted.IsZero() {
		r.Transfer = time.Since(r.accepted)
	}
}

// SendOptions are a sender's options: the pipe's, and Route.
type SendOptions struct {
	pipe.Options
	// Route, if set, is told (once) the path of the data when it is
	// settled, before the data flows.
	Route func(route.Path)
}

// Send announces c, waits up to timeout (0: no limit) for a finder that
// wants a pipe, and streams src to it. Finders that only want to meet
// (pcp-find) are answered and the wait goes on.
func (s *Session) Send(ctx context.Context, c code.Code, h pipe.Header, src io.Reader, timeout time.Duration, opt SendOptions) (Result, error) {
	start := time.Now()
	wctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	a := rendezvous.Announce(ctx, s.rendezvous(c))
	defer a.Close()
	p, err := s.await(wctx, a, rendezvous.WantPipe)
	if err != nil {
		return Result{}, s.waitError(ctx, err, true)
	}
	s.met()
	busy, stopBusy := context.WithCancel(ctx)
	defer stopBusy()
	go s.refuseOthers(busy, a)
	defer p.Stream.Close()
	data := route.Expect(s.Host, p.Stream)
	if err := p.Accept(); err != nil {
		data.Cancel()
		return Result{}, err
	}
	s.log.Debugf("peer found and authenticated %v after the start", time.Since(start).Round(time.Millisecond))
	stream, path, err := data.Wait(ctx, s.policy())
	if err != nil {
		return Result{}, err
	}
	defer stream.Close()
	res := Result{Peer: p, Path: path}
	s.log.Debugf("data connection ready %v after the start", time.Since(start).Round(time.Millisecond))
	s.peerMet()
	s.log.Infof("peer %s authenticated; sending %s", node.ShortID(p.ID), path)
	if opt.Route != nil {
		opt.Route(path)
	}
	popt := timed(&opt.Options, &res)
	if s.rejoin > 0 {
		reconnect, stop := s.rejoinSender(ctx, p, stream, path, s.rejoin)
		defer stop()
		s.resumable(&popt, reconnect, "the receiver")
	}
	s.dialLanes(&popt, stream)
	n, err := pipe.Send(ctx, stream, h, src, popt)
	res.Bytes = n
	res.finish()
	return res, relayLost(err, stream, path)
}

// Receive finds c's announcer within timeout (0: no limit), authenticates,
// and writes the stream to dst.
func (s *Session) Receive(ctx context.Context, c code.Code, dst io.Writer, timeout time.Duration, opt pipe.Options) (Result, error) {
	start := time.Now()
	wctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	p, err := rendezvous.Find(wctx, s.rendezvous(c), rendezvous.WantPipe)
	if err != nil {
		return Result{}, s.waitError(ctx, err, false)
	}
	s.met()
	defer p.Stream.Close()
	s.log.Debugf("peer found and authenticated %v after the start", time.Since(start).Round(time.Millisecond))
	stream, path, err := route.Finder(ctx, s.Host, p.Stream, s.policy())
	if err != nil {
		return Result{}, err
	}
	defer stream.Close()
	res := Result{Peer: p, Path: path}
	s.log.Debugf("data connection ready %v after the start", time.Since(start).Round(time.Millisecond))
	s.peerMet()
	s.log.Infof("peer %s %s and authenticated; receiving %s", node.ShortID(p.ID), foundHow(p.Source), path)
	popt := timed(&opt, &res)
	if s.rejoin > 0 {
		reconnect, stop := s.rejoinReceiver(p, c, stream, path, s.rejoin)
		defer stop()
		s.resumable(&popt, reconnect, "the sender")
	}
	s.offerLanes(&popt, stream)
	n, err := pipe.Receive(ctx, stream, dst, popt)
	res.Bytes = n
	res.finish()
	return res, relayLost(err, stream, path)
}

// resumable makes the pipe reconnect through reconnect after a break,
// saying so in status lines: peer names the other side.
func (s *Session) resumable(opt *pipe.Options, reconnect func(context.Context) (pipe.Stream, error), peer string) {
	lost, resumed := opt.Lost, opt.Resumed
	opt.Reconnect = reconnect
	opt.Lost = func(cause error) {
		s.log.Infof("connection lost; reconnecting to %s for up to %v…", peer, s.rejoin)
		s.log.Debugf("the connection broke: %v", cause)
		if lost != nil {
			lost(cause)
		}
	}
	opt.Resumed = func(after time.Duration, at int64) {
		s.log.Infof("resumed after %.1f s at %s", after.Seconds(), status.Size(at))
		if resumed != nil {
			resumed(after, at)
		}
	}
}

// Busy is what the sender tells a finder that proves the code while it
// sends to another.
const Busy = "the sender is already sending to another receiver of this code (it serves one)"

// refuseOthers answers, until ctx ends, each finder that proves the code
// while the one accepted is served: it is told at once that the sender is
// busy, instead of searching until its timeout. Announcing goes on for
// that: a finder that cannot find the sender learns nothing.
func (s *Session) refuseOthers(ctx context.Context, a *rendezvous.Announcer) {
	for {
		p, err := a.Next(ctx)
		if err != nil {
			return
		}
		if p.Want == rendezvous.WantRendezvous {
			p.Meet()
			continue
		}
		s.log.Debugf("peer %s proved the code too; told that this transfer is under way", node.ShortID(p.ID))
		go p.Reject(Busy)
	}
}

// peerMet quiets the discovery that goes on once the peer is there.
func (s *Session) peerMet() {
	if s.dht != nil {
		s.dht.PeerMet()
	}
}

// foundHow says how a peer was found, from its discovery source.
func foundHow(source string) string {
	if source == "peer" {
		return "reached at the --peer address"
	}
	return "found by " + source
}

// relayLost names the relay when a relayed transfer failed because the
// relayed connection closed under it.
func relayLost(err error, s network.Stream, p route.Path) error {
	if err == nil || p.Kind != route.Relayed || !s.Conn().IsClosed() {
		return err
	}
	return fmt.Errorf("the connection through relay %s was lost: %w", node.ShortID(p.Relay), err)
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// waitError turns the wait's own deadline into a *rendezvous.NotFoundError,
// and leaves an interruption of the parent context as it is.
func (s *Session) waitError(parent context.Context, err error, announcing bool) error {
	if parent.Err() != nil {
		return parent.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = &rendezvous.NotFoundError{Announcing: announcing}
	}
	return s.dhtUnreached(err)
}

// dhtUnreached marks a NotFoundError of a session whose DHT never reached
// a bootstrap peer: the DHT was not searched at all, which more time or
// another code will not change.
func (s *Session) dhtUnreached(err error) error {
	var nf *rendezvous.NotFoundError
	if errors.As(err, &nf) && s.dht != nil {
		select {
		case <-s.dht.Ready():
		default:
			nf.DHTUnreached = true
		}
	}
	return err
}
