package rendezvous

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/pcp-dev/pcp/lib/auth"
	"github.com/pcp-dev/pcp/lib/frame"
	"github.com/pcp-dev/pcp/lib/node"
)

// Announcer announces a channel and authenticates the finders that dial it.
type Announcer struct {
	cfg      Config
	password []byte
	cancel   context.CancelFunc
	peers    chan *Peer
	fatal    chan error

	mu         sync.Mutex
	pendingAll int            // streams not yet authenticated
	pending    map[string]int // of those, by source and by peer ID
	failures   int
	inFlight   int  // authentications under way, each a possible wrong guess
	spent      bool // the guess budget ran out: authenticate no one any more
	closed     bool
}

// Announce starts announcing cfg.Code's channel with every method and
// answering authentication on Protocol. Call Next for each authenticated
// finder and Close when done.
func Announce(ctx context.Context, cfg Config) *Announcer {
	actx, cancel := context.WithCancel(ctx)
	a := &Announcer{
		cfg:      cfg,
		password: cfg.Code.Password(),
		cancel:   cancel,
		peers:    make(chan *Peer),
		fatal:    make(chan error, 1),
		pending:  map[string]int{},
	}
	cfg.Host.SetStreamHandler(Protocol, func(s network.Stream) { a.handle(actx, s) })
	var failed []error // guarded by a.mu
	for _, m := range cfg.Methods {
		go func() {
			err := m.Announce(actx, cfg.Code.Channel())
			if err == nil || actx.Err() != nil {
				return
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			if failed = append(failed, err); len(failed) == len(cfg.Methods) {
				a.fail(&NoDiscoveryError{Errs: failed})
				return
			}
			cfg.Log.Infof("%v", err)
		}()
	}
	return a
}

// fail ends the announcer: Next returns err from now on.
func (a *Announcer) fail(err error) {
	select {
	case a.fatal <- err:
	default:
	}
}

// Next waits for the next finder that proves it knows the code. It fails
// with a *TooManyGuessesError once the guess budget is spent.
func (a *Announcer) Next(ctx context.Context) (*Peer, error) {
	select { // a spent budget wins over a finder that is already waiting
	case err := <-a.fatal:
		a.fatal <- err
		return nil, err
	default:
	}
	select {
	case p := <-a.peers:
		return p, nil
	case err := <-a.fatal:
		a.fatal <- err
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops announcing and refuses further finders.
func (a *Announcer) Close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.cfg.Host.RemoveStreamHandler(Protocol)
	a.cancel()
}

func (a *Announcer) handle(ctx context.Context, s network.Stream) {
	if a.budgetSpent() { // even the right code is too late
		a.refuse(s)
		return
	}
	finder := s.Conn().RemotePeer()
	leave, ok := a.admit(finder, sourceOf(s.Conn().RemoteMultiaddr()))
	if !ok {
		s.Reset() // too many finders authenticating at once, or from one place
		return
	}
	defer leave()
	start := time.Now()
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()

	// The finder speaks first. A stream that stays silent is dropped
	// soon, and only its PAKE message makes it a guess.
	s.SetDeadline(start.Add(FirstMessageTimeout))
	msg, err := auth.ReadFinderMessage(s)
	if err != nil {
		a.cfg.Log.Debugf("no authentication from %s: %v", node.ShortID(finder), err)
		s.Reset()
		return
	}
	switch a.reserve() {
	case budgetSpent:
		a.refuse(s)
		return
	case budgetBusy: // the guesses in flight could spend the rest: later
		s.Reset()
		return
	}
	defer a.release()
	s.SetDeadline(start.Add(AuthTimeout))
	secret, err := auth.AnswerFinder(s, msg, a.password, auth.Peers{Announcer: a.cfg.Host.ID(), Finder: finder})
	if errors.Is(err, auth.ErrWrongCode) {
		s.Close()
		a.wrongCode(node.ShortID(finder))
		return
	}
	if err != nil {
		a.cfg.Log.Debugf("authentication with %s failed: %v", node.ShortID(finder), err)
		s.Reset()
		return
	}
	t, want, err := frame.NewReader(s, maxRequest).Next()
	if err != nil || t != frame.Request {
		a.cfg.Log.Debugf("no request from %s: %v", node.ShortID(finder), err)
		s.Reset()
		return
	}
	s.SetDeadline(time.Time{})
	p := &Peer{Stream: s, ID: finder, Want: string(want), AuthTime: time.Since(start), Secret: secret}
	if !stop() {
		return // ctx ended: the stream was reset
	}
	select {
	case a.peers <- p:
	case <-ctx.Done():
		s.Reset()
	}
}

// refuse tells a finder that no code works any more.
func (a *Announcer) refuse(s network.Stream) {
	s.SetWriteDeadline(time.Now().Add(FirstMessageTimeout))
	auth.Refuse(s, "too many wrong codes were tried; this code no longer works: start again with a new one")
	s.Close()
}

// admit takes one of the MaxPendingAuth places for a new stream, unless its
// source or its peer ID already holds MaxPendingPerSource of them; leave
// gives the place back.
func (a *Announcer) admit(finder peer.ID, source string) (leave func(), ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	keys := [2]string{"peer " + string(finder), source}
	if a.pendingAll >= MaxPendingAuth || a.pending[keys[0]] >= MaxPendingPerSource || a.pending[keys[1]] >= MaxPendingPerSource {
		return nil, false
	}
	a.pendingAll++
	for _, k := range keys {
		a.pending[k]++
	}
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.pendingAll--
		for _, k := range keys {
			if a.pending[k]--; a.pending[k] == 0 {
				delete(a.pending, k)
			}
		}
	}, true
}

// sourceOf names the place a connection comes from, for the limit on
// pending authentications: its IP address, for IPv6 the /64 (what one
// host usually gets), for a relayed connection the relay's address.
func sourceOf(addr ma.Multiaddr) string {
	ip, err := manet.ToIP(addr)
	if err != nil {
		return "addr " + addr.String()
	}
	if ip4 := ip.To4(); ip4 != nil {
		return "ip " + ip4.String()
	}
	return "ip " + ip.Mask(net.CIDRMask(64, 128)).String()
}

func (a *Announcer) budgetSpent() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.spent
}

type reservation int

const (
	reserved reservation = iota
	budgetSpent
	budgetBusy
)

// reserve counts one more authentication in flight, unless the guesses
// already made and those in flight could spend the budget: every one in
// flight may turn out to be a wrong guess, and the budget is a hard bound.
func (a *Announcer) reserve() reservation {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.spent:
		return budgetSpent
	case a.failures+a.inFlight >= a.cfg.Code.GuessBudget():
		return budgetBusy
	}
	a.inFlight++
	return reserved
}

func (a *Announcer) release() {
	a.mu.Lock()
	a.inFlight--
	a.mu.Unlock()
}

func (a *Announcer) wrongCode(who string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.failures++
	budget := a.cfg.Code.GuessBudget()
	a.cfg.Log.Infof("a peer (%s) tried a wrong code (%d of %d allowed)", who, a.failures, budget)
	if a.failures >= budget {
		a.spent = true
		a.fail(&TooManyGuessesError{N: a.failures})
	}
}
