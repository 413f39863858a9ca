package lane

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/netns"
)

func TestMain(m *testing.M) { os.Exit(netns.RunIsolated(m)) }

var loopback = net.IPv4(127, 0, 0, 1)

// testWait bounds every wait in these tests.
const testWait = 10 * time.Second

// lanePair returns the two ends of a lane over 127.0.0.1: the dialer's
// and the listener's. Both are closed at the end of the test.
func lanePair(t *testing.T) (dialer, listener *Conn) {
	t.Helper()
	netns.Require(t)
	l, err := Listen(loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	d, err := Dial(ctx, loopback, loopback, l.Offer())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	a := accept(t, ctx, l, d)
	t.Cleanup(func() { a.Close() })
	return d, a
}

// accept greets from d while l accepts it, and returns l's end.
func accept(t *testing.T, ctx context.Context, l *Listener, d *Conn) *Conn {
	t.Helper()
	greeted := make(chan error, 1)
	go func() { greeted <- d.Greet(ctx) }()
	a, err := l.Accept(ctx, loopback)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	if err := <-greeted; err != nil {
		t.Fatalf("greet: %v", err)
	}
	return a
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// readAll reads r to its end in reads of size bytes.
func readAll(r io.Reader, size int) ([]byte, error) {
	var out []byte
	buf := make([]byte, size)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

// The bytes written at one end are read at the other, both ways, whatever
// the sizes of the writes (bigger than a record, and tiny) and of the
// reads (bigger than a record, and smaller than one); after CloseWrite the
// reader gets io.EOF.
func TestLaneCarriesBytesBothWays(t *testing.T) {
	d, l := lanePair(t)
	data := randomBytes(t, 5<<20+123)
	for _, c := range []struct {
		name           string
		from, to       *Conn
		write, readLen int
	}{
		{"dialer to listener, big writes, big reads", d, l, 3 * MaxRecord, 2 * MaxRecord},
		{"listener to dialer, small writes, small reads", l, d, 1000, 777},
		{"dialer to listener, frame-sized writes, 5-byte reads", d, l, MaxRecord - 64, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				for rest := data; len(rest) > 0; {
					n := min(len(rest), c.write)
					if _, err := c.from.Write(rest[:n]); err != nil {
						done <- err
						return
					}
					rest = rest[n:]
				}
				done <- nil
			}()
			got := make([]byte, 0, len(data))
			buf := make([]byte, c.readLen)
			c.to.SetReadDeadline(time.Now().Add(testWait))
			for len(got) < len(data) {
				n, err := c.to.Read(buf)
				if err != nil {
					t.Fatalf("read after %d bytes: %v", len(got), err)
				}
				got = append(got, buf[:n]...)
			}
			if err := <-done; err != nil {
				t.Fatalf("write: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("the bytes read differ from the bytes written")
			}
		})
	}
	if err := d.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	l.SetReadDeadline(time.Now().Add(testWait))
	if n, err := l.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("read after CloseWrite = %d, %v; want 0, EOF", n, err)
	}
	if _, err := d.Write([]byte("more")); err == nil {
		t.Fatal("write after CloseWrite succeeded")
	}
	// The other direction is still open.
	if _, err := l.Write([]byte("still here")); err != nil {
		t.Fatalf("write back after the peer's CloseWrite: %v", err)
	}
	d.SetReadDeadline(time.Now().Add(testWait))
	if b := make([]byte, 64); true {
		n, err := d.Read(b)
		if err != nil || string(b[:n]) != "still here" {
			t.Fatalf("read back = %q, %v", b[:n], err)
		}
	}
}

// WriteSplit makes each part a record of its own: a reader that reads a
// frame's header and then its payload gets the payload opened straight
// into its buffer, with nothing left in the lane's; the bytes are those of
// the parts, in order, also when a part is bigger than a record.
func TestWriteSplitKeepsTheParts(t *testing.T) {
	d, l := lanePair(t)
	hdr, payload := []byte("HDR45"), randomBytes(t, 256<<10)
	for range 3 {
		if n, err := d.WriteSplit(hdr, payload); err != nil || n != len(hdr)+len(payload) {
			t.Fatalf("WriteSplit = %d, %v", n, err)
		}
	}
	l.SetReadDeadline(time.Now().Add(testWait))
	for i := range 3 {
		got := make([]byte, 5)
		if _, err := io.ReadFull(l, got); err != nil || string(got) != "HDR45" {
			t.Fatalf("frame %d: header %q, %v", i, got, err)
		}
		if len(l.plain) != 0 {
			t.Fatalf("frame %d: %d bytes wait in the lane's buffer after the header", i, len(l.plain))
		}
		got = make([]byte, len(payload))
		if n, err := l.Read(got); err != nil || n != len(payload) || !bytes.Equal(got, payload) {
			t.Fatalf("frame %d: one read of the payload gave %d bytes, %v", i, n, err)
		}
	}
	big := randomBytes(t, 2*MaxRecord+7)
	if _, err := d.WriteSplit(hdr, big); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(hdr)+len(big))
	if _, err := io.ReadFull(l, got); err != nil || !bytes.Equal(got, append(append([]byte{}, hdr...), big...)) {
		t.Fatalf("a part bigger than a record: %v", err)
	}
}

