package pipe

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/zeebo/xxh3"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/frame"
)

func TestMain(m *testing.M) { os.Exit(netns.RunIsolated(m)) }

// testTiming makes liveness fast enough for unit tests: a heartbeat after
// 100 ms of silence, the peer gone after 600 ms without a frame, a receiver
// stalled after 3 s without a step.
var testTiming = Timing{
	Heartbeat:   100 * time.Millisecond,
	PeerTimeout: 600 * time.Millisecond,
	CloseWait:   time.Second,
	AbortWait:   500 * time.Millisecond,
	Stall:       3 * time.Second,
	Decision:    3 * time.Second,
	LaneWait:    300 * time.Millisecond, // shorter than PeerTimeout, as by default: the receiver gives up on a lane first
}

// testWait bounds every wait for a side of a transfer in these tests.
const testWait = 10 * time.Second

// tcpPair returns the two ends of a real TCP connection over 127.0.0.1.
// Both are closed at the end of the test.
func tcpPair(t testing.TB) (dialer, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	type acc struct {
		c   *net.TCPConn
		err error
	}
	ch := make(chan acc, 1)
	go func() {
		c, err := ln.AcceptTCP()
		ch <- acc{c, err}
	}()
	d, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	a := <-ch
	if a.err != nil {
		d.Close()
		t.Fatalf("accept: %v", a.err)
	}
	t.Cleanup(func() {
		d.Close()
		a.c.Close()
	})
	return d, a.c
}

type result struct {
	n    int64
	err  error
	took time.Duration
}

// async runs one side of a transfer in a goroutine.
func async(f func() (int64, error)) <-chan result {
	ch := make(chan result, 1)
	start := time.Now()
	go func() {
		n, err := f()
		ch <- result{n, err, time.Since(start)}
	}()
	return ch
}

// await waits, bounded, for one side of a transfer.
func await(t *testing.T, ch <-chan result, what string) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(testWait):
		t.Fatalf("%s did not return within %v", what, testWait)
		return result{}
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*testWait)
	t.Cleanup(cancel)
	return ctx
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// stream is n pseudo-random bytes from seed, produced as they are read, so
// that large transfers need no large buffers. (Under the race detector, one
// memmove of many MiB is a single long call that stalls the whole process
// for longer than the tests' peer timeout.)
func stream(seed byte, n int64) io.Reader {
	return io.LimitReader(mrand.NewChaCha8([32]byte{seed}), n)
}

// hashWriter counts and hashes what is written to it.
type hashWriter struct {
	h hash.Hash
	n int64
}

func newHashWriter() *hashWriter { return &hashWriter{h: sha256.New()} }

func (w *hashWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return w.h.Write(p)
}

func (w *hashWriter) sum() []byte { return w.h.Sum(nil) }

// streamSum is the SHA-256 of stream(seed, n), computed on its own.
func streamSum(t testing.TB, seed byte, n int64) []byte {
	w := newHashWriter()
	if _, err := io.Copy(w, stream(seed, n)); err != nil || w.n != n {
		t.Fatalf("hash the test stream: %d bytes, %v", w.n, err)
	}
	return w.sum()
}

// digestOf is the END frame's digest of data, computed with xxh3's one-shot
// function rather than the pipe's streaming one.
func digestOf(data []byte) []byte {
	sum := xxh3.Hash128(data).Bytes()
	return sum[:]
}

// The digest on the wire is XXH3-128 in its canonical big-endian form.
func TestDigestKnownAnswer(t *testing.T) {
	d := newDigest()
	if got, want := hex.EncodeToString(d.Sum(nil)), "99aa06d3014798d86001c324468d497f"; got != want {
		t.Fatalf("XXH3-128 of nothing = %s, want %s", got, want)
	}
	d.Write([]byte("pcp"))
	if got, want := d.Sum(nil), digestOf([]byte("pcp")); !bytes.Equal(got, want) {
		t.Fatalf("streaming digest %x differs from one-shot %x", got, want)
	}
}

// endPayload is the payload of an END frame.
func endPayload(count uint64, data []byte) []byte {
	sum := digestOf(data)
	return append(binary.BigEndian.AppendUint64(nil, count), sum[:]...)
}

// nextFrame reads the next frame other than a heartbeat, with a copy of its
// payload.
func nextFrame(r *frame.Reader) (frame.Type, []byte, error) {
	for {
		t, p, err := r.Next()
		if err != nil {
			return 0, nil, err
		}
		if t != frame.Heartbeat {
			return t, bytes.Clone(p), nil
		}
	}
}

// endless is an input that never ends.
// acceptedSender starts Send of endless data on one end of a TCP pair and
// plays the receiver on the other (b, read through r) up to its ACCEPT.
func acceptedSender(t *testing.T) (send <-chan result, b *net.TCPConn, r *frame.Reader) {
	t.Helper()
	ctx := testContext(t)
	a, b := tcpPair(t)
	send = async(func() (int64, error) {
		return Send(ctx, a, Header{Kind: KindRaw, Size: -1}, endless{}, Options{Timing: testTiming})
	})
	r = frame.NewReader(b, frame.MaxPayload)
	if typ, _, err := nextFrame(r); err != nil || typ != frame.Header {
		t.Fatalf("crafted receiver got %v, %v; want HEADER", typ, err)
	}
	if err := frame.Write(b, frame.Accept, nil); err != nil {
		t.Fatal(err)
	}
	return send, b, r
}

type endless struct{}

func (endless) Read(p []byte) (int, error) { return len(p), nil }

// countingReader records whether anyone read from it.
type countingReader struct {
	r     io.Reader
	reads atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.r.Read(p)
}

// drain reads c until it fails, so that the other side never blocks on a
// full socket buffer and a close never turns into a reset.
func drain(c net.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(io.Discard, c)
	}()
	return done
}

func TestRoundTrip(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	const size = 20 << 20
	want := streamSum(t, 1, size)
	h := Header{Kind: "tar+zstd", Names: []string{"photos", "notes ü.txt"}, Size: size, Count: 42}
	a, b := tcpPair(t)

	var sendReturned atomic.Bool
	var commits atomic.Int32
	var commitAfterSend atomic.Bool
	accepted := make(chan Header, 2)
	var recvProgress, sendProgress atomic.Int64
	var progressBackwards atomic.Bool
	progress := func(last *atomic.Int64) func(int64) {
		return func(n int64) {
			if n < last.Load() {
				progressBackwards.Store(true)
			}
			last.Store(n)
		}
	}
	dst := newHashWriter()
	recv := async(func() (int64, error) {
		return Receive(ctx, b, dst, Options{
			Timing:   testTiming,
			Accept:   func(h Header) error { accepted <- h; return nil },
			Commit:   func() error { commits.Add(1); commitAfterSend.Store(sendReturned.Load()); return nil },
			Progress: progress(&recvProgress),
		})
	})

	n, err := Send(ctx, a, h, stream(1, size), Options{Timing: testTiming, Progress: progress(&sendProgress)})
	sendReturned.Store(true)
	commitsAtSend := commits.Load()
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if n != size {
		t.Errorf("Send returned %d bytes, want %d", n, size)
	}
	if commitsAtSend != 1 {
		t.Errorf("Commit was called %d times before Send returned, want exactly 1", commitsAtSend)
	}
	r := await(t, recv, "Receive")
	if r.err != nil {
		t.Fatalf("Receive: %v", r.err)
	}
	if r.n != size || dst.n != size {
		t.Errorf("Receive returned %d bytes and wrote %d, want %d", r.n, dst.n, size)
	}
	if !bytes.Equal(dst.sum(), want) {
		t.Errorf("received %d bytes that differ from the %d sent", dst.n, size)
	}
	if c := commits.Load(); c != 1 {
		t.Errorf("Commit called %d times, want 1", c)
	}
	if commitAfterSend.Load() {
		t.Error("Commit ran after Send had returned")
	}
	select {
	case got := <-accepted:
		h.Progress = true // Send offers RECEIVED frames
		if !reflect.DeepEqual(got, h) {
			t.Errorf("Accept got header %+v, want %+v", got, h)
		}
	default:
		t.Error("Accept was not called")
	}
	if len(accepted) != 0 {
		t.Error("Accept was called more than once")
	}
	if s, r := sendProgress.Load(), recvProgress.Load(); s != size || r != size {
		t.Errorf("last progress: sender %d, receiver %d, want %d", s, r, size)
	}
	if progressBackwards.Load() {
		t.Error("progress went backwards")
	}
}

