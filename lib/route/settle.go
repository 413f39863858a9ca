package route

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
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
// neither is possible.
func Finder(ctx context.Context, h host.Host, ctl network.Stream, pol Policy) (network.Stream, Path, error) {
	conn := ctl.Conn()
	path := Of(conn)
	if path.Kind != Relayed {
		return ctl, path, nil
	}
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
		reason = fmt.Sprintf("the direct connection failed: %v", err)
	}
	pol.Log.Debugf("no direct connection after %v: %s", time.Since(start).Round(time.Millisecond), reason)

	refusal := ""
	switch {
	case conn.Stat().Limited:
		refusal = fmt.Sprintf("relay %s cuts relayed connections off after a little data or time (public relays allow 128 KiB and 2 minutes), too little for a transfer", node.ShortID(path.Relay))
	default:
		ok, err := pol.allow(ctx, path.Relay, reason)
		if err != nil {
			return nil, Path{}, err
		}
		if !ok {
			refusal = fmt.Sprintf("the data goes through relay %s only with consent (--allow-relay)", node.ShortID(path.Relay))
		}
	}
	if refusal != "" {
		ndErr := &NoDirectError{Reason: reason, Refusal: refusal}
		frame.Write(ctl, frame.Error, []byte("the receiver has "+ndErr.Error()))
		closeAfter(ctl)
		return nil, Path{}, ndErr
	}
	pol.Log.Infof("asking the peer to send through relay %s", node.ShortID(path.Relay))
	if err := frame.Write(ctl, frame.Request, []byte(requestRelay)); err != nil {
		return nil, Path{}, fmt.Errorf("ask to go through the relay: %w", err)
	}
	ctl.SetReadDeadline(time.Now().Add(ConsentWait + partWait))
	t, msg, err := frame.NewReader(ctl, maxMessage).Next()
	ctl.SetReadDeadline(time.Time{})
	switch {
	case err != nil:
		return nil, Path{}, fmt.Errorf("wait for the peer to allow the relay: %w", err)
	case t == frame.Accept:
		return ctl, path, nil
	case t == frame.Reject:
		ctl.Close()
		return nil, Path{}, &NoDirectError{Reason: reason, Refusal: "the peer did not allow the relay: " + frame.Text(msg)}
	}
	ctl.Reset()
	return nil, Path{}, fmt.Errorf("unexpected %v frame in answer to the relay request", t)
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
		if st := pol.Tracker.state(id); st.failed >= maxAttempts {
			pol.Log.Debugf("hole punching: %s", strings.Join(strings.Fields(st.last), " "))
			return fmt.Sprintf("hole punching failed %d times: a symmetric NAT or a firewall is in the way", st.failed), nil
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
		select {
		case e.data <- s:
		default:
			s.Reset()
		}
	})
	return e
}

// Cancel gives up the expectation without waiting (the finder's request
// could not be answered).
func (e *Expectation) Cancel() {
	if e.data != nil {
		e.h.RemoveStreamHandler(Protocol)
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
	timeout := time.NewTimer(pol.punchWait() + dataTimeout + ConsentWait)
	defer timeout.Stop()
	select {
	case s := <-e.data:
		e.ctl.Close()
		return s, upgraded(s.Conn(), time.Since(start)), nil
	case a := <-frames:
		switch {
		case errors.Is(a.err, io.EOF):
			// The finder closes the stream once it has opened the data
			// stream, which may still be on its way.
			select {
			case s := <-e.data:
				return s, upgraded(s.Conn(), time.Since(start)), nil
			case <-time.After(dataTimeout):
				return nil, Path{}, errors.New("the peer closed the stream without opening a data connection")
			case <-ctx.Done():
				return nil, Path{}, ctx.Err()
			}
		case a.err != nil:
			return nil, Path{}, fmt.Errorf("the peer left before the data connection: %w", a.err)
		case a.t == frame.Error:
			e.ctl.Close()
			return nil, Path{}, fmt.Errorf("%s", frame.Text(a.msg))
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
	switch {
	case e.ctl.Conn().Stat().Limited:
		refusal = fmt.Sprintf("relay %s cuts relayed connections off after a little data or time", node.ShortID(path.Relay))
	default:
		ok, err := pol.allow(ctx, path.Relay, reason)
		if err != nil {
			e.ctl.Reset()
			return nil, Path{}, err
		}
		if !ok {
			refusal = fmt.Sprintf("the data goes through relay %s only with consent (--allow-relay)", node.ShortID(path.Relay))
		}
	}
	if refusal != "" {
		frame.Write(e.ctl, frame.Reject, []byte(refusal))
		closeAfter(e.ctl)
		return nil, Path{}, &NoDirectError{Reason: reason, Refusal: refusal}
	}
	if err := frame.Write(e.ctl, frame.Accept, nil); err != nil {
		return nil, Path{}, fmt.Errorf("allow the relay: %w", err)
	}
	return e.ctl, path, nil
}
