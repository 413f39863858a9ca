package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-multistream"

	"github.com/pcp-dev/pcp/lib/auth"
	"github.com/pcp-dev/pcp/lib/discovery"
	"github.com/pcp-dev/pcp/lib/frame"
	"github.com/pcp-dev/pcp/lib/node"
)

// Find discovers the announcer of cfg.Code's channel with every method,
// authenticates with each candidate (several at once) and returns the first
// that proves the code and accepts want.
//
// A candidate that cannot be reached, or breaks off, is tried again with a
// growing pause; one that is not a pcp announcer is dropped. A candidate
// that fails the code, or refuses to authenticate, ends nothing while
// discovery runs: anyone who knows the channel word can announce it, so it
// may be a stranger, and the real announcer may come later. Find says so at
// once, and looks on. It fails with a *WrongCodeError (which is
// auth.ErrWrongCode) when discovery ends or ctx's deadline passes and a
// candidate failed the code, with the refusal when one refused, with a
// *TooManyGuessesError as soon as as many distinct candidates failed the
// code as the guess budget allows, and else with a *NotFoundError.
func Find(ctx context.Context, cfg Config, want string) (*Peer, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	password := cfg.Code.Password()

	candidates := make(chan discovery.Candidate)
	methodDone := make(chan error, len(cfg.Methods))
	usesDHT := false
	for _, m := range cfg.Methods {
		usesDHT = usesDHT || m.Name() == "dht"
		go func() {
			err := m.Find(ctx, cfg.Code.Channel(), candidates)
			if err != nil && len(cfg.Methods) > 1 {
				cfg.Log.Infof("%v", err) // else the error it ends with says it
			}
			methodDone <- err
		}()
	}
	var methodErrs []error

	type result struct {
		cand discovery.Candidate
		peer *Peer
		err  error
	}
	results := make(chan result)
	// A candidate that could not be reached waits to be tried again; an
	// answer with new addresses for it ends the wait at once, and the
	// pending retry, of an older sequence number, is then dropped.
	type retryOf struct {
		cand discovery.Candidate
		seq  int
	}
	retry := make(chan retryOf)
	waiting := map[peer.ID]bool{}
	retrySeq := map[peer.ID]int{}
	tried := map[peer.ID]bool{}           // being tried, failed, or waiting to be tried again
	seen := map[peer.ID]bool{}            // every candidate, for the NotFoundError
	known := map[peer.ID][]ma.Multiaddr{} // every address heard of each candidate
	failures := map[peer.ID]int{}
	pending, methodsLeft, wrongCodes, notPcpSeen := 0, len(cfg.Methods), 0, 0
	var refused error // the last candidate that refused to authenticate
	start := time.Now()
	conclude := func() error {
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			return ctx.Err()
		case len(seen) == 0 && len(methodErrs) == len(cfg.Methods):
			return &NoDiscoveryError{Errs: methodErrs}
		case wrongCodes > 0:
			return &WrongCodeError{Peers: wrongCodes}
		case refused != nil:
			return fmt.Errorf("a peer on the channel %w", refused)
		}
		return &NotFoundError{Candidates: len(seen), NotPcp: notPcpSeen, DHT: usesDHT}
	}
	lookingOn := func(what string) {
		until := "until the timeout"
		if d, ok := ctx.Deadline(); ok {
			until = fmt.Sprintf("for %v more", time.Until(d).Round(time.Second))
		}
		if methodsLeft > 0 {
			cfg.Log.Infof("%s; looking on %s for a peer that knows the code (is the code right?)", what, until)
		}
	}
	try := func(c discovery.Candidate) {
		go func() {
			p, err := attempt(ctx, cfg, password, c, want)
			select {
			case results <- result{c, p, err}:
			case <-ctx.Done():
				if p != nil {
					p.Stream.Reset()
				}
			}
		}()
	}
	for {
		if methodsLeft == 0 && pending == 0 {
			return nil, conclude()
		}
		select {
		case c := <-candidates:
			fresh := learn(known, c.AddrInfo)
			if tried[c.ID] {
				// Another answer for a peer ID already tried: anyone may
				// answer under a public peer ID, so an address heard first
				// must not shadow one heard later. Dial the new ones now;
				// an attempt under way shares the connection, and a retry
				// takes every address heard.
				switch {
				case len(fresh) > 0 && waiting[c.ID]:
					cfg.Log.Debugf("%s: new addresses for %s: %v; trying it again now", c.Source, node.ShortID(c.ID), fresh)
					waiting[c.ID] = false
					retrySeq[c.ID]++
					pending++
					c.Addrs = known[c.ID]
					try(c)
				case len(fresh) > 0:
					cfg.Log.Debugf("%s: new addresses for %s: %v", c.Source, node.ShortID(c.ID), fresh)
					go func() {
						dctx, cancel := context.WithTimeout(ctx, DialTimeout)
						defer cancel()
						node.Connect(dctx, cfg.Host, peer.AddrInfo{ID: c.ID, Addrs: fresh})
					}()
				}
				continue
			}
			tried[c.ID] = true
			seen[c.ID] = true
			pending++
			cfg.Log.Debugf("%s: found candidate %s after %v", c.Source, node.ShortID(c.ID), since(start))
			try(c)
		case rt := <-retry:
			if rt.seq != retrySeq[rt.cand.ID] {
				pending-- // tried again already, when new addresses came
				continue
			}
			waiting[rt.cand.ID] = false
			rt.cand.Addrs = known[rt.cand.ID]
			try(rt.cand)
		case r := <-results:
			pending--
			var rejected *RejectedError
			switch {
			case r.err == nil:
				cfg.Log.Debugf("%s: authenticated %s in %v (%v after start)", r.cand.Source, node.ShortID(r.cand.ID), r.peer.AuthTime.Round(time.Millisecond), since(start))
				return r.peer, nil
			case errors.As(r.err, &rejected):
				return nil, r.err
			case errors.As(r.err, new(*auth.RefusedError)):
				refused = r.err
				lookingOn(fmt.Sprintf("%s on the channel (%s) %v", node.ShortID(r.cand.ID), r.cand.Source, r.err))
			case errors.Is(r.err, auth.ErrWrongCode):
				wrongCodes++
				if wrongCodes >= cfg.Code.GuessBudget() {
					return nil, &TooManyGuessesError{N: wrongCodes}
				}
				lookingOn(fmt.Sprintf("%s on the channel (%s) does not know this code", node.ShortID(r.cand.ID), r.cand.Source))
			case errors.Is(r.err, errNotPcp), errors.As(r.err, new(*auth.ProtocolError)):
				// It answered, but not as a pcp announcer would: never again.
				notPcpSeen++
				cfg.Log.Debugf("%s: candidate %s: %v", r.cand.Source, node.ShortID(r.cand.ID), r.err)
			default:
				// Unreachable or cut off now is not forever (a sender that is
				// still starting, a network that comes back): try again.
				failures[r.cand.ID]++
				delay := retryDelay(failures[r.cand.ID])
				if failures[r.cand.ID] == 1 && r.cand.Source == "peer" {
					cfg.Log.Infof("cannot reach %s yet (%v); trying again until the timeout", node.ShortID(r.cand.ID), r.err)
				}
				cfg.Log.Debugf("%s: candidate %s: %v; again in %v", r.cand.Source, node.ShortID(r.cand.ID), r.err, delay)
				pending++
				waiting[r.cand.ID] = true
				go func(rt retryOf) {
					select {
					case <-time.After(delay):
					case <-ctx.Done():
						return
					}
					select {
					case retry <- rt:
					case <-ctx.Done():
					}
				}(retryOf{r.cand, retrySeq[r.cand.ID]})
			}
		case err := <-methodDone:
			methodsLeft--
			if err != nil {
				methodErrs = append(methodErrs, err)
			}
		case <-ctx.Done():
			return nil, conclude()
		}
	}
}

