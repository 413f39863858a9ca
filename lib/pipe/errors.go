package pipe

import (
	"errors"
	"fmt"
	"time"
)

// ErrPeerGone reports a peer that sent no frame, not even a heartbeat,
// within the peer timeout.
var ErrPeerGone = errors.New("the peer stopped answering")

// StalledError reports a receiver that is still there (its heartbeats
// arrive) but took no step for the time the protocol allows: unlike a peer
// that is gone, it may be blocked by its own output, or by a person.
type StalledError struct {
	// Step is what the receiver did not do, as "has taken no data".
	Step string
	For  time.Duration
}

func (e *StalledError) Error() string {
	return fmt.Sprintf("the receiver is still connected but %s for %v", e.Step, e.For)
}

// errNoStep is what conn.nextBefore returns when its limit passed.
var errNoStep = errors.New("no step before the limit")

// PeerError is an ERROR frame from the peer: it aborted the transfer.
type PeerError struct{ Message string }

func (e *PeerError) Error() string { return "the peer aborted: " + e.Message }

// RejectedError reports a header that the receiver refused.
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string {
	if e.Reason == "" {
		return "the receiver refused the transfer"
	}
	return "the receiver refused the transfer: " + e.Reason
}

// ProtocolError reports a frame that breaks the pipe protocol.
type ProtocolError struct{ Reason string }

func (e *ProtocolError) Error() string { return "pipe protocol: " + e.Reason }

func protocolErrorf(format string, args ...any) error {
	return &ProtocolError{Reason: fmt.Sprintf(format, args...)}
}

// IntegrityError reports data that cannot be trusted to be complete: a
// stream that ended without a valid end frame, or a digest or count that does
// not match.
type IntegrityError struct {
	Reason string
	Err    error // the cause, if any
}

func (e *IntegrityError) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Err.Error()
	}
	return e.Reason
}

func (e *IntegrityError) Unwrap() error { return e.Err }

// LostError reports a connection that broke during the data phase and was
// not regained: Cause is how the stream ended, Reconnect why no new one
// came. It unwraps to Cause, so a truncation is still an *IntegrityError.
type LostError struct {
	Cause     error
	Reconnect error
}

func (e *LostError) Error() string { return e.Cause.Error() + "; " + e.Reconnect.Error() }

func (e *LostError) Unwrap() error { return e.Cause }
