package pipe

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/pcp-dev/pcp/lib/frame"
)

// Receive reads the sender's header, asks opt.Accept, and writes the data to
// dst. It returns a nil error only after the END frame's count and digest
// matched, opt.Commit succeeded and the ACK was sent. A stream that ends
// early or does not match fails with an *IntegrityError.
//
// With opt.Reconnect set, a stream that breaks after the receiver accepted
// is replaced: on the new stream the receiver tells the sender how much it
// has written out (RESUME), and the data goes on from there.
func Receive(ctx context.Context, s Stream, dst io.Writer, opt Options) (n int64, err error) {
	c := newConn(ctx, s, opt.Timing)
	stop := c.start()
	var watch *laneWatch // the lane's, once the data comes over one
	defer func() {
		stop()
		if err != nil {
			c.abort(err)
		}
		watch.close()
	}()

	t, p, err := c.next()
	if err != nil {
		return 0, fmt.Errorf("wait for the sender's header: %w", err)
	}
	if t != frame.Header {
		return 0, protocolErrorf("got %v frame, want HEADER", t)
	}
	h, err := parseHeader(p)
	if err != nil {
		return 0, err
	}
	refuse := func(err error) error {
		c.send(frame.Reject, []byte(peerMessage(err)))
		c.s.CloseWrite()
		waitEOF(c, c.timing.AbortWait) // so that closing our host cannot drop the REJECT
		return &rejected{err}
	}
	if opt.Accept != nil {
		if err := opt.Accept(h); err != nil {
			return 0, refuse(err)
		}
	}
	if h.Holdings && opt.Holding != nil {
		holdings, err := opt.Holding(h)
		if err == nil && len(holdings) > MaxHoldings {
			err = fmt.Errorf("%d bytes of holdings to tell (limit %d)", len(holdings), MaxHoldings)
		}
		if err != nil {
			return 0, refuse(err)
		}
		for len(holdings) > 0 {
			part := holdings[:min(len(holdings), frame.MaxPayload)]
			if err := c.send(frame.Have, part); err != nil {
				return 0, fmt.Errorf("send holdings: %w", err)
			}
			holdings = holdings[len(part):]
		}
	}
	lane, err := offerLane(c, h, opt)
	if err != nil {
		return 0, err
	}
	defer func() {
		if lane != nil {
			lane.Close()
		}
	}()
	if err := c.send(frame.Accept, []byte(opt.Note)); err != nil {
		return 0, fmt.Errorf("send accept: %w", err)
	}
	if opt.Accepted != nil {
		opt.Accepted()
	}

	digest := newDigest()
	flowed := false        // whether any DATA frame came: only then is a lost stream a truncation
	committed := false     // whether opt.Commit ran: a resumed stream sends END again
	var reported time.Time // when the last RECEIVED frame went out
	var reportedN int64    // and the count it carried
	// rejoin replaces the stream after a break, if it can, and tells the
	// sender on the new one where the data goes on; else it returns why
	// the transfer failed.
	rejoin := func(err error, failed error) error {
		if opt.Reconnect == nil || !broken(ctx, err) {
			return failed
		}
		lost := time.Now()
		if lane != nil { // a resumed stream takes no lane
			lane.Close()
			lane = nil
		}
		stop()
		reset(c.s)
		if opt.Lost != nil {
			opt.Lost(failed)
		}
		ns, rerr := opt.Reconnect(ctx)
		if rerr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &LostError{Cause: failed, Reconnect: rerr}
		}
		c = newConn(ctx, ns, opt.Timing)
		stop = c.start()
		// A failed write here fails the next read too, which tries again.
		if c.send(frame.Resume, binary.BigEndian.AppendUint64(nil, uint64(n))) == nil && opt.Resumed != nil {
			opt.Resumed(time.Since(lost), n)
		}
		return nil
	}
	for {
		t, p, err := c.next()
		if err != nil {
			var pe *PeerError
			if errors.As(err, &pe) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return n, err
			}
			failed := fmt.Errorf("the stream ended before any data: %w", plainCut(err))
			if flowed {
				failed = &IntegrityError{Reason: fmt.Sprintf("the stream ended after %d bytes, before the end frame", n), Err: plainCut(err)}
			}
			if err := rejoin(err, failed); err != nil {
				return n, err
			}
			continue
		}
		switch t {
		case frame.Lane:
			if lane == nil || flowed || len(p) != 0 {
				return n, protocolErrorf("unexpected %v frame of %d bytes", t, len(p))
			}
			ls, w, err := acceptLane(ctx, lane, c, c.timing.LaneWait)
			lane, watch = nil, w
			if err != nil {
				// The sender went over to a lane this side could not take:
				// only a new stream mends that.
				if err := rejoin(err, err); err != nil {
					return n, err
				}
				continue
			}
			stop()
			c = newConn(ctx, ls, opt.Timing)
			stop = c.start()
		case frame.Data:
			if lane != nil {
				lane.Close() // the sender did not take it
				lane = nil
			}
			flowed = true
			digest.Write(p)
			if m, err := dst.Write(p); err != nil {
				return n + int64(m), newOutputError(err, n+int64(m))
			}
			n += int64(len(p))
			if opt.Progress != nil {
				opt.Progress(n)
			}
			if h.Progress && (n-reportedN >= ReportBytes || time.Since(reported) >= ProgressInterval) {
				reported, reportedN = time.Now(), n
				if err := c.send(frame.Received, binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
					// What was written out stays: a new stream goes on after it.
					if err := rejoin(err, fmt.Errorf("report progress: %w", err)); err != nil {
						return n, err
					}
				}
			}
		case frame.End:
			if err := checkEnd(p, n, digest.Sum(nil)); err != nil {
				return n, err
			}
			if opt.Commit != nil && !committed {
				if err := opt.Commit(); err != nil {
					return n, fmt.Errorf("store the data: %w", err)
				}
			}
			committed = true
			err := c.send(frame.Ack, nil)
			if err == nil {
				// A lane's writes are queued: the half-close after them
				// is where one that failed is found.
				err = c.s.CloseWrite()
			}
			if err != nil {
				// The data is stored: a new stream carries the ACK, after
				// the sender sends END again.
				if err := rejoin(err, fmt.Errorf("send ack: %w", err)); err != nil {
					return n, err
				}
				continue
			}
			waitEOF(c, c.timing.CloseWait)
			return n, nil
		default:
			return n, protocolErrorf("unexpected %v frame during data", t)
		}
	}
}

