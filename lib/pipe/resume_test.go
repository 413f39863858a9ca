package pipe

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/frame"
)

// link joins a sender and a receiver through a forwarder that the test can
// freeze (nothing passes any more, nothing is closed: a cut cable) or break
// (both ends closed with a reset: a NAT that forgot the connection).
type link struct {
	send, recv *net.TCPConn // the ends the two sides use
	frozen     chan struct{}
	freezeOnce sync.Once
	inner      []*net.TCPConn
}

func newLink(t *testing.T) *link {
	t.Helper()
	s, s2 := tcpPair(t)
	r2, r := tcpPair(t)
	l := &link{send: s, recv: r, frozen: make(chan struct{}), inner: []*net.TCPConn{s2, r2}}
	go l.forward(r2, s2)
	go l.forward(s2, r2)
	return l
}

func (l *link) forward(dst, src *net.TCPConn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-l.frozen:
			return // the bytes read are lost, like those on a cut cable
		default:
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			dst.CloseWrite()
			return
		}
	}
}

func (l *link) freeze() { l.freezeOnce.Do(func() { close(l.frozen) }) }

func (l *link) reset() {
	l.freeze()
	for _, c := range []*net.TCPConn{l.send, l.recv, l.inner[0], l.inner[1]} {
		c.SetLinger(0)
		c.Close()
	}
}

// rejoiner pairs the two sides' Reconnect calls: each pair of calls gets
// the two ends of a new TCP connection. fail, if set, makes every call fail.
type rejoiner struct {
	t       *testing.T
	mu      sync.Mutex
	waiting chan *net.TCPConn
	calls   atomic.Int64
	fail    error
}

func (r *rejoiner) reconnect(ctx context.Context) (Stream, error) {
	r.calls.Add(1)
	if r.fail != nil {
		return nil, r.fail
	}
	r.mu.Lock()
	if ch := r.waiting; ch != nil {
		r.waiting = nil
		r.mu.Unlock()
		select {
		case c := <-ch:
			return c, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ch := make(chan *net.TCPConn, 1)
	r.waiting = ch
	r.mu.Unlock()
	mine, theirs := tcpPair(r.t)
	ch <- theirs
	return mine, nil
}

// events records the Lost and Resumed calls of one side.
type events struct {
	mu      sync.Mutex
	lost    []error
	resumed []int64
}

func (e *events) options(o Options, r *rejoiner) Options {
	o.Reconnect = r.reconnect
	o.Lost = func(err error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.lost = append(e.lost, err)
	}
	o.Resumed = func(_ time.Duration, at int64) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.resumed = append(e.resumed, at)
	}
	return o
}

func (e *events) counts() (lost, resumed int, at int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.resumed) > 0 {
		at = e.resumed[0]
	}
	return len(e.lost), len(e.resumed), at
}

// A connection that breaks in the middle of the data, silently or with a
// reset: both sides reconnect, the data goes on where the receiver stood,
// and every byte arrives once, in order, with the digest checked.
func TestResumeAfterABreak(t *testing.T) {
	netns.Require(t)
	const size = 24 << 20
	for _, how := range []string{"silent", "reset"} {
		t.Run(how, func(t *testing.T) {
			ctx := testContext(t)
			l := newLink(t)
			r := &rejoiner{t: t}
			var se, re events
			dst := newHashWriter()
			progress, reached := progressAt(6 << 20)
			var commits atomic.Int64
			recv := async(func() (int64, error) {
				return Receive(ctx, l.recv, dst, re.options(Options{Timing: testTiming, Progress: progress,
					Commit: func() error { commits.Add(1); return nil }}, r))
			})
			send := async(func() (int64, error) {
				return Send(ctx, l.send, Header{Kind: KindRaw, Size: size}, stream(7, size), se.options(Options{Timing: testTiming}, r))
			})
			select {
			case <-reached:
			case <-time.After(testWait):
				t.Fatal("no data flowed")
			}
			if how == "silent" {
				l.freeze()
			} else {
				l.reset()
			}
			rr, sr := await(t, recv, "Receive"), await(t, send, "Send")
			if rr.err != nil || sr.err != nil {
				t.Fatalf("Receive: %d, %v; Send: %d, %v", rr.n, rr.err, sr.n, sr.err)
			}
			if rr.n != size || sr.n != size || dst.n != size || !bytes.Equal(dst.sum(), streamSum(t, 7, size)) {
				t.Fatalf("received %d bytes (wrote %d), sent %d; want %d, the same bytes", rr.n, dst.n, sr.n, size)
			}
			if commits.Load() != 1 {
				t.Fatalf("Commit ran %d times", commits.Load())
			}
			sl, sres, _ := se.counts()
			rl, rres, at := re.counts()
			if sl != 1 || sres != 1 || rl != 1 || rres != 1 {
				t.Fatalf("lost/resumed: sender %d/%d, receiver %d/%d; want one of each", sl, sres, rl, rres)
			}
			if at < 6<<20 || at >= size {
				t.Fatalf("the receiver resumed at %d bytes, after writing at least %d", at, 6<<20)
			}
			t.Logf("%s break: resumed at %d of %d bytes, after %d reconnect calls", how, at, size, r.calls.Load())
		})
	}
}

