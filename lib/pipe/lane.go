package pipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
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
// frame there), watches the stream from then on, and goes on over the
// lane. A lane that cannot be dialled leaves the data on the stream. One
// that fails after the receiver was told is a break, which the data phase
// mends as any other, unless the receiver failed meanwhile and said so on
// the stream: then takeLane returns its error. A sender interrupted
// meanwhile stays on the stream, where the receiver still watches for its
// ERROR.
func (s *sender) takeLane(offer []byte) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.c.timing.LaneWait)
	defer cancel()
	var w *laneWatch
	ls, err := s.opt.DialLane(ctx, offer, func() error {
		if err := s.c.send(frame.Lane, nil); err != nil {
			return err
		}
		s.stop() // nothing more goes on the stream: no heartbeats, no watch on ctx
		w = watchStream(s.c)
		return nil
	})
	switch {
	case w == nil:
		if err == nil {
			reset(ls) // taken without a word to the receiver: not used
		}
		return nil
	case s.ctx.Err() != nil:
		if err == nil {
			reset(ls)
		}
		return nil
	case err != nil:
		if pe := w.peerError(s.c.timing.AbortWait); pe != nil {
			return pe
		}
		ls = brokenLane{err}
	case !w.take(ls):
		reset(ls)
		if pe := w.peerError(0); pe != nil {
			return pe
		}
		ls = brokenLane{errors.New("the stream ended as the lane came")}
	}
	s.lane = w
	s.use(newConn(s.ctx, ls, s.opt.Timing))
	return nil
}

// laneWatch ties a lane to the stream it replaced, which stays open and
// idle until the transfer ends: when the stream is reset (by the session's
// rejoin or nudge, or with its connection) the lane is reset too, so that
// whatever waits on the lane learns at once. Nothing comes on the stream
// after the LANE frame but the peer's last heartbeats there, its end of
// stream when its transfer is over (which leaves the lane alone: the ACK
// and the closing records on the lane may still be on their way), and,
// from a peer that failed before the lane was up, an ERROR. The pipe
// closes the lane when the transfer ends.
type laneWatch struct {
	mu    sync.Mutex
	lane  Stream
	ended error         // why the stream ended, once it has
	done  chan struct{} // closed when it ended
}

// watchStream starts watching c's stream, which the pipe reads no more:
// from now on c's reader is the watch.
func watchStream(c *conn) *laneWatch {
	w := &laneWatch{done: make(chan struct{})}
	c.reader = w.done
	c.s.SetReadDeadline(time.Time{}) // the pipe's, for frames it no longer reads
	go func() {
		err := drainFrames(c)
		w.mu.Lock()
		defer w.mu.Unlock()
		w.ended = err
		if w.lane != nil && !errors.Is(err, io.EOF) {
			reset(w.lane)
		}
		close(w.done)
	}()
	return w
}

// take ties lane s to the stream; false once the stream has ended.
func (w *laneWatch) take(s Stream) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended != nil {
		return false
	}
	w.lane = s
	return true
}

// peerError waits up to d for the stream to end, and returns the peer's
// ERROR if that is how it ended: a peer that failed says so on the stream
// while its lane is cut, and the cut may come first.
func (w *laneWatch) peerError(d time.Duration) *PeerError {
	select {
	case <-w.done:
	case <-time.After(d):
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var pe *PeerError
	if errors.As(w.ended, &pe) {
		return pe
	}
	return nil
}

// close ends the lane: the transfer is over.
func (w *laneWatch) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lane != nil {
		reset(w.lane)
	}
}

// drainFrames reads c's frames until its stream ends, or an ERROR frame
// comes: then it returns the peer's message.
func drainFrames(c *conn) error {
	for {
		t, p, err := c.r.Next()
		switch {
		case err != nil:
			return err
		case t == frame.Error:
			return &PeerError{Message: frame.Text(p)}
		}
	}
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

// acceptLane waits up to wait for the sender's lane, ties it to the
// stream c, and stops listening. A stream that ends meanwhile (an ERROR
// from a sender that failed, a reset) ends the wait.
func acceptLane(parent context.Context, l LaneListener, c *conn, wait time.Duration) (Stream, *laneWatch, error) {
	defer l.Close()
	w := watchStream(c)
	ctx, cancel := context.WithTimeout(parent, wait)
	defer cancel()
	go func() {
		select {
		case <-w.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	s, err := l.Accept(ctx)
	if err == nil {
		if w.take(s) {
			return s, w, nil
		}
		reset(s)
		err = errors.New("the stream ended as the lane came")
	}
	if parent.Err() != nil {
		return nil, w, parent.Err()
	}
	if pe := w.peerError(c.timing.AbortWait); pe != nil {
		return nil, w, pe
	}
	// Not the deadline's error: a lane that did not come is a break of
	// the transfer's path, which a new stream mends.
	return nil, w, fmt.Errorf("take the sender's lane: %v", err)
}
