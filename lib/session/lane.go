package session

import (
	"context"
	"net"

	"github.com/libp2p/go-libp2p/core/network"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/pcp-dev/pcp/lib/lane"
	"github.com/pcp-dev/pcp/lib/node"
	"github.com/pcp-dev/pcp/lib/pipe"
)

// laneEnds returns the IP addresses of the two ends of c if a lane may go
// beside it: a direct TCP connection within this machine or the local
// network, where the CPU rather than the link limits a transfer (and a new
// connection from one end to the other goes through as the first did).
// Link-local addresses are left out: dialling one needs its interface.
func laneEnds(c network.Conn) (local, remote net.IP, ok bool) {
	l, err := manet.ToNetAddr(c.LocalMultiaddr())
	if err != nil {
		return nil, nil, false
	}
	r, err := manet.ToNetAddr(c.RemoteMultiaddr())
	if err != nil {
		return nil, nil, false
	}
	lt, lok := l.(*net.TCPAddr)
	rt, rok := r.(*net.TCPAddr)
	if !lok || !rok || !node.IsLocal(rt) || rt.IP.IsLinkLocalUnicast() {
		return nil, nil, false
	}
	return lt.IP, rt.IP, true
}

// offerLanes lets the receiver of a pipe over stream offer the sender a
// lane, when one may go beside the stream's connection.
func (s *Session) offerLanes(opt *pipe.Options, stream network.Stream) {
	local, remote, ok := laneEnds(stream.Conn())
	if !ok {
		return
	}
	opt.Lane = func() (pipe.LaneListener, error) {
		l, err := lane.Listen(local)
		if err != nil {
			s.log.Debugf("no lane for the data: %v", err)
			return nil, err
		}
		return &laneListener{l: l, s: s, from: remote}, nil
	}
}

// laneListener is a lane.Listener as the pipe takes it.
type laneListener struct {
	l    *lane.Listener
	s    *Session
	from net.IP // the sender's address of the stream's connection
}

func (l *laneListener) Offer() []byte { return l.l.Offer().Marshal() }

func (l *laneListener) Close() error { return l.l.Close() }

func (l *laneListener) Accept(ctx context.Context) (pipe.Stream, error) {
	c, err := l.l.Accept(ctx, l.from)
	if err != nil {
		l.s.log.Debugf("the sender's lane did not come: %v", err)
		return nil, err
	}
	l.s.log.Debugf("data over a lane of its own, from %s", c.RemoteAddr())
	return c, nil
}

// dialLanes lets the sender of a pipe over stream take the receiver's lane
// offer, when one may go beside the stream's connection.
func (s *Session) dialLanes(opt *pipe.Options, stream network.Stream) {
	local, remote, ok := laneEnds(stream.Conn())
	if !ok {
		return
	}
	opt.DialLane = func(ctx context.Context, offer []byte, announce func() error) (pipe.Stream, error) {
		o, err := lane.ParseOffer(offer)
		if err != nil {
			s.log.Debugf("no lane for the data: %v", err)
			return nil, err
		}
		dctx, cancel := context.WithTimeout(ctx, pipe.LaneDial)
		c, err := lane.Dial(dctx, local, remote, o)
		cancel()
		if err != nil {
			s.log.Debugf("no lane for the data: %v", err)
			return nil, err
		}
		if err := announce(); err != nil {
			c.Close()
			return nil, err
		}
		if err := c.Greet(ctx); err != nil {
			c.Close()
			s.log.Debugf("the lane failed: %v", err)
			return nil, err
		}
		s.log.Debugf("data over a lane of its own, to %s", c.RemoteAddr())
		return c, nil
	}
}
