// Package lane is a data path of its own beside a libp2p connection on the
// local network: one plain TCP connection whose bytes travel in AES-256-GCM
// records, under a fresh key that one side draws and hands to the other
// over the stream they already authenticated.
//
// On a local network the CPU, not the link, limits a transfer, and the
// libp2p stream costs it four copies of every byte in Go (the muxer queues
// a copy of each message, TLS copies it into its record, and on receipt
// into the muxer's buffer, which the reader copies out) besides the
// encryption. A lane's records are sealed straight from the writer's buffer
// and opened straight into the reader's: on the development machine's
// loopback pcp-pipe moved 2 GiB in 1.6 s over a lane, in 1.9 s over the
// libp2p stream (a plain TCP copy: 0.9 s).
//
// The record format: a 4-byte big-endian length, then that many bytes of
// AES-256-GCM ciphertext (the plaintext and its 16-byte tag), sealed with
// the length as additional data and the record's number (counted from 0
// in each direction) as nonce. Each direction has its own key, derived
// with HKDF-SHA256 from the key of the offer. A record with no plaintext
// ends the writer's direction (as TLS's close_notify): a connection that
// ends without one was cut. Each side's first record is its hello, which
// proves to the other that it holds the key; the listener greets first,
// and the dialer writes nothing before it has read that hello.
package lane

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// KeySize is the size of a lane's key.
const KeySize = 32

// MaxRecord is the largest plaintext of one record: a pipe's largest frame
// (256 KiB of data and its 5-byte header) fits in one.
const MaxRecord = 256<<10 + 64

const (
	headerSize = 4
	tagSize    = 16
	// readSize is the read buffer of a side that takes big records:
	// records arrive in whole reads of up to this much, and a record cut
	// by the end of the buffer is moved to its front (on average half a
	// record per 16). A side that has read only small records (a sender
	// reads the receiver's reports) has 64 KiB.
	readSize = 16 * (headerSize + MaxRecord + tagSize)
)

// The hellos, each side's first record: the listener's, then the dialer's.
var (
	listenerHello = []byte("pcp-lane/1 listener hello")
	dialerHello   = []byte("pcp-lane/1 dialer hello")
)

// ErrCut reports a lane that ended without its writer's closing record.
var ErrCut = errors.New("lane: the connection ended without its closing record")

// ErrForged reports a record that does not open under the lane's key: it
// was changed on the way, or it is not from the peer.
var ErrForged = errors.New("lane: a record failed authentication")

// Offer is what the listening side tells its peer so that it can dial the
// lane: the port, and the key.
type Offer struct {
	Port uint16
	Key  [KeySize]byte
}

// Marshal encodes o as 2 bytes of port, then the key.
func (o Offer) Marshal() []byte {
	return append(binary.BigEndian.AppendUint16(nil, o.Port), o.Key[:]...)
}

// ParseOffer decodes what Marshal encoded.
func ParseOffer(p []byte) (Offer, error) {
	var o Offer
	if len(p) != 2+KeySize {
		return o, fmt.Errorf("lane offer of %d bytes, want %d", len(p), 2+KeySize)
	}
	o.Port = binary.BigEndian.Uint16(p)
	copy(o.Key[:], p[2:])
	if o.Port == 0 {
		return o, errors.New("lane offer with port 0")
	}
	return o, nil
}

// Conn is one end of a lane. Reads and writes may run at once, one of
// each; CloseWrite and the deadlines may be called at any time.
type Conn struct {
	tcp *net.TCPConn

	wmu    sync.Mutex // one Write or CloseWrite at a time
	seal   cipher.AEAD
	sealed uint64 // records sealed so far: the next record's number
	wnonce [12]byte
	// Written behind: a record is sealed into a spare buffer and queued
	// for a goroutine that writes it to the socket, so that sealing the
	// next record and the system call for this one use two cores. There
	// are two buffers: one being written, one being sealed.
	spare  chan []byte
	queue  chan []byte
	closed chan struct{} // closed by Close: the writer stops
	close  sync.Once
	fmu    sync.Mutex
	failed error // once a write failed or the direction was closed, every later one fails

	open   cipher.AEAD
	opened uint64
	rnonce [12]byte
	rbuf   []byte // rbuf[rpos:rend] arrived and is not yet opened
	rpos   int
	rend   int
	plain  []byte // opened and not yet read
	rerr   error
}