func TestEmptyStream(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	a, b := tcpPair(t)
	var commits atomic.Int32
	var got Header
	var dst bytes.Buffer
	recv := async(func() (int64, error) {
		return Receive(ctx, b, &dst, Options{
			Timing: testTiming,
			Accept: func(h Header) error { got = h; return nil },
			Commit: func() error { commits.Add(1); return nil },
		})
	})
	h := Header{Kind: KindRaw, Size: -1}
	n, err := Send(ctx, a, h, bytes.NewReader(nil), Options{Timing: testTiming})
	if err != nil || n != 0 {
		t.Fatalf("Send = %d, %v; want 0, nil", n, err)
	}
	if c := commits.Load(); c != 1 {
		t.Errorf("Commit called %d times before Send returned, want 1", c)
	}
	r := await(t, recv, "Receive")
	if r.err != nil || r.n != 0 {
		t.Fatalf("Receive = %d, %v; want 0, nil", r.n, r.err)
	}
	if dst.Len() != 0 {
		t.Errorf("dst holds %d bytes, want 0", dst.Len())
	}
	h.Progress = true // Send offers RECEIVED frames
	if !reflect.DeepEqual(got, h) {
		t.Errorf("Accept got header %+v, want %+v", got, h)
	}
}

// TestRoundTripLibp2p runs the pipe over a real libp2p stream, the kind of
// stream it runs on in production (yamux over TLS or Noise).
func TestRoundTripLibp2p(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	ha, hb := connectedHosts(t)

	const proto = protocol.ID("/pcp/pipe-test/1.0.0")
	const size = 3<<20 + 12345
	want := streamSum(t, 2, size)
	type recvResult struct {
		result
		sum []byte
	}
	recvDone := make(chan recvResult, 1)
	hb.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		dst := newHashWriter()
		n, err := Receive(ctx, s, dst, Options{Timing: testTiming})
		recvDone <- recvResult{result{n: n, err: err}, dst.sum()}
	})
	s, err := ha.NewStream(ctx, hb.ID(), proto)
	if err != nil {
		t.Fatalf("new stream: %v", err)
	}
	defer s.Close()
	n, err := Send(ctx, s, Header{Kind: KindRaw, Size: -1}, stream(2, size), Options{Timing: testTiming})
	if err != nil || n != size {
		t.Fatalf("Send = %d, %v; want %d, nil", n, err, size)
	}
	select {
	case r := <-recvDone:
		if r.err != nil || r.n != size {
			t.Fatalf("Receive = %d, %v; want %d, nil", r.n, r.err, size)
		}
		if !bytes.Equal(r.sum, want) {
			t.Fatal("data differs")
		}
	case <-time.After(testWait):
		t.Fatal("Receive did not return")
	}
}

func TestReject(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	a, b := tcpPair(t)
	refusal := errors.New("no thanks")
	var commits atomic.Int32
	var dst bytes.Buffer
	recv := async(func() (int64, error) {
		return Receive(ctx, b, &dst, Options{
			Timing: testTiming,
			Accept: func(Header) error { return refusal },
			Commit: func() error { commits.Add(1); return nil },
		})
	})
	src := &countingReader{r: bytes.NewReader(randomBytes(t, 1<<20))}
	n, err := Send(ctx, a, Header{Kind: KindRaw, Size: 1 << 20}, src, Options{Timing: testTiming})
	var rej *RejectedError
	if !errors.As(err, &rej) {
		t.Fatalf("Send error = %v (%T), want *RejectedError", err, err)
	}
	if !strings.Contains(rej.Reason, "no thanks") {
		t.Errorf("RejectedError.Reason = %q, want it to contain %q", rej.Reason, "no thanks")
	}
	if n != 0 {
		t.Errorf("Send reported %d bytes sent after a rejection", n)
	}
	if reads := src.reads.Load(); reads != 0 {
		t.Errorf("Send read its input %d times before the receiver accepted", reads)
	}
	r := await(t, recv, "Receive")
	if r.err == nil {
		t.Fatal("Receive returned nil after rejecting the transfer")
	}
	if !errors.Is(r.err, refusal) {
		t.Errorf("Receive error = %v, want it to wrap the Accept error", r.err)
	}
	if r.n != 0 || dst.Len() != 0 {
		t.Errorf("Receive wrote %d bytes (reported %d) after rejecting", dst.Len(), r.n)
	}
	if commits.Load() != 0 {
		t.Error("Commit was called for a rejected transfer")
	}
}

// craftedSender plays the sender by hand on conn: it writes a header and
// waits for ACCEPT.
func craftedSender(t *testing.T, c *net.TCPConn) *frame.Reader {
	t.Helper()
	if err := frame.Write(c, frame.Header, []byte(`{"kind":"raw","size":-1}`)); err != nil {
		t.Fatalf("write header: %v", err)
	}
	r := frame.NewReader(c, frame.MaxPayload)
	c.SetReadDeadline(time.Now().Add(testWait))
	typ, _, err := nextFrame(r)
	if err != nil || typ != frame.Accept {
		t.Fatalf("crafted sender got %v, %v; want ACCEPT", typ, err)
	}
	return r
}

