package route

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pcp-dev/pcp/lib/frame"
	"github.com/pcp-dev/pcp/lib/node"
	"github.com/pcp-dev/pcp/lib/status"
)

// Policy says how long to wait for a direct connection and whether the data
// may go through a relay.
type Policy struct {
	// AllowRelay is asked, once no direct connection could be made, whether
	// the data may go through relay; reason says why there is no direct
	// connection. Nil means no.
	AllowRelay func(ctx context.Context, relay peer.ID, reason string) (bool, error)
	// PunchWait bounds the wait for a direct connection; 0 means PunchWait.
	PunchWait time.Duration
	// Tracker, if set, tells when hole punching has failed, before
	// PunchWait is up.
	Tracker *Tracker
	// Log receives status lines.
	Log status.Logger
}

func (p Policy) punchWait() time.Duration {
	if p.PunchWait > 0 {
		return p.PunchWait
	}
	return PunchWait
}

// allow asks AllowRelay, bounded by ConsentWait.
func (p Policy) allow(ctx context.Context, relay peer.ID, reason string) (bool, error) {
	if p.AllowRelay == nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, ConsentWait)
	defer cancel()
	ok, err := p.AllowRelay(ctx, relay, reason)
	if errors.Is(err, context.DeadlineExceeded) {
		return false, nil
	}
	return ok, err
}

const (
	requestRelay = "relay"
	dataTimeout  = 10 * time.Second // opening the data stream on a direct connection
	partWait     = 2 * time.Second  // for the peer to read a last frame before we close
	maxMessage   = 1024
)

// Finder settles the path from the finder's side; ctl is the authenticated
// stream. It returns the stream that carries the data: ctl itself when it
// is direct or when both agreed to the relay, else a new stream on a direct
// connection (and ctl is closed). It fails with a *NoDirectError when
// neither is possible. Whenever it fails, it tells the announcer on ctl.
func Finder(ctx context.Context, h host.Host, ctl network.Stream, pol Policy) (network.Stream, Path, error) {
	path := Of(ctl.Conn())
	if path.Kind != Relayed {
		return ctl, path, nil
	}
	s, path, err := settle(ctx, h, ctl, path, pol)
	var nd *NoDirectError
	switch {
	case err == nil:
	case errors.As(err, &nd):
		if nd.Peer == "" && !nd.answered { // our decision: the announcer learns why
			tell(ctl, frame.Reject, nd.Error())
		}
	case ctx.Err() != nil:
		tell(ctl, frame.Error, "interrupted")
		return nil, Path{}, ctx.Err()
	default:
		tell(ctl, frame.Error, err.Error())
	}
	return s, path, err
}

func settle(ctx context.Context, h host.Host, ctl network.Stream, path Path, pol Policy) (network.Stream, Path, error) {
	conn := ctl.Conn()
	id := conn.RemotePeer()
	pol.Log.Infof("met the peer through relay %s; waiting for a direct connection (hole punching)", node.ShortID(path.Relay))
	start := time.Now()
	reason, err := waitDirect(ctx, h, id, pol)
	if err != nil {
		return nil, Path{}, err
	}
	if reason == "" {
		s, err := openData(ctx, h, id)
		if err == nil {
			ctl.Close()
			return s, upgraded(s.Conn(), time.Since(start)), nil
		}
		if ctx.Err() != nil {
			return nil, Path{}, ctx.Err()
		}
		reason = fmt.Sprintf("the direct connection failed: %v", err)
	}
	pol.Log.Debugf("no direct connection after %v: %s", time.Since(start).Round(time.Millisecond), reason)

	if conn.Stat().Limited {
		return nil, Path{}, &NoDirectError{Reason: reason, Refusal: limitedRefusal(path.Relay)}
	}
	ok, err := pol.allow(ctx, path.Relay, reason)
	switch {
	case err != nil:
		return nil, Path{}, err
	case !ok:
		return nil, Path{}, &NoDirectError{Reason: reason, Refusal: consentRefusal(path.Relay)}
	}
	pol.Log.Infof("asking the peer to send through relay %s", node.ShortID(path.Relay))
	if err := frame.Write(ctl, frame.Request, []byte(requestRelay)); err != nil {
		return nil, Path{}, fmt.Errorf("ask to go through the relay: %w", err)
	}
	ctl.SetReadDeadline(time.Now().Add(ConsentWait + partWait))
	stop := context.AfterFunc(ctx, func() { ctl.SetReadDeadline(time.Now()) })
	t, msg, err := frame.NewReader(ctl, maxMessage).Next()
	stop()
	ctl.SetReadDeadline(time.Time{})
	switch {
	case ctx.Err() != nil:
		return nil, Path{}, ctx.Err()
	case err != nil:
		return nil, Path{}, fmt.Errorf("wait for the peer to allow the relay: %w", err)
	case t == frame.Accept:
		return ctl, path, nil
	case t == frame.Reject:
		ctl.Close()
		return nil, Path{}, &NoDirectError{Reason: reason, Refusal: "the peer did not allow the relay: " + frame.Text(msg), answered: true}
	}
	ctl.Reset()
	return nil, Path{}, fmt.Errorf("unexpected %v frame in answer to the relay request", t)
}