// learn adds the addresses of ai to known and returns those that are new.
// It keeps at most maxKnownAddrs for a peer.
func learn(known map[peer.ID][]ma.Multiaddr, ai peer.AddrInfo) []ma.Multiaddr {
	var fresh []ma.Multiaddr
	for _, a := range ai.Addrs {
		if len(known[ai.ID]) < maxKnownAddrs && !slices.ContainsFunc(known[ai.ID], a.Equal) {
			known[ai.ID] = append(known[ai.ID], a)
			fresh = append(fresh, a)
		}
	}
	return fresh
}

// maxKnownAddrs bounds the addresses kept for one candidate.
const maxKnownAddrs = 64

// retryDelay is the pause before the n-th new attempt at an unreachable
// candidate: 250 ms, doubling up to 5 s.
func retryDelay(n int) time.Duration {
	d := 250 * time.Millisecond
	for i := 1; i < n && d < 5*time.Second; i++ {
		d *= 2
	}
	return min(d, 5*time.Second)
}

// attempt connects to one candidate, authenticates and sends the request.
func attempt(ctx context.Context, cfg Config, password []byte, c discovery.Candidate, want string) (*Peer, error) {
	h := cfg.Host
	if cfg.BeforeDial != nil {
		cfg.BeforeDial(ctx, c)
	}
	dctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	// Find paces its own attempts: a failed dial a moment ago must not
	// refuse this one (the swarm's backoff would, for 5 s and more).
	if sw, ok := h.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(c.ID)
	}
	if err := node.Connect(dctx, h, c.AddrInfo); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	start := time.Now()
	s, err := node.NewStream(network.WithAllowLimitedConn(dctx, "pcp rendezvous"), h, c.ID, Protocol)
	if err != nil {
		return nil, err
	}
	s.SetDeadline(time.Now().Add(AuthTimeout))
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()

	peers := auth.Peers{Announcer: s.Conn().RemotePeer(), Finder: h.ID()}
	// The request rides with the finder's MAC: it tells an announcer that
	// may not know the code nothing it could not guess.
	request := frame.Append(nil, frame.Request, []byte(want))
	secret, rtt, err := auth.Finder(s, password, peers, request)
	if err != nil {
		s.Reset()
		if notPcp(dctx, h, s.Conn(), err) {
			return nil, errNotPcp
		}
		return nil, err
	}
	authTime := time.Since(start)
	t, reason, err := frame.NewReader(s, maxRequest).Next()
	switch {
	case err != nil:
		s.Reset()
		return nil, fmt.Errorf("wait for the answer to the request: %w", err)
	case t == frame.Reject:
		s.Reset()
		return nil, &RejectedError{Reason: frame.Text(reason)}
	case t != frame.Accept:
		s.Reset()
		return nil, fmt.Errorf("unexpected %v frame after the request", t)
	}
	if !stop() {
		return nil, ctx.Err()
	}
	s.SetDeadline(time.Time{})
	return &Peer{Stream: s, ID: c.ID, Source: c.Source, Want: want, AuthTime: authTime, RTT: rtt, Secret: secret}, nil
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// notPcp tells whether the failure of a stream's first exchange means that
// the candidate does not speak pcp: multistream said so, or identify lists
// the candidate's protocols and pcp is not among them. (The protocol is
// proposed together with the first frame, so a peer that refuses it may
// reset the stream before its refusal can be read.)
func notPcp(ctx context.Context, h host.Host, c network.Conn, err error) bool {
	var notSupported multistream.ErrNotSupported[protocol.ID]
	if errors.As(err, &notSupported) {
		return true
	}
	ids, ok := h.(interface{ IDService() identify.IDService })
	if !ok {
		return false
	}
	select {
	case <-ids.IDService().IdentifyWait(c):
	case <-ctx.Done():
		return false
	}
	protos, err := h.Peerstore().GetProtocols(c.RemotePeer())
	return err == nil && len(protos) > 0 && !slices.Contains(protos, Protocol)
}
