package node

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	pool "github.com/libp2p/go-buffer-pool"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/net/upgrader"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// The socket's side of TLS. crypto/tls hands every record, at most 16 KiB,
// to the socket in its own write, and reads the next record's bytes with a
// read the size of what it still lacks: on a stream, four to sixteen system
// calls where plain TCP makes one, and on loopback each write is a segment
// of its own that the kernel carries through its whole network stack and
// wakes the reader for; and it seals the records and writes them one after
// the other, on one core. Gathering the records of each write and writing
// them behind, while TLS seals the next, and reading ahead while the peer
// streams, made pcp-pipe on loopback a quarter faster for the same bytes on
// the wire (2 GiB: 2.35 s, then 1.95 gathered, 1.86 written behind).
const (
	// gatherSize is the least buffer that the records gathered into one
	// write take: yamux's largest message (messageSize) with its records'
	// framing. (The pool rounds it up to 512 KiB.)
	gatherSize = 264 << 10
	// readAhead is what one read takes while the peer streams.
	readAhead = 256 << 10
)

// batchedTLS is go-libp2p's TLS 1.3 security transport, the same protocol
// on the wire, with each write of a secured connection reaching the socket
// whole, behind the writer, and its reads taken in large pieces while the
// peer streams.
type batchedTLS struct{ *libp2ptls.Transport }

// newBatchedTLS has the signature of libp2ptls.New, for libp2p.Security.
func newBatchedTLS(id protocol.ID, key crypto.PrivKey, muxers []upgrader.StreamMuxer) (*batchedTLS, error) {
	t, err := libp2ptls.New(id, key, muxers)
	if err != nil {
		return nil, err
	}
	return &batchedTLS{t}, nil
}

// SecureInbound implements sec.SecureTransport.
func (t *batchedTLS) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	return secureBatched(insecure, func(s net.Conn) (sec.SecureConn, error) { return t.Transport.SecureInbound(ctx, s, p) })
}

// SecureOutbound implements sec.SecureTransport.
func (t *batchedTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	return secureBatched(insecure, func(s net.Conn) (sec.SecureConn, error) { return t.Transport.SecureOutbound(ctx, s, p) })
}

// secureBatched secures insecure, through a socket, with secure.
func secureBatched(insecure net.Conn, secure func(net.Conn) (sec.SecureConn, error)) (sec.SecureConn, error) {
	s := newSocket(insecure)
	c, err := secure(s)
	if err != nil {
		return nil, err
	}
	return &batchedConn{SecureConn: c, s: s}, nil
}

// batchedConn is a TLS connection whose writes reach its socket whole.
type batchedConn struct {
	sec.SecureConn
	s *socket
}

// Write queues p's records for the socket together once they are all
// sealed, and returns: see socket.
func (c *batchedConn) Write(p []byte) (int, error) {
	c.s.gather()
	n, err := c.SecureConn.Write(p)
	if ferr := c.s.release(); err == nil {
		err = ferr
	}
	return n, err
}

// socket is the connection under TLS: it gathers the records written while
// a write of the TLS connection runs, hands them to a goroutine of its own
// that writes them to the connection in the order given, and reads ahead
// while the peer streams. crypto/tls reads it from one goroutine at a time;
// writes may come from several (a write and a record that a read answers),
// in the order in which TLS sealed them.
//
// Writing behind lets TLS seal the next message while the kernel takes the
// last: the sealing and the system call, which crypto/tls makes one after
// the other, then use two cores. A write of the TLS connection returns once
// its records are queued, with at most one more buffer queued behind the
// one being written; a write's error shows on a later one. A record that
// TLS writes outside its writes (an alert, close_notify at Close) is written
// before it returns, after everything queued before it: close_notify is
// never sent before the data, and Close, which sends it, waits for the data
// (for the 5 s that crypto/tls gives close_notify; at most two buffers wait
// here beyond what the kernel holds, and pcp closes a connection only once
// its peer has acknowledged what it needed).
type socket struct {
	net.Conn

	wmu       sync.Mutex
	gathering int    // writes of the TLS connection under way
	out       []byte // the records they wrote so far, from the pool
	queue     chan queued
	closed    chan struct{}
	closeOnce sync.Once
	failed    atomic.Pointer[error] // the first error of a write behind

	streaming bool   // whether the last read filled the buffer it had
	ahead     []byte // bytes read ahead and not yet handed out
	aheadBuf  []byte // the pooled buffer ahead lies in
	aheadErr  error  // the error of the read that filled ahead
}

