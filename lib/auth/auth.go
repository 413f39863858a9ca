// Package auth proves to both ends of a stream that they know the same code,
// and binds that proof to the two libp2p peer IDs of the stream's secure
// channel.
//
// The finder (the side that dialled) runs Finder, the announcer runs
// Announcer. The exchange is: the finder's PAKE message X, the announcer's Y,
// the finder's MAC, then the announcer's MAC or AUTH_FAILED. The PAKE is
// github.com/schollz/pake/v3 on curve P-256; every PAKE message is decoded and
// checked here before pake sees it, because pake panics on some malformed
// messages.
package auth

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/schollz/pake/v3"

	"github.com/pcp-dev/pcp/lib/frame"
)

// Curve is the only PAKE curve pcp uses. Never ed25519: pake's ed25519
// points have publicly known discrete logs, so one recorded session would
// let anyone brute-force the code offline.
const Curve = "p256"

// MaxMessage bounds a PAKE or MAC message.
const MaxMessage = 2 << 10

// ErrWrongCode reports a failed key confirmation: the peer does not know the
// same code, or someone interfered with the exchange. Each one is a guess
// that counts against the guess budget.
var ErrWrongCode = errors.New("the code did not match")

// ProtocolError reports a peer that broke the authentication protocol.
type ProtocolError struct{ Reason string }

func (e *ProtocolError) Error() string { return "authentication protocol: " + e.Reason }

func protocolErrorf(format string, args ...any) error {
	return &ProtocolError{Reason: fmt.Sprintf(format, args...)}
}

// RefusedError reports an announcer that refused to authenticate at all: it
// has stopped accepting (its guess budget is spent).
type RefusedError struct{ Reason string }

// Error quotes the reason: it comes from a peer not proven to know the code.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused to authenticate, saying %q", e.Reason)
}

// Refuse tells a finder, in place of the announcer's PAKE message, that it
// will not be authenticated.
func Refuse(w io.Writer, reason string) error { return frame.Write(w, frame.Reject, []byte(reason)) }

// Peers names the two ends of an authenticated stream. Both IDs come from the
// libp2p connection (host.ID() and Conn().RemotePeer()), never from a message.
type Peers struct {
	Announcer peer.ID
	Finder    peer.ID
}

// Finder authenticates the stream from the dialling side (PAKE role 0).
// It returns nil only when the announcer proved it knows password.
//
// pipelined, if not empty, is written together with the finder's MAC,
// before the announcer has proven anything: frames that the protocol sends
// next and that tell a peer without the code nothing (the finder's
// request), so that they save a round trip. Finder returns the round trip
// of its MAC and the announcer's answer.
func Finder(rw io.ReadWriter, password []byte, peers Peers, pipelined []byte) (Secret, time.Duration, error) {
	p, err := pake.InitCurve(password, 0, Curve)
	if err != nil {
		return nil, 0, fmt.Errorf("pake init: %w", err)
	}
	if err := frame.Write(rw, frame.PAKE, p.Bytes()); err != nil {
		return nil, 0, fmt.Errorf("send pake message: %w", err)
	}
	r := frame.NewReader(rw, MaxMessage)
	t, msg, err := r.Next()
	switch {
	case err != nil:
		return nil, 0, readError(err)
	case t == frame.Reject:
		return nil, 0, &RefusedError{Reason: frame.Text(msg)}
	case t != frame.PAKE:
		return nil, 0, protocolErrorf("got %v frame, want PAKE", t)
	}
	if err := update(p, msg, 1); err != nil {
		return nil, 0, err
	}
	k, secret, err := derive(p)
	if err != nil {
		return nil, 0, err
	}
	sent := time.Now()
	if _, err := rw.Write(append(frame.Append(nil, frame.MAC, k.mac(finderLabel, peers)), pipelined...)); err != nil {
		return nil, 0, fmt.Errorf("send mac: %w", err)
	}
	t, payload, err := r.Next()
	rtt := time.Since(sent)
	if err != nil {
		return nil, 0, readError(err)
	}
	switch t {
	case frame.AuthFailed:
		return nil, 0, ErrWrongCode
	case frame.MAC:
		if !hmac.Equal(payload, k.mac(announcerLabel, peers)) {
			return nil, 0, ErrWrongCode
		}
		return secret, rtt, nil
	}
	return nil, 0, protocolErrorf("unexpected %v frame", t)
}