// keys derives the two directions' keys from an offer's key.
func keys(key [KeySize]byte) (dialer, listener cipher.AEAD, err error) {
	aead := func(info string) (cipher.AEAD, error) {
		k, err := hkdf.Key(sha256.New, key[:], nil, info, 32)
		if err != nil {
			return nil, err
		}
		b, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	}
	if dialer, err = aead("pcp-lane/1 dialer to listener"); err != nil {
		return nil, nil, err
	}
	listener, err = aead("pcp-lane/1 listener to dialer")
	return dialer, listener, err
}

func newConn(tcp *net.TCPConn, seal, open cipher.AEAD) *Conn {
	c := &Conn{tcp: tcp, seal: seal, open: open, spare: make(chan []byte, 2), queue: make(chan []byte, 2), closed: make(chan struct{})}
	c.spare <- nil
	c.spare <- nil
	go c.writeBehind()
	return c
}

// writeBehind writes the queued records in order until Close. After a
// failed write it writes nothing more.
func (c *Conn) writeBehind() {
	for {
		select {
		case b := <-c.queue:
			if c.failure() == nil {
				if _, err := c.tcp.Write(b); err != nil {
					// The peer cannot tell where a torn record ended.
					c.fail(err)
				}
			}
			c.spare <- b
		case <-c.closed:
			return
		}
	}
}

func (c *Conn) fail(err error) {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if c.failed == nil {
		c.failed = err
	}
}

func (c *Conn) failure() error {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	return c.failed
}

// Dial connects from the address local (port chosen by the system) to the
// lane that o offers at remote. It writes nothing: the lane is ready once
// Greet has succeeded. Dialling from the address of this end of the libp2p
// connection beside the lane makes the lane come from where the listener
// expects it, even when the interface has several addresses.
func Dial(ctx context.Context, local, remote net.IP, o Offer) (*Conn, error) {
	addr := net.JoinHostPort(remote.String(), strconv.Itoa(int(o.Port)))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local}}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial lane %s: %w", addr, err)
	}
	dialer, listener, err := keys(o.Key)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return newConn(nc.(*net.TCPConn), dialer, listener), nil
}

// Greet waits until ctx ends for the listener's hello and only then sends
// the dialer's. Until the other end has shown that it holds the key, the
// dialer writes nothing: a peer that offered the port of some other
// service at its address (which may be this machine's loopback) gets not
// one byte into it.
func (c *Conn) Greet(ctx context.Context) error {
	if err := c.readHello(ctx, listenerHello); err != nil {
		return fmt.Errorf("lane %s: %w", c.RemoteAddr(), err)
	}
	if _, err := c.Write(dialerHello); err != nil {
		return fmt.Errorf("lane %s: send hello: %w", c.RemoteAddr(), err)
	}
	return nil
}

// Listener waits for the peer's lane.
type Listener struct {
	tcp *net.TCPListener
	key [KeySize]byte
}

// Listen opens a lane's listener on ip, with a fresh key.
func Listen(ip net.IP) (*Listener, error) {
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip})
	if err != nil {
		return nil, fmt.Errorf("listen for a lane on %s: %w", ip, err)
	}
	ln := &Listener{tcp: l}
	rand.Read(ln.key[:])
	return ln, nil
}

// Offer is what the peer needs to dial this listener.
func (l *Listener) Offer() Offer {
	return Offer{Port: uint16(l.tcp.Addr().(*net.TCPAddr).Port), Key: l.key}
}

// Close stops listening; a lane already accepted stays.
func (l *Listener) Close() error { return l.tcp.Close() }

