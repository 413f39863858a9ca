package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/pcp-dev/pcp/lib/frame"
)

// ErrNotRejoined reports a new stream whose peer could not prove that it
// is the peer of the earlier session: it does not hold the session's Secret.
var ErrNotRejoined = errors.New("the peer did not prove that it is the peer of the session")

// nonceSize is the size of each side's fresh random challenge.
const nonceSize = 32

// The rejoin proof lets two peers that authenticated once (and so share a
// Secret) prove it to each other on a new stream, without a code and
// without counting against the guess budget:
//
//	finder:    REJOIN  nf                  (32 random bytes)
//	announcer: MAC     na ‖ MAC(announcer) (32 random bytes, 32-byte MAC)
//	finder:    MAC     MAC(finder)
//
// with MAC(role) = HMAC-SHA256(Secret, lp("pcp/1 rejoin") ‖ lp(role) ‖
// lp(announcer ID) ‖ lp(finder ID) ‖ lp(nf) ‖ lp(na)). Each MAC covers
// both sides' fresh nonces, so a recorded exchange proves nothing on
// another stream; and it covers the two peer IDs that the stream's secure
// channel authenticated, so a third party cannot relay it between two
// connections of its own.

// RejoinFinder proves from the dialling side that this stream joins the
// peers of the session that left secret, and checks the announcer's proof
// first. pipelined, if not empty, is written with the finder's MAC: frames
// that come next, sent to a peer that has already proven itself.
func RejoinFinder(rw io.ReadWriter, secret Secret, peers Peers, pipelined []byte) error {
	nf := make([]byte, nonceSize)
	rand.Read(nf)
	if err := frame.Write(rw, frame.Rejoin, nf); err != nil {
		return fmt.Errorf("send rejoin: %w", err)
	}
	theirs, err := expect(frame.NewReader(rw, MaxMessage), frame.MAC)
	if err != nil {
		return err
	}
	if len(theirs) != nonceSize+32 {
		return protocolErrorf("rejoin answer of %d bytes", len(theirs))
	}
	na := theirs[:nonceSize]
	if !hmac.Equal(theirs[nonceSize:], rejoinMAC(secret, announcerLabel, peers, nf, na)) {
		return ErrNotRejoined
	}
	mine := frame.Append(nil, frame.MAC, rejoinMAC(secret, finderLabel, peers, nf, na))
	if _, err := rw.Write(append(mine, pipelined...)); err != nil {
		return fmt.Errorf("send rejoin mac: %w", err)
	}
	return nil
}

// RejoinAnnouncer answers a finder's rejoin on the accepting side. It
// returns nil only when the finder proved that it holds secret; on a wrong
// MAC it tells the finder AUTH_FAILED and returns ErrNotRejoined.
func RejoinAnnouncer(rw io.ReadWriter, secret Secret, peers Peers) error {
	r := frame.NewReader(rw, MaxMessage)
	nf, err := expect(r, frame.Rejoin)
	if err != nil {
		return err
	}
	if len(nf) != nonceSize {
		return protocolErrorf("rejoin nonce of %d bytes", len(nf))
	}
	nf = append([]byte(nil), nf...) // the reader reuses its buffer
	na := make([]byte, nonceSize)
	rand.Read(na)
	answer := append(na[:nonceSize:nonceSize], rejoinMAC(secret, announcerLabel, peers, nf, na)...)
	if err := frame.Write(rw, frame.MAC, answer); err != nil {
		return fmt.Errorf("send rejoin answer: %w", err)
	}
	theirs, err := expect(r, frame.MAC)
	if err != nil {
		return err
	}
	if !hmac.Equal(theirs, rejoinMAC(secret, finderLabel, peers, nf, na)) {
		_ = frame.Write(rw, frame.AuthFailed, nil)
		return ErrNotRejoined
	}
	return nil
}

func rejoinMAC(secret Secret, role string, peers Peers, nf, na []byte) []byte {
	return macOf(secret, "pcp/1 rejoin", role, string(peers.Announcer), string(peers.Finder), string(nf), string(na))
}