// Announcer authenticates the stream from the accepting side (PAKE role 1):
// ReadFinderMessage, then AnswerFinder.
func Announcer(rw io.ReadWriter, password []byte, peers Peers) (Secret, error) {
	msg, err := ReadFinderMessage(rw)
	if err != nil {
		return nil, err
	}
	return AnswerFinder(rw, msg, password, peers)
}

// ReadFinderMessage reads the finder's PAKE message, the first frame of an
// authentication. It costs the announcer nothing yet: the guess begins
// with AnswerFinder.
func ReadFinderMessage(r io.Reader) ([]byte, error) {
	return expect(frame.NewReader(r, MaxMessage), frame.PAKE)
}

// AnswerFinder goes on from the finder's PAKE message msg (from
// ReadFinderMessage) on the accepting side (PAKE role 1). It returns nil
// the secret of the session only when the finder proved it knows password;
// on a wrong MAC it tells the finder AUTH_FAILED and returns ErrWrongCode.
func AnswerFinder(rw io.ReadWriter, msg, password []byte, peers Peers) (Secret, error) {
	r := frame.NewReader(rw, MaxMessage)
	p, err := pake.InitCurve(password, 1, Curve)
	if err != nil {
		return nil, fmt.Errorf("pake init: %w", err)
	}
	if err := update(p, msg, 0); err != nil {
		return nil, err
	}
	if err := frame.Write(rw, frame.PAKE, p.Bytes()); err != nil {
		return nil, fmt.Errorf("send pake message: %w", err)
	}
	k, secret, err := derive(p)
	if err != nil {
		return nil, err
	}
	theirs, err := expect(r, frame.MAC)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(theirs, k.mac(finderLabel, peers)) {
		// Best effort: the finder learns nothing more from this than from silence.
		_ = frame.Write(rw, frame.AuthFailed, nil)
		return nil, ErrWrongCode
	}
	if err := frame.Write(rw, frame.MAC, k.mac(announcerLabel, peers)); err != nil {
		return nil, fmt.Errorf("send mac: %w", err)
	}
	return secret, nil
}

// expect reads one frame of type want.
func expect(r *frame.Reader, want frame.Type) ([]byte, error) {
	t, payload, err := r.Next()
	if err != nil {
		return nil, readError(err)
	}
	if t != want {
		return nil, protocolErrorf("got %v frame, want %v", t, want)
	}
	return payload, nil
}

func readError(err error) error {
	if errors.Is(err, frame.ErrTooLarge) {
		return &ProtocolError{Reason: err.Error()}
	}
	return fmt.Errorf("read authentication message: %w", err)
}

const (
	finderLabel    = "finder"
	announcerLabel = "announcer"
)

type confirmKey []byte

// Secret is what an authentication leaves both sides besides the proof: a
// key derived from the PAKE session key, independent of the confirmation
// key, that later proves that a new stream joins the same two peers (see
// Rejoin). It never goes on the wire.
type Secret []byte

// derive derives the key-confirmation key and the session's Secret from
// the PAKE session key.
func derive(p *pake.Pake) (confirmKey, Secret, error) {
	sk, err := p.SessionKey()
	if err != nil {
		return nil, nil, fmt.Errorf("pake session key: %w", err)
	}
	k, err := hkdf.Key(sha256.New, sk, nil, "pcp/1 key confirmation", 32)
	if err != nil {
		return nil, nil, fmt.Errorf("derive confirmation key: %w", err)
	}
	s, err := hkdf.Key(sha256.New, sk, nil, "pcp/1 rejoin", 32)
	if err != nil {
		return nil, nil, fmt.Errorf("derive session secret: %w", err)
	}
	return k, s, nil
}

// mac is HMAC-SHA256(k, lp("pcp/1") ‖ lp(label) ‖ lp(announcer) ‖ lp(finder)),
// where lp is a 4-byte big-endian length followed by the bytes.
func (k confirmKey) mac(label string, peers Peers) []byte {
	return macOf(k, "pcp/1", label, string(peers.Announcer), string(peers.Finder))
}

// macOf is HMAC-SHA256 of the fields, each length-prefixed (4 bytes,
// big-endian), so that no two lists of fields hash the same.
func macOf(key []byte, fields ...string) []byte {
	h := hmac.New(sha256.New, key)
	for _, field := range fields {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(field)))
		h.Write(n[:])
		h.Write([]byte(field))
	}
	return h.Sum(nil)
}