func TestTruncated(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	a, b := tcpPair(t)
	var commits atomic.Int32
	var dst bytes.Buffer
	recv := async(func() (int64, error) {
		return Receive(ctx, b, &dst, Options{Timing: testTiming, Commit: func() error { commits.Add(1); return nil }})
	})
	craftedSender(t, a)
	data := randomBytes(t, 3*1000+17)
	for off := 0; off < len(data); off += 1000 {
		if err := frame.Write(a, frame.Data, data[off:min(off+1000, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	a.CloseWrite() // the stream ends here, without END
	drain(a)
	r := await(t, recv, "Receive")
	var ie *IntegrityError
	if !errors.As(r.err, &ie) {
		t.Fatalf("Receive error = %v (%T), want *IntegrityError", r.err, r.err)
	}
	if !errors.Is(r.err, io.EOF) {
		t.Errorf("Receive error = %v, want it to wrap io.EOF", r.err)
	}
	if r.n != int64(len(data)) {
		t.Errorf("Receive counted %d bytes, want the %d delivered", r.n, len(data))
	}
	if !bytes.Equal(dst.Bytes(), data) {
		t.Errorf("dst holds %d bytes, not the %d delivered", dst.Len(), len(data))
	}
	if commits.Load() != 0 {
		t.Error("Commit was called for a truncated transfer")
	}
}

// TestClosedBeforeData: a sender that closes after the header, without
// data or END, fails the transfer; since no data flowed it is a plain
// failure, not an integrity error.
func TestClosedBeforeData(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	a, b := tcpPair(t)
	var commits atomic.Int32
	recv := async(func() (int64, error) {
		return Receive(ctx, b, io.Discard, Options{Timing: testTiming, Commit: func() error { commits.Add(1); return nil }})
	})
	craftedSender(t, a)
	a.CloseWrite()
	drain(a)
	r := await(t, recv, "Receive")
	if r.err == nil {
		t.Fatal("Receive returned nil for a stream closed without END")
	}
	if !errors.Is(r.err, io.EOF) {
		t.Errorf("Receive error = %v, want it to wrap io.EOF", r.err)
	}
	if errors.As(r.err, new(*IntegrityError)) {
		t.Errorf("Receive error %v is an IntegrityError, but no data had flowed", r.err)
	}
	if r.n != 0 || commits.Load() != 0 {
		t.Errorf("Receive counted %d bytes and committed %d times", r.n, commits.Load())
	}
}

func TestEndFrameChecks(t *testing.T) {
	netns.Require(t)
	data := []byte("the quick brown fox jumps over the lazy dog")
	good := endPayload(uint64(len(data)), data)
	wrongDigest := bytes.Clone(good)
	wrongDigest[len(wrongDigest)-1] ^= 1
	cases := []struct {
		name string
		end  []byte
		ok   bool
	}{
		{"valid", good, true},
		{"wrong digest", wrongDigest, false},
		{"count too high", endPayload(uint64(len(data))+1, data), false},
		{"count too low", endPayload(uint64(len(data))-1, data), false},
		{"digest of other data", endPayload(uint64(len(data)), []byte("the quick brown fox jumps over the lazy cat")), false},
		{"short end", good[:endSize-1], false},
		{"long end", append(bytes.Clone(good), 0), false},
		{"empty end", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			a, b := tcpPair(t)
			var commits atomic.Int32
			var dst bytes.Buffer
			recv := async(func() (int64, error) {
				return Receive(ctx, b, &dst, Options{Timing: testTiming, Commit: func() error { commits.Add(1); return nil }})
			})
			r := craftedSender(t, a)
			if err := frame.Write(a, frame.Data, data[:10]); err != nil {
				t.Fatal(err)
			}
			if err := frame.Write(a, frame.Data, data[10:]); err != nil {
				t.Fatal(err)
			}
			if err := frame.Write(a, frame.End, tc.end); err != nil {
				t.Fatal(err)
			}
			a.CloseWrite()
			reply, msg, err := nextFrame(r)
			if err != nil {
				t.Fatalf("crafted sender: no reply to END: %v", err)
			}
			res := await(t, recv, "Receive")
			if tc.ok {
				if reply != frame.Ack || res.err != nil || res.n != int64(len(data)) || commits.Load() != 1 {
					t.Fatalf("valid END: reply %v, Receive = %d, %v, %d commits; want ACK, %d, nil, 1",
						reply, res.n, res.err, commits.Load(), len(data))
				}
				return
			}
			if reply != frame.Error {
				t.Errorf("crafted sender got %v in reply to a bad END, want ERROR", reply)
			} else if len(msg) == 0 {
				t.Error("ERROR frame carries no message")
			}
			var ie *IntegrityError
			if !errors.As(res.err, &ie) {
				t.Fatalf("Receive error = %v (%T), want *IntegrityError", res.err, res.err)
			}
			if commits.Load() != 0 {
				t.Error("Commit was called for a transfer whose END did not match")
			}
		})
	}
}

func TestReceiverNoticesSilentSender(t *testing.T) {
	netns.Require(t)
	t.Parallel()
	t.Run("before header", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		_, b := tcpPair(t)
		res := await(t, async(func() (int64, error) {
			return Receive(ctx, b, io.Discard, Options{Timing: testTiming})
		}), "Receive")
		if !errors.Is(res.err, ErrPeerGone) {
			t.Fatalf("Receive error = %v, want ErrPeerGone", res.err)
		}
		if errors.As(res.err, new(*IntegrityError)) {
			t.Errorf("Receive error %v is an IntegrityError, but no transfer was accepted", res.err)
		}
		checkTook(t, res.took)
	})
	t.Run("after header", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		a, b := tcpPair(t)
		recv := async(func() (int64, error) {
			return Receive(ctx, b, io.Discard, Options{Timing: testTiming})
		})
		// The header, then silence: no data, no heartbeat, no close.
		if err := frame.Write(a, frame.Header, []byte(`{"kind":"raw","size":-1}`)); err != nil {
			t.Fatal(err)
		}
		res := await(t, recv, "Receive")
		if !errors.Is(res.err, ErrPeerGone) {
			t.Fatalf("Receive error = %v, want ErrPeerGone", res.err)
		}
		// No data flowed, so nothing was truncated: a plain failure (exit 1),
		// not an integrity error (exit 5, once data has flowed).
		if errors.As(res.err, new(*IntegrityError)) {
			t.Errorf("Receive error %v is an IntegrityError, but no data had flowed", res.err)
		}
		checkTook(t, res.took)
	})
	t.Run("after data", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		a, b := tcpPair(t)
		recv := async(func() (int64, error) {
			return Receive(ctx, b, io.Discard, Options{Timing: testTiming})
		})
		craftedSender(t, a)
		if err := frame.Write(a, frame.Data, []byte("some data")); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		res := await(t, recv, "Receive")
		if !errors.Is(res.err, ErrPeerGone) || !errors.As(res.err, new(*IntegrityError)) {
			t.Fatalf("Receive error = %v (%T), want an IntegrityError wrapping ErrPeerGone", res.err, res.err)
		}
		if res.n != int64(len("some data")) {
			t.Errorf("Receive counted %d bytes, want %d", res.n, len("some data"))
		}
		checkTook(t, time.Since(start))
	})
}

// checkTook checks that a silent peer was noticed after about PeerTimeout:
// not before it, and well within 3×PeerTimeout.
func checkTook(t *testing.T, took time.Duration) {
	t.Helper()
	if took < testTiming.PeerTimeout*3/4 {
		t.Errorf("the peer was declared gone after %v, before the peer timeout %v", took, testTiming.PeerTimeout)
	}
	if took >= 3*testTiming.PeerTimeout {
		t.Errorf("the silent peer was noticed after %v, want < %v", took, 3*testTiming.PeerTimeout)
	}
}

func TestSenderNoticesSilentReceiver(t *testing.T) {
	netns.Require(t)
	t.Parallel()
	t.Run("no answer to the header", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		a, b := tcpPair(t)
		drain(b) // reads everything, answers nothing
		res := await(t, async(func() (int64, error) {
			return Send(ctx, a, Header{Kind: KindRaw, Size: -1}, endless{}, Options{Timing: testTiming})
		}), "Send")
		if !errors.Is(res.err, ErrPeerGone) {
			t.Fatalf("Send error = %v, want ErrPeerGone", res.err)
		}
		checkTook(t, res.took)
	})
	t.Run("silent during data", func(t *testing.T) {
		t.Parallel()
		send, b, _ := acceptedSender(t)
		start := time.Now()
		drain(b) // reads all the data, but never sends a heartbeat
		res := await(t, send, "Send")
		if !errors.Is(res.err, ErrPeerGone) {
			t.Fatalf("Send error = %v, want ErrPeerGone", res.err)
		}
		if res.n == 0 {
			t.Error("Send sent no data before the receiver was declared gone")
		}
		checkTook(t, time.Since(start))
	})
}

