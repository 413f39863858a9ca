package pipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/frame"
	"github.com/pcp-dev/pcp/lib/lane"
)

// lanes gives both sides of a pipe real lanes (lib/lane) on 127.0.0.1, as
// the session does on the local network, and keeps what happened to them.
// The lanes are closed at the end of the test, as the session closes them
// with the stream.
type lanes struct {
	t       *testing.T
	dialErr error // if set, the sender's dial fails with it
	silent  bool  // if set, the sender announces the lane and then drops it without a word

	mu        sync.Mutex
	listeners []*lane.Listener
	accepted  []*lane.Conn
}

func (l *lanes) options(send, recv Options) (Options, Options) {
	loopback := net.IPv4(127, 0, 0, 1)
	send.DialLane = func(ctx context.Context, offer []byte, announce func() error) (Stream, error) {
		if l.dialErr != nil {
			return nil, l.dialErr
		}
		o, err := lane.ParseOffer(offer)
		if err != nil {
			return nil, err
		}
		c, err := lane.Dial(ctx, loopback, loopback, o)
		if err != nil {
			return nil, err
		}
		l.t.Cleanup(func() { c.Close() })
		if err := announce(); err != nil {
			return nil, err
		}
		if l.silent {
			c.Close()
			return nil, errors.New("dropped")
		}
		if err := c.Greet(ctx); err != nil {
			return nil, err
		}
		return c, nil
	}
	recv.Lane = func() (LaneListener, error) {
		ln, err := lane.Listen(loopback)
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.listeners = append(l.listeners, ln)
		return laneListener{ln, l}, nil
	}
	return send, recv
}

func (l *lanes) lanes() (listened int, accepted []*lane.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.listeners), append([]*lane.Conn{}, l.accepted...)
}

type laneListener struct {
	*lane.Listener
	l *lanes
}

func (ll laneListener) Offer() []byte { return ll.Listener.Offer().Marshal() }

func (ll laneListener) Accept(ctx context.Context) (Stream, error) {
	c, err := ll.Listener.Accept(ctx, net.IPv4(127, 0, 0, 1))
	if err != nil {
		return nil, err
	}
	ll.l.t.Cleanup(func() { c.Close() })
	ll.l.mu.Lock()
	defer ll.l.mu.Unlock()
	ll.l.accepted = append(ll.l.accepted, c)
	return c, nil
}

// countingStream counts the bytes written to a stream.
type countingStream struct {
	*net.TCPConn
	n atomic.Int64
}