// Accept waits until ctx ends for a connection from the address from (the
// peer's address of the libp2p connection beside the lane: a NAT between
// the two peers maps the lane's to the same), sends it the listener's
// hello, and waits for the dialer's. Connections from elsewhere are closed
// at once; one from there that does not greet within the time left fails
// the accept.
func (l *Listener) Accept(ctx context.Context, from net.IP) (*Conn, error) {
	deadline := deadlineOf(ctx)
	l.tcp.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { l.tcp.SetDeadline(time.Now()) })
	defer stop()
	for {
		nc, err := l.tcp.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("wait for the lane from %s: %w", from, ctx.Err())
			}
			return nil, fmt.Errorf("wait for the lane from %s: %w", from, err)
		}
		if !nc.RemoteAddr().(*net.TCPAddr).IP.Equal(from) {
			nc.Close()
			continue
		}
		dialer, listener, err := keys(l.key)
		if err != nil {
			nc.Close()
			return nil, err
		}
		c := newConn(nc, listener, dialer)
		c.SetWriteDeadline(deadline)
		_, err = c.Write(listenerHello)
		if err == nil {
			err = c.readHello(ctx, dialerHello)
		}
		c.SetWriteDeadline(time.Time{})
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("lane from %s: %w", from, err)
		}
		return c, nil
	}
}

// deadlineOf is ctx's deadline, or a minute from now for a context without
// one: no wait for a peer is without an end.
func deadlineOf(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(time.Minute)
}