// CloseWrite right after writes that are still queued delivers them all
// before the end.
func TestLaneCloseWriteDeliversWhatIsQueued(t *testing.T) {
	d, l := lanePair(t)
	data := randomBytes(t, 8<<20)
	got := make(chan []byte, 1)
	go func() {
		l.SetReadDeadline(time.Now().Add(testWait))
		b, err := readAll(l, 1<<20)
		if err != io.EOF {
			t.Errorf("read ended with %v, want EOF", err)
		}
		got <- b
	}()
	if _, err := d.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := d.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("read %d bytes, want the %d written", len(b), len(data))
	}
}

// A lane that ends without its writer's closing record was cut: the
// reader gets what arrived, then ErrCut, never io.EOF.
func TestLaneCutIsNotAnEnd(t *testing.T) {
	d, l := lanePair(t)
	data := randomBytes(t, 1<<20)
	if _, err := d.Write(data); err != nil {
		t.Fatal(err)
	}
	l.SetReadDeadline(time.Now().Add(testWait))
	got := make([]byte, len(data))
	if _, err := io.ReadFull(l, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read: %v", err)
	}
	d.tcp.CloseWrite() // a FIN, as a peer that crashed or an attacker on the path would send
	if n, err := l.Read(got); n != 0 || !errors.Is(err, ErrCut) {
		t.Fatalf("read after a bare FIN = %d, %v; want ErrCut", n, err)
	}
}

// tamper relays the TCP connections of a lane between a dialer and ln,
// with the byte at offset at of the dialer's side flipped. It returns the
// offer to dial (the relay's port).
func tamper(t *testing.T, ln *Listener, at int) Offer {
	t.Helper()
	relay, err := net.ListenTCP("tcp", &net.TCPAddr{IP: loopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	go func() {
		in, err := relay.AcceptTCP()
		if err != nil {
			return
		}
		defer in.Close()
		out, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: loopback, Port: int(ln.Offer().Port)})
		if err != nil {
			return
		}
		defer out.Close()
		go io.Copy(in, out)
		buf := make([]byte, 64<<10)
		off := 0
		for {
			n, err := in.Read(buf)
			if at >= off && at < off+n {
				buf[at-off] ^= 0x10 // in the length: 16 bytes shorter, so that the record is read whole
			}
			off += n
			if _, werr := out.Write(buf[:n]); werr != nil || err != nil {
				return
			}
		}
	}()
	o := ln.Offer()
	o.Port = uint16(relay.Addr().(*net.TCPAddr).Port)
	return o
}

// A record changed on the way fails the read with ErrForged, and so does
// every read after it: in its header (the length is authenticated too),
// in its ciphertext, and in its tag.
func TestLaneRefusesAChangedRecord(t *testing.T) {
	netns.Require(t)
	helloSize := headerSize + len(dialerHello) + tagSize
	for _, c := range []struct {
		name string
		at   int
	}{
		{"length", helloSize + 3},
		{"ciphertext", helloSize + headerSize + 1000},
		{"tag", helloSize + headerSize + 4096 + 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln, err := Listen(loopback)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			offer := tamper(t, ln, c.at)
			ctx, cancel := context.WithTimeout(context.Background(), testWait)
			defer cancel()
			d, err := Dial(ctx, loopback, loopback, offer)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			go d.Greet(ctx)
			a, err := ln.Accept(ctx, loopback)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if _, err := d.Write(randomBytes(t, 4096)); err != nil {
				t.Fatal(err)
			}
			a.SetReadDeadline(time.Now().Add(testWait))
			buf := make([]byte, 8192)
			n, err := a.Read(buf)
			if !errors.Is(err, ErrForged) || n != 0 {
				t.Fatalf("read of a changed record = %d, %v; want ErrForged", n, err)
			}
			if _, err := a.Read(buf); !errors.Is(err, ErrForged) {
				t.Fatalf("read after a changed record: %v; want ErrForged", err)
			}
		})
	}
}

