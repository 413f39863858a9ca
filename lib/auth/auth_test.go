package auth_test

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/schollz/pake/v3"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/auth"
	"github.com/pcp-dev/pcp/lib/code"
	"github.com/pcp-dev/pcp/lib/frame"
	"github.com/pcp-dev/pcp/lib/node"
)

func TestMain(m *testing.M) { os.Exit(netns.RunIsolated(m)) }

const testProto = protocol.ID("/pcp/auth-test/1.0.0")

// testWait bounds every wait in these tests.
const testWait = 10 * time.Second

func password(t testing.TB, s string) []byte {
	t.Helper()
	c, err := code.Parse(s)
	if err != nil {
		t.Fatalf("parse code %q: %v", s, err)
	}
	return c.Password()
}

func newHost(t *testing.T) host.Host {
	t.Helper()
	h, err := node.New(node.Config{Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatalf("new host: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// openStream connects from to `to` and opens a stream on testProto.
func openStream(t *testing.T, ctx context.Context, from, to host.Host) network.Stream {
	t.Helper()
	if err := from.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	s, err := from.NewStream(ctx, to.ID(), testProto)
	if err != nil {
		t.Fatalf("new stream: %v", err)
	}
	s.SetDeadline(time.Now().Add(testWait))
	t.Cleanup(func() { s.Reset() })
	return s
}

// announce makes h run the Announcer on every stream of testProto, with the
// peer IDs taken as production takes them, and report each result.
func announce(h host.Host, pw []byte) <-chan error {
	results := make(chan error, 4)
	h.SetStreamHandler(testProto, func(s network.Stream) {
		s.SetDeadline(time.Now().Add(testWait))
		_, err := auth.Announcer(s, pw, auth.Peers{Announcer: h.ID(), Finder: s.Conn().RemotePeer()})
		if err == nil {
			// Whatever follows authentication on the same stream must arrive
			// intact: the authentication reads nothing beyond its frames.
			err = frame.Write(s, frame.Request, []byte("after auth"))
		}
		results <- err
		s.CloseWrite()
		io.Copy(io.Discard, s) // until the finder is done with the stream
		s.Close()
	})
	return results
}

// find runs the Finder over s with the peer IDs taken as production takes
// them.
func find(h host.Host, s network.Stream, pw []byte) error {
	_, _, err := auth.Finder(s, pw, auth.Peers{Announcer: s.Conn().RemotePeer(), Finder: h.ID()}, nil)
	return err
}

func wait(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(testWait):
		t.Fatalf("%s did not finish within %v", what, testWait)
		return nil
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*testWait)
	t.Cleanup(cancel)
	return ctx
}

func TestRightCode(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	a, b := newHost(t), newHost(t)
	results := announce(b, password(t, "abandon-ability-able-about"))
	s := openStream(t, ctx, a, b)
	// The same code, typed differently, is the same password.
	if err := find(a, s, password(t, "ABANDON abil able-abou")); err != nil {
		t.Fatalf("Finder: %v", err)
	}
	if err := wait(t, results, "Announcer"); err != nil {
		t.Fatalf("Announcer: %v", err)
	}
	typ, p, err := frame.NewReader(s, 64).Next()
	if err != nil || typ != frame.Request || string(p) != "after auth" {
		t.Fatalf("after authentication the finder read %v %q, %v; want REQUEST \"after auth\"", typ, p, err)
	}
}

func TestWrongCode(t *testing.T) {
	netns.Require(t)
	ctx := testContext(t)
	a, b := newHost(t), newHost(t)
	results := announce(b, password(t, "abandon-ability-able-about"))
	s := openStream(t, ctx, a, b)
	if err := find(a, s, password(t, "abandon-ability-able-above")); !errors.Is(err, auth.ErrWrongCode) {
		t.Errorf("Finder error = %v, want ErrWrongCode", err)
	}
	if err := wait(t, results, "Announcer"); !errors.Is(err, auth.ErrWrongCode) {
		t.Errorf("Announcer error = %v, want ErrWrongCode", err)
	}
}

// relay makes m forward every stream of testProto to a new stream to `to`,
// byte for byte in both directions: a machine in the middle that knows no
// code and changes nothing.
func relay(t *testing.T, ctx context.Context, m, to host.Host) <-chan error {
	relayed := make(chan error, 1)
	if err := m.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	m.SetStreamHandler(testProto, func(in network.Stream) {
		defer in.Close()
		out, err := m.NewStream(ctx, to.ID(), testProto)
		if err != nil {
			relayed <- err
			return
		}
		defer out.Close()
		in.SetDeadline(time.Now().Add(testWait))
		out.SetDeadline(time.Now().Add(testWait))
		done := make(chan int64, 2)
		pump := func(dst, src network.Stream) {
			n, _ := io.Copy(dst, src)
			dst.CloseWrite()
			done <- n
		}
		go pump(out, in)
		go pump(in, out)
		n1, n2 := <-done, <-done
		if n1 == 0 || n2 == 0 {
			relayed <- fmt.Errorf("relayed %d and %d bytes", n1, n2)
			return
		}
		relayed <- nil
	})
	return relayed
}

func TestMachineInTheMiddle(t *testing.T) {
	netns.Require(t)
	pw := password(t, "abandon-ability-able-about")

	t.Run("bound to the channel", func(t *testing.T) {
		ctx := testContext(t)
		a, m, b := newHost(t), newHost(t), newHost(t)
		results := announce(b, pw)
		relayed := relay(t, ctx, m, b)
		s := openStream(t, ctx, a, m)
		if got := s.Conn().RemotePeer(); got != m.ID() {
			t.Fatalf("A's stream goes to %s, want M %s", got, m.ID())
		}
		ferr := find(a, s, pw)
		aerr := wait(t, results, "Announcer")
		if !errors.Is(aerr, auth.ErrWrongCode) {
			t.Errorf("B's Announcer error = %v, want ErrWrongCode", aerr)
		}
		if !errors.Is(ferr, auth.ErrWrongCode) {
			t.Errorf("A's Finder error = %v, want ErrWrongCode", ferr)
		}
		s.Close()
		if err := wait(t, relayed, "relay"); err != nil {
			t.Errorf("relay: %v", err)
		}
	})

	// The same relay succeeds when both sides name the same two peers, as a
	// protocol that took the peer IDs from its messages would: the relay is
	// transparent, and only the binding to the secure channel stops it.
	t.Run("control: unbound identities", func(t *testing.T) {
		ctx := testContext(t)
		a, m, b := newHost(t), newHost(t), newHost(t)
		claimed := auth.Peers{Announcer: b.ID(), Finder: a.ID()}
		results := make(chan error, 1)
		b.SetStreamHandler(testProto, func(s network.Stream) {
			defer s.Close()
			s.SetDeadline(time.Now().Add(testWait))
			_, err := auth.Announcer(s, pw, claimed)
			results <- err
			s.CloseWrite()
			io.Copy(io.Discard, s)
		})
		relayed := relay(t, ctx, m, b)
		s := openStream(t, ctx, a, m)
		if _, _, err := auth.Finder(s, pw, claimed, nil); err != nil {
			t.Errorf("Finder through a transparent relay with claimed identities: %v", err)
		}
		if err := wait(t, results, "Announcer"); err != nil {
			t.Errorf("Announcer through a transparent relay with claimed identities: %v", err)
		}
		s.Close()
		if err := wait(t, relayed, "relay"); err != nil {
			t.Errorf("relay: %v", err)
		}
	})
}

// rw joins a reader and a writer into an io.ReadWriter.
type rw struct {
	io.Reader
	io.Writer
}

// pakeFrame is one PAKE frame around payload, of any length.
func pakeFrame(payload []byte) []byte {
	return rawFrame(frame.PAKE, payload)
}

func rawFrame(t frame.Type, payload []byte) []byte {
	b := make([]byte, frame.HeaderSize, frame.HeaderSize+len(payload))
	frame.PutHeader(b, t, len(payload))
	return append(b, payload...)
}

// point is a PAKE message as it appears on the wire.
type point struct {
	Role *int     `json:"Role"`
	X    *big.Int `json:"Xᵤ"`
	XV   *big.Int `json:"Xᵥ"`
	Y    *big.Int `json:"Yᵤ"`
	YV   *big.Int `json:"Yᵥ"`
}

// finderMessage runs a Finder in memory and returns the payload of the PAKE
// frame it writes first.
func finderMessage(t testing.TB, pw []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	_, _, err := auth.Finder(rw{bytes.NewReader(nil), &out}, pw, auth.Peers{Announcer: "b", Finder: "a"}, nil)
	if err == nil {
		t.Fatal("Finder succeeded against a silent peer")
	}
	typ, p, err := frame.NewReader(&out, auth.MaxMessage).Next()
	if err != nil || typ != frame.PAKE {
		t.Fatalf("Finder's first frame: %v, %v; want PAKE", typ, err)
	}
	return bytes.Clone(p)
}

func decodePoint(t testing.TB, p []byte) point {
	t.Helper()
	var m point
	if err := json.Unmarshal(p, &m); err != nil {
		t.Fatalf("decode PAKE message %s: %v", p, err)
	}
	return m
}

func onP256(x, y *big.Int) bool {
	c := elliptic.P256()
	return x != nil && y != nil && x.Sign() > 0 && y.Sign() > 0 &&
		x.Cmp(c.Params().P) < 0 && y.Cmp(c.Params().P) < 0 && c.IsOnCurve(x, y)
}

func TestCurve(t *testing.T) {
	if auth.Curve != "p256" {
		t.Fatalf("auth.Curve = %q, want p256", auth.Curve)
	}
	pw := password(t, "abandon-ability-able-about")
	x := finderMessage(t, pw)
	if len(x) > auth.MaxMessage {
		t.Errorf("the finder's PAKE message has %d bytes, over MaxMessage %d", len(x), auth.MaxMessage)
	}
	m := decodePoint(t, x)
	if m.Role == nil || *m.Role != 0 {
		t.Errorf("the finder's message has role %v, want 0", m.Role)
	}
	if !onP256(m.X, m.XV) {
		t.Fatalf("the finder's X = (%v, %v) is not a point of P-256", m.X, m.XV)
	}
	if x2 := decodePoint(t, finderMessage(t, pw)); x2.X.Cmp(m.X) == 0 {
		t.Error("two runs of the Finder sent the same X: no fresh randomness")
	}

	// The announcer's answer Y is a P-256 point too.
	var out bytes.Buffer
	_, err := auth.Announcer(rw{bytes.NewReader(pakeFrame(x)), &out}, pw, auth.Peers{Announcer: "b", Finder: "a"})
	if err == nil || errors.As(err, new(*auth.ProtocolError)) {
		t.Fatalf("Announcer on a valid X and then EOF: %v; want a read error", err)
	}
	typ, y, err := frame.NewReader(&out, auth.MaxMessage).Next()
	if err != nil || typ != frame.PAKE {
		t.Fatalf("Announcer's first frame: %v, %v; want PAKE", typ, err)
	}
	my := decodePoint(t, y)
	if my.Role == nil || *my.Role != 1 {
		t.Errorf("the announcer's message has role %v, want 1", my.Role)
	}
	if !onP256(my.Y, my.YV) {
		t.Fatalf("the announcer's Y = (%v, %v) is not a point of P-256", my.Y, my.YV)
	}
}

// tcpPair returns the two ends of a real TCP connection over 127.0.0.1.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, _ := ln.AcceptTCP()
		accepted <- c
	}()
	d, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := <-accepted
	if c == nil {
		d.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() {
		d.Close()
		c.Close()
	})
	d.SetDeadline(time.Now().Add(testWait))
	c.SetDeadline(time.Now().Add(testWait))
	return d, c
}

// runGuarded runs f in a goroutine, turning a panic into a test failure and
// bounding the wait.
func runGuarded(t *testing.T, f func() error) error {
	t.Helper()
	type res struct {
		err   error
		panic any
	}
	ch := make(chan res, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				ch <- res{panic: r}
			}
		}()
		ch <- res{err: f()}
	}()
	select {
	case r := <-ch:
		if r.panic != nil {
			t.Fatalf("panic: %v", r.panic)
		}
		return r.err
	case <-time.After(testWait):
		t.Fatal("did not return")
		return nil
	}
}

