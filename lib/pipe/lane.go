package pipe

import (
	"context"
	"fmt"
	"time"

	"github.com/pcp-dev/pcp/lib/frame"
)

// A LaneListener is a receiver's data path of its own beside the stream
// (lib/lane: a TCP connection of its own on the local network), waiting for
// the sender to dial it.
type LaneListener interface {
	// Offer is what the sender needs to dial the lane.
	Offer() []byte
	// Accept waits until ctx ends for the sender's lane from the address
	// it named, proven to come from the sender.
	Accept(ctx context.Context, from []byte) (Stream, error)
	// Close stops waiting; a lane already accepted stays.
	Close() error
}

// LaneDial bounds the sender's dial of a lane: on the local network it
// takes a round trip, and a sender that cannot reach the lane in time
// sends over the stream.
const LaneDial = time.Second

// takeLane dials the receiver's lane offer and, once the lane is up, tells
// the receiver on the stream (a LANE frame with the lane's address at the
// sender, the stream's last frame) and goes on over the lane. Without a
// lane the data goes over the stream.
func (s *sender) takeLane(offer []byte) {
	ctx, cancel := context.WithTimeout(s.ctx, LaneDial)
	defer cancel()
	ls, from, err := s.opt.DialLane(ctx, offer)
	if err != nil {
		return
	}
	if err := s.c.send(frame.Lane, from); err != nil {
		// The stream broke: the first write of the data finds out, and
		// resumes over a new one.
		reset(ls)
		return
	}
	// The stream stays open, idle, until the transfer ends.
	s.stop()
	s.use(newConn(s.ctx, ls, s.opt.Timing))
}

// offerLane opens the receiver's lane and offers it to the sender, if
// both sides take lanes; else it returns nil, and the data comes over the
// stream.
func offerLane(c *conn, h Header, opt Options) (LaneListener, error) {
	if !h.Lane || opt.Lane == nil {
		return nil, nil
	}
	l, err := opt.Lane()
	if err != nil || l == nil {
		return nil, nil
	}
	if err := c.send(frame.Lane, l.Offer()); err != nil {
		l.Close()
		return nil, fmt.Errorf("send lane offer: %w", err)
	}
	return l, nil
}

// acceptLane waits up to wait for the sender's lane from the address in
// its LANE frame, and stops listening.
func acceptLane(parent context.Context, l LaneListener, from []byte, wait time.Duration) (Stream, error) {
	defer l.Close()
	ctx, cancel := context.WithTimeout(parent, wait)
	defer cancel()
	s, err := l.Accept(ctx, from)
	switch {
	case err == nil:
		return s, nil
	case parent.Err() != nil:
		return nil, parent.Err()
	}
	// Not the deadline's error: a lane that did not come is a break of
	// the transfer's path, which a new stream mends.
	return nil, fmt.Errorf("take the sender's lane: %v", err)
}
