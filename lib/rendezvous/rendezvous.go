// Package rendezvous brings two peers that share a code together: the
// announcer makes the code's channel findable and answers authentication;
// the finder discovers candidates, dials them and authenticates. Both end
// with an authenticated libp2p stream and the finder's request on it.
package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pcp-dev/pcp/lib/auth"
	"github.com/pcp-dev/pcp/lib/code"
	"github.com/pcp-dev/pcp/lib/discovery"
	"github.com/pcp-dev/pcp/lib/frame"
	"github.com/pcp-dev/pcp/lib/status"
)

// Protocol is the libp2p protocol of a pcp stream: authentication, the
// finder's request, then the pipe.
const Protocol protocol.ID = "/pcp/1.0.0"

// What a finder can ask for once authenticated.
const (
	// WantPipe asks for a transfer (pcp-pipe, pcp).
	WantPipe = "pipe"
	// WantRendezvous asks only to meet (pcp-find).
	WantRendezvous = "rendezvous"
)

const (
	// AuthTimeout bounds authentication and the request on a new stream.
	AuthTimeout = 10 * time.Second
	// DialTimeout bounds the connection to one candidate.
	DialTimeout = 10 * time.Second
	// FirstMessageTimeout is how long a new stream may take to bring the
	// finder's first PAKE message; the announcer drops it after that.
	FirstMessageTimeout = 3 * time.Second
	// MaxPendingAuth is how many unauthenticated streams an announcer
	// serves at once; others are reset.
	MaxPendingAuth = 32
	// MaxPendingPerSource is how many of them may come from one source (an
	// IPv4 address, an IPv6 /64, a relay) and how many from one peer ID:
	// a stranger on the channel cannot take every place.
	MaxPendingPerSource = 2
	maxRequest          = 256
)

// Config is what both sides of a rendezvous need.
type Config struct {
	Host    host.Host
	Code    code.Code
	Methods []discovery.Method
	Log     status.Logger
	// BeforeDial, if set, is called before the finder dials a candidate;
	// it may wait (bounded) until the host is ready for that candidate.
	BeforeDial func(ctx context.Context, c discovery.Candidate)
}

// Peer is the other side of an authenticated stream.
type Peer struct {
	// Stream is authenticated: the peer proved it knows the code.
	Stream network.Stream
	// ID is the peer's libp2p identity.
	ID peer.ID
	// Source says how it was found: "mdns", "dht" or "peer"; empty on the announcer.
	Source string
	// Want is the finder's request.
	Want string
	// AuthTime is how long authentication took.
	AuthTime time.Duration
	// RTT is the round trip of the finder's proof and request and the
	// announcer's proof (finder side).
	RTT time.Duration
	// Secret proves on a later stream that it joins the same two peers
	// (auth.RejoinFinder, auth.RejoinAnnouncer).
	Secret auth.Secret
}

// Addrs returns the peer's known addresses as full multiaddrs ending in
// /p2p/<peer ID>: the address we dialled first, then those the peer listens
// on. (The address of a connection the peer dialled is its outgoing port,
// worth listing only when nothing else is known.)
func (p *Peer) Addrs(h host.Host) []ma.Multiaddr {
	seen := map[string]bool{}
	var out []ma.Multiaddr
	suffix := ma.StringCast("/p2p/" + p.ID.String())
	conn := p.Stream.Conn()
	addrs := h.Peerstore().Addrs(p.ID)
	if conn.Stat().Direction == network.DirOutbound || len(addrs) == 0 {
		addrs = append([]ma.Multiaddr{conn.RemoteMultiaddr()}, addrs...)
	}
	for _, a := range addrs {
		full := a.Encapsulate(suffix)
		if !seen[full.String()] {
			seen[full.String()] = true
			out = append(out, full)
		}
	}
	return out
}

// Accept answers the finder's request with yes (announcer side).
func (p *Peer) Accept() error {
	if err := frame.Write(p.Stream, frame.Accept, nil); err != nil {
		return fmt.Errorf("accept request: %w", err)
	}
	return nil
}

// Meet answers a finder that asked only to meet with yes, and ends the
// stream (announcer side). It returns once the finder has read the answer.
func (p *Peer) Meet() error { return p.finish(frame.Accept, nil) }