func (c *countingStream) Write(b []byte) (int, error) {
	n, err := c.TCPConn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// stillListening says whether ln's port still takes connections.
func stillListening(ln *lane.Listener) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", itoa(ln.Offer().Port)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func itoa(p uint16) string { return (&net.TCPAddr{Port: int(p)}).String()[1:] }

// With lanes on both sides the data, the receiver's reports and its ACK go
// over the lane, and the stream carries only what comes before: the
// header, the offer, the ACCEPT and the LANE frame. A peer that closes its
// idle stream (as a receiver's session does when its transfer is over,
// while its ACK may still be on the way on the lane) leaves the lane alone.
func TestDataGoesOverTheLane(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	const size = 16 << 20
	a, b := tcpPair(t)
	sa, sb := &countingStream{TCPConn: a}, &countingStream{TCPConn: b}
	l := lanes{t: t}
	var reports atomic.Int64
	progress, reached := progressAt(4 << 20)
	sopt, ropt := l.options(Options{Timing: testTiming, Delivered: func(int64, int64) { reports.Add(1) }}, Options{Timing: testTiming, Progress: progress})
	dst := newHashWriter()
	recv := async(func() (int64, error) { return Receive(ctx, sb, dst, ropt) })
	send := async(func() (int64, error) { return Send(ctx, sa, Header{Kind: KindRaw, Size: size}, stream(3, size), sopt) })
	select {
	case <-reached:
	case <-time.After(testWait):
		t.Fatal("no data flowed")
	}
	b.CloseWrite()
	rr, sr := await(t, recv, "Receive"), await(t, send, "Send")
	if rr.err != nil || sr.err != nil {
		t.Fatalf("Receive: %d, %v; Send: %d, %v", rr.n, rr.err, sr.n, sr.err)
	}
	if rr.n != size || dst.n != size || !bytes.Equal(dst.sum(), streamSum(t, 3, size)) {
		t.Fatalf("received %d bytes, want %d, the same bytes", dst.n, size)
	}
	listened, accepted := l.lanes()
	if listened != 1 || len(accepted) != 1 {
		t.Fatalf("%d lanes offered, %d taken; want one of each", listened, len(accepted))
	}
	if n := sa.n.Load(); n > 4096 {
		t.Errorf("the sender wrote %d bytes on the stream, want only what comes before the data", n)
	}
	if n := sb.n.Load(); n > 4096 {
		t.Errorf("the receiver wrote %d bytes on the stream, want only what comes before the data", n)
	}
	if reports.Load() == 0 {
		t.Error("no report of the receiver's count came back over the lane")
	}
}

// A sender that cannot reach the lane sends over the stream, and the
// receiver stops listening once the data comes there.
func TestNoLaneKeepsTheStream(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	const size = 4 << 20
	a, b := tcpPair(t)
	sa := &countingStream{TCPConn: a}
	l := lanes{t: t, dialErr: errors.New("unreachable")}
	sopt, ropt := l.options(Options{Timing: testTiming}, Options{Timing: testTiming})
	dst := newHashWriter()
	recv := async(func() (int64, error) { return Receive(ctx, b, dst, ropt) })
	send := async(func() (int64, error) { return Send(ctx, sa, Header{Kind: KindRaw, Size: size}, stream(4, size), sopt) })
	rr, sr := await(t, recv, "Receive"), await(t, send, "Send")
	if rr.err != nil || sr.err != nil {
		t.Fatalf("Receive: %d, %v; Send: %d, %v", rr.n, rr.err, sr.n, sr.err)
	}
	if dst.n != size || !bytes.Equal(dst.sum(), streamSum(t, 4, size)) {
		t.Fatalf("received %d bytes, want %d, the same bytes", dst.n, size)
	}
	if n := sa.n.Load(); n < size {
		t.Errorf("the sender wrote %d bytes on the stream, want the data's %d", n, size)
	}
	if listened, _ := l.lanes(); listened != 1 {
		t.Fatalf("%d lanes offered, want 1", listened)
	}
	if stillListening(l.listeners[0]) {
		t.Error("the receiver still listens for the lane after the transfer")
	}
}

// A lane that fails after the sender said it took it, one that breaks in
// the middle of the data, and one that dies while the receiver stores the
// data (its ACK is queued, not sent) are breaks like a stream's: both sides
// go on over a new stream, where the receiver stood, and the receiver takes
// no lane there.
func TestLaneFailuresResume(t *testing.T) {
	netns.Require(t)
	const size = 24 << 20
	for _, how := range []string{"dropped after the announcement", "broke", "died before the ACK", "stream reset"} {
		t.Run(how, func(t *testing.T) {
			ctx := testContext(t)
			a, b := tcpPair(t)
			l := lanes{t: t, silent: how == "dropped after the announcement"}
			r := &rejoiner{t: t}
			var se, re events
			progress, reached := progressAt(6 << 20)
			var commits atomic.Int64
			commit := func() error {
				if commits.Add(1) == 1 && how == "died before the ACK" {
					_, accepted := l.lanes()
					accepted[0].Close()
				}
				return nil
			}
			sopt, ropt := l.options(se.options(Options{Timing: testTiming}, r), re.options(Options{Timing: testTiming, Progress: progress, Commit: commit}, r))
			dst := newHashWriter()
			recv := async(func() (int64, error) { return Receive(ctx, b, dst, ropt) })
			send := async(func() (int64, error) {
				return Send(ctx, a, Header{Kind: KindRaw, Size: size}, stream(5, size), sopt)
			})
			if how == "broke" {
				select {
				case <-reached:
				case <-time.After(testWait):
					t.Fatal("no data flowed")
				}
				_, accepted := l.lanes()
				if len(accepted) != 1 {
					t.Fatalf("%d lanes taken, want 1", len(accepted))
				}
				accepted[0].Close()
			}
			if how == "stream reset" {
				// The session resets the idle stream when it rejoins, or it
				// goes with its connection: the lane goes with it.
				select {
				case <-reached:
				case <-time.After(testWait):
					t.Fatal("no data flowed")
				}
				b.SetLinger(0)
				b.Close()
			}
			rr, sr := await(t, recv, "Receive"), await(t, send, "Send")
			if rr.err != nil || sr.err != nil {
				t.Fatalf("Receive: %d, %v; Send: %d, %v", rr.n, rr.err, sr.n, sr.err)
			}
			if dst.n != size || !bytes.Equal(dst.sum(), streamSum(t, 5, size)) {
				t.Fatalf("received %d bytes, want %d, the same bytes", dst.n, size)
			}
			sl, sres, _ := se.counts()
			rl, rres, at := re.counts()
			if sl != 1 || sres != 1 || rl != 1 || rres != 1 {
				t.Fatalf("lost/resumed: sender %d/%d, receiver %d/%d; want one of each", sl, sres, rl, rres)
			}
			if (how == "broke" || how == "stream reset") && at < 6<<20 || how == "died before the ACK" && at != size {
				t.Fatalf("resumed at %d bytes of %d", at, size)
			}
			if commits.Load() != 1 {
				t.Fatalf("Commit ran %d times, want once", commits.Load())
			}
			if listened, _ := l.lanes(); listened != 1 || stillListening(l.listeners[0]) {
				t.Fatalf("%d lanes offered, want 1, and none listening after the transfer", listened)
			}
		})
	}
}

// A sender that fails after it said it took the lane, before the lane is
// up, tells the receiver on the stream: the receiver, which watches the
// stream while it waits for the lane, stops with the sender's message,
// also when the sender's lane was cut just before.
func TestErrorWhileTheLaneComes(t *testing.T) {
	for _, cut := range []bool{false, true} {
		t.Run(fmt.Sprintf("lane cut first %v", cut), func(t *testing.T) { errorWhileTheLaneComes(t, cut) })
	}
}

func errorWhileTheLaneComes(t *testing.T, cut bool) {
	netns.Require(t)
	ctx := testContext(t)
	a, b := tcpPair(t)
	l := lanes{t: t}
	_, ropt := l.options(Options{}, Options{Timing: Timing{LaneWait: testWait, AbortWait: testWait / 4}})
	recv := async(func() (int64, error) { return Receive(ctx, b, io.Discard, ropt) })
	if err := frame.Write(a, frame.Header, []byte(`{"kind":"raw","size":-1,"lane":true}`)); err != nil {
		t.Fatal(err)
	}
	r := frame.NewReader(a, frame.MaxPayload)
	a.SetReadDeadline(time.Now().Add(testWait))
	var offer []byte
	for _, want := range []frame.Type{frame.Lane, frame.Accept} {
		typ, p, err := nextFrame(r)
		if err != nil || typ != want {
			t.Fatalf("crafted sender got %v, %v; want %v", typ, err, want)
		}
		if typ == frame.Lane {
			offer = append([]byte{}, p...)
		}
	}
	if err := frame.Write(a, frame.Lane, nil); err != nil {
		t.Fatal(err)
	}
	if cut {
		o, err := lane.ParseOffer(offer)
		if err != nil {
			t.Fatal(err)
		}
		lc, err := lane.Dial(ctx, net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 1), o)
		if err != nil {
			t.Fatal(err)
		}
		lc.Close()
		time.Sleep(50 * time.Millisecond)
	}
	if err := frame.Write(a, frame.Error, []byte("interrupted")); err != nil {
		t.Fatal(err)
	}
	res := await(t, recv, "Receive")
	var pe *PeerError
	if !errors.As(res.err, &pe) || pe.Message != "interrupted" {
		t.Fatalf("Receive error = %v (%T), want the sender's ERROR", res.err, res.err)
	}
	if res.took > testWait/2 {
		t.Fatalf("Receive took %v: it waited for the lane instead of the stream", res.took)
	}
}