// readHello reads the peer's first record, which must be want, until ctx
// ends.
func (c *Conn) readHello(ctx context.Context, want []byte) error {
	c.tcp.SetReadDeadline(deadlineOf(ctx))
	stop := context.AfterFunc(ctx, func() { c.tcp.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, len(want))
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	if string(buf[:n]) != string(want) || len(c.plain) > 0 {
		return errors.New("no hello")
	}
	if !stop() { // the context ended meanwhile, and set a deadline in the past
		return fmt.Errorf("read hello: %w", ctx.Err())
	}
	return c.tcp.SetReadDeadline(time.Time{})
}

// nonce is record number n's nonce.
func nonce(b *[12]byte, n uint64) []byte {
	binary.BigEndian.PutUint64(b[4:], n)
	return b[:]
}

// Write seals p in records of at most MaxRecord and queues each for one
// write of the socket. A failed write of the socket fails the Write that
// finds it, and every later one: then the lane can only be closed. The
// socket's write deadline bounds how long a Write waits for the writes
// before it.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxRecord)]
		if err := c.queueRecords(chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, c.failure()
}

// WriteSplit is Write of the parts one after the other, but each part
// (of at most MaxRecord) is a record of its own, and all go in one write
// of the socket. A reader that reads each part with a read of its own, as
// a frame reader reads a header and then the payload, gets each opened
// straight into its buffer, where a record that held both would be opened
// into the lane's and copied out.
func (c *Conn) WriteSplit(parts ...[]byte) (int, error) {
	n := 0
	for _, p := range parts {
		if len(p) > MaxRecord {
			return c.Write(slices.Concat(parts...))
		}
		n += len(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.queueRecords(parts...); err != nil {
		return 0, err
	}
	return n, c.failure()
}

// queueRecords seals each non-empty part as a record into a spare buffer
// and queues it for the writer.
func (c *Conn) queueRecords(parts ...[]byte) error {
	if err := c.failure(); err != nil {
		return err
	}
	var b []byte
	select {
	case b = <-c.spare:
	case <-c.closed:
		return net.ErrClosed
	}
	if err := c.failure(); err != nil {
		c.spare <- b
		return err
	}
	b = b[:0]
	for _, p := range parts {
		if len(p) > 0 {
			b = c.appendRecord(b, p)
		}
	}
	c.queue <- b
	return nil
}

// appendRecord seals p as the next record onto b, in a bigger buffer if b
// has no room for it.
func (c *Conn) appendRecord(b, p []byte) []byte {
	at := len(b)
	size := headerSize + len(p) + tagSize
	if cap(b)-at < size {
		nb := make([]byte, at, max(at+size, 64<<10))
		copy(nb, b)
		b = nb
	}
	b = b[:at+size]
	rec := b[at:]
	binary.BigEndian.PutUint32(rec, uint32(len(p)+tagSize))
	c.seal.Seal(rec[headerSize:headerSize], nonce(&c.wnonce, c.sealed), p, rec[:headerSize])
	c.sealed++
	return b
}

// CloseWrite waits for the queued records to be written, then sends the
// closing record and shuts the socket's write side: the peer's reads end
// with io.EOF once they reach it. It fails only if the record could not be
// written.
func (c *Conn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var bufs [2][]byte
	for i := range bufs {
		select {
		case bufs[i] = <-c.spare:
			defer func() { c.spare <- bufs[i] }()
		case <-c.closed:
			return net.ErrClosed
		}
	}
	if err := c.failure(); err != nil {
		return err
	}
	_, err := c.tcp.Write(c.appendRecord(bufs[0][:0], nil))
	if err != nil {
		c.fail(err)
		return err
	}
	c.fail(net.ErrClosed)
	// The closing record said it all: the FIN only follows it. The peer
	// may well have closed the lane already, having read the record.
	c.tcp.CloseWrite()
	return nil
}

// Read opens the next records into p. It returns io.EOF after the peer's
// closing record, ErrCut if the connection ended without it, and ErrForged
// for a record that was not sealed with the peer's key in its place.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.plain) > 0 {
		n := copy(p, c.plain)
		c.plain = c.plain[n:]
		return n, nil
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	if len(p) == 0 {
		return 0, nil
	}
	hdr, sealed, err := c.record()
	if err != nil {
		if !isTimeout(err) {
			c.rerr = err // a deadline may be moved and the read tried again
		}
		return 0, err
	}
	size := len(sealed) - tagSize
	dst := sealed[:0] // opened in place, then copied out bit by bit
	if len(p) >= size {
		dst = p[:0] // opened straight into the reader's buffer
	}
	plain, err := c.open.Open(dst, nonce(&c.rnonce, c.opened), sealed, hdr)
	if err != nil {
		c.rerr = ErrForged
		return 0, c.rerr
	}
	c.opened++
	if size == 0 {
		c.rerr = io.EOF
		return 0, io.EOF
	}
	if len(p) >= size {
		return size, nil
	}
	n := copy(p, plain)
	c.plain = plain[n:]
	return n, nil
}

// record returns the next whole record's header and sealed bytes, from the
// read buffer, reading the socket when the buffer holds no whole record.
func (c *Conn) record() (hdr, sealed []byte, err error) {
	if c.rbuf == nil {
		c.rbuf = make([]byte, 64<<10) // enough for what a sender reads
	}
	for {
		have := c.rend - c.rpos
		need := headerSize
		if have >= headerSize {
			size := int(binary.BigEndian.Uint32(c.rbuf[c.rpos:]))
			if size < tagSize || size > MaxRecord+tagSize {
				return nil, nil, fmt.Errorf("lane: record of %d bytes (limit %d)", size, MaxRecord+tagSize)
			}
			need += size
			if have >= need {
				rec := c.rbuf[c.rpos : c.rpos+need]
				c.rpos += need
				return rec[:headerSize], rec[headerSize:], nil
			}
		}
		switch {
		case need > len(c.rbuf):
			// The first big record: from now on the data flows this way.
			b := make([]byte, readSize)
			c.rend = copy(b, c.rbuf[c.rpos:c.rend])
			c.rbuf, c.rpos = b, 0
		case have == 0 || c.rpos+need > len(c.rbuf):
			c.rend = copy(c.rbuf, c.rbuf[c.rpos:c.rend])
			c.rpos = 0
		}
		n, err := c.tcp.Read(c.rbuf[c.rend:])
		c.rend += n
		if n > 0 {
			continue
		}
		if err == io.EOF {
			return nil, nil, ErrCut
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		return nil, nil, err
	}
}

// SetReadDeadline sets the socket's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.tcp.SetReadDeadline(t) }

// SetWriteDeadline sets the socket's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.tcp.SetWriteDeadline(t) }

// Close closes the connection at once: records still queued are dropped.
func (c *Conn) Close() error {
	c.fail(net.ErrClosed)
	c.close.Do(func() { close(c.closed) })
	return c.tcp.Close()
}

// LocalAddr is this end's address.
func (c *Conn) LocalAddr() net.Addr { return c.tcp.LocalAddr() }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.tcp.RemoteAddr() }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