// beat sends heartbeats on c every 100 ms until the test ends or a write
// fails: a peer that is there, and does nothing else.
func beat(t *testing.T, c net.Conn) {
	go func() {
		for t.Context().Err() == nil {
			if err := frame.Write(c, frame.Heartbeat, nil); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
}

// A receiver that is there (its heartbeats arrive) but takes no step does
// not hold the sender forever: not deciding on the header, not reading the
// data, not acknowledging it. The sender says so, in other words than for
// a receiver that is gone.
func TestSenderEndsAStalledReceiver(t *testing.T) {
	netns.Require(t)
	t.Parallel()
	check := func(t *testing.T, res result, step string, limit time.Duration, since time.Time) {
		t.Helper()
		var stalled *StalledError
		if !errors.As(res.err, &stalled) || !strings.Contains(res.err.Error(), step) {
			t.Fatalf("Send error = %v, want a StalledError that %s", res.err, step)
		}
		if errors.Is(res.err, ErrPeerGone) {
			t.Fatalf("Send error = %v: a stalled receiver is not a gone one", res.err)
		}
		took := time.Since(since)
		if took < limit || took > limit*9/8+2*time.Second {
			t.Fatalf("the stalled receiver was given up after %v, want %v to %v", took, limit, limit*9/8+2*time.Second)
		}
		t.Logf("after %v: %v", took.Round(time.Millisecond), res.err)
	}
	t.Run("does not decide", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		a, b := tcpPair(t)
		start := time.Now()
		send := async(func() (int64, error) {
			return Send(ctx, a, Header{Kind: KindRaw, Size: -1}, endless{}, Options{Timing: testTiming})
		})
		drain(b)
		beat(t, b)
		check(t, await(t, send, "Send"), "has not accepted or refused", testTiming.Decision, start)
	})
	t.Run("takes no data", func(t *testing.T) {
		t.Parallel()
		send, b, r := acceptedSender(t)
		for range 4 { // some data arrives, then the receiver stops reading
			if _, _, err := nextFrame(r); err != nil {
				t.Fatal(err)
			}
		}
		stopped := time.Now()
		beat(t, b)
		res := await(t, send, "Send")
		if res.n == 0 {
			t.Error("Send sent no data before it gave up")
		}
		check(t, res, "has taken no data", testTiming.Stall, stopped)
	})
	t.Run("does not acknowledge", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		a, b := tcpPair(t)
		send := async(func() (int64, error) {
			return Send(ctx, a, Header{Kind: KindRaw, Size: -1}, stream(5, 1<<20), Options{Timing: testTiming})
		})
		r := frame.NewReader(b, frame.MaxPayload)
		if typ, _, err := nextFrame(r); err != nil || typ != frame.Header {
			t.Fatalf("crafted receiver got %v, %v; want HEADER", typ, err)
		}
		if err := frame.Write(b, frame.Accept, nil); err != nil {
			t.Fatal(err)
		}
		beat(t, b)
		for {
			typ, _, err := nextFrame(r)
			if err != nil {
				t.Fatalf("crafted receiver: %v before END", err)
			}
			if typ == frame.End {
				break
			}
		}
		ended := time.Now()
		drain(b)
		check(t, await(t, send, "Send"), "has not acknowledged", testTiming.Stall, ended)
	})
}

func TestReceiverGoneMidStream(t *testing.T) {
	netns.Require(t)
	send, b, _ := acceptedSender(t)
	if _, err := io.CopyN(io.Discard, b, 300<<10); err != nil {
		t.Fatalf("read some data: %v", err)
	}
	closed := time.Now()
	b.Close()
	res := await(t, send, "Send")
	if res.err == nil {
		t.Fatal("Send returned nil although the receiver closed the stream mid-transfer")
	}
	if took := time.Since(closed); took > 3*time.Second {
		t.Errorf("Send noticed the closed stream after %v, want < 3s", took)
	}
	t.Logf("Send: %v after %v", res.err, time.Since(closed))
}

func TestIdleInput(t *testing.T) {
	netns.Require(t)
	t.Parallel()
	ctx := testContext(t)
	a, b := tcpPair(t)
	first, second := randomBytes(t, 100<<10), randomBytes(t, 1<<20)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.CloseWithError(errors.New("test over")) })
	go func() {
		time.Sleep(4 * testTiming.PeerTimeout) // no input at all yet
		pw.Write(first)
		time.Sleep(4 * testTiming.PeerTimeout) // idle in the middle of the data
		pw.Write(second)
		pw.Close()
	}()
	var dst bytes.Buffer
	recv := async(func() (int64, error) { return Receive(ctx, b, &dst, Options{Timing: testTiming}) })
	n, err := Send(ctx, a, Header{Kind: KindRaw, Size: -1}, pr, Options{Timing: testTiming})
	want := append(bytes.Clone(first), second...)
	if err != nil || n != int64(len(want)) {
		t.Fatalf("Send = %d, %v; want %d, nil", n, err, len(want))
	}
	res := await(t, recv, "Receive")
	if res.err != nil || res.n != int64(len(want)) {
		t.Fatalf("Receive = %d, %v; want %d, nil", res.n, res.err, len(want))
	}
	if !bytes.Equal(dst.Bytes(), want) {
		t.Fatal("received data differs")
	}
}

// slowWriter blocks on its first Write for delay.
type slowWriter struct {
	delay time.Duration
	slept bool
	*hashWriter
}

func (w *slowWriter) Write(p []byte) (int, error) {
	if !w.slept {
		w.slept = true
		time.Sleep(w.delay)
	}
	return w.hashWriter.Write(p)
}

func TestSlowReceiver(t *testing.T) {
	netns.Require(t)
	t.Parallel()
	const size = 8 << 20 // far more than the socket buffers hold
	want := streamSum(t, 3, size)
	slow := 3 * testTiming.PeerTimeout
	cases := []struct {
		name string
		dst  func(*hashWriter) io.Writer
		opt  Options
	}{
		{"output", func(h *hashWriter) io.Writer { return &slowWriter{delay: slow, hashWriter: h} }, Options{}},
		{"accept", nil, Options{Accept: func(Header) error { time.Sleep(slow); return nil }}},
		{"commit", nil, Options{Commit: func() error { time.Sleep(slow); return nil }}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			a, b := tcpPair(t)
			hw := newHashWriter()
			var dst io.Writer = hw
			if tc.dst != nil {
				dst = tc.dst(hw)
			}
			opt := tc.opt
			opt.Timing = testTiming
			recv := async(func() (int64, error) { return Receive(ctx, b, dst, opt) })
			start := time.Now()
			n, err := Send(ctx, a, Header{Kind: KindRaw, Size: -1}, stream(3, size), Options{Timing: testTiming})
			if err != nil || n != size {
				t.Fatalf("Send = %d, %v; want %d, nil", n, err, size)
			}
			if took := time.Since(start); took < slow {
				t.Errorf("Send returned after %v, before the slow receiver could have finished (%v)", took, slow)
			}
			res := await(t, recv, "Receive")
			if res.err != nil || res.n != size || hw.n != size {
				t.Fatalf("Receive = %d, %v, wrote %d; want %d, nil", res.n, res.err, hw.n, size)
			}
			if !bytes.Equal(hw.sum(), want) {
				t.Fatal("received data differs")
			}
		})
	}
}