func TestHostileFinder(t *testing.T) {
	netns.Require(t)
	pw := password(t, "abandon-ability-able-about")
	good := finderMessage(t, pw)
	gm := decodePoint(t, good)
	p := elliptic.P256().Params().P
	huge := strings.Repeat("9", 900)
	msg := func(format string, args ...any) []byte { return []byte(fmt.Sprintf(format, args...)) }
	cases := []struct {
		name   string
		frames [][]byte // raw frames, written in order
	}{
		{"role only", [][]byte{pakeFrame(msg(`{"Role":0}`))}},
		{"null", [][]byte{pakeFrame(msg(`null`))}},
		{"empty object", [][]byte{pakeFrame(msg(`{}`))}},
		{"empty payload", [][]byte{pakeFrame(nil)}},
		{"not JSON", [][]byte{pakeFrame(msg("\x00\xff garbage"))}},
		{"not on the curve", [][]byte{pakeFrame(msg(`{"Role":0,"Xᵤ":1,"Xᵥ":2}`))}},
		{"point at infinity", [][]byte{pakeFrame(msg(`{"Role":0,"Xᵤ":0,"Xᵥ":0}`))}},
		{"huge numbers", [][]byte{pakeFrame(msg(`{"Role":0,"Xᵤ":%s,"Xᵥ":%s}`, huge, huge))}},
		{"negative numbers", [][]byte{pakeFrame(msg(`{"Role":0,"Xᵤ":-1,"Xᵥ":-2}`))}},
		{"non-canonical x", [][]byte{pakeFrame(msg(`{"Role":0,"Xᵤ":%s,"Xᵥ":%s}`, new(big.Int).Add(gm.X, p), gm.XV))}},
		{"negative y", [][]byte{pakeFrame(msg(`{"Role":0,"Xᵤ":%s,"Xᵥ":%s}`, gm.X, new(big.Int).Sub(gm.XV, p)))}},
		{"floats", [][]byte{pakeFrame(msg(`{"Role":0,"Xᵤ":1.5,"Xᵥ":2e3}`))}},
		{"string numbers", [][]byte{pakeFrame(msg(`{"Role":0,"Xᵤ":"%s","Xᵥ":"%s"}`, gm.X, gm.XV))}},
		{"role as string", [][]byte{pakeFrame(msg(`{"Role":"0","Xᵤ":%s,"Xᵥ":%s}`, gm.X, gm.XV))}},
		{"role out of range", [][]byte{pakeFrame(msg(`{"Role":99999999999999999999999,"Xᵤ":%s,"Xᵥ":%s}`, gm.X, gm.XV))}},
		{"wrong role", [][]byte{pakeFrame(msg(`{"Role":1,"Xᵤ":%s,"Xᵥ":%s}`, gm.X, gm.XV))}},
		{"point in the Y fields", [][]byte{pakeFrame(msg(`{"Role":0,"Yᵤ":%s,"Yᵥ":%s}`, gm.X, gm.XV))}},
		{"trailing data", [][]byte{pakeFrame(append(bytes.Clone(good), ` {}`...))}},
		{"two messages", [][]byte{pakeFrame(append(bytes.Clone(good), good...))}},
		{"over MaxMessage", [][]byte{pakeFrame(bytes.Repeat([]byte(" "), 3000))}},
		{"length 0xffffffff", [][]byte{{byte(frame.PAKE), 0xff, 0xff, 0xff, 0xff}}},
		{"MAC first", [][]byte{rawFrame(frame.MAC, make([]byte, 32))}},
		{"pipe header first", [][]byte{rawFrame(frame.Header, msg(`{"kind":"raw","size":-1}`))}},
		{"PAKE again instead of MAC", [][]byte{pakeFrame(good), pakeFrame(good)}},
		{"oversized MAC", [][]byte{pakeFrame(good), rawFrame(frame.MAC, make([]byte, 3000))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			finder, announcer := tcpPair(t)
			go func() {
				for _, f := range tc.frames {
					if _, err := finder.Write(f); err != nil {
						return
					}
				}
				io.Copy(io.Discard, finder)
			}()
			err := runGuarded(t, func() error {
				_, err := auth.Announcer(announcer, pw, auth.Peers{Announcer: "b", Finder: "a"})
				return err
			})
			var pe *auth.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("Announcer error = %v (%T), want *auth.ProtocolError", err, err)
			}
			if errors.Is(err, auth.ErrWrongCode) {
				t.Errorf("a protocol error counts as a wrong code: %v", err)
			}
		})
	}
}

