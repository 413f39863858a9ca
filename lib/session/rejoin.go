package session

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
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

// NudgeProtocol is the stream a sender opens to its receiver, while it
// waits for the receiver to rejoin, after it saw their connection break: a
// break that only one side saw (a reset that reached the sender alone)
// leaves the receiver waiting for its peer timeout, and then for its
// connection's retransmission timer. The payload is 8 bytes, big-endian:
// how many streams the sender has had in the session (1 for the first); a
// receiver on the same stream drops it and rejoins at once.
const NudgeProtocol protocol.ID = "/pcp/nudge/1.0.0"

// nudgeEvery is how often a sender nudges its receiver while it waits.
const nudgeEvery = time.Second

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
	streams := uint64(1) // the streams of the session so far
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
		nctx, stopNudging := context.WithCancel(ctx)
		defer stopNudging()
		if path.Kind != route.Relayed {
			mu.Lock()
			go s.nudge(nctx, p.ID, current, streams)
			mu.Unlock()
		}
		select {
		case st := <-pending:
			mu.Lock()
			current = st
			streams++
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

// nudge tells p, about every nudgeEvery until ctx ends, that the sender
// lost its stream number n (old), unless p rejoined first: old's
// connection is closed so that each try dials anew.
func (s *Session) nudge(ctx context.Context, p peer.ID, old pipe.Stream, n uint64) {
	select {
	case <-time.After(rejoinPause): // a receiver that saw the break too is quicker
	case <-ctx.Done():
		return
	}
	if st, ok := old.(network.Stream); ok {
		st.Conn().Close()
	}
	for {
		next := time.After(nudgeEvery)
		tctx, cancel := context.WithTimeout(ctx, rejoinAttempt)
		err := s.nudgeOnce(tctx, p, n)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Debugf("nudge %s: %v", node.ShortID(p), err)
		}
		select {
		case <-next:
		case <-ctx.Done():
			return
		}
	}
}

// nudgeOnce opens one nudge stream to p, directly, and writes n.
func (s *Session) nudgeOnce(ctx context.Context, p peer.ID, n uint64) error {
	st, err := s.openTo(ctx, p, NudgeProtocol, false)
	if err != nil {
		return err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	if _, err := st.Write(binary.BigEndian.AppendUint64(nil, n)); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// takeNudges makes the receiver drop its data stream when p says that it
// lost it: stream returns the current stream and its number in the
// session. The returned stop ends it.
func (s *Session) takeNudges(p peer.ID, stream func() (pipe.Stream, uint64)) (stop func()) {
	s.Host.SetStreamHandler(NudgeProtocol, func(st network.Stream) {
		defer st.Reset()
		if st.Conn().RemotePeer() != p {
			return
		}
		st.SetReadDeadline(time.Now().Add(rendezvous.AuthTimeout))
		var b [8]byte
		if _, err := io.ReadFull(st, b[:]); err != nil {
			return
		}
		current, n := stream()
		if binary.BigEndian.Uint64(b[:]) != n {
			return // about a stream this receiver has already left
		}
		s.log.Debugf("%s lost stream %d: rejoining", node.ShortID(p), n)
		if r, ok := current.(interface{ Reset() error }); ok {
			r.Reset()
		}
	})
	return func() { s.Host.RemoveStreamHandler(NudgeProtocol) }
}

// rejoinReceiver returns the receiver's way of reconnecting to p after a
// break: it drops the dead connection, looks for p's addresses again by
// the session's discovery methods on c's channel, and tries to reach p
// every second or so until window has passed, proving on each new stream
// that it is the peer of the session.
//
// While the transfer runs, a nudge from p about the current stream drops
// it (see NudgeProtocol). The returned stop ends that.
func (s *Session) rejoinReceiver(p *rendezvous.Peer, c code.Code, current pipe.Stream, path route.Path, window time.Duration) (reconnect func(context.Context) (pipe.Stream, error), stop func()) {
	peers := auth.Peers{Announcer: p.ID, Finder: s.Host.ID()}
	var mu sync.Mutex
	streams := uint64(1)
	stop = s.takeNudges(p.ID, func() (pipe.Stream, uint64) {
		mu.Lock()
		defer mu.Unlock()
		return current, streams
	})
	reconnect = func(ctx context.Context) (pipe.Stream, error) {
		ctx, cancel := context.WithTimeout(ctx, window)
		defer cancel()
		s.Host.Network().ClosePeer(p.ID) // a new stream must not take the dead connection
		go s.relearn(ctx, c, p.ID)
		var last error
		for {
			st, err := s.rejoinOnce(ctx, p, peers, path)
			if err == nil {
				mu.Lock()
				current = st
				streams++
				mu.Unlock()
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
	return reconnect, stop
}

// rejoinOnce dials p by every address known for it, with no dial backoff
// (the last failures were the break itself), and proves the session on a
// new stream.
func (s *Session) rejoinOnce(ctx context.Context, p *rendezvous.Peer, peers auth.Peers, path route.Path) (pipe.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, rejoinAttempt+4*p.RTT)
	defer cancel()
	// The data went through a relay with the user's consent: it may again.
	st, err := s.openTo(ctx, p.ID, RejoinProtocol, path.Kind == route.Relayed)
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

// openTo connects to p, directly unless relayed allows a relay, and opens
// a stream of proto on that connection.
func (s *Session) openTo(ctx context.Context, p peer.ID, proto protocol.ID, relayed bool) (network.Stream, error) {
	dctx := network.WithForceDirectDial(ctx, "pcp "+string(proto))
	if relayed {
		dctx = network.WithAllowLimitedConn(ctx, "pcp "+string(proto))
	}
	if err := node.Connect(dctx, s.Host, peer.AddrInfo{ID: p}); err != nil {
		return nil, err
	}
	return node.NewStream(dctx, s.Host, p, proto)
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
