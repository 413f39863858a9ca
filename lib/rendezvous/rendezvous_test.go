package rendezvous_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/zeroconf/v2"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-multistream"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/auth"
	"github.com/pcp-dev/pcp/lib/code"
	"github.com/pcp-dev/pcp/lib/discovery"
	"github.com/pcp-dev/pcp/lib/node"
	"github.com/pcp-dev/pcp/lib/rendezvous"
	"github.com/pcp-dev/pcp/lib/status"
)

func TestMain(m *testing.M) { os.Exit(netns.RunIsolated(m)) }

// Each test uses its own channel word (the first word of its codes), so that
// an mDNS announcement of one test can never be a candidate in another.

// recorder collects status lines. The library logs from its own goroutines,
// possibly after a test has returned, so it must not call t.Logf; the lines
// are printed when the test fails instead.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

func newRecorder(t *testing.T, name string) (*recorder, status.Logger) {
	r := &recorder{}
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range r.all() {
				t.Logf("%s: %s", name, l)
			}
		}
	})
	return r, status.Logger{
		Info:  func(f string, args ...any) { r.add("info: " + fmt.Sprintf(f, args...)) },
		Debug: func(f string, args ...any) { r.add("debug: " + fmt.Sprintf(f, args...)) },
	}
}

func (r *recorder) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// count returns how many lines contain substr.
func (r *recorder) count(substr string) int {
	n := 0
	for _, l := range r.all() {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// waitFor polls until a line containing substr was logged, or fails t.
func (r *recorder) waitFor(t *testing.T, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for r.count(substr) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no status line containing %q within %v; lines: %q", substr, timeout, r.all())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newHost(t *testing.T) host.Host { return newHostAt(t, "127.0.0.1") }

// newHostAt starts a host that listens on, and so dials from, the loopback
// address ip: another source to the announcer than 127.0.0.1.
func newHostAt(t *testing.T, ip string) host.Host {
	t.Helper()
	h, err := node.New(node.Config{Listen: []string{"/ip4/" + ip + "/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func info(h host.Host) peer.AddrInfo { return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()} }

func parse(t *testing.T, s string) code.Code {
	t.Helper()
	c, err := code.Parse(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return c
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// announce starts an announcer that t closes.
func announce(t *testing.T, cfg rendezvous.Config) *rendezvous.Announcer {
	a := rendezvous.Announce(t.Context(), cfg)
	t.Cleanup(a.Close)
	return a
}

type found struct {
	peer    *rendezvous.Peer
	err     error
	elapsed time.Duration
}

// findAsync runs Find in a goroutine; the result arrives on the channel.
func findAsync(ctx context.Context, cfg rendezvous.Config, want string) <-chan found {
	out := make(chan found, 1)
	go func() {
		start := time.Now()
		p, err := rendezvous.Find(ctx, cfg, want)
		out <- found{p, err, time.Since(start)}
	}()
	return out
}

func await(t *testing.T, ch <-chan found, d time.Duration) found {
	t.Helper()
	select {
	case r := <-ch:
		if r.peer != nil {
			t.Cleanup(func() { r.peer.Stream.Reset() })
		}
		return r
	case <-time.After(d):
		t.Fatalf("Find did not return within %v", d)
		return found{}
	}
}

// acceptNext accepts the announcer's next authenticated finder (waiting up
// to d) in a goroutine; the outcome arrives on the channel.
func acceptNext(t *testing.T, a *rendezvous.Announcer, d time.Duration) <-chan error {
	accepted := make(chan error, 1)
	ctx := timeout(t, d)
	go func() {
		p, err := a.Next(ctx)
		if err == nil {
			err = p.Accept()
		}
		accepted <- err
	}()
	return accepted
}

// next waits for the announcer's next authenticated finder.
func next(t *testing.T, a *rendezvous.Announcer, d time.Duration) *rendezvous.Peer {
	t.Helper()
	p, err := a.Next(timeout(t, d))
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	t.Cleanup(func() { p.Stream.Reset() })
	return p
}

// noPeer asserts that Next yields no finder within d.
func noPeer(t *testing.T, a *rendezvous.Announcer, d time.Duration) {
	t.Helper()
	p, err := a.Next(timeout(t, d))
	if p != nil {
		p.Stream.Reset()
		t.Fatalf("Next returned the finder %s, want none", p.ID)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next: %v, want the context's deadline", err)
	}
}

// exchange writes msg on from and reads it on to.
func exchange(t *testing.T, from, to network.Stream, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	from.SetWriteDeadline(deadline)
	to.SetReadDeadline(deadline)
	if _, err := io.WriteString(from, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(to, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("read %q, want %q", buf, msg)
	}
}

// The announcer and the finder meet over mDNS: the finder's Find waits for
// the announcer's ACCEPT, and then the stream carries bytes both ways.
func TestFindOverMDNS(t *testing.T) {
	netns.Require(t)
	c := parse(t, "abandon-velvet-tunnel-orbit")
	ah, fh := newHost(t), newHost(t)
	_, alog := newRecorder(t, "announcer")
	_, flog := newRecorder(t, "finder")
	a := announce(t, rendezvous.Config{Host: ah, Code: c, Methods: []discovery.Method{&discovery.MDNS{Host: ah, Log: alog}}, Log: alog})

	res := findAsync(timeout(t, 15*time.Second), rendezvous.Config{
		Host: fh, Code: c, Methods: []discovery.Method{&discovery.MDNS{Host: fh, Log: flog}}, Log: flog,
	}, rendezvous.WantPipe)

	ap := next(t, a, 10*time.Second)
	if ap.ID != fh.ID() {
		t.Fatalf("announcer got finder %s, want %s", ap.ID, fh.ID())
	}
	if ap.Want != rendezvous.WantPipe {
		t.Fatalf("announcer got Want %q, want %q", ap.Want, rendezvous.WantPipe)
	}
	if ap.Source != "" {
		t.Fatalf("announcer's peer has Source %q, want none", ap.Source)
	}
	// The finder has authenticated but waits for the answer to its request.
	select {
	case r := <-res:
		t.Fatalf("Find returned before the announcer accepted: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	if err := ap.Accept(); err != nil {
		t.Fatal(err)
	}
	r := await(t, res, 5*time.Second)
	if r.err != nil {
		t.Fatalf("Find: %v", r.err)
	}
	fp := r.peer
	if fp.ID != ah.ID() || fp.Source != "mdns" || fp.Want != rendezvous.WantPipe {
		t.Fatalf("Find returned ID %s Source %q Want %q, want %s, mdns, %s", fp.ID, fp.Source, fp.Want, ah.ID(), rendezvous.WantPipe)
	}
	if fp.AuthTime <= 0 || ap.AuthTime <= 0 {
		t.Fatalf("AuthTime finder %v, announcer %v: want both > 0", fp.AuthTime, ap.AuthTime)
	}
	if tr := node.Transport(fp.Stream.Conn()); tr != "tcp" {
		t.Fatalf("the finder's stream goes over %q, want tcp", tr)
	}
	addrs := fp.Addrs(fh)
	if len(addrs) == 0 || !strings.HasSuffix(addrs[0].String(), "/p2p/"+ah.ID().String()) ||
		addrs[0].String() != fp.Stream.Conn().RemoteMultiaddr().String()+"/p2p/"+ah.ID().String() {
		t.Fatalf("finder's Addrs = %v, want the connection's address with /p2p/%s first", addrs, ah.ID())
	}

	exchange(t, fp.Stream, ap.Stream, "from the finder to the announcer")
	exchange(t, ap.Stream, fp.Stream, "and back from the announcer")
}

// A finder given the announcer's address (--peer) needs no discovery.
func TestFindStaticPeer(t *testing.T) {
	netns.Require(t)
	c := parse(t, "ability-hammer-ladder-forest")
	ah, fh := newHost(t), newHost(t)
	_, alog := newRecorder(t, "announcer")
	_, flog := newRecorder(t, "finder")
	a := announce(t, rendezvous.Config{Host: ah, Code: c, Log: alog})

	res := findAsync(timeout(t, 10*time.Second), rendezvous.Config{
		Host: fh, Code: c, Methods: []discovery.Method{discovery.Static{Peers: []peer.AddrInfo{info(ah)}}}, Log: flog,
	}, rendezvous.WantPipe)
	ap := next(t, a, 5*time.Second)
	if err := ap.Accept(); err != nil {
		t.Fatal(err)
	}
	r := await(t, res, 5*time.Second)
	if r.err != nil {
		t.Fatalf("Find: %v", r.err)
	}
	if r.peer.ID != ah.ID() || r.peer.Source != "peer" {
		t.Fatalf("Find returned %s with Source %q, want %s with Source peer", r.peer.ID, r.peer.Source, ah.ID())
	}
	exchange(t, r.peer.Stream, ap.Stream, "static")
}

// A finder given an address where nothing listens yet keeps trying: the
// announcer may start a moment later (recv --peer before send is up).
func TestFindStaticPeerNotUpYet(t *testing.T) {
	netns.Require(t)
	c := parse(t, "ability-hammer-ladder-oven")
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	listen := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)
	fh := newHost(t)
	_, alog := newRecorder(t, "announcer")
	_, flog := newRecorder(t, "finder")
	res := findAsync(timeout(t, 20*time.Second), rendezvous.Config{
		Host: fh, Code: c, Log: flog,
		Methods: []discovery.Method{discovery.Static{Peers: []peer.AddrInfo{{ID: id, Addrs: []ma.Multiaddr{ma.StringCast(listen)}}}}},
	}, rendezvous.WantPipe)
	time.Sleep(time.Second)
	ah, err := node.New(node.Config{Listen: []string{listen}, Identity: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ah.Close() })
	a := announce(t, rendezvous.Config{Host: ah, Code: c, Log: alog})
	ap := next(t, a, 10*time.Second)
	if err := ap.Accept(); err != nil {
		t.Fatal(err)
	}
	r := await(t, res, 5*time.Second)
	if r.err != nil || r.peer.ID != id {
		t.Fatalf("Find: %v, %v; want the announcer that came up late", r.peer, r.err)
	}
	// Up after 1 s, found by the attempt at 1.75 s: no dial backoff in the way.
	if r.elapsed > 4*time.Second {
		t.Fatalf("Find took %v to reach an announcer that was up after 1 s", r.elapsed)
	}
}

// A finder with a wrong code is told at once that the peer on the channel
// does not know it, looks on until its timeout (the peer may have been a
// stranger), and then fails with a wrong code; the announcer counts one
// wrong guess and yields no peer.
func TestWrongCode(t *testing.T) {
	netns.Require(t)
	right := parse(t, "able-galaxy-puzzle-wrist")
	wrong := parse(t, "able-galaxy-puzzle-zoo")
	ah, fh := newHost(t), newHost(t)
	arec, alog := newRecorder(t, "announcer")
	frec, flog := newRecorder(t, "finder")
	a := announce(t, rendezvous.Config{Host: ah, Code: right, Methods: []discovery.Method{&discovery.MDNS{Host: ah, Log: alog}}, Log: alog})

	const limit = 4 * time.Second
	res := findAsync(timeout(t, limit), rendezvous.Config{
		Host: fh, Code: wrong, Methods: []discovery.Method{&discovery.MDNS{Host: fh, Log: flog}}, Log: flog,
	}, rendezvous.WantPipe)
	frec.waitFor(t, "does not know this code; looking on", limit)
	r := await(t, res, limit+5*time.Second)
	if !errors.Is(r.err, auth.ErrWrongCode) || !strings.Contains(r.err.Error(), "a peer on the channel did not know it") {
		t.Fatalf("Find: %v (peer %v), want %v saying that a peer on the channel did not know it", r.err, r.peer, auth.ErrWrongCode)
	}
	if r.elapsed < limit-500*time.Millisecond {
		t.Fatalf("Find gave up after %v, before its timeout (%v), while mDNS was still looking", r.elapsed, limit)
	}
	arec.waitFor(t, "tried a wrong code (1 of 8589 allowed)", 3*time.Second)
	noPeer(t, a, 500*time.Millisecond)
}

// Strangers on the channel, one with another code and one that refuses to
// authenticate with a text of its own, do not end the search: the finder
// says what each did, the stranger's text in quotes, and meets the real
// announcer that comes seconds later.
func TestStrangersOnTheChannelDoNotEndTheSearch(t *testing.T) {
	netns.Require(t)
	right := parse(t, "acid-velvet-puzzle-forest")
	impostor := parse(t, "acid-hammer-galaxy-wrist")
	ih, rh, fh := newHost(t), newHost(t), newHost(t)
	_, ilog := newRecorder(t, "impostor")
	announce(t, rendezvous.Config{Host: ih, Code: impostor, Methods: []discovery.Method{&discovery.MDNS{Host: ih, Log: ilog}}, Log: ilog})
	refuser := newHost(t)
	refuser.SetStreamHandler(rendezvous.Protocol, func(s network.Stream) {
		auth.Refuse(s, "your code is wrong: type it again at evil.example")
		s.Close()
	})
	go (&discovery.MDNS{Host: refuser, Log: ilog}).Announce(t.Context(), right.Channel())

	frec, flog := newRecorder(t, "finder")
	res := findAsync(timeout(t, 30*time.Second), rendezvous.Config{
		Host: fh, Code: right, Methods: []discovery.Method{&discovery.MDNS{Host: fh, Log: flog}}, Log: flog,
	}, rendezvous.WantPipe)
	frec.waitFor(t, "does not know this code; looking on", 10*time.Second)
	frec.waitFor(t, `refused to authenticate, saying "your code is wrong: type it again at evil.example"`, 10*time.Second)
	select {
	case r := <-res:
		t.Fatalf("Find ended before the real announcer came: %v", r.err)
	case <-time.After(2 * time.Second):
	}

	_, rlog := newRecorder(t, "real announcer")
	ra := announce(t, rendezvous.Config{Host: rh, Code: right, Methods: []discovery.Method{&discovery.MDNS{Host: rh, Log: rlog}}, Log: rlog})
	acceptNext(t, ra, 20*time.Second)
	r := await(t, res, 25*time.Second)
	if r.err != nil {
		t.Fatalf("Find, with the real announcer up: %v", r.err)
	}
	if r.peer.ID != rh.ID() {
		t.Fatalf("Find met %s, want the real announcer %s", r.peer.ID, rh.ID())
	}
}

// A stranger answers mDNS queries for the channel under the real
// announcer's peer ID (public: it is the instance name) with a dead
// address, before the announcer is up. The finder still meets the real
// announcer once it answers: a later answer under a known peer ID adds its
// addresses.
func TestSpoofedMDNSAnswerDoesNotHideTheAnnouncer(t *testing.T) {
	netns.Require(t)
	c := parse(t, "acoustic-velvet-puzzle-forest")
	ah, fh := newHost(t), newHost(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", l.Addr().(*net.TCPAddr).Port, ah.ID())
	l.Close() // nothing listens there any more
	id := ah.ID().String()
	spoof, err := zeroconf.RegisterProxy(id, fmt.Sprintf("_pcp-%d._udp", c.Channel()), "local.", 4001, id, []string{"127.0.0.1"}, []string{"dnsaddr=" + dead}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(spoof.Shutdown)

	frec, flog := newRecorder(t, "finder")
	res := findAsync(timeout(t, 30*time.Second), rendezvous.Config{
		Host: fh, Code: c, Methods: []discovery.Method{&discovery.MDNS{Host: fh, Log: flog}}, Log: flog,
	}, rendezvous.WantPipe)
	frec.waitFor(t, "found candidate", 5*time.Second) // the spoofed answer
	time.Sleep(time.Second)

	_, alog := newRecorder(t, "announcer")
	up := time.Now()
	a := announce(t, rendezvous.Config{Host: ah, Code: c, Methods: []discovery.Method{&discovery.MDNS{Host: ah, Log: alog}}, Log: alog})
	acceptNext(t, a, 20*time.Second)
	r := await(t, res, 25*time.Second)
	if r.err != nil {
		t.Fatalf("Find, with the real announcer up behind a spoofed answer: %v", r.err)
	}
	if took := time.Since(up); took > 10*time.Second {
		t.Fatalf("the finder met the announcer %v after it came up, want a few seconds", took)
	}
	t.Logf("met the announcer %v after it came up", time.Since(up).Round(time.Millisecond))
}

// A 3-word code allows 4 wrong guesses; after them the announcer gives up
// for good, even for a finder that knows the code.
func TestGuessBudget(t *testing.T) {
	netns.Require(t)
	right := parse(t, "about-orbit-tunnel")
	if b := right.GuessBudget(); b != 4 {
		t.Fatalf("GuessBudget() = %d, want 4", b)
	}
	wrongs := []string{"about-orbit-velvet", "about-hammer-tunnel", "about-zoo-zoo", "about-forest-ladder"}
	ah := newHost(t)
	arec, alog := newRecorder(t, "announcer")
	a := announce(t, rendezvous.Config{Host: ah, Code: right, Log: alog})
	static := []discovery.Method{discovery.Static{Peers: []peer.AddrInfo{info(ah)}}}

	for i, w := range wrongs {
		fh := newHost(t)
		_, flog := newRecorder(t, fmt.Sprintf("finder %d", i+1))
		r := await(t, findAsync(timeout(t, 10*time.Second), rendezvous.Config{Host: fh, Code: parse(t, w), Methods: static, Log: flog}, rendezvous.WantPipe), 10*time.Second)
		if !errors.Is(r.err, auth.ErrWrongCode) {
			t.Fatalf("finder %d: %v, want %v", i+1, r.err, auth.ErrWrongCode)
		}
		arec.waitFor(t, fmt.Sprintf("(%d of 4 allowed)", i+1), 3*time.Second)
		if i == len(wrongs)-2 {
			noPeer(t, a, 200*time.Millisecond) // 3 wrong guesses: not yet fatal
		}
	}
	_, err := a.Next(timeout(t, 5*time.Second))
	var tooMany *rendezvous.TooManyGuessesError
	if !errors.As(err, &tooMany) || tooMany.N != 4 {
		t.Fatalf("Next after 4 wrong codes: %v, want a TooManyGuessesError with N=4", err)
	}

	// The right code comes too late.
	fh := newHost(t)
	_, flog := newRecorder(t, "finder 5")
	r := await(t, findAsync(timeout(t, 15*time.Second), rendezvous.Config{Host: fh, Code: right, Methods: static, Log: flog}, rendezvous.WantPipe), 20*time.Second)
	if r.err == nil {
		t.Fatal("a finder with the right code got a peer after the guess budget was spent")
	}
	if !errors.As(r.err, new(*auth.RefusedError)) {
		t.Fatalf("the finder after the spent budget got %v, want the announcer's refusal", r.err)
	}
	if r.elapsed > 5*time.Second {
		t.Fatalf("the finder after the spent budget took %v to fail (%v): the announcer should refuse it at once", r.elapsed, r.err)
	}
	t.Logf("the finder after the spent budget: %v", r.err)
	for i := range 20 {
		p, err := a.Next(timeout(t, 2*time.Second))
		if p != nil {
			t.Fatalf("Next %d after the budget was spent returned the finder %s", i+1, p.ID)
		}
		if !errors.As(err, &tooMany) {
			t.Fatalf("Next %d after the budget was spent: %v, want a TooManyGuessesError", i+1, err)
		}
	}
	if n := arec.count("tried a wrong code"); n != 4 {
		t.Fatalf("the announcer logged %d wrong codes, want 4", n)
	}
}

// Two announcers share a channel; the finder tries both, skips the one with
// another code while the right one is pending, and ends with the right one.
func TestFinderSkipsWrongCandidate(t *testing.T) {
	netns.Require(t)
	right := parse(t, "above-velvet-puzzle-forest")
	other := parse(t, "above-hammer-galaxy-wrist")
	rh, oh, fh := newHost(t), newHost(t), newHost(t)
	_, rlog := newRecorder(t, "right announcer")
	orec, olog := newRecorder(t, "other announcer")
	_, flog := newRecorder(t, "finder")
	ra := announce(t, rendezvous.Config{Host: rh, Code: right, Log: rlog})
	oa := announce(t, rendezvous.Config{Host: oh, Code: other, Log: olog})

	res := findAsync(timeout(t, 15*time.Second), rendezvous.Config{
		Host: fh, Code: right, Log: flog,
		Methods: []discovery.Method{discovery.Static{Peers: []peer.AddrInfo{info(oh), info(rh)}}},
	}, rendezvous.WantPipe)

	// The right announcer holds its answer until the other has failed the
	// finder: Find must not give up with ErrWrongCode while one is pending.
	rp := next(t, ra, 10*time.Second)
	orec.waitFor(t, "tried a wrong code", 5*time.Second)
	select {
	case r := <-res:
		t.Fatalf("Find returned while the right candidate was pending: %v", r.err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := rp.Accept(); err != nil {
		t.Fatal(err)
	}
	r := await(t, res, 5*time.Second)
	if r.err != nil {
		t.Fatalf("Find: %v", r.err)
	}
	if r.peer.ID != rh.ID() {
		t.Fatalf("Find returned %s, want the right announcer %s", r.peer.ID, rh.ID())
	}
	noPeer(t, oa, 200*time.Millisecond)
}

// A candidate that does not speak pcp is skipped, not counted as a wrong
// code: with nothing else to try, Find reports that no peer was found.
func TestCandidateWithoutPcp(t *testing.T) {
	netns.Require(t)
	c := parse(t, "absent-orbit-zoo-ladder")
	plain, fh := newHost(t), newHost(t)
	_, flog := newRecorder(t, "finder")
	r := await(t, findAsync(timeout(t, 20*time.Second), rendezvous.Config{
		Host: fh, Code: c, Log: flog,
		Methods: []discovery.Method{discovery.Static{Peers: []peer.AddrInfo{info(plain)}}},
	}, rendezvous.WantPipe), 20*time.Second)
	if errors.Is(r.err, auth.ErrWrongCode) {
		t.Fatalf("Find: %v; a peer without pcp must not count as a wrong code", r.err)
	}
	var nf *rendezvous.NotFoundError
	if !errors.As(r.err, &nf) {
		t.Fatalf("Find: %v, want a NotFoundError", r.err)
	}
	if nf.Candidates != 1 || nf.NotPcp != 1 || nf.DHT || nf.Announcing {
		t.Fatalf("NotFoundError %+v, want Candidates 1, NotPcp 1, no DHT, not announcing", *nf)
	}
	if !strings.Contains(nf.Error(), "the peer found does not speak pcp") {
		t.Fatalf("NotFoundError says %q", nf.Error())
	}
	if r.elapsed > 5*time.Second {
		t.Fatalf("Find took %v; with the only candidate done it should end at once", r.elapsed)
	}
}

// Nobody announces the code: Find ends at its deadline with a
// NotFoundError, or with context.Canceled when it is cancelled.
func TestFindTimeout(t *testing.T) {
	netns.Require(t)
	c := parse(t, "absorb-galaxy-hammer-tunnel")
	fh := newHost(t)
	_, flog := newRecorder(t, "finder")
	cfg := rendezvous.Config{Host: fh, Code: c, Methods: []discovery.Method{&discovery.MDNS{Host: fh, Log: flog}}, Log: flog}

	r := await(t, findAsync(timeout(t, time.Second), cfg, rendezvous.WantPipe), 10*time.Second)
	var nf *rendezvous.NotFoundError
	if !errors.As(r.err, &nf) {
		t.Fatalf("Find: %v, want a NotFoundError", r.err)
	}
	if nf.Candidates != 0 || nf.DHT {
		t.Fatalf("NotFoundError %+v, want no candidates and no DHT", *nf)
	}
	if r.elapsed < 900*time.Millisecond || r.elapsed > 5*time.Second {
		t.Fatalf("Find with a 1 s deadline returned after %v", r.elapsed)
	}

	ctx, cancel := context.WithCancel(t.Context())
	res := findAsync(ctx, cfg, rendezvous.WantPipe)
	time.Sleep(300 * time.Millisecond)
	cancel()
	start := time.Now()
	r = await(t, res, 5*time.Second)
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Find with a cancelled context: %v, want %v", r.err, context.Canceled)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Find returned %v after the cancellation", d)
	}
}

// A finder that only wants to meet (pcp-find) is answered, and the announcer
// goes on serving: a second finder gets its pipe, and a refusal reaches the
// finder as a RejectedError.
func TestRendezvousRequest(t *testing.T) {
	netns.Require(t)
	c := parse(t, "abstract-forest-orbit-velvet")
	ah := newHost(t)
	_, alog := newRecorder(t, "announcer")
	a := announce(t, rendezvous.Config{Host: ah, Code: c, Log: alog})
	static := []discovery.Method{discovery.Static{Peers: []peer.AddrInfo{info(ah)}}}

	for _, want := range []string{rendezvous.WantRendezvous, rendezvous.WantPipe} {
		fh := newHost(t)
		_, flog := newRecorder(t, "finder "+want)
		res := findAsync(timeout(t, 10*time.Second), rendezvous.Config{Host: fh, Code: c, Methods: static, Log: flog}, want)
		ap := next(t, a, 5*time.Second)
		if ap.ID != fh.ID() || ap.Want != want {
			t.Fatalf("Next returned %s wanting %q, want %s wanting %q", ap.ID, ap.Want, fh.ID(), want)
		}
		if err := ap.Accept(); err != nil {
			t.Fatal(err)
		}
		r := await(t, res, 5*time.Second)
		if r.err != nil {
			t.Fatalf("Find (%s): %v", want, r.err)
		}
		if r.peer.ID != ah.ID() || r.peer.Want != want {
			t.Fatalf("Find (%s) returned %s with Want %q", want, r.peer.ID, r.peer.Want)
		}
		exchange(t, ap.Stream, r.peer.Stream, "hello "+want)
	}

	fh := newHost(t)
	_, flog := newRecorder(t, "rejected finder")
	res := findAsync(timeout(t, 10*time.Second), rendezvous.Config{Host: fh, Code: c, Methods: static, Log: flog}, "teleport")
	ap := next(t, a, 5*time.Second)
	if ap.Want != "teleport" {
		t.Fatalf("Next returned Want %q, want teleport", ap.Want)
	}
	ap.Reject("no teleports here")
	r := await(t, res, 5*time.Second)
	var rejected *rendezvous.RejectedError
	if !errors.As(r.err, &rejected) || rejected.Reason != "no teleports here" {
		t.Fatalf("Find after a refusal: %v, want a RejectedError with the reason", r.err)
	}
}

// A source gets at most MaxPendingPerSource unauthenticated streams at once;
// the others are reset at once, and those served are dropped when they bring
// no PAKE message within FirstMessageTimeout. Then finders get through.
func TestAnnouncerLimitsPendingAuth(t *testing.T) {
	netns.Require(t)
	c := parse(t, "absurd-zoo-puzzle-hammer")
	ah, plain := newHost(t), newHost(t)
	_, alog := newRecorder(t, "announcer")
	a := announce(t, rendezvous.Config{Host: ah, Code: c, Log: alog})

	ctx := timeout(t, 30*time.Second)
	if err := plain.Connect(ctx, info(ah)); err != nil {
		t.Fatal(err)
	}
	const n = rendezvous.MaxPendingPerSource + 3
	var streams []network.Stream
	resets := 0
	for i := range n {
		s, err := plain.Network().NewStream(ctx, ah.ID())
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		t.Cleanup(func() { s.Reset() })
		// Negotiate the protocol, then stay silent. The announcer may
		// reset the stream before its protocol ack has been read.
		err = multistream.SelectProtoOrFail(rendezvous.Protocol, s)
		switch {
		case errors.Is(err, network.ErrReset):
			resets++
		case err != nil:
			t.Fatalf("stream %d: select %s: %v", i, rendezvous.Protocol, err)
		default:
			streams = append(streams, s)
		}
	}
	opened := time.Now()
	deadline := opened.Add(time.Second)
	var idle []network.Stream
	for i, s := range streams {
		s.SetReadDeadline(deadline)
		_, err := s.Read(make([]byte, 1))
		var ne net.Error
		switch {
		case errors.Is(err, network.ErrReset):
			resets++
		case errors.As(err, &ne) && ne.Timeout():
			idle = append(idle, s)
		default:
			t.Fatalf("stream %d: read: %v, want a reset or the read deadline", i, err)
		}
	}
	if resets != n-rendezvous.MaxPendingPerSource {
		t.Fatalf("%d of %d silent streams from one source were reset at once, want %d", resets, n, n-rendezvous.MaxPendingPerSource)
	}
	// The streams served are dropped once FirstMessageTimeout has passed.
	for i, s := range idle {
		s.SetReadDeadline(opened.Add(rendezvous.FirstMessageTimeout + 2*time.Second))
		if _, err := s.Read(make([]byte, 1)); !errors.Is(err, network.ErrReset) {
			t.Fatalf("silent stream %d: read: %v after %v, want a reset after %v", i, err, time.Since(opened), rendezvous.FirstMessageTimeout)
		}
	}

	fh := newHost(t)
	_, flog := newRecorder(t, "finder")
	cfg := rendezvous.Config{Host: fh, Code: c, Log: flog, Methods: []discovery.Method{discovery.Static{Peers: []peer.AddrInfo{info(ah)}}}}
	accepted := acceptNext(t, a, 20*time.Second)
	r := await(t, findAsync(timeout(t, 5*time.Second), cfg, rendezvous.WantPipe), 6*time.Second)
	if r.err != nil {
		t.Fatalf("Find after the silent streams were dropped: %v", r.err)
	}
	if err := <-accepted; err != nil {
		t.Fatalf("announcer: %v", err)
	}
}

// A stranger who knows only the channel word keeps opening streams to the
// announcer from one address, with a new peer ID each time, and holds each
// open as long as it is let: silent, or with a PAKE message and then
// silent. The receiver that knows the code, from another address, still
// gets through within seconds, with the shortest code (3 words: 4 guesses).
func TestStrangerCannotLockOutTheFinder(t *testing.T) {
	netns.Require(t)
	right := parse(t, "adapt-orbit-tunnel")
	ah := newHost(t)
	_, alog := newRecorder(t, "announcer")
	a := announce(t, rendezvous.Config{Host: ah, Code: right, Log: alog})

	ctx, stopAttack := context.WithCancel(t.Context())
	var attackers sync.WaitGroup
	var attempts, served atomic.Int64
	guess := parse(t, "adapt-zoo-zoo").Password()
	for i := range 12 {
		attackers.Add(1)
		go func() {
			defer attackers.Done()
			for ctx.Err() == nil {
				attempts.Add(1)
				if stranger(ctx, t, ah, i%2 == 1, guess) {
					served.Add(1)
				}
			}
		}()
	}
	t.Cleanup(func() { stopAttack(); attackers.Wait() })
	time.Sleep(2 * time.Second) // let the stranger take every place it can

	fh := newHostAt(t, "127.0.0.3")
	_, flog := newRecorder(t, "finder")
	cfg := rendezvous.Config{Host: fh, Code: right, Log: flog, Methods: []discovery.Method{discovery.Static{Peers: []peer.AddrInfo{info(ah)}}}}
	accepted := acceptNext(t, a, 20*time.Second)
	r := await(t, findAsync(timeout(t, 15*time.Second), cfg, rendezvous.WantPipe), 16*time.Second)
	if r.err != nil {
		t.Fatalf("the finder with the right code, during the attack: %v", r.err)
	}
	if err := <-accepted; err != nil {
		t.Fatalf("announcer: %v", err)
	}
	if r.elapsed > 5*time.Second {
		t.Fatalf("the finder with the right code took %v during the attack, want a few seconds", r.elapsed)
	}
	stopAttack()
	attackers.Wait()
	if attempts.Load() < 12 || served.Load() == 0 {
		t.Fatalf("the stranger made %d attempts, %d served: the attack did not run", attempts.Load(), served.Load())
	}
	t.Logf("found during the attack in %v; the stranger made %d attempts, %d of them held for over a second", r.elapsed.Round(time.Millisecond), attempts.Load(), served.Load())
}

// stranger makes one attempt on the announcer ah from 127.0.0.2 with a new
// peer ID: it opens a pcp stream and stays silent (or, if pake, sends the
// PAKE message of a wrong guess and then stays silent) until the announcer
// drops the stream. It reports whether the stream was served for longer
// than a second.
func stranger(ctx context.Context, t *testing.T, ah host.Host, pake bool, guess []byte) bool {
	h, err := node.New(node.Config{Listen: []string{"/ip4/127.0.0.2/tcp/0"}})
	if err != nil {
		t.Error(err)
		return false
	}
	defer h.Close()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := h.Connect(sctx, info(ah)); err != nil {
		return false
	}
	s, err := h.Network().NewStream(sctx, ah.ID())
	if err != nil {
		return false
	}
	defer s.Reset()
	defer context.AfterFunc(sctx, func() { s.Reset() })()
	start := time.Now()
	if err := multistream.SelectProtoOrFail(rendezvous.Protocol, s); err != nil {
		return false
	}
	if pake {
		// The finder's first write is its PAKE message; the second (its
		// MAC) never comes.
		auth.Finder(&firstWriteOnly{ReadWriter: s, ctx: sctx}, guess, auth.Peers{Announcer: ah.ID(), Finder: h.ID()}, nil)
	} else {
		s.Read(make([]byte, 1))
	}
	return time.Since(start) > time.Second
}

// firstWriteOnly passes its first write on and holds every later one until
// ctx ends.
type firstWriteOnly struct {
	io.ReadWriter
	ctx    context.Context
	writes int
}

func (w *firstWriteOnly) Write(b []byte) (int, error) {
	if w.writes++; w.writes == 1 {
		return w.ReadWriter.Write(b)
	}
	<-w.ctx.Done()
	return 0, w.ctx.Err()
}

// Announcer and finder meet through a private DHT of three in-process
// servers, with no other discovery.
func TestFindThroughPrivateDHT(t *testing.T) {
	netns.Require(t)
	c := parse(t, "abuse-ladder-velvet-galaxy")
	_, dlog := newRecorder(t, "dht servers")
	var servers []peer.AddrInfo
	for range 3 {
		h := newHost(t)
		var boot []peer.AddrInfo
		if len(servers) > 0 {
			boot = servers[:1]
		}
		d, err := discovery.StartDHT(t.Context(), h, true, boot, dlog)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		servers = append(servers, info(h))
	}
	client := func(name string) (host.Host, *discovery.DHT, status.Logger) {
		h := newHost(t)
		_, log := newRecorder(t, name)
		d, err := discovery.StartDHT(t.Context(), h, false, servers, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return h, d, log
	}
	ah, ad, alog := client("announcer")
	fh, fd, flog := client("finder")

	start := time.Now()
	a := announce(t, rendezvous.Config{Host: ah, Code: c, Methods: []discovery.Method{ad}, Log: alog})
	res := findAsync(timeout(t, 20*time.Second), rendezvous.Config{Host: fh, Code: c, Methods: []discovery.Method{fd}, Log: flog}, rendezvous.WantPipe)
	ap := next(t, a, 20*time.Second)
	if err := ap.Accept(); err != nil {
		t.Fatal(err)
	}
	r := await(t, res, 5*time.Second)
	if r.err != nil {
		t.Fatalf("Find: %v", r.err)
	}
	if r.peer.ID != ah.ID() || r.peer.Source != "dht" {
		t.Fatalf("Find returned %s with Source %q, want %s with Source dht", r.peer.ID, r.peer.Source, ah.ID())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("meeting through the DHT took %v", d)
	}
	t.Logf("met through the DHT in %v", time.Since(start).Round(time.Millisecond))
	exchange(t, r.peer.Stream, ap.Stream, "through the dht")
}

// gatedWriter holds back its second write (a finder's MAC) until all the
// finders of a test have reached theirs, or a second has passed, so that
// their guesses are in flight at the same time.
type gatedWriter struct {
	io.ReadWriter
	writes  int
	arrived *sync.WaitGroup
	all     <-chan struct{}
}

func (g *gatedWriter) Write(b []byte) (int, error) {
	g.writes++
	if g.writes == 2 {
		g.arrived.Done()
		select {
		case <-g.all:
		case <-time.After(time.Second):
		}
	}
	return g.ReadWriter.Write(b)
}

// Guesses made at the same time cannot overspend the budget: with a 3-word
// code (budget 4), eight simultaneous wrong guesses count as at most four.
func TestGuessBudgetUnderConcurrentGuesses(t *testing.T) {
	netns.Require(t)
	right := parse(t, "about-orbit-walnut")
	ah := newHost(t)
	arec, alog := newRecorder(t, "announcer")
	a := announce(t, rendezvous.Config{Host: ah, Code: right, Log: alog})
	wrong := parse(t, "about-zoo-walnut").Password()

	const finders = 8
	var arrived, done sync.WaitGroup
	arrived.Add(finders)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	for i := range finders {
		fh := newHostAt(t, fmt.Sprintf("127.0.1.%d", i+1)) // one source each
		if err := fh.Connect(timeout(t, 5*time.Second), info(ah)); err != nil {
			t.Fatal(err)
		}
		done.Add(1)
		go func() {
			defer done.Done()
			s, err := fh.NewStream(timeout(t, 5*time.Second), ah.ID(), rendezvous.Protocol)
			if err != nil {
				arrived.Done()
				return
			}
			defer s.Reset()
			g := &gatedWriter{ReadWriter: s, arrived: &arrived, all: all}
			if _, _, err := auth.Finder(g, wrong, auth.Peers{Announcer: ah.ID(), Finder: fh.ID()}, nil); err == nil {
				t.Error("a wrong code authenticated")
			}
			if g.writes < 2 {
				arrived.Done() // refused before its MAC
			}
		}()
	}
	done.Wait()
	counted := 0
	for _, l := range arec.all() {
		if strings.Contains(l, "tried a wrong code") {
			counted++
		}
	}
	t.Logf("%d simultaneous wrong guesses, %d counted", finders, counted)
	if counted > 4 {
		t.Fatalf("%d wrong guesses were counted against a budget of 4", counted)
	}
	if counted < 4 {
		return // fewer overlapped than needed to spend the budget: nothing more to check
	}
	_, err := a.Next(timeout(t, 5*time.Second))
	var tooMany *rendezvous.TooManyGuessesError
	if !errors.As(err, &tooMany) || tooMany.N != 4 {
		t.Fatalf("Next: %v, want a TooManyGuessesError with N=4", err)
	}
}

// NotFoundError counts in words that agree with the number, and says so
// when every peer found answered but not as pcp.
func TestNotFoundErrorWords(t *testing.T) {
	for _, tt := range []struct {
		err  rendezvous.NotFoundError
		want string
	}{
		{rendezvous.NotFoundError{}, "no peer found in time"},
		{rendezvous.NotFoundError{Candidates: 1}, "no peer found in time (1 candidate could not be reached or did not speak pcp)"},
		{rendezvous.NotFoundError{Candidates: 3}, "no peer found in time (3 candidates could not be reached or did not speak pcp)"},
		{rendezvous.NotFoundError{Candidates: 1, NotPcp: 1}, "the peer found does not speak pcp (is it a pcp sender, and the address right?)"},
		{rendezvous.NotFoundError{Candidates: 2, NotPcp: 2}, "none of the 2 peers found speaks pcp"},
		{rendezvous.NotFoundError{Candidates: 2, NotPcp: 1}, "no peer found in time (2 candidates could not be reached or did not speak pcp)"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.err, got, tt.want)
		}
	}
}