func TestHostileAnnouncer(t *testing.T) {
	netns.Require(t)
	pw := password(t, "abandon-ability-able-about")
	cases := []struct {
		name    string
		respond func(x []byte) [][]byte // the frames sent back for the finder's X
		wrong   bool                    // want ErrWrongCode instead of a ProtocolError
	}{
		{"role only", func([]byte) [][]byte { return [][]byte{pakeFrame([]byte(`{"Role":1}`))} }, false},
		{"null", func([]byte) [][]byte { return [][]byte{pakeFrame([]byte(`null`))} }, false},
		{"Y not on the curve", func([]byte) [][]byte { return [][]byte{pakeFrame([]byte(`{"Role":1,"Yᵤ":1,"Yᵥ":2}`))} }, false},
		{"the finder's own X reflected", func(x []byte) [][]byte { return [][]byte{pakeFrame(x)} }, false},
		{"over MaxMessage", func([]byte) [][]byte { return [][]byte{pakeFrame(bytes.Repeat([]byte("a"), 3000))} }, false},
		{"MAC first", func([]byte) [][]byte { return [][]byte{rawFrame(frame.MAC, make([]byte, 32))} }, false},
		{"AUTH_FAILED first", func([]byte) [][]byte { return [][]byte{rawFrame(frame.AuthFailed, nil)} }, false},
		{"valid Y, then PAKE again", func(x []byte) [][]byte {
			y := validY(t, pw, x)
			return [][]byte{pakeFrame(y), pakeFrame(y)}
		}, false},
		{"valid Y, then an oversized MAC", func(x []byte) [][]byte {
			return [][]byte{pakeFrame(validY(t, pw, x)), rawFrame(frame.MAC, make([]byte, 5000))}
		}, false},
		{"valid Y, then a forged MAC", func(x []byte) [][]byte {
			return [][]byte{pakeFrame(validY(t, pw, x)), rawFrame(frame.MAC, bytes.Repeat([]byte{7}, 32))}
		}, true},
		{"valid Y, then AUTH_FAILED", func(x []byte) [][]byte {
			return [][]byte{pakeFrame(validY(t, pw, x)), rawFrame(frame.AuthFailed, nil)}
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			finder, announcer := tcpPair(t)
			go func() {
				typ, x, err := frame.NewReader(announcer, auth.MaxMessage).Next()
				if err != nil || typ != frame.PAKE {
					announcer.Close()
					return
				}
				for _, f := range tc.respond(bytes.Clone(x)) {
					if _, err := announcer.Write(f); err != nil {
						return
					}
				}
				io.Copy(io.Discard, announcer)
			}()
			err := runGuarded(t, func() error {
				_, _, err := auth.Finder(finder, pw, auth.Peers{Announcer: "b", Finder: "a"}, nil)
				return err
			})
			if tc.wrong {
				if !errors.Is(err, auth.ErrWrongCode) {
					t.Fatalf("Finder error = %v, want ErrWrongCode", err)
				}
				return
			}
			if !errors.As(err, new(*auth.ProtocolError)) {
				t.Fatalf("Finder error = %v (%T), want *auth.ProtocolError", err, err)
			}
		})
	}
}

