package pipe

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pcp-dev/pcp/lib/frame"
)

// Stream is what the pipe needs of a connection. A libp2p network.Stream
// and a *net.TCPConn both are one.
type Stream interface {
	io.Reader
	io.Writer
	CloseWrite() error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// Timing sets the pipe's liveness rules.
type Timing struct {
	// Heartbeat is how long a side may stay silent before it sends a heartbeat.
	Heartbeat time.Duration
	// PeerTimeout is how long without any frame means the peer is gone.
	PeerTimeout time.Duration
	// CloseWait is how long the receiver waits for the sender's EOF after ACK.
	CloseWait time.Duration
	// AbortWait bounds the write of an ERROR frame when aborting.
	AbortWait time.Duration
	// Stall is how long the sender waits on a receiver that is still
	// there (its heartbeats arrive) but takes no data, or does not
	// acknowledge the data after the end frame.
	Stall time.Duration
	// Decision is how long the sender waits for the receiver to accept or
	// refuse the header (a person may be asked).
	Decision time.Duration
	// LaneWait bounds the taking of a lane: on the receiver's side from
	// the sender's LANE frame, on the sender's from the ACCEPT, until the
	// two have greeted each other on it.
	LaneWait time.Duration
}

// DefaultTiming is the timing of the protocol: heartbeats after 2 s of
// silence, the peer gone after 10 s without a frame, stalled after 60 s
// without taking data, 5 minutes to decide on the header, 5 s for the
// sender's lane to come.
func DefaultTiming() Timing {
	return Timing{
		Heartbeat: 2 * time.Second, PeerTimeout: 10 * time.Second, CloseWait: 5 * time.Second, AbortWait: time.Second,
		Stall: time.Minute, Decision: 5 * time.Minute, LaneWait: 5 * time.Second,
	}
}

func (t Timing) orDefault() Timing {
	d := DefaultTiming()
	if t.Heartbeat <= 0 {
		t.Heartbeat = d.Heartbeat
	}
	if t.PeerTimeout <= 0 {
		t.PeerTimeout = d.PeerTimeout
	}
	if t.CloseWait <= 0 {
		t.CloseWait = d.CloseWait
	}
	if t.AbortWait <= 0 {
		t.AbortWait = d.AbortWait
	}
	if t.Stall <= 0 {
		t.Stall = d.Stall
	}
	if t.Decision <= 0 {
		t.Decision = d.Decision
	}
	if t.LaneWait <= 0 {
		t.LaneWait = d.LaneWait
	}
	return t
}

// conn is one side of a pipe stream: frame I/O with a write lock shared by
// the data path and the heartbeat, read deadlines for liveness, and the
// cancellation of blocked I/O when the context ends.
type conn struct {
	s      Stream
	r      *frame.Reader
	timing Timing
	ctx    context.Context

	mu        sync.Mutex
	lastWrite time.Time

	// readDeadline is the read deadline next set, zero when something
	// else set one since.
	readDeadline time.Time

	// deadlines guards writeDeadline and unblocked: once a write has been
	// unblocked (the context ended, the peer failed), no later extension
	// may block it again.
	deadlines     sync.Mutex
	writeDeadline time.Time
	unblocked     bool

	// reader, if set, is closed when another goroutine that reads the
	// stream has finished: then only that goroutine may read.
	reader <-chan struct{}
}

// awaitPeerClose waits up to d for the peer to close its side, reading
// itself unless another goroutine already reads the stream.
func (c *conn) awaitPeerClose(d time.Duration) {
	if c.reader == nil {
		waitEOF(c, d)
		return
	}
	select {
	case <-c.reader:
	case <-time.After(d):
	}
}

func newConn(ctx context.Context, s Stream, t Timing) *conn {
	return &conn{s: s, r: frame.NewReader(s, frame.MaxPayload), timing: t.orDefault(), ctx: ctx, lastWrite: time.Now()}
}

// start begins the heartbeat and the watch on ctx; the returned func stops
// both (once, however often it is called).
func (c *conn) start() (stop func()) {
	done := make(chan struct{})
	go c.heartbeat(done)
	stopWatch := context.AfterFunc(c.ctx, func() {
		// Unblock a read at once; give a blocked write the time an abort may take.
		c.s.SetReadDeadline(time.Now())
		c.unblockWrites(c.timing.AbortWait)
	})
	return sync.OnceFunc(func() {
		close(done)
		stopWatch()
	})
}

func (c *conn) heartbeat(done <-chan struct{}) {
	tick := time.NewTicker(c.timing.Heartbeat / 4)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		// A write in progress counts as activity: don't queue behind it.
		if !c.mu.TryLock() {
			continue
		}
		if time.Since(c.lastWrite) >= c.timing.Heartbeat {
			c.renewWriteDeadline()
			if err := frame.Write(c.s, frame.Heartbeat, nil); err != nil {
				c.mu.Unlock()
				return
			}
			c.lastWrite = time.Now()
		}
		c.mu.Unlock()
	}
}

// send writes one frame.
func (c *conn) send(t frame.Type, payload []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := frame.Write(c.s, t, payload)
	c.lastWrite = time.Now()
	return err
}