// ReportBytes is how much the receiver writes out, at most, between two
// reports of its count: the sender that can reconnect holds the data until
// it is reported.
const ReportBytes = 1 << 20

// ProgressInterval is how often, at most, the receiver reports what it has
// written out while the data flows.
const ProgressInterval = 50 * time.Millisecond

// PeerMessager is an Accept error that tells the sender something other
// than what the receiver prints: which side must act, in the sender's terms.
type PeerMessager interface {
	PeerMessage() string
}

// peerMessage is what the sender is told of an Accept error.
func peerMessage(err error) string {
	var m PeerMessager
	switch {
	case errors.As(err, &m):
		return m.PeerMessage()
	case errors.Is(err, context.Canceled):
		return "interrupted" // while deciding, not Go's "context canceled"
	}
	return err.Error()
}

// rejected is the receiver's own refusal; it unwraps to the Accept error.
type rejected struct{ err error }

func (r *rejected) Error() string { return "transfer refused: " + r.err.Error() }
func (r *rejected) Unwrap() error { return r.err }

func checkEnd(p []byte, n int64, digest []byte) error {
	if len(p) != endSize {
		return &IntegrityError{Reason: fmt.Sprintf("malformed end frame of %d bytes", len(p))}
	}
	if count := binary.BigEndian.Uint64(p[:8]); count != uint64(n) {
		return &IntegrityError{Reason: fmt.Sprintf("the sender sent %d bytes but %d arrived", count, n)}
	}
	if !bytes.Equal(p[8:], digest) {
		return &IntegrityError{Reason: "the digest of the data does not match the sender's"}
	}
	return nil
}

// waitEOF waits up to d for the peer to close its side. The receiver waits
// so that closing its host cannot drop the ACK still on the way; the sender
// then drains the receiver's own close.
func waitEOF(c *conn, d time.Duration) {
	c.readDeadline = time.Time{}
	c.s.SetReadDeadline(time.Now().Add(d))
	for {
		if _, _, err := c.r.Next(); err != nil {
			return
		}
	}
}

// outputError is a failed write of the receiver's output: never a reason
// to reconnect.
type outputError struct{ err error }

func (e *outputError) Error() string { return e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }

// newOutputError explains a failed write of the receiver's output, in words
// that the sender, told them as the reason, understands too.
func newOutputError(err error, n int64) error {
	switch {
	case errors.Is(err, syscall.EPIPE):
		return &outputError{fmt.Errorf("the receiver's output was closed after %d bytes: %w", n, err)}
	case errors.Is(err, syscall.ENOSPC):
		return &outputError{fmt.Errorf("the receiver's disk is full, after %d bytes of output: %w", n, err)}
	}
	return &outputError{fmt.Errorf("write output after %d bytes: %w", n, err)}
}

// plainCut says in a few words why the stream was cut, when the muxer's
// error is a reset (a chain such as "stream reset: stream reset: connection
// closed: read tcp4 …: connection reset by peer"); the chain stays
// reachable through errors.Unwrap.
func plainCut(err error) error {
	if errors.Is(err, network.ErrReset) {
		return &cutError{err}
	}
	return err
}

type cutError struct{ cause error }

func (e *cutError) Error() string {
	return "the sender's side cut it (the sender stopped, or the connection broke)"
}

func (e *cutError) Unwrap() error { return e.cause }