// validY answers the finder's X as an announcer that knows pw would.
func validY(t *testing.T, pw, x []byte) []byte {
	p, err := pake.InitCurve(pw, 1, auth.Curve)
	if err != nil {
		t.Error(err)
		return nil
	}
	if err := p.Update(x); err != nil {
		t.Error(err)
		return nil
	}
	return p.Bytes()
}

func FuzzAnnouncer(f *testing.F) {
	pw := password(f, "abandon-ability-able-about")
	good := finderMessage(f, pw)
	for _, s := range []string{
		`{"Role":0}`, `null`, `{}`, `{"Role":0,"Xᵤ":1,"Xᵥ":2}`, `{"Role":1}`,
		`{"Role":0,"Xᵤ":0,"Xᵥ":0}`, `{"Role":0,"Xᵤ":-1,"Xᵥ":1e2}`, "",
	} {
		f.Add([]byte(s))
	}
	f.Add(good)
	f.Add(append(bytes.Clone(good), '}'))
	f.Fuzz(func(t *testing.T, payload []byte) {
		in := rw{bytes.NewReader(pakeFrame(payload)), io.Discard}
		_, err := auth.Announcer(in, pw, auth.Peers{Announcer: "b", Finder: "a"})
		if err == nil {
			t.Fatalf("Announcer succeeded on a single PAKE frame %q", payload)
		}
		// Either the message was refused, or it was a valid X and the
		// announcer then found no MAC.
		if !errors.As(err, new(*auth.ProtocolError)) && !errors.Is(err, io.EOF) {
			t.Fatalf("Announcer error = %v (%T), want a ProtocolError or EOF", err, err)
		}
		if len(payload) > auth.MaxMessage && !errors.As(err, new(*auth.ProtocolError)) {
			t.Fatalf("a %d-byte message was not refused: %v", len(payload), err)
		}
	})
}