func limitedRefusal(relay peer.ID) string {
	return fmt.Sprintf("relay %s cuts relayed connections off after a little data or time (public relays allow 128 KiB and 2 minutes), too little for a transfer", node.ShortID(relay))
}

func consentRefusal(relay peer.ID) string {
	return fmt.Sprintf("the data goes through relay %s only with consent (--allow-relay)", node.ShortID(relay))
}

// tell writes a last frame on ctl, bounded in time, and ends the stream.
func tell(ctl network.Stream, t frame.Type, msg string) {
	ctl.SetWriteDeadline(time.Now().Add(time.Second))
	frame.Write(ctl, t, []byte(msg))
	closeAfter(ctl)
}

// waitDirect waits for a direct connection to id. It returns "" once there
// is one, or why there is none.
func waitDirect(ctx context.Context, h host.Host, id peer.ID, pol Policy) (string, error) {
	deadline := time.NewTimer(pol.punchWait())
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if directConn(h, id) != nil {
			return "", nil
		}
		switch st := pol.Tracker.state(id); {
		case st.failed >= maxAttempts:
			pol.Log.Debugf("hole punching: %v", st)
			return fmt.Sprintf("hole punching failed %d times: a symmetric NAT or a firewall is in the way", st.failed), nil
		case st.gaveUp:
			return "hole punching failed: " + brief(st.last), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-deadline.C:
			if st := pol.Tracker.state(id); st.failed > 0 {
				return fmt.Sprintf("hole punching failed %d times in %v", st.failed, pol.punchWait()), nil
			}
			return fmt.Sprintf("no hole punch succeeded within %v", pol.punchWait()), nil
		case <-tick.C:
		}
	}
}

// brief flattens an error message to one line of at most 160 characters.
func brief(msg string) string {
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > 160 {
		msg = msg[:157] + "..."
	}
	return msg
}

// directConn returns a connection to id that is not relayed, or nil.
func directConn(h host.Host, id peer.ID) network.Conn {
	for _, c := range h.Network().ConnsToPeer(id) {
		if !node.IsRelayed(c.RemoteMultiaddr()) {
			return c
		}
	}
	return nil
}

// openData opens the data stream on a direct connection to id.
func openData(ctx context.Context, h host.Host, id peer.ID) (network.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, dataTimeout)
	defer cancel()
	s, err := h.NewStream(ctx, id, Protocol) // never over a limited connection
	if err != nil {
		return nil, fmt.Errorf("open the data stream: %w", err)
	}
	if node.IsRelayed(s.Conn().RemoteMultiaddr()) {
		s.Reset()
		return nil, errors.New("the data stream went through the relay")
	}
	return s, nil
}

// upgraded describes the direct connection that followed a relayed one:
// DCUtR made it, by a hole punch or by its dial back.
func upgraded(c network.Conn, waited time.Duration) Path {
	p := Of(c)
	p.Kind, p.Punch = Punched, waited
	return p
}

// closeAfter half-closes s and gives the peer a moment to read what was
// written before closing it.
func closeAfter(s network.Stream) {
	s.CloseWrite()
	s.SetReadDeadline(time.Now().Add(partWait))
	frame.NewReader(s, maxMessage).Next()
	s.Close()
}

// Expectation is the announcer's side: the data stream it expects from the
// finder, if the peers met through a relay.
type Expectation struct {
	h    host.Host
	ctl  network.Stream
	id   peer.ID
	data chan network.Stream

	mu     sync.Mutex
	closed bool // no more data streams are taken
}

