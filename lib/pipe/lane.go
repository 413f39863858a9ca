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
	// Accept waits until ctx ends for the sender's lane, proven to come
	// from the sender.
	Accept(ctx context.Context) (Stream, error)
	// Close stops waiting; a lane already accepted stays.
	Close() error
}

// LaneDial bounds the sender's dial of a lane: on the local network it
// takes a round trip, and a sender that cannot reach the lane in time
// sends over the stream.
const LaneDial = time.Second

// takeLane takes the receiver's lane offer: once the lane is dialled, the
// sender tells the receiver so on the stream (an empty LANE frame, its last
// frame there) and goes on over the lane.
// A lane that cannot be dialled leaves the data on the stream; one that
// fails after the receiver was told is a break, which the data phase
// mends as any other.
func (s *sender) takeLane(offer []byte) {
	ctx, cancel := context.WithTimeout(s.ctx, s.c.timing.LaneWait)
	defer cancel()
	announced := false
	ls, err := s.opt.DialLane(ctx, offer, func() error {
		announced = true
		return s.c.send(frame.Lane, nil)
	})
	if err != nil {
		if !announced {
			return
		}
		ls = brokenLane{err}
	}
	// The stream stays open, idle, until the transfer ends.
	s.stop()
	s.use(newConn(s.ctx, ls, s.opt.Timing))
}

// brokenLane stands for a lane that failed after the receiver was told to
// take it: every read and write fails, as on a stream that broke.
type brokenLane struct{ err error }

func (b brokenLane) Read([]byte) (int, error)  { return 0, b.failed() }
func (b brokenLane) Write([]byte) (int, error) { return 0, b.failed() }
func (b brokenLane) CloseWrite() error         { return b.failed() }

func (brokenLane) SetReadDeadline(time.Time) error  { return nil }
func (brokenLane) SetWriteDeadline(time.Time) error { return nil }

// failed says why, without the chain: a lane whose greeting timed out is
// a break to mend, not the transfer's own deadline.
func (b brokenLane) failed() error { return fmt.Errorf("the lane failed: %v", b.err) }

// offerLane opens the receiver's lane and offers it to the sender, if
// both sides take lanes; else it returns nil, and the data comes over the
// stream.
func offerLane(c *conn, h Header, opt Options) (LaneListener, error) {
	if !h.Lane || opt.Lane == nil {
		return nil, nil
	}
	l, err := opt.Lane()
	if err != nil {
		if l != nil {
			l.Close()
		}
		return nil, nil
	}
	if l == nil {
		return nil, nil
	}
	if err := c.send(frame.Lane, l.Offer()); err != nil {
		l.Close()
		return nil, fmt.Errorf("send lane offer: %w", err)
	}
	return l, nil
}

// acceptLane waits up to wait for the sender's lane, and stops listening.
func acceptLane(parent context.Context, l LaneListener, wait time.Duration) (Stream, error) {
	defer l.Close()
	ctx, cancel := context.WithTimeout(parent, wait)
	defer cancel()
	s, err := l.Accept(ctx)
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