// sendFramed writes b, which already holds a whole frame. A stream that
// keeps the parts of a write apart (a lane) gets the header and the
// payload as two, so that the receiver can read the payload straight
// into its buffer.
func (c *conn) sendFramed(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	if s, ok := c.s.(splitWriter); ok {
		_, err = s.WriteSplit(b[:frame.HeaderSize], b[frame.HeaderSize:])
	} else {
		_, err = c.s.Write(b)
	}
	c.lastWrite = time.Now()
	return err
}

// splitWriter is a Stream that writes each part as a unit of its own
// (lib/lane: a record each).
type splitWriter interface {
	WriteSplit(parts ...[]byte) (int, error)
}

// unblockWrites makes a blocked write fail after d, and later extensions
// of the write deadline do nothing.
func (c *conn) unblockWrites(d time.Duration) {
	c.deadlines.Lock()
	defer c.deadlines.Unlock()
	c.unblocked = true
	c.s.SetWriteDeadline(time.Now().Add(d))
}

// extendWriteDeadline makes sure that a data write fails only once it has
// waited Stall for the receiver to take data, and at most an eighth of it
// later. Like the read deadline, it moves only when less than Stall is left.
func (c *conn) extendWriteDeadline() { c.moveWriteDeadline(true) }

// renewWriteDeadline extends a write deadline that extendWriteDeadline set
// (a sender's) and sets none: heartbeats call it, since an idle input is
// legal, and a heartbeat after a long idle spell must not find an old
// deadline passed.
func (c *conn) renewWriteDeadline() { c.moveWriteDeadline(false) }

func (c *conn) moveWriteDeadline(set bool) {
	c.deadlines.Lock()
	defer c.deadlines.Unlock()
	now := time.Now()
	if c.unblocked || (!set && c.writeDeadline.IsZero()) || c.writeDeadline.Sub(now) >= c.timing.Stall {
		return
	}
	c.writeDeadline = now.Add(c.timing.Stall + c.timing.Stall/8)
	c.s.SetWriteDeadline(c.writeDeadline)
}

// extendReadDeadline makes sure that a read fails only after PeerTimeout
// without any frame, and at most an eighth of it later. The deadline moves
// only when less than PeerTimeout is left: a new deadline is a new timer in
// the muxer, which for each of 80,000 frames of a 20 GiB stream made
// garbage for nothing.
func (c *conn) extendReadDeadline() {
	now := time.Now()
	if c.readDeadline.Sub(now) >= c.timing.PeerTimeout {
		return
	}
	c.readDeadline = now.Add(c.timing.PeerTimeout + c.timing.PeerTimeout/8)
	c.s.SetReadDeadline(c.readDeadline)
}

// next reads the next frame that is not a heartbeat. It fails with
// ErrPeerGone when no frame at all arrives within PeerTimeout, and with the
// context's error once the context has ended.
func (c *conn) next() (frame.Type, []byte, error) { return c.nextBefore(time.Time{}) }

// nextBefore is next, but it also fails, with errNoStep, once limit (if not
// zero) has passed while only heartbeats arrived.
func (c *conn) nextBefore(limit time.Time) (frame.Type, []byte, error) {
	for {
		if err := c.ctx.Err(); err != nil {
			return 0, nil, err
		}
		if !limit.IsZero() && time.Now().After(limit) {
			return 0, nil, errNoStep
		}
		c.extendReadDeadline()
		if c.ctx.Err() != nil { // the watch may have fired before the line above
			c.s.SetReadDeadline(time.Now())
		}
		t, p, err := c.r.Next()
		if err != nil {
			if c.ctx.Err() != nil {
				return 0, nil, c.ctx.Err()
			}
			if isTimeout(err) {
				return 0, nil, ErrPeerGone
			}
			if errors.Is(err, frame.ErrTooLarge) {
				return 0, nil, &ProtocolError{Reason: err.Error()}
			}
			return 0, nil, err
		}
		if t == frame.Heartbeat {
			continue
		}
		if t == frame.Error {
			return 0, nil, &PeerError{Message: frame.Text(p)}
		}
		return t, p, nil
	}
}

// abort ends the stream after a local failure: an ERROR frame for the peer,
// written within AbortWait, else a reset. After a peer's failure only the
// reset is left to do.
func (c *conn) abort(cause error) {
	switch {
	case errors.As(cause, new(*rejected)):
		return // the REJECT frame said it all
	case errors.As(cause, new(*RejectedError)):
		c.s.CloseWrite() // the receiver waits for this before it closes
		return
	}
	var pe *PeerError
	if !errors.Is(cause, ErrPeerGone) && !errors.As(cause, &pe) && !errors.As(cause, new(*ProtocolError)) {
		msg := cause.Error()
		if errors.Is(cause, context.Canceled) {
			msg = "interrupted"
		}
		c.s.SetWriteDeadline(time.Now().Add(c.timing.AbortWait))
		if c.send(frame.Error, []byte(msg)) == nil && c.s.CloseWrite() == nil {
			// Give the peer a moment to read it: closing our host at once
			// could reset the connection before the ERROR is read.
			c.awaitPeerClose(c.timing.AbortWait)
			return
		}
	}
	reset(c.s)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