// progressAt returns a Progress func that closes the returned channel once
// n bytes have been counted.
func progressAt(n int64) (func(int64), <-chan struct{}) {
	reached := make(chan struct{})
	var once atomic.Bool
	return func(got int64) {
		if got >= n && once.CompareAndSwap(false, true) {
			close(reached)
		}
	}, reached
}

func TestCancelSender(t *testing.T) {
	netns.Require(t)
	a, b := tcpPair(t)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	progress, reached := progressAt(1 << 20)
	recv := async(func() (int64, error) {
		return Receive(testContext(t), b, io.Discard, Options{Timing: testTiming, Progress: progress})
	})
	send := async(func() (int64, error) {
		return Send(ctx, a, Header{Kind: KindRaw, Size: -1}, endless{}, Options{Timing: testTiming})
	})
	select {
	case <-reached:
	case <-time.After(testWait):
		t.Fatal("no data arrived")
	}
	cancel()
	cancelled := time.Now()
	sres := await(t, send, "Send")
	if !errors.Is(sres.err, context.Canceled) {
		t.Errorf("Send error = %v, want context.Canceled", sres.err)
	}
	if took := time.Since(cancelled); took > time.Second {
		t.Errorf("Send returned %v after the cancel", took)
	}
	rres := await(t, recv, "Receive")
	var pe *PeerError
	if !errors.As(rres.err, &pe) {
		t.Fatalf("Receive error = %v (%T), want *PeerError", rres.err, rres.err)
	}
	if !strings.Contains(pe.Message, "interrupted") {
		t.Errorf("PeerError message %q does not say interrupted", pe.Message)
	}
}

func TestCancelReceiver(t *testing.T) {
	netns.Require(t)
	a, b := tcpPair(t)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	progress, reached := progressAt(1 << 20)
	recv := async(func() (int64, error) {
		return Receive(ctx, b, io.Discard, Options{Timing: testTiming, Progress: progress})
	})
	send := async(func() (int64, error) {
		return Send(testContext(t), a, Header{Kind: KindRaw, Size: -1}, endless{}, Options{Timing: testTiming})
	})
	select {
	case <-reached:
	case <-time.After(testWait):
		t.Fatal("no data arrived")
	}
	cancel()
	cancelled := time.Now()
	rres := await(t, recv, "Receive")
	if !errors.Is(rres.err, context.Canceled) {
		t.Errorf("Receive error = %v, want context.Canceled", rres.err)
	}
	if errors.As(rres.err, new(*IntegrityError)) {
		t.Errorf("Receive error %v is an IntegrityError; an interruption is not", rres.err)
	}
	sres := await(t, send, "Send")
	var pe *PeerError
	if !errors.As(sres.err, &pe) {
		t.Fatalf("Send error = %v (%T), want *PeerError", sres.err, sres.err)
	}
	if !strings.Contains(pe.Message, "interrupted") {
		t.Errorf("PeerError message %q does not say interrupted", pe.Message)
	}
	if took := time.Since(cancelled); took > 2*time.Second {
		t.Errorf("the sender learned of the interruption after %v", took)
	}
}

func TestCancelBeforeAccept(t *testing.T) {
	netns.Require(t)
	a, b := tcpPair(t)
	ctx, cancel := context.WithCancel(testContext(t))
	asked := make(chan struct{})
	recv := async(func() (int64, error) {
		return Receive(ctx, b, io.Discard, Options{Timing: testTiming, Accept: func(Header) error {
			close(asked)
			<-ctx.Done() // the user pressed ^C at the prompt
			return ctx.Err()
		}})
	})
	send := async(func() (int64, error) {
		return Send(testContext(t), a, Header{Kind: KindRaw, Size: -1}, endless{}, Options{Timing: testTiming})
	})
	select {
	case <-asked:
	case <-time.After(testWait):
		t.Fatal("Accept was not called")
	}
	cancel()
	rres := await(t, recv, "Receive")
	if !errors.Is(rres.err, context.Canceled) {
		t.Errorf("Receive error = %v, want context.Canceled", rres.err)
	}
	sres := await(t, send, "Send")
	if sres.err == nil || sres.n != 0 {
		t.Errorf("Send = %d, %v; want 0 bytes and an error", sres.n, sres.err)
	}
}

// TestHostileSender feeds hand-made frames to Receive.
func TestHostileSender(t *testing.T) {
	netns.Require(t)
	hdr := func(typ frame.Type, n uint32) []byte {
		b := make([]byte, frame.HeaderSize)
		b[0] = byte(typ)
		binary.BigEndian.PutUint32(b[1:], n)
		return b
	}
	fr := func(typ frame.Type, p string) []byte { return append(hdr(typ, uint32(len(p))), p...) }
	validHeader := fr(frame.Header, `{"kind":"raw","size":-1}`)
	cases := []struct {
		name   string
		before []byte // sent before ACCEPT is awaited (nil: a valid header)
		after  []byte // sent after ACCEPT
	}{
		{"oversized first frame", hdr(frame.Header, 0xffffffff), nil},
		{"oversized data frame", nil, hdr(frame.Data, 0xffffffff)},
		{"just over the limit", nil, hdr(frame.Data, frame.MaxPayload+1)},
		{"unknown type after accept", nil, fr(0x00, "x")},
		{"unknown type 0xff after accept", nil, fr(0xff, "")},
		{"second header", nil, validHeader},
		{"ack from the sender", nil, fr(frame.Ack, "")},
		{"accept from the sender", nil, fr(frame.Accept, "")},
		{"pake after accept", nil, fr(frame.PAKE, "{}")},
		{"lane that was not offered", nil, fr(frame.Lane, "127.0.0.1:1")},
		{"malformed header JSON", fr(frame.Header, `{"kind":`), nil},
		{"header not an object", fr(frame.Header, `[1,2,3]`), nil},
		{"header with trailing garbage", fr(frame.Header, `{"kind":"raw","size":-1}x`), nil},
		{"header without kind", fr(frame.Header, `{"size":5}`), nil},
		{"header with size -2", fr(frame.Header, `{"kind":"raw","size":-2}`), nil},
		{"header with negative count", fr(frame.Header, `{"kind":"raw","size":1,"count":-1}`), nil},
		{"header with a huge name", fr(frame.Header, `{"kind":"raw","size":1,"names":["`+strings.Repeat("n", 4097)+`"]}`), nil},
		{"header with a huge kind", fr(frame.Header, `{"kind":"`+strings.Repeat("k", 65)+`","size":1}`), nil},
		{"header with too many names", fr(frame.Header, `{"kind":"raw","size":1,"names":[`+strings.Repeat(`"a",`, 1000)+`"a"]}`), nil},
		{"empty header", fr(frame.Header, ""), nil},
		{"data before header", fr(frame.Data, "hello"), nil},
		{"end before header", fr(frame.End, ""), nil},
		{"accept before header", fr(frame.Accept, ""), nil},
		{"unknown type before header", fr('?', "hi"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			a, b := tcpPair(t)
			var commits atomic.Int32
			var dst bytes.Buffer
			recv := async(func() (int64, error) {
				return Receive(ctx, b, &dst, Options{Timing: testTiming, Commit: func() error { commits.Add(1); return nil }})
			})
			before := tc.before
			if before == nil {
				before = validHeader
			}
			if _, err := a.Write(before); err != nil {
				t.Fatal(err)
			}
			if tc.after != nil {
				r := frame.NewReader(a, frame.MaxPayload)
				a.SetReadDeadline(time.Now().Add(testWait))
				if typ, _, err := nextFrame(r); err != nil || typ != frame.Accept {
					t.Fatalf("crafted sender got %v, %v; want ACCEPT", typ, err)
				}
				if _, err := a.Write(tc.after); err != nil {
					t.Fatal(err)
				}
			}
			drain(a)
			res := await(t, recv, "Receive")
			var pe *ProtocolError
			if !errors.As(res.err, &pe) {
				t.Fatalf("Receive error = %v (%T), want a *ProtocolError", res.err, res.err)
			}
			if res.took >= testTiming.PeerTimeout {
				t.Errorf("Receive took %v: it waited for a timeout instead of failing at once", res.took)
			}
			if res.n != 0 || dst.Len() != 0 || commits.Load() != 0 {
				t.Errorf("Receive reported %d bytes, wrote %d and committed %d times", res.n, dst.Len(), commits.Load())
			}
		})
	}
}