// The listener takes only a dialer from the peer's address, and only once
// it proved that it holds the key: a stranger's connection is closed at once
// and the wait goes on; a dialer without the key learns so from the
// listener's hello, writes nothing, and the accept fails.
func TestLaneAcceptsOnlyTheDialerWithTheKey(t *testing.T) {
	netns.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()

	ln, err := Listen(loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// From another address of this machine: not the peer's.
	stranger, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, &net.TCPAddr{IP: loopback, Port: int(ln.Offer().Port)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	d, err := Dial(ctx, loopback, loopback, ln.Offer())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	accept(t, ctx, ln, d).Close()
	stranger.SetReadDeadline(time.Now().Add(testWait))
	if n, err := stranger.Read(make([]byte, 1)); err == nil || n > 0 {
		t.Fatalf("the stranger's connection got %d bytes and stays open (%v)", n, err)
	}

	wrong := ln.Offer()
	wrong.Key[0] ^= 1
	w, err := Dial(ctx, loopback, loopback, wrong)
	if err != nil {
		t.Fatal(err)
	}
	greeted := make(chan error, 1)
	go func() {
		err := w.Greet(ctx)
		w.Close()
		greeted <- err
	}()
	if _, err := ln.Accept(ctx, loopback); err == nil {
		t.Fatal("accepted a dialer with the wrong key")
	}
	if err := <-greeted; !errors.Is(err, ErrForged) {
		t.Fatalf("greet with the wrong key: %v; want ErrForged", err)
	}

	// The right address, but silent: the accept ends with its context.
	silent, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: loopback, Port: int(ln.Offer().Port)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	start := time.Now()
	if _, err := ln.Accept(short, loopback); err == nil {
		t.Fatal("accepted a connection that never greeted")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the accept of a silent dialer took %v, want its context's 300 ms", took)
	}
}

// A peer may offer the port of another service at its address: the dialer
// writes not one byte to it, whether it speaks first (a banner) or waits.
func TestDialerWritesNothingToAnotherService(t *testing.T) {
	netns.Require(t)
	for _, banner := range []string{"SSH-2.0-OpenSSH_9.6\r\n", "\x00\x00\x00\x30 binary", ""} {
		srv, err := net.ListenTCP("tcp", &net.TCPAddr{IP: loopback})
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan int, 1)
		go func() {
			c, err := srv.AcceptTCP()
			if err != nil {
				got <- -1
				return
			}
			defer c.Close()
			c.Write([]byte(banner))
			c.SetReadDeadline(time.Now().Add(testWait))
			n, _ := io.Copy(io.Discard, c)
			got <- int(n)
		}()
		o := Offer{Port: uint16(srv.Addr().(*net.TCPAddr).Port)}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		d, err := Dial(ctx, loopback, loopback, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Greet(ctx); err == nil {
			t.Fatalf("banner %q: greeted a service that is not a lane", banner)
		}
		cancel()
		d.Close()
		if n := <-got; n != 0 {
			t.Fatalf("banner %q: the service got %d bytes from the dialer, want none", banner, n)
		}
		srv.Close()
	}
}

// A record's length is checked before anything is read into memory for
// it: a length beyond MaxRecord, or shorter than a tag, fails the read.
func TestLaneRefusesBadLengths(t *testing.T) {
	for _, size := range []uint32{MaxRecord + tagSize + 1, 1 << 31, tagSize - 1} {
		d, l := lanePair(t)
		raw := binary.BigEndian.AppendUint32(nil, size)
		if _, err := d.tcp.Write(append(raw, make([]byte, 64)...)); err != nil {
			t.Fatal(err)
		}
		l.SetReadDeadline(time.Now().Add(testWait))
		if _, err := l.Read(make([]byte, 100)); err == nil || isTimeout(err) {
			t.Fatalf("record length %d: read gave %v, want an error", size, err)
		}
	}
}

// A write to a peer that takes nothing fails once the write deadline has
// passed, rather than hang; so does a write to a peer that is gone, and
// every write after.
func TestLaneWritesFailRatherThanHang(t *testing.T) {
	d, l := lanePair(t)
	d.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	chunk := make([]byte, MaxRecord)
	start := time.Now()
	var err error
	for err == nil && time.Since(start) < testWait {
		_, err = d.Write(chunk)
	}
	if !isTimeout(err) {
		t.Fatalf("writes to a peer that reads nothing ended with %v after %v, want a timeout", err, time.Since(start))
	}
	d.SetWriteDeadline(time.Time{})
	if _, err := d.Write([]byte("x")); err == nil {
		t.Fatal("a write after a failed one succeeded")
	}

	d2, l2 := lanePair(t)
	l2.Close()
	start = time.Now()
	err = nil
	for err == nil && time.Since(start) < testWait {
		_, err = d2.Write(chunk)
	}
	if err == nil {
		t.Fatal("writes to a closed peer never failed")
	}
	_ = l
}

// After Close every write fails, also one that finds a spare buffer.
func TestLaneWritesFailAfterClose(t *testing.T) {
	d, _ := lanePair(t)
	d.Close()
	for i := range 100 {
		if _, err := d.Write([]byte("after close")); err == nil {
			t.Fatalf("write %d after Close succeeded", i)
		}
	}
	if err := d.CloseWrite(); err == nil {
		t.Fatal("CloseWrite after Close succeeded")
	}
}

func TestParseOffer(t *testing.T) {
	o := Offer{Port: 4242}
	rand.Read(o.Key[:])
	got, err := ParseOffer(o.Marshal())
	if err != nil || got != o {
		t.Fatalf("ParseOffer(Marshal(o)) = %v, %v; want o", got, err)
	}
	for _, bad := range [][]byte{nil, o.Marshal()[:33], append(o.Marshal(), 0), (Offer{Key: o.Key}).Marshal()} {
		if _, err := ParseOffer(bad); err == nil {
			t.Errorf("ParseOffer(%x) succeeded", bad)
		}
	}
}