// breaksOn breaks the connection in place of the receiver's first frame of
// type typ.
type breaksOn struct {
	*net.TCPConn
	typ  frame.Type
	done atomic.Bool
}

func (a *breaksOn) Write(b []byte) (int, error) {
	if len(b) > 0 && frame.Type(b[0]) == a.typ && a.done.CompareAndSwap(false, true) {
		a.SetLinger(0)
		a.Close()
		return 0, net.ErrClosed
	}
	return a.TCPConn.Write(b)
}

// The connection breaks as the receiver writes a frame: its ACK (the
// receiver, whose data is stored, rejoins; the sender sends END again and
// gets its ACK; nothing is stored twice), or its first report of what it
// wrote out (it rejoins, and the data goes on after what it wrote).
func TestResumeWhenTheReceiversFrameIsLost(t *testing.T) {
	netns.Require(t)
	for _, typ := range []frame.Type{frame.Ack, frame.Received} {
		t.Run(typ.String(), func(t *testing.T) {
			ctx := testContext(t)
			a, b := tcpPair(t)
			r := &rejoiner{t: t}
			var se, re events
			var dst bytes.Buffer
			var commits atomic.Int64
			data := randomBytes(t, 3<<20)
			recv := async(func() (int64, error) {
				return Receive(ctx, &breaksOn{TCPConn: b, typ: typ}, &dst, re.options(Options{Timing: testTiming,
					Commit: func() error { commits.Add(1); return nil }}, r))
			})
			n, err := Send(ctx, a, Header{Kind: KindRaw, Size: int64(len(data))}, bytes.NewReader(data), se.options(Options{Timing: testTiming}, r))
			rr := await(t, recv, "Receive")
			if err != nil || rr.err != nil {
				t.Fatalf("Send: %v; Receive: %v", err, rr.err)
			}
			if n != int64(len(data)) || !bytes.Equal(dst.Bytes(), data) || commits.Load() != 1 {
				t.Fatalf("sent %d, received %d bytes (equal: %v), %d commits", n, dst.Len(), bytes.Equal(dst.Bytes(), data), commits.Load())
			}
			_, resumed, at := re.counts()
			if resumed != 1 || (typ == frame.Ack) != (at == int64(len(data))) || at == 0 {
				t.Fatalf("the receiver resumed %d times, at %d of %d", resumed, at, len(data))
			}
		})
	}
}

// No new connection within the window: both sides fail as without
// reconnecting, and say so; the receiver's failure is still a truncation.
func TestReconnectFails(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	l := newLink(t)
	r := &rejoiner{t: t, fail: errors.New("no reconnection within 2s")}
	progress, reached := progressAt(1 << 20)
	recv := async(func() (int64, error) {
		return Receive(ctx, l.recv, io.Discard, (&events{}).options(Options{Timing: testTiming, Progress: progress}, r))
	})
	send := async(func() (int64, error) {
		return Send(ctx, l.send, Header{Kind: KindRaw, Size: -1}, endless{}, (&events{}).options(Options{Timing: testTiming}, r))
	})
	select {
	case <-reached:
	case <-time.After(testWait):
		t.Fatal("no data flowed")
	}
	l.freeze()
	rr, sr := await(t, recv, "Receive"), await(t, send, "Send")
	var ie *IntegrityError
	var le *LostError
	if !errors.As(rr.err, &ie) || !errors.As(rr.err, &le) {
		t.Fatalf("Receive error = %v, want a LostError over an IntegrityError", rr.err)
	}
	if !errors.As(sr.err, &le) || !errors.Is(sr.err, ErrPeerGone) {
		t.Fatalf("Send error = %v, want a LostError over ErrPeerGone", sr.err)
	}
	for _, err := range []error{rr.err, sr.err} {
		if !bytes.Contains([]byte(err.Error()), []byte("no reconnection within 2s")) {
			t.Errorf("error %q does not say that reconnecting failed", err)
		}
	}
}

