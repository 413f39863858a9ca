package auth_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/lib/auth"
	"github.com/pcp-dev/pcp/lib/frame"
)

var rejoinPeers = auth.Peers{Announcer: "announcer-id", Finder: "finder-id"}

// secrets authenticates once over a TCP pair, as the rendezvous does, and
// returns what each side keeps.
func secrets(t *testing.T) (finder, announcer auth.Secret) {
	t.Helper()
	pw := password(t, "abandon-ability-able-about")
	f, a := tcpPair(t)
	f.SetDeadline(time.Now().Add(testWait))
	a.SetDeadline(time.Now().Add(testWait))
	done := make(chan auth.Secret, 1)
	go func() {
		s, err := auth.Announcer(a, pw, rejoinPeers)
		if err != nil {
			t.Errorf("Announcer: %v", err)
		}
		done <- s
	}()
	fs, _, err := auth.Finder(f, pw, rejoinPeers, nil)
	if err != nil {
		t.Fatalf("Finder: %v", err)
	}
	as := <-done
	if len(fs) != 32 || !bytes.Equal(fs, as) {
		t.Fatalf("the two sides keep different secrets (%d and %d bytes)", len(fs), len(as))
	}
	return fs, as
}

// recorder keeps a copy of everything written through it.
type recorder struct {
	*net.TCPConn
	written bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.written.Write(b)
	return r.TCPConn.Write(b)
}

// rejoin runs both sides of a rejoin over a new TCP pair and returns their
// errors and what each side wrote.
func rejoin(t *testing.T, fs, as auth.Secret, fp, ap auth.Peers, pipelined []byte) (ferr, aerr error, fw, aw []byte) {
	t.Helper()
	f, a := tcpPair(t)
	f.SetDeadline(time.Now().Add(testWait))
	a.SetDeadline(time.Now().Add(testWait))
	fr, ar := &recorder{TCPConn: f}, &recorder{TCPConn: a}
	done := make(chan error, 1)
	go func() {
		err := auth.RejoinAnnouncer(ar, as, ap)
		a.CloseWrite()
		done <- err
	}()
	ferr = auth.RejoinFinder(fr, fs, fp, pipelined)
	f.CloseWrite()
	aerr = <-done
	return ferr, aerr, fr.written.Bytes(), ar.written.Bytes()
}

func TestRejoin(t *testing.T) {
	fs, as := secrets(t)
	t.Run("the same two peers", func(t *testing.T) {
		f, a := tcpPair(t)
		f.SetDeadline(time.Now().Add(testWait))
		a.SetDeadline(time.Now().Add(testWait))
		done := make(chan error, 1)
		next := make(chan []byte, 1)
		go func() {
			err := auth.RejoinAnnouncer(a, as, rejoinPeers)
			done <- err
			// The pipelined frame follows the proof on the same stream.
			_, p, _ := frame.NewReader(a, 64).Next()
			next <- append([]byte(nil), p...)
		}()
		if err := auth.RejoinFinder(f, fs, rejoinPeers, frame.Append(nil, frame.Resume, []byte("offset"))); err != nil {
			t.Fatalf("RejoinFinder: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("RejoinAnnouncer: %v", err)
		}
		if got := <-next; string(got) != "offset" {
			t.Fatalf("the frame after the proof arrived as %q", got)
		}
	})
	t.Run("another session's secret", func(t *testing.T) {
		other, _ := secrets(t)
		ferr, aerr, _, _ := rejoin(t, other, as, rejoinPeers, rejoinPeers, nil)
		if !errors.Is(ferr, auth.ErrNotRejoined) {
			t.Errorf("the finder with another secret got %v, want ErrNotRejoined", ferr)
		}
		if aerr == nil {
			t.Errorf("the announcer accepted a finder with another secret")
		}
	})
	t.Run("other peer IDs", func(t *testing.T) {
		// A third party that relays the exchange between two connections
		// of its own: each side sees other peer IDs.
		relayed := auth.Peers{Announcer: rejoinPeers.Announcer, Finder: "third-party"}
		ferr, aerr, _, _ := rejoin(t, fs, as, rejoinPeers, relayed, nil)
		if ferr == nil || aerr == nil {
			t.Errorf("a rejoin with mismatched peer IDs passed: finder %v, announcer %v", ferr, aerr)
		}
	})
	t.Run("replayed finder", func(t *testing.T) {
		ferr, aerr, fw, _ := rejoin(t, fs, as, rejoinPeers, rejoinPeers, nil)
		if ferr != nil || aerr != nil {
			t.Fatalf("recording a rejoin: finder %v, announcer %v", ferr, aerr)
		}
		// Someone who recorded the finder's frames sends them again.
		f, a := tcpPair(t)
		a.SetDeadline(time.Now().Add(testWait))
		go func() {
			f.Write(fw)
			f.CloseWrite()
			io.Copy(io.Discard, f)
		}()
		if err := auth.RejoinAnnouncer(a, as, rejoinPeers); !errors.Is(err, auth.ErrNotRejoined) {
			t.Fatalf("the announcer answered a replayed rejoin with %v, want ErrNotRejoined", err)
		}
	})
	t.Run("replayed announcer", func(t *testing.T) {
		ferr, aerr, _, aw := rejoin(t, fs, as, rejoinPeers, rejoinPeers, nil)
		if ferr != nil || aerr != nil {
			t.Fatalf("recording a rejoin: finder %v, announcer %v", ferr, aerr)
		}
		// Someone who recorded the announcer's answer poses as it.
		f, a := tcpPair(t)
		f.SetDeadline(time.Now().Add(testWait))
		go func() {
			frame.NewReader(a, 64).Next() // the finder's nonce
			a.Write(aw)
			io.Copy(io.Discard, a)
		}()
		if err := auth.RejoinFinder(f, fs, rejoinPeers, nil); !errors.Is(err, auth.ErrNotRejoined) {
			t.Fatalf("the finder took a replayed answer with %v, want ErrNotRejoined", err)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		for name, msg := range map[string][]byte{
			"short nonce": frame.Append(nil, frame.Rejoin, []byte("short")),
			"no rejoin":   frame.Append(nil, frame.PAKE, make([]byte, 32)),
			"too large":   frame.Append(nil, frame.Rejoin, make([]byte, auth.MaxMessage+1)),
			"cut":         frame.Append(nil, frame.Rejoin, make([]byte, 32))[:20],
		} {
			f, a := tcpPair(t)
			a.SetDeadline(time.Now().Add(testWait))
			go func() {
				f.Write(msg)
				f.CloseWrite()
				io.Copy(io.Discard, f)
			}()
			if err := auth.RejoinAnnouncer(a, as, rejoinPeers); err == nil {
				t.Errorf("%s: the announcer accepted it", name)
			}
		}
	})
}