// Reject answers the finder's request with no and ends the stream
// (announcer side).
func (p *Peer) Reject(reason string) { p.finish(frame.Reject, []byte(reason)) }

// PartWait bounds how long an announcer waits for a finder to close its side
// after a last answer.
const PartWait = 5 * time.Second

// finish writes a last answer, then waits up to PartWait for the finder to
// close its side: closing our host at once could reset the connection
// before the answer is read.
func (p *Peer) finish(t frame.Type, payload []byte) error {
	defer p.Stream.Close()
	if err := frame.Write(p.Stream, t, payload); err != nil {
		return fmt.Errorf("answer request: %w", err)
	}
	p.Stream.CloseWrite()
	p.Stream.SetReadDeadline(time.Now().Add(PartWait))
	// The finder closes its side once it has the answer, and may close its
	// whole host right after: an EOF or a reset both mean it is gone.
	if _, err := io.Copy(io.Discard, p.Stream); errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err) {
		return fmt.Errorf("the finder did not acknowledge the answer within %v", PartWait)
	}
	return nil
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// NotFoundError reports that no peer was found before the deadline.
type NotFoundError struct {
	Announcing bool // the announcer waited in vain (else the finder searched)
	Candidates int  // how many candidates were tried
	NotPcp     int  // how many of them answered, but not as pcp
	DHT        bool // whether the DHT was searched (clock skew is then a suspect)
	// DHTUnreached says that no bootstrap peer of the DHT ever answered:
	// the DHT was not searched at all.
	DHTUnreached bool
}

// OnlyNotPcp says whether every candidate answered, but not as pcp: more
// time would not help.
func (e *NotFoundError) OnlyNotPcp() bool { return e.NotPcp > 0 && e.NotPcp == e.Candidates }

func (e *NotFoundError) Error() string {
	if e.Announcing && e.DHTUnreached {
		return "no peer came before the timeout; no bootstrap peer of the DHT answered, so only the LAN could find this one (is --bootstrap right? is there internet here?)"
	}
	if e.Announcing {
		return "no peer came before the timeout"
	}
	msg := "no peer found in time"
	switch {
	case e.OnlyNotPcp() && e.NotPcp == 1:
		msg = "the peer found does not speak pcp (is it a pcp sender, and the address right?)"
	case e.OnlyNotPcp():
		msg = fmt.Sprintf("none of the %d peers found speaks pcp", e.NotPcp)
	case e.Candidates == 1:
		msg = "no peer found in time (1 candidate could not be reached or did not speak pcp)"
	case e.Candidates > 1:
		msg = fmt.Sprintf("no peer found in time (%d candidates could not be reached or did not speak pcp)", e.Candidates)
	}
	switch {
	case e.DHTUnreached:
		msg += "; no bootstrap peer of the DHT answered, so it was not searched (is --bootstrap right? is there internet here?)"
	case e.DHT:
		msg += "; check the code, and that both clocks are right to within a few minutes"
	}
	return msg
}

// WrongCodeError reports that the finder met peers on the channel that did
// not know the code, and none that did. It is auth.ErrWrongCode: a
// mistyped code looks like this, and so does a stranger on the channel
// when the real announcer never came.
type WrongCodeError struct{ Peers int }

func (e *WrongCodeError) Error() string {
	who := "a peer on the channel did not know it"
	if e.Peers > 1 {
		who = fmt.Sprintf("%d peers on the channel did not know it", e.Peers)
	}
	return "the code did not match: " + who + ", and none that did came"
}

// Is makes a *WrongCodeError match auth.ErrWrongCode.
func (e *WrongCodeError) Is(target error) bool { return target == auth.ErrWrongCode }

// NoDiscoveryError reports that every discovery method failed: nothing can
// be announced or found this way on this host.
type NoDiscoveryError struct{ Errs []error }

func (e *NoDiscoveryError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e *NoDiscoveryError) Unwrap() []error { return e.Errs }

// TooManyGuessesError reports that the guess budget ran out.
type TooManyGuessesError struct{ N int }

func (e *TooManyGuessesError) Error() string {
	return fmt.Sprintf("%d wrong codes tried; someone may be guessing; start again with a new code", e.N)
}

// RejectedError reports that the announcer refused the finder's request.
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string { return "the peer refused: " + e.Reason }

var errNotPcp = errors.New("does not speak pcp")