// craftedLaneReceiver plays the receiver by hand on c, with a real lane
// listener: it reads the HEADER, offers the lane, accepts, and reads the
// sender's LANE frame, but takes no lane.
func craftedLaneReceiver(t *testing.T, c *net.TCPConn) *lane.Listener {
	t.Helper()
	ln, err := lane.Listen(net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := frame.NewReader(c, frame.MaxPayload)
	c.SetReadDeadline(time.Now().Add(testWait))
	if typ, _, err := nextFrame(r); err != nil || typ != frame.Header {
		t.Fatalf("crafted receiver got %v, %v; want HEADER", typ, err)
	}
	if err := frame.Write(c, frame.Lane, ln.Offer().Marshal()); err != nil {
		t.Fatal(err)
	}
	if err := frame.Write(c, frame.Accept, nil); err != nil {
		t.Fatal(err)
	}
	if typ, _, err := nextFrame(r); err != nil || typ != frame.Lane {
		t.Fatalf("crafted receiver got %v, %v; want LANE", typ, err)
	}
	return ln
}

// A receiver that fails while the lane comes says so on the stream, and
// cuts the lane: the sender, which watches the stream once it said that it
// took the lane, stops with the receiver's message, not as after a break.
func TestReceiverErrorWhileTheLaneComes(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	a, b := tcpPair(t)
	l := lanes{t: t}
	r := &rejoiner{t: t}
	var se events
	sopt, _ := l.options(se.options(Options{Timing: testTiming}, r), Options{})
	send := async(func() (int64, error) { return Send(ctx, a, Header{Kind: KindRaw, Size: -1}, endless{}, sopt) })
	ln := craftedLaneReceiver(t, b)
	ln.Close() // the sender's connection, not yet accepted, is cut
	time.Sleep(50 * time.Millisecond)
	if err := frame.Write(b, frame.Error, []byte("interrupted")); err != nil {
		t.Fatal(err)
	}
	res := await(t, send, "Send")
	var pe *PeerError
	if !errors.As(res.err, &pe) || pe.Message != "interrupted" {
		t.Fatalf("Send error = %v (%T), want the receiver's ERROR", res.err, res.err)
	}
	if lost, _, _ := se.counts(); lost != 0 || r.calls.Load() != 0 {
		t.Fatalf("the sender took it for a break: %d lost, %d reconnects", lost, r.calls.Load())
	}
}