// queued is a buffer, from the pool, for the connection; done, if not nil,
// receives the write's error.
type queued struct {
	buf  []byte
	done chan error
}

func newSocket(c net.Conn) *socket {
	return &socket{Conn: c, closed: make(chan struct{})}
}

func (s *socket) gather() {
	s.wmu.Lock()
	s.gathering++
	s.wmu.Unlock()
}

// release ends a write of the TLS connection; the last one under way queues
// what they gathered.
func (s *socket) release() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.gathering--
	if s.gathering > 0 {
		return nil
	}
	return s.flush()
}

// flush queues what was gathered; s.wmu is held.
func (s *socket) flush() error {
	out := s.out
	s.out = nil
	if len(out) == 0 {
		if out != nil {
			pool.Put(out[:cap(out)])
		}
		return nil
	}
	return s.enqueue(queued{buf: out})
}

// enqueue hands q to the writer, which it starts on first use; s.wmu is
// held.
func (s *socket) enqueue(q queued) error {
	if err := s.failed.Load(); err != nil {
		pool.Put(q.buf[:cap(q.buf)])
		return *err
	}
	if s.queue == nil {
		s.queue = make(chan queued, 1)
		go s.writeBehind()
	}
	select {
	case s.queue <- q:
		return nil
	case <-s.closed:
		pool.Put(q.buf[:cap(q.buf)])
		return net.ErrClosed
	}
}

// writeBehind writes what is queued until the socket closes; after an
// error it writes nothing more and reports the error for each.
func (s *socket) writeBehind() {
	for {
		select {
		case q := <-s.queue:
			var err error
			if failed := s.failed.Load(); failed != nil {
				err = *failed
			} else if _, err = s.Conn.Write(q.buf); err != nil {
				s.failed.Store(&err)
			}
			pool.Put(q.buf[:cap(q.buf)])
			if q.done != nil {
				q.done <- err
			}
		case <-s.closed:
			return
		}
	}
}

// Write takes a record from crypto/tls: it gathers it while a write of the
// TLS connection runs. Otherwise it writes it before it returns: at once
// before anything was queued (the handshake's flights, which crypto/tls
// gathers itself), else behind what was.
func (s *socket) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.gathering == 0 {
		if s.queue == nil {
			return s.Conn.Write(p)
		}
		buf := pool.Get(len(p))
		copy(buf, p)
		done := make(chan error, 1)
		if err := s.enqueue(queued{buf: buf, done: done}); err != nil {
			return 0, err
		}
		select {
		case err := <-done:
			if err != nil {
				return 0, err
			}
			return len(p), nil
		case <-s.closed:
			return 0, net.ErrClosed
		}
	}
	if s.out != nil && len(s.out)+len(p) > cap(s.out) {
		if err := s.flush(); err != nil {
			return 0, err
		}
	}
	if s.out == nil {
		s.out = pool.Get(max(gatherSize, len(p)))[:0]
	}
	s.out = append(s.out, p...)
	return len(p), nil
}

// Close stops the writer and closes the connection; what is still queued
// is dropped (TLS's Close sends close_notify first, which waits for it).
func (s *socket) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return s.Conn.Close()
}

// Read reads into p directly until a read fills p: then the peer is
// streaming, and each read takes up to readAhead bytes into a pooled buffer
// that the following reads hand out, until a read no longer fills more than
// the caller asked for. An idle connection holds no buffer, unless it
// streamed last.
func (s *socket) Read(p []byte) (int, error) {
	if len(s.ahead) > 0 {
		n := copy(p, s.ahead)
		s.ahead = s.ahead[n:]
		if len(s.ahead) > 0 {
			return n, nil
		}
		pool.Put(s.aheadBuf)
		s.aheadBuf, s.ahead = nil, nil
		err := s.aheadErr
		s.aheadErr = nil
		return n, err
	}
	if !s.streaming || len(p) >= readAhead {
		n, err := s.Conn.Read(p)
		s.streaming = n == len(p)
		return n, err
	}
	buf := pool.Get(readAhead)
	n, err := s.Conn.Read(buf)
	s.streaming = n > len(p)
	m := copy(p, buf[:n])
	if m == n {
		pool.Put(buf)
		return m, err
	}
	s.aheadBuf, s.ahead, s.aheadErr = buf, buf[m:n], err
	return m, nil
}