// A receiver on the new stream that claims a count the sender cannot hold
// (more than was sent, or less than it reported) is a protocol error; the
// sender never sends from outside what it holds.
func TestHostileResumeCount(t *testing.T) {
	netns.Require(t)
	for name, at := range map[string]uint64{"beyond what was sent": 1 << 40, "before its report": 0} {
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			a, b := tcpPair(t)
			second := make(chan *net.TCPConn, 1)
			reconnect := func(context.Context) (Stream, error) {
				mine, theirs := tcpPair(t)
				second <- theirs
				return mine, nil
			}
			send := async(func() (int64, error) {
				return Send(ctx, a, Header{Kind: KindRaw, Size: -1}, endless{}, Options{Timing: testTiming, Reconnect: reconnect})
			})
			r := frame.NewReader(b, frame.MaxPayload)
			if typ, _, err := nextFrame(r); err != nil || typ != frame.Header {
				t.Fatalf("crafted receiver got %v, %v; want HEADER", typ, err)
			}
			frame.Write(b, frame.Accept, nil)
			// Take 2 MiB, report 1 MiB, then break the connection.
			var got int64
			for got < 2<<20 {
				typ, p, err := nextFrame(r)
				if err != nil {
					t.Fatal(err)
				}
				if typ == frame.Data {
					got += int64(len(p))
				}
			}
			frame.Write(b, frame.Received, binary.BigEndian.AppendUint64(nil, 1<<20))
			time.Sleep(100 * time.Millisecond)
			b.SetLinger(0)
			b.Close()
			var c *net.TCPConn
			select {
			case c = <-second:
			case <-time.After(testWait):
				t.Fatal("the sender did not reconnect")
			}
			go drain(c)
			frame.Write(c, frame.Resume, binary.BigEndian.AppendUint64(nil, at))
			wantProtocolError(t, await(t, send, "Send").err)
		})
	}
}

// A receiver that is still there but takes no data: a sender that holds
// data for a resend stops when every buffer is held, and says the receiver
// stalled, instead of waiting for ever. Reads smaller than a chunk (a pipe
// gives 64 KiB) share buffers: the sender holds about as much as with
// whole chunks, not a quarter of it.
func TestHeldBuffersDoNotHideAStall(t *testing.T) {
	netns.Require(t)
	for _, tc := range []struct {
		name string
		in   io.Reader
	}{{"whole chunks", endless{}}, {"64 KiB reads", pipeReads{}}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			a, b := tcpPair(t)
			send := async(func() (int64, error) {
				return Send(ctx, a, Header{Kind: KindRaw, Size: -1}, tc.in, Options{Timing: testTiming,
					Reconnect: func(context.Context) (Stream, error) { return nil, errors.New("unused") }})
			})
			r := frame.NewReader(b, frame.MaxPayload)
			if typ, _, err := nextFrame(r); err != nil || typ != frame.Header {
				t.Fatalf("crafted receiver got %v, %v; want HEADER", typ, err)
			}
			frame.Write(b, frame.Accept, nil)
			go drain(b) // takes everything, reports nothing
			beat(t, b)
			res := await(t, send, "Send")
			var se *StalledError
			if !errors.As(res.err, &se) {
				t.Fatalf("Send error = %v, want a StalledError", res.err)
			}
			held := res.n
			if held > int64(HeldLimit+3)*ChunkSize || held < int64(HeldLimit)*ChunkSize*3/4 {
				t.Fatalf("the sender sent %d bytes unreported, want about its %d buffers of %d", held, HeldLimit, ChunkSize)
			}
		})
	}
}

// pipeReads gives at most 64 KiB at a time, as a pipe does.
type pipeReads struct{}

func (pipeReads) Read(p []byte) (int, error) { return len(p[:min(len(p), 64<<10)]), nil }