// Expect prepares the announcer for the finder's data stream. Call it before
// accepting the finder's request (the finder may open the stream at once),
// then Wait.
func Expect(h host.Host, ctl network.Stream) *Expectation {
	e := &Expectation{h: h, ctl: ctl, id: ctl.Conn().RemotePeer()}
	if Of(ctl.Conn()).Kind != Relayed {
		return e
	}
	e.data = make(chan network.Stream, 1)
	h.SetStreamHandler(Protocol, func(s network.Stream) {
		// Only the peer that proved the code, and only directly: libp2p's
		// secure channel authenticates the peer ID of every connection.
		if s.Conn().RemotePeer() != e.id || node.IsRelayed(s.Conn().RemoteMultiaddr()) {
			s.Reset()
			return
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.closed {
			s.Reset()
			return
		}
		select {
		case e.data <- s:
		default:
			s.Reset() // one is enough
		}
	})
	return e
}

// Cancel gives up the expectation without waiting (the finder's request
// could not be answered).
func (e *Expectation) Cancel() {
	if e.data == nil {
		return
	}
	e.h.RemoveStreamHandler(Protocol)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	select {
	case s := <-e.data: // came too late to be used
		s.Reset()
	default:
	}
}

// Wait settles the path from the announcer's side, following the finder's
// decision: a data stream on a direct connection, a request to go on
// through the relay (granted if pol allows it), or an error.
func (e *Expectation) Wait(ctx context.Context, pol Policy) (network.Stream, Path, error) {
	path := Of(e.ctl.Conn())
	if e.data == nil {
		return e.ctl, path, nil
	}
	defer e.Cancel()
	pol.Log.Infof("met the peer through relay %s; waiting for a direct connection (hole punching)", node.ShortID(path.Relay))
	start := time.Now()
	type answer struct {
		t   frame.Type
		msg []byte
		err error
	}
	frames := make(chan answer, 1)
	go func() {
		t, msg, err := frame.NewReader(e.ctl, maxMessage).Next()
		frames <- answer{t, msg, err}
	}()
	// The finder's longest way to a decision, and a margin.
	timeout := time.NewTimer(pol.punchWait() + dataTimeout + ConsentWait + partWait + 5*time.Second)
	defer timeout.Stop()
	select {
	case s := <-e.data:
		e.ctl.Close()
		return s, upgraded(s.Conn(), time.Since(start)), nil
	case a := <-frames:
		switch {
		case a.err != nil:
			// The finder closes the stream once it has opened the data
			// stream, which may still be on its way; the relay may also
			// drop the stream once the peers have a direct connection.
			select {
			case s := <-e.data:
				return s, upgraded(s.Conn(), time.Since(start)), nil
			case <-time.After(dataTimeout):
				return nil, Path{}, fmt.Errorf("the peer left without opening a data connection: %w", a.err)
			case <-ctx.Done():
				return nil, Path{}, ctx.Err()
			}
		case a.t == frame.Reject:
			pol.Log.Debugf("hole punching: %v", pol.Tracker.state(e.id))
			e.ctl.Close()
			return nil, Path{}, &NoDirectError{Peer: frame.Text(a.msg)}
		case a.t == frame.Error:
			e.ctl.Close()
			return nil, Path{}, fmt.Errorf("the peer gave up: %s", frame.Text(a.msg))
		case a.t != frame.Request || string(a.msg) != requestRelay:
			e.ctl.Reset()
			return nil, Path{}, fmt.Errorf("unexpected %v frame while waiting for the data connection", a.t)
		}
		return e.relay(ctx, path, pol)
	case <-timeout.C:
		e.ctl.Reset()
		return nil, Path{}, errors.New("the peer opened no data connection in time")
	case <-ctx.Done():
		e.ctl.Reset()
		return nil, Path{}, ctx.Err()
	}
}

// relay answers the finder's request to go on through the relay.
func (e *Expectation) relay(ctx context.Context, path Path, pol Policy) (network.Stream, Path, error) {
	reason := "the receiver could not connect directly"
	refusal := ""
	if e.ctl.Conn().Stat().Limited {
		refusal = limitedRefusal(path.Relay)
	} else {
		ok, err := pol.allow(ctx, path.Relay, reason)
		if err != nil {
			tell(e.ctl, frame.Reject, "the sender was interrupted")
			return nil, Path{}, err
		}
		if !ok {
			refusal = consentRefusal(path.Relay)
		}
	}
	if refusal != "" {
		tell(e.ctl, frame.Reject, refusal)
		return nil, Path{}, &NoDirectError{Reason: reason, Refusal: refusal}
	}
	if err := frame.Write(e.ctl, frame.Accept, nil); err != nil {
		return nil, Path{}, fmt.Errorf("allow the relay: %w", err)
	}
	return e.ctl, path, nil
}
