// Package frame is pcp's wire framing: every message on a pcp stream is one
// frame of a type byte, a 4-byte big-endian payload length and the payload.
//
// The frame types of the whole protocol are listed here, so that one table
// describes the wire format (see man/pcp-protocol.7).
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode"
)

// Type identifies what a frame carries.
type Type byte

// The frame types. Authentication frames come first on a stream, then the
// finder's request, then the pipe.
const (
	// PAKE carries one PAKE message (role 0's X, then role 1's Y).
	PAKE Type = 'P'
	// MAC carries a key-confirmation MAC.
	MAC Type = 'M'
	// AuthFailed tells the finder that its MAC did not verify.
	AuthFailed Type = 'F'
	// Request is the finder's request after authentication: what it wants.
	Request Type = 'Q'
	// Header describes the data that follows (JSON).
	Header Type = 'H'
	// Accept is the receiver's consent to the header.
	Accept Type = 'A'
	// Reject is the receiver's refusal of the header, with a reason.
	Reject Type = 'R'
	// Data carries bytes of the stream.
	Data Type = 'D'
	// End closes the data: the byte count and the digest of all data.
	End Type = 'E'
	// Ack is the receiver's confirmation that the data was verified and stored.
	Ack Type = 'K'
	// Received is the receiver's count of the data it has written out so
	// far, sent at intervals while the data flows (8 bytes, big-endian).
	Received Type = 'C'
	// Error aborts the stream, with a message for the other side.
	Error Type = 'X'
	// Heartbeat keeps a quiet stream alive.
	Heartbeat Type = 'B'
	// Rejoin opens a new stream between two peers that authenticated
	// before, after their connection broke: the finder's fresh nonce.
	Rejoin Type = 'J'
	// Resume is the receiver's first frame on a rejoined stream: the count
	// of the bytes it has written out (8 bytes, big-endian), where the
	// sender goes on from.
	Resume Type = 'S'
	// Have carries part of what the receiver already holds of the offer
	// (pcp: its partial files), between the HEADER and the ACCEPT, when
	// the header says the sender takes it; the payloads of all HAVE
	// frames together make one message.
	Have Type = 'V'
	// Lane offers a data path of the pipe's own beside the stream (the
	// receiver, between the HEADER and the ACCEPT, when the header says
	// the sender takes one: a port and a key), and says that the sender
	// took it (the sender, right after the ACCEPT, empty: its last frame
	// on the stream).
	Lane Type = 'L'
)

// String names a frame type for error messages.
func (t Type) String() string {
	switch t {
	case PAKE:
		return "PAKE"
	case MAC:
		return "MAC"
	case AuthFailed:
		return "AUTH_FAILED"
	case Request:
		return "REQUEST"
	case Header:
		return "HEADER"
	case Accept:
		return "ACCEPT"
	case Reject:
		return "REJECT"
	case Data:
		return "DATA"
	case End:
		return "END"
	case Ack:
		return "ACK"
	case Received:
		return "RECEIVED"
	case Error:
		return "ERROR"
	case Heartbeat:
		return "HEARTBEAT"
	case Rejoin:
		return "REJOIN"
	case Resume:
		return "RESUME"
	case Have:
		return "HAVE"
	case Lane:
		return "LANE"
	}
	return fmt.Sprintf("unknown(0x%02x)", byte(t))
}

// HeaderSize is the size of a frame's type and length prefix.
const HeaderSize = 5

// MaxPayload is the largest payload any frame may carry.
const MaxPayload = 256 << 10

// ErrTooLarge reports a frame whose declared length exceeds the reader's limit.
var ErrTooLarge = errors.New("frame too large")

// Reader reads frames from a stream. It reads no byte beyond the frame it
// returns, so that the stages of the protocol (authentication, request, pipe)
// can each read the same stream with their own Reader.
type Reader struct {
	r   io.Reader
	max int
	hdr [HeaderSize]byte // here, not on Next's stack: io.ReadFull would move it to the heap on every frame
	buf []byte
}

// NewReader returns a Reader that refuses payloads longer than max bytes
// (at most MaxPayload).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 || max > MaxPayload {
		max = MaxPayload
	}
	return &Reader{r: r, max: max}
}

// Next reads the next frame. The payload is valid until the next call.
// A stream that ends cleanly between frames returns io.EOF; one that ends
// inside a frame returns io.ErrUnexpectedEOF.
func (r *Reader) Next() (Type, []byte, error) {
	hdr := r.hdr[:]
	if _, err := io.ReadFull(r.r, hdr); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > uint32(r.max) {
		return 0, nil, fmt.Errorf("%v frame of %d bytes (limit %d): %w", Type(hdr[0]), n, r.max, ErrTooLarge)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	payload := r.buf[:n]
	if _, err := io.ReadFull(r.r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return Type(hdr[0]), payload, nil
}

// PutHeader writes the type and length prefix of a frame with an n-byte
// payload into b[:HeaderSize].
func PutHeader(b []byte, t Type, n int) {
	b[0] = byte(t)
	binary.BigEndian.PutUint32(b[1:HeaderSize], uint32(n))
}

// Write writes one frame with a single Write call.
func Write(w io.Writer, t Type, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("write %v frame of %d bytes: %w", t, len(payload), ErrTooLarge)
	}
	_, err := w.Write(Append(make([]byte, 0, HeaderSize+len(payload)), t, payload))
	return err
}

// Append appends a frame to b, so that several frames can go out in one
// write. The payload must not exceed MaxPayload.
func Append(b []byte, t Type, payload []byte) []byte {
	var h [HeaderSize]byte
	PutHeader(h[:], t, len(payload))
	return append(append(b, h[:]...), payload...)
}

// MaxText is how many characters of a peer's message Text keeps.
const MaxText = 200

// Text makes a message from a peer (an error, a reason) safe to print on one
// line of a terminal: control characters, format characters (Unicode Cf:
// bidirectional overrides that reorder the line, zero-width characters)
// and invalid UTF-8 become '?', and it is cut at MaxText characters.
func Text(b []byte) string {
	out := make([]rune, 0, min(len(b), MaxText+1))
	for _, r := range string(b) {
		if len(out) == MaxText {
			out = append(out, '…')
			break
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\uFFFD' || unicode.Is(unicode.Cf, r) {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
}
