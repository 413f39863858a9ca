package session

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/pcp-dev/pcp/lib/auth"
	"github.com/pcp-dev/pcp/lib/code"
	"github.com/pcp-dev/pcp/lib/discovery"
	"github.com/pcp-dev/pcp/lib/node"
	"github.com/pcp-dev/pcp/lib/pipe"
	"github.com/pcp-dev/pcp/lib/rendezvous"
	"github.com/pcp-dev/pcp/lib/route"
)

// RejoinProtocol is the stream a receiver opens to its sender after their
// connection broke: the rejoin proof (auth.RejoinFinder), then the pipe
// goes on (pipe.Options.Reconnect).
const RejoinProtocol protocol.ID = "/pcp/rejoin/1.0.0"

// DefaultRejoinWindow is how long, by default, the two sides of a broken
// transfer try to reach each other again before they give up.
const DefaultRejoinWindow = 2 * time.Minute

const (
	// rejoinAttempt bounds one try of the receiver to reach the sender,
	// with four round trips of the first connection on top: a connection
	// attempt into a link that drops everything retries its SYN after 1 s,
	// so short tries with short pauses notice soon that the link is back.
	rejoinAttempt = 2 * time.Second
	// rejoinPause is how long the receiver waits between two tries.
	rejoinPause = 250 * time.Millisecond
)

// rejoinSender prepares the sender's side of reconnecting to p, whose data
// went over path: it takes rejoin streams from p alone, and only over a
// path as direct as the first (a relay only if the data went through one).
// A proven rejoin resets the current stream, so that the pipe notices the
// break at once even if its side of the connection still looks alive. The
// returned stop ends it.
func (s *Session) rejoinSender(ctx context.Context, p *rendezvous.Peer, current pipe.Stream, path route.Path, window time.Duration) (reconnect func(context.Context) (pipe.Stream, error), stop func()) {
	var mu sync.Mutex
	pending := make(chan network.Stream, 1)
	peers := auth.Peers{Announcer: s.Host.ID(), Finder: p.ID}
	s.Host.SetStreamHandler(RejoinProtocol, func(st network.Stream) {
		if st.Conn().RemotePeer() != p.ID || (route.Of(st.Conn()).Kind == route.Relayed && path.Kind != route.Relayed) {
			st.Reset()
			return
		}
		st.SetDeadline(time.Now().Add(rendezvous.AuthTimeout))
		if err := auth.RejoinAnnouncer(st, p.Secret, peers); err != nil {
			s.log.Debugf("rejoin from %s failed: %v", node.ShortID(p.ID), err)
			st.Reset()
			return
		}
		st.SetDeadline(time.Time{})
		mu.Lock()
		defer mu.Unlock()
		select {
		case old := <-pending: // an earlier try that was not taken
			old.Reset()
		default:
		}
		pending <- st
		if r, ok := current.(interface{ Reset() error }); ok {
			r.Reset()
		}
	})
	reconnect = func(ctx context.Context) (pipe.Stream, error) {
		t := time.NewTimer(window)
		defer t.Stop()
		select {
		case st := <-pending:
			mu.Lock()
			current = st
			mu.Unlock()
			s.log.Debugf("rejoined by %s %s", node.ShortID(p.ID), route.Of(st.Conn()))
			return st, nil
		case <-t.C:
			return nil, fmt.Errorf("the receiver did not reconnect within %v", window)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	stop = func() {
		s.Host.RemoveStreamHandler(RejoinProtocol)
		select {
		case st := <-pending:
			st.Reset()
		default:
		}
	}
	return reconnect, stop
}

// rejoinReceiver returns the receiver's way of reconnecting to p after a
// break: it drops the dead connection, looks for p's addresses again by
// the session's discovery methods on c's channel, and tries to reach p
// every second or so until window has passed, proving on each new stream
// that it is the peer of the session.
func (s *Session) rejoinReceiver(p *rendezvous.Peer, c code.Code, path route.Path, window time.Duration) func(context.Context) (pipe.Stream, error) {
	peers := auth.Peers{Announcer: p.ID, Finder: s.Host.ID()}
	return func(ctx context.Context) (pipe.Stream, error) {
		ctx, cancel := context.WithTimeout(ctx, window)
		defer cancel()
		s.Host.Network().ClosePeer(p.ID) // a new stream must not take the dead connection
		go s.relearn(ctx, c, p.ID)
		var last error
		for {
			st, err := s.rejoinOnce(ctx, p, peers, path)
			if err == nil {
				return st, nil
			}
			last = err
			s.log.Debugf("rejoin %s: %v", node.ShortID(p.ID), err)
			select {
			case <-ctx.Done():
				if ctx.Err() == context.DeadlineExceeded {
					return nil, fmt.Errorf("the sender could not be reached again within %v (last: %v)", window, last)
				}
				return nil, ctx.Err()
			case <-time.After(rejoinPause):
			}
		}
	}
}

// rejoinOnce dials p by every address known for it, with no dial backoff
// (the last failures were the break itself), and proves the session on a
// new stream.
func (s *Session) rejoinOnce(ctx context.Context, p *rendezvous.Peer, peers auth.Peers, path route.Path) (pipe.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, rejoinAttempt+4*p.RTT)
	defer cancel()
	dctx := network.WithForceDirectDial(ctx, "pcp rejoin")
	if path.Kind == route.Relayed {
		// The data went through a relay with the user's consent: it may again.
		dctx = network.WithAllowLimitedConn(ctx, "pcp rejoin")
	}
	if err := node.Connect(dctx, s.Host, peer.AddrInfo{ID: p.ID}); err != nil {
		return nil, err
	}
	st, err := node.NewStream(dctx, s.Host, p.ID, RejoinProtocol)
	if err != nil {
		return nil, err
	}
	st.SetDeadline(time.Now().Add(rendezvous.AuthTimeout))
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	if err := auth.RejoinFinder(st, p.Secret, peers, nil); err != nil {
		st.Reset()
		return nil, err
	}
	if !stop() {
		return nil, ctx.Err()
	}
	st.SetDeadline(time.Time{})
	s.log.Debugf("rejoined %s %s", node.ShortID(p.ID), route.Of(st.Conn()))
	return st, nil
}

// relearn adds to the peerstore the addresses that the discovery methods
// find for id on c's channel until ctx ends: the sender may have moved.
func (s *Session) relearn(ctx context.Context, c code.Code, id peer.ID) {
	found := make(chan discovery.Candidate)
	for _, m := range s.methods {
		go m.Find(ctx, c.Channel(), found)
	}
	for {
		select {
		case cand := <-found:
			if cand.ID == id && len(cand.Addrs) > 0 {
				s.Host.Peerstore().AddAddrs(id, cand.Addrs, peerstore.TempAddrTTL)
			}
		case <-ctx.Done():
			return
		}
	}
}
