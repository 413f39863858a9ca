package node

import (
	"context"
	"net"
	"sync"

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
// wakes the reader for. Gathering the records of each write, and reading
// ahead while the peer streams, made pcp-pipe on loopback about a fifth
// faster for the same bytes on the wire (make bench: bench.sh).
const (
	// gatherSize bounds the records gathered into one write: yamux's
	// largest message (messageSize) with its records' framing.
	gatherSize = 264 << 10
	// readAhead is what one read takes while the peer streams.
	readAhead = 256 << 10
)

// batchedTLS is go-libp2p's TLS 1.3 security transport, the same protocol
// on the wire, with each write of a secured connection reaching the socket
// whole and its reads taken in large pieces while the peer streams.
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
	s := &socket{Conn: insecure}
	c, err := t.Transport.SecureInbound(ctx, s, p)
	if err != nil {
		return nil, err
	}
	return &batchedConn{SecureConn: c, s: s}, nil
}

// SecureOutbound implements sec.SecureTransport.
func (t *batchedTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	s := &socket{Conn: insecure}
	c, err := t.Transport.SecureOutbound(ctx, s, p)
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

// Write writes p's records to the socket together once they are all sealed:
// it returns, as crypto/tls does, once the socket has taken them.
func (c *batchedConn) Write(p []byte) (int, error) {
	c.s.gather()
	n, err := c.SecureConn.Write(p)
	if ferr := c.s.release(); err == nil {
		err = ferr
	}
	return n, err
}

// socket is the connection under TLS: it gathers the records written while
// a write of the TLS connection runs, and reads ahead while the peer
// streams. crypto/tls reads it from one goroutine at a time; writes may come
// from several (a write and a record that a read answers), in the order in
// which TLS sealed them.
type socket struct {
	net.Conn

	wmu       sync.Mutex
	gathering int    // writes of the TLS connection under way
	out       []byte // the records they wrote so far, from the pool

	streaming bool   // whether the last read filled the buffer it had
	ahead     []byte // bytes read ahead and not yet handed out
	aheadBuf  []byte // the pooled buffer ahead lies in
	aheadErr  error  // the error of the read that filled ahead
}

func (s *socket) gather() {
	s.wmu.Lock()
	s.gathering++
	s.wmu.Unlock()
}

// release ends a write of the TLS connection; the last one under way sends
// what they gathered.
func (s *socket) release() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.gathering--
	if s.gathering > 0 {
		return nil
	}
	err := s.flush()
	if s.out != nil {
		pool.Put(s.out[:cap(s.out)])
		s.out = nil
	}
	return err
}

// flush writes what was gathered; s.wmu is held.
func (s *socket) flush() error {
	if len(s.out) == 0 {
		return nil
	}
	_, err := s.Conn.Write(s.out)
	s.out = s.out[:0]
	return err
}

// Write takes a record from crypto/tls: it gathers it while a write of the
// TLS connection runs, and writes it at once otherwise (the handshake's
// flights, which crypto/tls gathers itself).
func (s *socket) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.gathering == 0 {
		return s.Conn.Write(p)
	}
	if s.out == nil {
		s.out = pool.Get(gatherSize)[:0]
	}
	if len(s.out)+len(p) > cap(s.out) {
		if err := s.flush(); err != nil {
			return 0, err
		}
		if len(p) > cap(s.out) {
			return s.Conn.Write(p)
		}
	}
	s.out = append(s.out, p...)
	return len(p), nil
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
