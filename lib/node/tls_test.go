package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// countedConn counts the system calls a connection's user makes.
type countedConn struct {
	net.Conn
	reads, writes, written atomic.Int64
}

func (c *countedConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

func (c *countedConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// tlsPair connects a client and a server over TCP on loopback, each socket
// with 4 MiB of kernel buffers, and secures the connection with the two
// transports.
func tlsPair(t *testing.T, client, server func(crypto.PrivKey) (sec.SecureTransport, error)) (c, s sec.SecureConn, craw, sraw *countedConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	dialed, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var in net.Conn
	select {
	case in = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted in 10s")
	}
	for _, c := range []net.Conn{dialed, in} {
		c.(*net.TCPConn).SetReadBuffer(4 << 20)
		c.(*net.TCPConn).SetWriteBuffer(4 << 20)
		t.Cleanup(func() { c.Close() })
	}
	key := func() (crypto.PrivKey, peer.ID) {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(k)
		return k, id
	}
	ckey, _ := key()
	skey, sid := key()
	ct, err := client(ckey)
	if err != nil {
		t.Fatal(err)
	}
	st, err := server(skey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	craw, sraw = &countedConn{Conn: dialed}, &countedConn{Conn: in}
	secured := make(chan error, 1)
	go func() {
		var err error
		s, err = st.SecureInbound(ctx, sraw, "")
		secured <- err
	}()
	c, err = ct.SecureOutbound(ctx, craw, sid)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-secured; err != nil {
		t.Fatal(err)
	}
	// The handshake's last flight may still be on its way to a reader.
	c.Write([]byte("hello"))
	if _, err := io.ReadFull(s, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	return c, s, craw, sraw
}

func batched(k crypto.PrivKey) (sec.SecureTransport, error) {
	return newBatchedTLS(libp2ptls.ID, k, nil)
}

func plain(k crypto.PrivKey) (sec.SecureTransport, error) {
	return libp2ptls.New(libp2ptls.ID, k, nil)
}

// TestBatchedTLSWritesWholeAndReadsAhead: each write of a yamux message's
// size reaches the socket in one system call (crypto/tls alone makes one per
// 16 KiB record), a streaming peer is read in pieces of up to readAhead,
// and the bytes arrive as they were sent.
func TestBatchedTLSWritesWholeAndReadsAhead(t *testing.T) {
	c, s, craw, sraw := tlsPair(t, batched, batched)
	data := make([]byte, 4*messageSize)
	rand.Read(data)
	w0, b0, r0 := craw.writes.Load(), craw.written.Load(), sraw.reads.Load()
	for p := data; len(p) > 0; p = p[messageSize:] {
		if _, err := c.Write(p[:messageSize]); err != nil {
			t.Fatal(err)
		}
	}
	// The writes return once queued: wait until all of it is in the
	// receiver's socket (4 MiB of buffers) before reading.
	for deadline := time.Now().Add(10 * time.Second); craw.written.Load()-b0 < int64(len(data)); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d bytes reached the socket within 10s", craw.written.Load()-b0, len(data))
		}
	}
	if w := craw.writes.Load() - w0; w != 4 {
		t.Errorf("4 writes of %d bytes made %d writes to the socket, want 4", messageSize, w)
	}
	got := make([]byte, len(data))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the bytes read differ from those written")
	}
	// A first read of the size crypto/tls asks for, then ahead: 4 or 5
	// reads of up to 256 KiB (crypto/tls alone: about 40).
	if r := sraw.reads.Load() - r0; r > 8 {
		t.Errorf("reading %d bytes took %d reads of the socket, want at most 8", len(data), r)
	}
	// A short message afterwards: no read-ahead buffer is left behind.
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, got[:3]); err != nil || string(got[:3]) != "bye" {
		t.Fatalf("read %q, %v; want bye", got[:3], err)
	}
	sock := s.(*batchedConn).s
	if sock.aheadBuf != nil || len(sock.ahead) != 0 {
		t.Errorf("%d bytes ahead after the last byte was read", len(sock.ahead))
	}
}

// TestBatchedTLSSpeaksPlainTLS: the batching is invisible on the wire; each
// side talks with go-libp2p's own TLS transport on the other.
func TestBatchedTLSSpeaksPlainTLS(t *testing.T) {
	for _, tc := range []struct {
		name           string
		client, server func(crypto.PrivKey) (sec.SecureTransport, error)
	}{{"batched client", batched, plain}, {"batched server", plain, batched}} {
		t.Run(tc.name, func(t *testing.T) {
			c, s, _, _ := tlsPair(t, tc.client, tc.server)
			for _, pair := range [][2]sec.SecureConn{{c, s}, {s, c}} {
				data := make([]byte, 3*messageSize+1234)
				rand.Read(data)
				done := make(chan error, 1)
				go func() {
					_, err := pair[0].Write(data)
					done <- err
				}()
				got := make([]byte, len(data))
				if _, err := io.ReadFull(pair[1], got); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatal("the bytes read differ from those written")
				}
			}
		})
	}
}

// TestBatchedTLSCloseSendsEverything: the writes return before their
// records reach the socket, but a Close right after them delivers them all
// before the connection closes: the peer reads every byte, then the end.
func TestBatchedTLSCloseSendsEverything(t *testing.T) {
	c, s, _, _ := tlsPair(t, batched, plain)
	data := make([]byte, 8*messageSize)
	rand.Read(data)
	read := make(chan []byte, 1)
	go func() {
		b, err := io.ReadAll(s)
		if err != nil {
			t.Errorf("read to the end: %v", err)
		}
		read <- b
	}()
	for p := data; len(p) > 0; p = p[messageSize:] {
		if _, err := c.Write(p[:messageSize]); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case got := <-read:
		if !bytes.Equal(got, data) {
			t.Fatalf("the peer read %d bytes, not the %d written", len(got), len(data))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the peer read no end of stream within 10s")
	}
}

// TestBatchedTLSWriteFailsOnceThePeerIsGone: a write behind that fails
// fails a later write, and nothing hangs.
func TestBatchedTLSWriteFailsOnceThePeerIsGone(t *testing.T) {
	c, s, _, sraw := tlsPair(t, batched, plain)
	sraw.Conn.(*net.TCPConn).SetLinger(0) // closing resets the connection
	s.Close()
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	data := make([]byte, messageSize)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Write(data)
		time.Sleep(10 * time.Millisecond)
	}
	if err == nil {
		t.Fatal("100 writes to a peer that reset the connection all succeeded")
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the writes timed out instead of failing: %v", err)
	}
}