// TestPeerErrorIsSanitized checks that a peer's ERROR message cannot put
// control characters on the user's terminal.
func TestPeerErrorIsSanitized(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	a, b := tcpPair(t)
	recv := async(func() (int64, error) { return Receive(ctx, b, io.Discard, Options{Timing: testTiming}) })
	msg := "disk full\x1b[2J\r\nrm -rf\x00" + strings.Repeat("x", 500)
	if err := frame.Write(a, frame.Error, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	res := await(t, recv, "Receive")
	var pe *PeerError
	if !errors.As(res.err, &pe) {
		t.Fatalf("Receive error = %v (%T), want *PeerError", res.err, res.err)
	}
	if !strings.HasPrefix(pe.Message, "disk full") {
		t.Errorf("message %q lost its text", pe.Message)
	}
	for _, r := range pe.Message {
		if r < 0x20 || r == 0x7f {
			t.Fatalf("message %q contains control character %U", pe.Message, r)
		}
	}
	if n := len([]rune(pe.Message)); n > 201 {
		t.Errorf("message of %d runes is not truncated", n)
	}
}

// TestHostileReceiver feeds hand-made answers to Send.
func TestHostileReceiver(t *testing.T) {
	netns.Require(t)
	cases := []struct {
		name        string
		answer      []byte
		afterAccept bool
		check       func(t *testing.T, err error)
	}{
		{"data instead of accept", []byte{byte(frame.Data), 0, 0, 0, 1, 'x'}, false, wantProtocolError},
		{"oversized answer", []byte{byte(frame.Accept), 0xff, 0xff, 0xff, 0xff}, false, wantProtocolError},
		{"holdings to a sender that did not ask", []byte{byte(frame.Have), 0, 0, 0, 1, 'x'}, false, wantProtocolError},
		{"lane offer to a sender that did not ask", []byte{byte(frame.Lane), 0, 0, 0, 1, 'x'}, false, wantProtocolError},
		{"ack before end", []byte{byte(frame.Ack), 0, 0, 0, 0}, true, wantProtocolError},
		{"unknown frame during data", []byte{'?', 0, 0, 0, 0}, true, wantProtocolError},
		{"received more than was sent", append([]byte{byte(frame.Received), 0, 0, 0, 8}, 0x7f, 0, 0, 0, 0, 0, 0, 0), true, wantProtocolError},
		{"malformed received", []byte{byte(frame.Received), 0, 0, 0, 3, 1, 2, 3}, true, wantProtocolError},
		{"reject with control characters", append([]byte{byte(frame.Reject), 0, 0, 0, 8}, "no\x1b[2Jway"[:8]...), false,
			func(t *testing.T, err error) {
				var rej *RejectedError
				if !errors.As(err, &rej) {
					t.Fatalf("Send error = %v (%T), want *RejectedError", err, err)
				}
				if strings.ContainsRune(rej.Reason, 0x1b) {
					t.Errorf("reject reason %q contains an escape character", rej.Reason)
				}
			}},
		{"error during data", append([]byte{byte(frame.Error), 0, 0, 0, 4}, "full"...), true,
			func(t *testing.T, err error) {
				var pe *PeerError
				if !errors.As(err, &pe) || pe.Message != "full" {
					t.Fatalf("Send error = %v (%T), want *PeerError(full)", err, err)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			a, b := tcpPair(t)
			send := async(func() (int64, error) {
				return Send(ctx, a, Header{Kind: KindRaw, Size: -1}, endless{}, Options{Timing: testTiming})
			})
			r := frame.NewReader(b, frame.MaxPayload)
			if typ, _, err := nextFrame(r); err != nil || typ != frame.Header {
				t.Fatalf("crafted receiver got %v, %v; want HEADER", typ, err)
			}
			if tc.afterAccept {
				if err := frame.Write(b, frame.Accept, nil); err != nil {
					t.Fatal(err)
				}
				if typ, _, err := nextFrame(r); err != nil || typ != frame.Data {
					t.Fatalf("crafted receiver got %v, %v; want DATA", typ, err)
				}
			}
			if _, err := b.Write(tc.answer); err != nil {
				t.Fatal(err)
			}
			drain(b)
			res := await(t, send, "Send")
			tc.check(t, res.err)
			if res.took >= 3*testTiming.PeerTimeout {
				t.Errorf("Send took %v", res.took)
			}
		})
	}
}

func wantProtocolError(t *testing.T, err error) {
	t.Helper()
	if !errors.As(err, new(*ProtocolError)) {
		t.Fatalf("error = %v (%T), want *ProtocolError", err, err)
	}
}

func TestHeaderValidation(t *testing.T) {
	if _, err := (Header{Size: -1}).marshal(); err == nil {
		t.Error("a header without kind marshals")
	}
	if _, err := (Header{Kind: KindRaw, Size: -5}).marshal(); err == nil {
		t.Error("a header with size -5 marshals")
	}
	h := Header{Kind: "tar+zstd", Names: []string{"a", "b/c"}, Size: 7, Count: 2}
	b, err := h.marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseHeader(b)
	if err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("parseHeader(marshal(h)) = %+v, %v; want %+v", got, err, h)
	}
}

// transferOf recognises a complete, valid transfer in raw sender bytes, the
// way the protocol defines one: optional heartbeats, a valid HEADER, DATA
// frames and heartbeats, and an END whose count and XXH3-128 digest match the
// DATA payloads. It returns the data and whether the bytes hold such a
// transfer.
func transferOf(in []byte) ([]byte, bool) {
	var data []byte
	gotHeader := false
	for {
		if len(in) < frame.HeaderSize {
			return nil, false
		}
		typ := frame.Type(in[0])
		n := binary.BigEndian.Uint32(in[1:frame.HeaderSize])
		if n > frame.MaxPayload || uint64(len(in)-frame.HeaderSize) < uint64(n) {
			return nil, false
		}
		p := in[frame.HeaderSize : frame.HeaderSize+int(n)]
		in = in[frame.HeaderSize+int(n):]
		switch {
		case typ == frame.Heartbeat:
		case !gotHeader && typ == frame.Header:
			if _, err := parseHeader(p); err != nil {
				return nil, false
			}
			gotHeader = true
		case gotHeader && typ == frame.Data:
			data = append(data, p...)
		case gotHeader && typ == frame.End:
			if len(p) != endSize || binary.BigEndian.Uint64(p[:8]) != uint64(len(data)) {
				return nil, false
			}
			sum := digestOf(data)
			if !bytes.Equal(p[8:], sum[:]) {
				return nil, false
			}
			if data == nil {
				data = []byte{}
			}
			return data, true
		default:
			return nil, false
		}
	}
}

var fuzzTiming = Timing{
	Heartbeat:   50 * time.Millisecond,
	PeerTimeout: 200 * time.Millisecond,
	CloseWait:   200 * time.Millisecond,
	AbortWait:   100 * time.Millisecond,
}

func FuzzReceive(f *testing.F) {
	netns.Require(f)
	frameOf := func(typ frame.Type, p []byte) []byte {
		b := make([]byte, frame.HeaderSize, frame.HeaderSize+len(p))
		frame.PutHeader(b, typ, len(p))
		return append(b, p...)
	}
	header := frameOf(frame.Header, []byte(`{"kind":"raw","size":-1}`))
	data := []byte("hello, world")
	valid := bytes.Join([][]byte{header, frameOf(frame.Data, data[:5]), frameOf(frame.Heartbeat, nil),
		frameOf(frame.Data, data[5:]), frameOf(frame.End, endPayload(uint64(len(data)), data))}, nil)
	f.Add(valid)
	f.Add(bytes.Join([][]byte{header, frameOf(frame.End, endPayload(0, nil))}, nil))
	f.Add(valid[:len(valid)-1])
	f.Add(append(bytes.Clone(valid), 0xde, 0xad))
	f.Add(bytes.Join([][]byte{header, frameOf(frame.Data, data), frameOf(frame.End, endPayload(uint64(len(data)), data[1:]))}, nil))
	f.Add(bytes.Join([][]byte{header, frameOf(frame.Data, data), frameOf(frame.Error, []byte("boom"))}, nil))
	f.Add([]byte{byte(frame.Header), 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Add(frameOf(frame.Data, data))
	f.Fuzz(func(t *testing.T, in []byte) {
		netns.Require(t)
		a, b := tcpPair(t)
		defer a.SetLinger(0) // no TIME_WAIT pile-up over many iterations
		defer b.SetLinger(0)
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			a.Write(in)
			a.CloseWrite()
			io.Copy(io.Discard, a)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var dst bytes.Buffer
		commits := 0
		n, err := Receive(ctx, b, &dst, Options{Timing: fuzzTiming, Commit: func() error { commits++; return nil }})
		b.Close()
		select {
		case <-wrote:
		case <-time.After(5 * time.Second):
			t.Fatal("the sender side did not finish")
		}
		want, ok := transferOf(in)
		if err == nil {
			if !ok {
				t.Fatalf("Receive accepted %q, which is not a valid complete transfer", in)
			}
			if !bytes.Equal(dst.Bytes(), want) || n != int64(len(want)) {
				t.Fatalf("Receive wrote %q (n=%d), want %q", dst.Bytes(), n, want)
			}
			if commits != 1 {
				t.Fatalf("Commit called %d times", commits)
			}
			return
		}
		if ok {
			t.Fatalf("Receive failed on a valid transfer %q: %v", in, err)
		}
		if commits != 0 {
			t.Fatalf("Commit called for a failed transfer: %v", err)
		}
		if n != int64(dst.Len()) {
			t.Fatalf("Receive reported %d bytes but wrote %d", n, dst.Len())
		}
		if errors.Is(err, ErrPeerGone) {
			t.Fatalf("Receive waited for a timeout on a closed stream: %v", err)
		}
	})
}

// failingReader yields n bytes, then an error, as a disk that fails would.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

// A failing input aborts the transfer: Send names the cause, and the
// receiver is told, not left with what looks like a truncated stream.
func TestInputFails(t *testing.T) {
	netns.Require(t)
	a, b := tcpPair(t)
	recv := async(func() (int64, error) {
		return Receive(testContext(t), b, io.Discard, Options{Timing: testTiming})
	})
	sres := await(t, async(func() (int64, error) {
		return Send(testContext(t), a, Header{Kind: KindRaw, Size: -1}, &failingReader{n: 3 << 20}, Options{Timing: testTiming})
	}), "Send")
	if sres.err == nil || !strings.Contains(sres.err.Error(), "disk on fire") {
		t.Fatalf("Send error = %v, want the input's error", sres.err)
	}
	rres := await(t, recv, "Receive")
	var pe *PeerError
	if !errors.As(rres.err, &pe) || !strings.Contains(pe.Message, "disk on fire") {
		t.Fatalf("Receive error = %v, want the sender's abort naming the cause", rres.err)
	}
}

func TestFirstChunksGrow(t *testing.T) {
	netns.Require(t)
	send, b, r := acceptedSender(t)
	var sizes []int
	for range 8 {
		typ, p, err := nextFrame(r)
		if err != nil || typ != frame.Data {
			t.Fatalf("crafted receiver got %v, %v; want DATA", typ, err)
		}
		sizes = append(sizes, len(p))
	}
	want := []int{16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 256 << 10, 256 << 10, 256 << 10}
	if !slices.Equal(sizes, want) {
		t.Fatalf("DATA frames of %v bytes, want %v: the first small, so that it arrives within a round trip, then growing to ChunkSize", sizes, want)
	}
	b.Close()
	await(t, send, "Send")
}

// pacedWriter takes bytes at a rate.
type pacedWriter struct{ rate float64 }

func (w pacedWriter) Write(p []byte) (int, error) {
	time.Sleep(time.Duration(float64(len(p)) / w.rate * float64(time.Second)))
	return len(p), nil
}

func TestReceiverReportsWhatItWrote(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	a, b := tcpPair(t)
	const size = 6 << 20
	var reports []int64
	var mu sync.Mutex
	send := async(func() (int64, error) {
		return Send(ctx, a, Header{Kind: KindRaw, Size: -1}, bytes.NewReader(randomBytes(t, size)), Options{
			Timing: testTiming,
			Delivered: func(n, _ int64) {
				mu.Lock()
				defer mu.Unlock()
				reports = append(reports, n)
			},
		})
	})
	recv := async(func() (int64, error) { return Receive(ctx, b, pacedWriter{rate: 20e6}, Options{Timing: testTiming}) })
	if r := await(t, recv, "Receive"); r.err != nil || r.n != size {
		t.Fatalf("Receive = %d, %v", r.n, r.err)
	}
	if r := await(t, send, "Send"); r.err != nil {
		t.Fatalf("Send: %v", r.err)
	}
	mu.Lock()
	defer mu.Unlock()
	// 6 MiB at 20 MB/s take 0.3 s: a report every 50 ms.
	if len(reports) < 3 || !slices.IsSorted(reports) || reports[len(reports)-1] > size {
		t.Fatalf("reports %v: want several, growing, none above %d", reports, size)
	}
}

func TestReceiverReportsOnlyToASenderThatTakesIt(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	a, b := tcpPair(t)
	recv := async(func() (int64, error) { return Receive(ctx, b, pacedWriter{rate: 10e6}, Options{Timing: testTiming}) })
	r := craftedSender(t, a) // a header without "progress"
	data := randomBytes(t, 1<<20)
	for i := 0; i < len(data); i += 64 << 10 {
		if err := frame.Write(a, frame.Data, data[i:i+64<<10]); err != nil {
			t.Fatal(err)
		}
	}
	if err := frame.Write(a, frame.End, endPayload(uint64(len(data)), data)); err != nil {
		t.Fatal(err)
	}
	if typ, _, err := nextFrame(r); err != nil || typ != frame.Ack {
		t.Fatalf("the sender that offered no progress got %v, %v; want ACK and nothing before", typ, err)
	}
	a.CloseWrite()
	await(t, recv, "Receive")
}

// What the sender is told of a refusal: an error's own words for its peer,
// "interrupted" for a receiver stopped while it decided, else the error.
func TestPeerMessage(t *testing.T) {
	for err, want := range map[error]string{
		fmt.Errorf("asking: %w", context.Canceled): "interrupted",
		errors.New("declined"):                     "declined",
		fmt.Errorf("checking: %w", forPeer{}):      "said to the peer",
	} {
		if got := peerMessage(err); got != want {
			t.Errorf("peerMessage(%v) = %q, want %q", err, got, want)
		}
	}
}

type forPeer struct{}

func (forPeer) Error() string       { return "said here" }
func (forPeer) PeerMessage() string { return "said to the peer" }

// A sender's stream reset in the middle of the data is a truncation for
// the receiver, told in a few words, not the muxer's chain of errors.
func TestResetMidStreamIsToldPlainly(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	ha, hb := connectedHosts(t)
	const proto = protocol.ID("/pcp/pipe-reset-test/1.0.0")
	got := make(chan error, 1)
	hb.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		_, err := Receive(ctx, s, io.Discard, Options{Timing: testTiming})
		got <- err
	})
	s, err := ha.NewStream(ctx, hb.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	progress, reached := progressAt(1 << 20)
	go Send(ctx, s, Header{Kind: KindRaw, Size: -1}, endless{}, Options{Timing: testTiming, Progress: progress})
	select {
	case <-reached:
	case <-time.After(testWait):
		t.Fatal("no data flowed")
	}
	s.Reset()
	select {
	case err := <-got:
		var ie *IntegrityError
		if !errors.As(err, &ie) || !errors.Is(err, network.ErrReset) {
			t.Fatalf("Receive error = %v, want an IntegrityError caused by a reset", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "the sender's side cut it") || strings.Contains(msg, "stream reset") {
			t.Fatalf("Receive error %q should say in plain words that the sender's side cut the stream", msg)
		}
		t.Logf("Receive: %v", err)
	case <-time.After(testWait):
		t.Fatal("Receive did not return after the reset")
	}
}

// The receiver's note goes with its ACCEPT to the sender, before any data
// is read from the input, in frame.Text's safe form.
func TestAcceptNote(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	a, b := tcpPair(t)
	recv := async(func() (int64, error) {
		return Receive(ctx, b, io.Discard, Options{Timing: testTiming, Note: "tar \u202egnp.exe"})
	})
	in := &countingReader{r: strings.NewReader("data")}
	var note string
	var readBefore int64 = -1
	n, err := Send(ctx, a, Header{Kind: KindRaw, Size: -1}, in, Options{Timing: testTiming, Noted: func(s string) {
		note, readBefore = s, in.reads.Load()
	}})
	if err != nil || n != 4 {
		t.Fatalf("Send = %d, %v", n, err)
	}
	if res := await(t, recv, "Receive"); res.err != nil {
		t.Fatalf("Receive: %v", res.err)
	}
	if note != "tar ?gnp.exe" || readBefore != 0 {
		t.Fatalf("Noted(%q) after %d reads of the input, want \"tar ?gnp.exe\" before any", note, readBefore)
	}
}

// An input idle for longer than the stall limit is still legal: the
// heartbeats go on, and so does the transfer.
func TestIdleInputLongerThanStall(t *testing.T) {
	netns.Require(t)
	t.Parallel()
	ctx := testContext(t)
	a, b := tcpPair(t)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.CloseWithError(errors.New("test over")) })
	go func() {
		pw.Write([]byte("before "))
		time.Sleep(2 * testTiming.Stall) // the sender's write deadline would have passed twice
		pw.Write([]byte("after"))
		pw.Close()
	}()
	var dst bytes.Buffer
	recv := async(func() (int64, error) { return Receive(ctx, b, &dst, Options{Timing: testTiming}) })
	if n, err := Send(ctx, a, Header{Kind: KindRaw, Size: -1}, pr, Options{Timing: testTiming}); err != nil || n != 12 {
		t.Fatalf("Send = %d, %v; want 12, nil", n, err)
	}
	if res := await(t, recv, "Receive"); res.err != nil || dst.String() != "before after" {
		t.Fatalf("Receive = %v, %q", res.err, dst.String())
	}
}

// What the receiver holds of the offer reaches the sender before any data,
// whole although it takes several frames, and only a sender that asks for
// it is told; one that is told too much stops.
func TestHoldings(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	holdings := randomBytes(t, 2*frame.MaxPayload+100)
	for _, asks := range []bool{true, false} {
		a, b := tcpPair(t)
		asked := false
		recv := async(func() (int64, error) {
			return Receive(ctx, b, io.Discard, Options{Timing: testTiming, Holding: func(Header) ([]byte, error) {
				asked = true
				return holdings, nil
			}})
		})
		var told []byte
		var order []string
		opt := Options{Timing: testTiming, Noted: func(string) { order = append(order, "noted") }}
		if asks {
			opt.Holds = func(h []byte) { told, order = h, append(order, "holds") }
		}
		if _, err := Send(ctx, a, Header{Kind: KindRaw, Size: -1}, strings.NewReader("data"), opt); err != nil {
			t.Fatalf("Send: %v", err)
		}
		if res := await(t, recv, "Receive"); res.err != nil {
			t.Fatalf("Receive: %v", res.err)
		}
		switch {
		case asked != asks:
			t.Errorf("sender asks %v: the receiver was asked %v", asks, asked)
		case asks && (!bytes.Equal(told, holdings) || !slices.Equal(order, []string{"holds", "noted"})):
			t.Errorf("the sender was told %d bytes (want %d, the same), in the order %v", len(told), len(holdings), order)
		}
	}

	a, b := tcpPair(t)
	send := async(func() (int64, error) {
		return Send(ctx, a, Header{Kind: KindRaw, Size: -1}, endless{}, Options{Timing: testTiming, Holds: func([]byte) {}})
	})
	r := frame.NewReader(b, frame.MaxPayload)
	if typ, _, err := nextFrame(r); err != nil || typ != frame.Header {
		t.Fatalf("crafted receiver got %v, %v; want HEADER", typ, err)
	}
	drain(b)
	part := make([]byte, frame.MaxPayload)
	for range MaxHoldings/len(part) + 1 {
		if err := frame.Write(b, frame.Have, part); err != nil {
			break // the sender stopped reading
		}
	}
	wantProtocolError(t, await(t, send, "Send").err)
}