func FuzzFinder(f *testing.F) {
	pw := password(f, "abandon-ability-able-about")
	f.Add(pakeFrame([]byte(`{"Role":1}`)))
	f.Add(pakeFrame([]byte(`{"Role":1,"Yᵤ":1,"Yᵥ":2}`)))
	f.Add(append(pakeFrame([]byte(`{"Role":1}`)), rawFrame(frame.MAC, make([]byte, 32))...))
	f.Add(rawFrame(frame.AuthFailed, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, reply []byte) {
		in := rw{bytes.NewReader(reply), io.Discard}
		_, _, err := auth.Finder(in, pw, auth.Peers{Announcer: "b", Finder: "a"}, nil)
		if err == nil {
			// The finder's X is fresh each run: no fixed reply can know its key.
			t.Fatalf("Finder succeeded on the reply %q", reply)
		}
	})
}

// requestGate is the announcer's side of a connection that sends the
// announcer's MAC (its second write) only once the finder's next frame has
// arrived: that works only if the finder sent it with its own MAC.
type requestGate struct {
	*net.TCPConn
	writes int
	next   []byte // the frame that followed the finder's MAC
	err    error
}

func (g *requestGate) Write(b []byte) (int, error) {
	g.writes++
	if g.writes == 2 {
		var p []byte
		var typ frame.Type
		typ, p, g.err = frame.NewReader(g.TCPConn, 64).Next()
		if g.err == nil {
			g.next = frame.Append(nil, typ, p)
		}
	}
	return g.TCPConn.Write(b)
}

func TestFinderPipelinesTheRequestWithItsMAC(t *testing.T) {
	netns.Require(t)
	pw := password(t, "abandon-ability-able-about")
	finder, announcer := tcpPair(t)
	announcer.SetDeadline(time.Now().Add(3 * time.Second)) // the gate's read, if nothing comes
	gate := &requestGate{TCPConn: announcer}
	done := make(chan error, 1)
	go func() {
		_, err := auth.Announcer(gate, pw, auth.Peers{Announcer: "b", Finder: "a"})
		done <- err
	}()
	request := frame.Append(nil, frame.Request, []byte("pipe"))
	_, rtt, err := auth.Finder(finder, pw, auth.Peers{Announcer: "b", Finder: "a"}, request)
	if err != nil {
		t.Fatalf("Finder: %v (the announcer's gate: %v)", err, gate.err)
	}
	if err := wait(t, done, "Announcer"); err != nil {
		t.Fatalf("Announcer: %v", err)
	}
	if !bytes.Equal(gate.next, request) {
		t.Fatalf("the frame after the finder's MAC was %q (%v), want the request %q", gate.next, gate.err, request)
	}
	if rtt <= 0 {
		t.Fatalf("Finder measured a round trip of %v", rtt)
	}
}
