package tests

import (
	"context"
	"crypto/sha256"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/linkem"
	"github.com/pcp-dev/pcp/internal/netns"
)

// needIPTables skips (or, in CI, fails) a test that cuts links with iptables.
func needIPTables(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("iptables is needed to cut a link: %v", err)
		}
		t.Skipf("SKIPPED NETWORK TEST: iptables is needed to cut a link: %v", err)
	}
}

// cutLink cuts n's eth0 with iptables: "reset" answers every TCP segment,
// both ways, with a reset (a NAT that forgot the connection, a rebooted
// router: both ends learn at once that the connection is gone, and new
// ones are refused), "silent" drops every packet (a pulled cable: both ends
// learn nothing). It returns the function that restores the link.
func cutLink(t testing.TB, n *netns.Namespace, how string) (restore func()) {
	t.Helper()
	for _, tables := range []string{"iptables", "ip6tables"} { // IPv6 link-local addresses reach the peer too
		if how == "reset" {
			n.Run(t, tables, "-A", "INPUT", "-i", "eth0", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
			n.Run(t, tables, "-A", "OUTPUT", "-o", "eth0", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset")
		}
		n.Run(t, tables, "-A", "INPUT", "-i", "eth0", "-j", "DROP")
		n.Run(t, tables, "-A", "OUTPUT", "-o", "eth0", "-j", "DROP")
	}
	return func() {
		for _, tables := range []string{"iptables", "ip6tables"} {
			n.Run(t, tables, "-F", "INPUT")
			n.Run(t, tables, "-F", "OUTPUT")
		}
	}
}

// pacedReader yields n pseudo-random bytes from seed at about rate bytes a
// second, so that a transfer is under way when the test cuts the link.
type pacedReader struct {
	ctx  context.Context
	r    io.Reader
	rate int
}

func newPacedReader(ctx context.Context, seed byte, n int64, rate int) *pacedReader {
	return &pacedReader{ctx: ctx, r: io.LimitReader(mrand.NewChaCha8([32]byte{seed}), n), rate: rate}
}

func (p *pacedReader) Read(b []byte) (int, error) {
	const tick = 10 * time.Millisecond
	select {
	case <-p.ctx.Done():
		return 0, p.ctx.Err()
	case <-time.After(tick):
	}
	return p.r.Read(b[:min(len(b), p.rate/100)])
}

func seededSum(seed byte, n int64) [32]byte {
	h := sha256.New()
	io.Copy(h, io.LimitReader(mrand.NewChaCha8([32]byte{seed}), n))
	return [32]byte(h.Sum(nil))
}

// resumedAt reads the "resumed after 1.2 s at 3.4 MiB" line of a side.
var resumedLine = regexp.MustCompile(`resumed after ([0-9.]+) s at ([^\n]+)`)

// A pcp-pipe transfer from stdin whose link is cut for 5 s in the middle
// and then restored: both sides say that the connection was lost and that
// they resumed, both exit 0, and the bytes arrive intact. The cut resets
// every connection (so it would fail without resuming, however short), or
// drops every packet for longer than the 10 s after which a silent peer is
// taken for gone.
func TestPipeResumesAfterACut(t *testing.T) {
	netns.Require(t)
	needIPTables(t)
	for _, tc := range []struct {
		how string
		cut time.Duration
	}{{"reset", 5 * time.Second}, {"silent", 13 * time.Second}} {
		t.Run(tc.how, func(t *testing.T) {
			a, b := lan(t, "resume", "10.79.0")
			const size = 24 << 20
			c := newCode(t)
			in := newPacedReader(t.Context(), 3, size, 2<<20)
			send := start(t, a.Command(binary(t, "pcp-pipe"), "send", "-v", "--discovery", "mdns", "--code", c), in)
			recv := start(t, b.Command(binary(t, "pcp-pipe"), "recv", "-v", "--discovery", "mdns", "--timeout", "20s", c), nil)
			recv.waitStdout(2<<20, 20*time.Second)
			restore := cutLink(t, a, tc.how)
			time.Sleep(tc.cut)
			restore()
			restored := time.Now()
			recv.expectExit(60*time.Second, 0)
			send.expectExit(10*time.Second, 0)
			if got := recv.stdout.Bytes(); len(got) != size || sha256.Sum256(got) != seededSum(3, size) {
				t.Fatalf("received %d bytes that differ from the %d sent", len(got), size)
			}
			for _, side := range []*proc{send, recv} {
				stderr := side.stderr.String()
				if !strings.Contains(stderr, "connection lost; reconnecting") || !resumedLine.MatchString(stderr) {
					t.Fatalf("a side did not say that it lost the connection and resumed:\n%s", stderr)
				}
			}
			m := resumedLine.FindStringSubmatch(recv.stderr.String())
			after, _ := strconv.ParseFloat(m[1], 64)
			t.Logf("%s cut of %v: the receiver resumed at %s, %.1f s after it lost the connection; both done %v after the link came back",
				tc.how, tc.cut, m[2], after, time.Since(restored).Round(time.Millisecond))
		})
	}
}

// pcp send of a folder over a link whose connections are reset for 5 s
// (50 Mbit/s, so that 24 MiB take about 4 s; the peers meet through a DHT
// on the sender's side): the tree arrives whole, exit 0 on both sides.
func TestFolderResumesAfterACut(t *testing.T) {
	netns.Require(t)
	needIPTables(t)
	site := newLinkSite(t, linkProfile{"cut", linkem.Shape{Rate: 50_000_000, Delay: 5 * time.Millisecond}})
	src := t.TempDir()
	tree := filepath.Join(src, "photos")
	os.MkdirAll(filepath.Join(tree, "2026"), 0o755)
	for i := range 6 {
		data := make([]byte, 4<<20)
		mrand.NewChaCha8([32]byte{byte(i)}).Read(data)
		os.WriteFile(filepath.Join(tree, "2026", "img"+strconv.Itoa(i)+".raw"), data, 0o644)
	}
	os.Symlink("2026/img0.raw", filepath.Join(tree, "latest"))
	out := t.TempDir()
	c := newCode(t)
	dht := []string{"-v", "--discovery", "dht", "--bootstrap", site.bootstrap}
	sc := site.sender.Command(binary(t, "pcp"), append(append([]string{"send"}, dht...), "--code", c, "photos")...)
	sc.Dir = src
	send := start(t, sc, nil)
	recv := start(t, site.receiver.Command(binary(t, "pcp"), append(append([]string{"receive"}, dht...), "--yes", "--output", out, "--timeout", "30s", c)...), nil)
	deadline := time.Now().Add(30 * time.Second)
	for stagedBytes(out) < 2<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("the receiver wrote nothing within 30s\nstderr:\n%s", recv.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	restore := cutLink(t, site.receiver, "reset")
	time.Sleep(5 * time.Second)
	restore()
	recv.expectExit(60*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	sameTree(t, tree, filepath.Join(out, "photos"))
	if !resumedLine.MatchString(recv.stderr.String()) {
		t.Fatalf("the receiver did not resume:\n%s\nsender:\n%s", recv.stderr.String(), send.stderr.String())
	}
	t.Logf("receiver: %s", resumedLine.FindString(recv.stderr.String()))
}

// The receiver's address changes while the link is cut (a laptop moved
// from Wi-Fi to wired): it reaches the sender again from the new one.
func TestResumeFromANewAddress(t *testing.T) {
	netns.Require(t)
	needIPTables(t)
	a, b := lan(t, "resume", "10.79.2")
	const size = 16 << 20
	c := newCode(t)
	send := start(t, a.Command(binary(t, "pcp-pipe"), "send", "--discovery", "mdns", "--code", c), newPacedReader(t.Context(), 5, size, 2<<20))
	recv := start(t, b.Command(binary(t, "pcp-pipe"), "recv", "--discovery", "mdns", "--timeout", "20s", c), nil)
	recv.waitStdout(1<<20, 20*time.Second)
	b.Run(t, "ip", "link", "set", "eth0", "down")
	b.Run(t, "ip", "addr", "flush", "dev", "eth0")
	b.Run(t, "ip", "addr", "add", "10.79.2.22/24", "dev", "eth0")
	time.Sleep(3 * time.Second)
	b.Run(t, "ip", "link", "set", "eth0", "up")
	recv.expectExit(60*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	if got := recv.stdout.Bytes(); len(got) != size || sha256.Sum256(got) != seededSum(5, size) {
		t.Fatalf("received %d bytes that differ from the %d sent", len(got), size)
	}
	if !strings.Contains(send.stderr.String(), "resumed after") {
		t.Fatalf("the sender did not resume:\n%s", send.stderr.String())
	}
}

// A link cut for longer than --reconnect: both sides give up within the
// window (plus the 10 s that it takes to notice a silent peer, plus a
// margin), never with 0, the receiver with the integrity status.
func TestCutLongerThanTheWindow(t *testing.T) {
	netns.Require(t)
	needIPTables(t)
	a, b := lan(t, "resume", "10.79.3")
	c := newCode(t)
	send := start(t, a.Command(binary(t, "pcp-pipe"), "send", "--discovery", "mdns", "--reconnect", "5s", "--code", c), slowReader{t.Context()})
	recv := start(t, b.Command(binary(t, "pcp-pipe"), "recv", "--discovery", "mdns", "--reconnect", "5s", "--timeout", "20s", c), nil)
	recv.waitStdout(256<<10, 20*time.Second)
	cutLink(t, a, "silent")
	cut := time.Now()
	limit := 10*time.Second + 5*time.Second + 5*time.Second
	if status := recv.wait(limit + 5*time.Second); status != 5 {
		t.Fatalf("the receiver exited %d, want 5\nstderr:\n%s", status, recv.stderr.String())
	}
	if status := send.wait(limit + 5*time.Second); status == 0 {
		t.Fatalf("the sender exited 0 after the link was cut for good")
	}
	if took := time.Since(cut); took > limit {
		t.Fatalf("the sides gave up %v after the cut, want within %v", took, limit)
	}
	for _, side := range []*proc{send, recv} {
		if !strings.Contains(side.stderr.String(), "within 5s") {
			t.Fatalf("a side does not say that it could not reconnect within the window:\n%s", side.stderr.String())
		}
	}
	t.Logf("receiver: %s", strings.TrimSpace(recv.stderr.String()))
	t.Logf("sender: %s", strings.TrimSpace(send.stderr.String()))
}

// firstWrite counts what is written to it and notes when the first write
// after arm came.
type firstWrite struct {
	mu    sync.Mutex
	n     int64
	armed bool
	first time.Time
}

func (w *firstWrite) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += int64(len(p))
	if w.armed && w.first.IsZero() {
		w.first = time.Now()
	}
	return len(p), nil
}

func (w *firstWrite) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = true
}

func (w *firstWrite) written() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// BenchmarkResume measures what resuming costs: the time from the restored
// link to the first resumed byte written out, after a 5 s cut that resets
// every connection (BENCH_RESUME_RUNS runs, 3 by default; the median is
// reported) and after a 13 s cut that drops every packet (the peers take
// each other for gone after 10 s); and the bytes on the wire when a
// receiver killed at half of a 200 MiB folder is run again.
func BenchmarkResume(b *testing.B) {
	runs := envInt(b, "BENCH_RESUME_RUNS", 3)
	cut := func(b *testing.B, how string, length time.Duration) time.Duration {
		a, r := lan(b, "bench", "10.79.9")
		const size = 16 << 20
		c := newCode(b)
		send := start(b, a.Command(binary(b, "pcp-pipe"), "send", "--discovery", "mdns", "--code", c), newPacedReader(b.Context(), 9, size, 2<<20))
		rc := r.Command(binary(b, "pcp-pipe"), "recv", "--discovery", "mdns", "--timeout", "20s", c)
		out := &firstWrite{}
		rc.Stdout = out
		recv := start(b, rc, nil)
		deadline := time.Now().Add(20 * time.Second)
		for out.written() < 2<<20 {
			if time.Now().After(deadline) {
				b.Fatalf("nothing arrived within 20s\n%s", recv.stderr.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
		restore := cutLink(b, a, how)
		time.Sleep(length)
		restore()
		restored := time.Now()
		out.arm()
		recv.expectExit(60*time.Second, 0)
		send.expectExit(10*time.Second, 0)
		if out.written() != size {
			b.Fatalf("%d bytes arrived of %d", out.written(), size)
		}
		return out.first.Sub(restored)
	}
	b.Run("reset-5s", func(b *testing.B) {
		for b.Loop() {
			var took []time.Duration
			for range runs {
				took = append(took, cut(b, "reset", 5*time.Second))
			}
			b.Logf("restored link to first resumed byte, 5 s reset cut: %v (median %v)", took, median(took))
			b.ReportMetric(median(took).Seconds(), "s-to-resumed-byte")
		}
	})
	b.Run("silent-13s", func(b *testing.B) {
		for b.Loop() {
			took := cut(b, "silent", 13*time.Second)
			b.Logf("restored link to first resumed byte, 13 s silent cut: %v", took)
			b.ReportMetric(took.Seconds(), "s-to-resumed-byte")
		}
	})
	b.Run("killed-receiver", func(b *testing.B) {
		for b.Loop() {
			const size = 200 << 20
			src, out := b.TempDir(), b.TempDir()
			resumeTree(b, src, size)
			c := newCode(b)
			send, recv := sendTree(b, src, c), receiveTree(b, out, c)
			cutAt(b, out, size/2, recv, send, syscall.SIGKILL)
			kept := stagedBytes(out)
			c = newCode(b)
			begin := time.Now()
			send, recv = sendTree(b, src, c), receiveTree(b, out, c)
			recv.expectExit(60*time.Second, 0)
			send.expectExit(10*time.Second, 0)
			wire := wireBytes(b, send)
			b.Logf("receiver killed at %.0f MiB of %d MiB: the second run sent %.1f MiB (%.0f %%) in %v",
				float64(kept)/(1<<20), size>>20, wire/(1<<20), 100*wire/size, time.Since(begin).Round(time.Millisecond))
			b.ReportMetric(100*wire/size, "%-on-the-wire")
		}
	})
}
