package tests

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/linkem"
	"github.com/pcp-dev/pcp/internal/netns"
)

// A link profile is what both directions of an emulated link do to frames.
//
//   - home: 100 Mbit/s, 20 ms round trip, no loss: two homes on fibre or
//     cable in one country.
//   - wan: 50 Mbit/s, 80 ms round trip, 0.5 % random loss each way: across
//     a continent over a busy path, or a good mobile link.
//
// Both keep netem's default queue of 1000 frames, as a typical home router's
// buffer does (121 ms at 100 Mbit/s).
type linkProfile struct {
	name  string
	shape linkem.Shape
}

var linkProfiles = []linkProfile{
	{"home", linkem.Shape{Rate: 100_000_000, Delay: 10 * time.Millisecond}},
	{"wan", linkem.Shape{Rate: 50_000_000, Delay: 40 * time.Millisecond, Loss: 0.005}},
}

// linkSite is two hosts joined by an emulated link: the sender's side holds
// a private DHT of three `pcp node`s, so that the receiver meets the sender
// through a DHT on the far side of the link, as across the internet.
type linkSite struct {
	t                testing.TB
	sender, receiver *netns.Namespace
	senderIP         string
	receiverIP       string
	bootstrap        string
	link             *linkem.Link
}

func newLinkSite(t testing.TB, p linkProfile) *linkSite {
	t.Helper()
	// Addresses of the carrier-grade NAT range: private to libp2p, as a
	// LAN's are, but not local to a receiving host's choice of window
	// (node.isLocal), which treats the peer as one across the internet,
	// as the emulated links are.
	s := &linkSite{t: t, senderIP: "100.90.0.1", receiverIP: "100.90.0.2"}
	s.sender = netns.New(t, "sender")
	s.receiver = netns.New(t, "receiver")
	s.link = netns.Emulate(t, s.sender, "eth0", s.senderIP+"/24", s.receiver, "eth0", s.receiverIP+"/24", p.shape, p.shape, 1)
	// TCP and QUIC, as the IPFS bootstrap peers and `pcp node` listen.
	var addrs []string
	for i := range 3 {
		tcp, quic := fmt.Sprintf("/ip4/%s/tcp/%d", s.senderIP, 4001+i), fmt.Sprintf("/ip4/%s/udp/%d/quic-v1", s.senderIP, 4001+i)
		args := []string{"node", "--listen", tcp + "," + quic}
		if i > 0 {
			args = append(args, "--bootstrap", addrs[0])
		}
		_, addr := startNode(t, s.sender.Command(binary(t, "pcp"), args...))
		if !strings.HasPrefix(addr, tcp+"/p2p/") {
			t.Fatalf("pcp node printed %q first, want its TCP address %s", addr, tcp)
		}
		addrs = append(addrs, addr, quic+strings.TrimPrefix(addr, tcp))
	}
	s.bootstrap = strings.Join(addrs, ",")
	return s
}

// transferRun is one measured transfer: from the receiver's start to its
// exit (the data complete at the destination), and to the first byte of
// data there.
type transferRun struct {
	total, first time.Duration
}

// firstByteWatch polls size until it is above zero and records when.
type firstByteWatch struct {
	start time.Time
	at    atomic.Int64 // nanoseconds after start, 0 until seen
	stop  chan struct{}
}

func watchFirstByte(start time.Time, size func() int64) *firstByteWatch {
	w := &firstByteWatch{start: start, stop: make(chan struct{})}
	go func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			if size() > 0 {
				w.at.Store(int64(time.Since(w.start)))
				return
			}
		}
	}()
	return w
}

func (w *firstByteWatch) done() time.Duration {
	close(w.stop)
	return time.Duration(w.at.Load())
}

func fileSize(path string) func() int64 {
	return func() int64 {
		info, err := os.Stat(path)
		if err != nil {
			return 0
		}
		return info.Size()
	}
}

// treeSize sums the sizes of the regular files under dir, but for the
// offer that pcp receive writes into its staging folder when the offer
// arrives, before any data: counting it made pcp send's first byte a round
// trip and a half early.
func treeSize(dir string) func() int64 {
	return func() int64 {
		var n int64
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			offer := d != nil && d.Name() == "offer" && strings.HasPrefix(filepath.Base(filepath.Dir(path)), ".pcp-partial-")
			if err == nil && d.Type().IsRegular() && !offer {
				if info, err := d.Info(); err == nil {
					n += info.Size()
				}
			}
			return nil
		})
		return n
	}
}

// sameFile fails t unless got holds what want holds.
func sameFile(t testing.TB, want, got string) {
	t.Helper()
	a, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(got)
	if err != nil {
		t.Fatalf("the transfer left no file: %v", err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("%s: %d bytes differ from the %d sent", got, len(b), len(a))
	}
}

// tcpCopy is the baseline: the file through one plain TCP connection,
// written to a file by the receiver, which starts first.
func (s *linkSite) tcpCopy(tcpcopy, input, out string, port int) transferRun {
	t := s.t
	addr := fmt.Sprintf("%s:%d", s.receiverIP, port)
	in, f := openFiles(t, input, out)
	defer in.Close()
	defer f.Close()
	rc := s.receiver.Command(tcpcopy, "recv", addr)
	rc.Stdout = f
	return s.timed(rc, fileSize(out), func() *proc {
		return start(t, s.sender.Command(tcpcopy, "send", "-wait", "10s", addr), in)
	}, 10*time.Second)
}

// openFiles opens input for reading and creates out; the caller closes
// both.
func openFiles(t testing.TB, input, out string) (in, f *os.File) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	in, err = os.Open(input)
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	return in, f
}

// timed starts the receiver rc, then the sender (send starts it, or
// returns the one started before), and returns the time from rc's start to
// its exit, and to the first byte that size sees; then it waits up to
// sendWait for the sender's exit.
func (s *linkSite) timed(rc *exec.Cmd, size func() int64, send func() *proc, sendWait time.Duration) transferRun {
	t0 := time.Now()
	watch := watchFirstByte(t0, size)
	recv := start(s.t, rc, nil)
	sender := send()
	recv.expectExit(5*time.Minute, 0)
	total := time.Since(t0)
	sender.expectExit(sendWait, 0)
	return transferRun{total: total, first: watch.done()}
}

// pcpPipe sends the file with pcp-pipe send < FILE, received with
// pcp-pipe recv CODE > FILE.
func (s *linkSite) pcpPipe(input, out string, extra ...string) transferRun {
	t := s.t
	in, f := openFiles(t, input, out)
	defer in.Close()
	defer f.Close()
	c := newCode(t)
	common := append([]string{"--discovery", "dht", "--bootstrap", s.bootstrap, "--timeout", "60s", "-v"}, extra...)
	send := start(t, s.sender.Command(binary(t, "pcp-pipe"), append([]string{"send", "--code", c}, common...)...), in)
	send.waitStderr("dht: announced", 30*time.Second)
	rc := s.receiver.Command(binary(t, "pcp-pipe"), append(append([]string{"recv"}, common...), c)...)
	rc.Stdout = f
	return s.timed(rc, fileSize(out), func() *proc { return send }, 10*time.Second)
}

// pcpSend sends the file with pcp send FILE, received with pcp receive
// --yes --output DIR.
func (s *linkSite) pcpSend(input, dir string, extra ...string) transferRun {
	t := s.t
	c := newCode(t)
	common := append([]string{"--discovery", "dht", "--bootstrap", s.bootstrap, "--timeout", "60s", "-v"}, extra...)
	send := start(t, s.sender.Command(binary(t, "pcp"), append(append([]string{"send", "--code", c}, common...), input)...), nil)
	send.waitStderr("dht: announced", 30*time.Second)
	rc := s.receiver.Command(binary(t, "pcp"), append(append([]string{"receive", "--yes", "--output", dir}, common...), c)...)
	return s.timed(rc, treeSize(dir), func() *proc { return send }, 10*time.Second)
}

// crocSend sends the file with croc through a croc relay on the sender's
// side of the link, received with croc --yes --out DIR.
func (s *linkSite) crocSend(croc, home, input, dir string) transferRun {
	t := s.t
	c := "pcp-bench-" + strings.ReplaceAll(newCode(t), "-", "")
	relay := s.senderIP + ":9009"
	// croc keeps its config under XDG_CONFIG_HOME: in home, not in the
	// harness's /nonexistent/pcp-tests, which it would create as root (and a
	// test that runs pcp as nobody would then fail to read its config).
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"), "CROC_RELAY=", "CROC_PASS=", "CROC_SECRET="}
	sc := s.sender.Command(croc, "--relay", relay, "--pass", "bench", "send", "--no-local", input)
	sc.Env = append(env, "CROC_SECRET="+c)
	sc.Dir = home
	send := start(t, sc, nil)
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(send.stdout.String()+send.stderr.String(), "Code is:"); {
		if time.Now().After(deadline) {
			t.Fatalf("croc send printed no code within 30s\nstdout:\n%s\nstderr:\n%s", send.stdout, send.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rc := s.receiver.Command(croc, "--yes", "--overwrite", "--relay", relay, "--pass", "bench", "--out", dir)
	rc.Env = append(env, "CROC_SECRET="+c)
	rc.Dir = home
	return s.timed(rc, treeSize(dir), func() *proc { return send }, 30*time.Second)
}

// linkInputs writes the benchmark's inputs into dir: size bytes of random
// data, and size bytes of Go source text (the standard library's .go files,
// concatenated, repeated if need be).
func linkInputs(t testing.TB, dir string, size int) (random, text string) {
	t.Helper()
	random, text = filepath.Join(dir, "random.bin"), filepath.Join(dir, "source.txt")
	if err := os.WriteFile(random, randomBytes(t, size), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for buf.Len() < size {
		before := buf.Len()
		filepath.WalkDir(filepath.Join(runtime.GOROOT(), "src"), func(path string, d fs.DirEntry, err error) error {
			if err != nil || buf.Len() >= size {
				return filepath.SkipDir
			}
			if d.Type().IsRegular() && strings.HasSuffix(path, ".go") {
				if b, err := os.ReadFile(path); err == nil {
					buf.Write(b)
				}
			}
			return nil
		})
		if buf.Len() == before {
			t.Fatalf("no Go source under %s", runtime.GOROOT())
		}
	}
	if err := os.WriteFile(text, buf.Bytes()[:size], 0o644); err != nil {
		t.Fatal(err)
	}
	return random, text
}

// buildTool builds a helper command of the project (bench/...) into dir.
func buildTool(t testing.TB, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	if b, err := exec.Command("go", "build", "-o", out, "../"+pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

func envInt(t testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkLink moves one file over emulated home and WAN links (see
// linkProfiles) with a plain TCP copy, pcp send, pcp-pipe and, when it is on
// PATH, croc through its own relay, in turn, BENCH_LINK_RUNS times (default
// 3), and prints each tool's median time from the receiver's start to the
// file complete, as a rate relative to the TCP copy of the same run, and the
// time to the first byte at the destination. BENCH_LINK_MIB sets the file's
// size (default 96).
func BenchmarkLink(b *testing.B) {
	runs := envInt(b, "BENCH_LINK_RUNS", 3)
	size := envInt(b, "BENCH_LINK_MIB", 96) << 20
	scratch := b.TempDir()
	random, text := linkInputs(b, scratch, size)
	tcpcopy := buildTool(b, scratch, "bench/tcpcopy")
	croc, err := exec.LookPath("croc")
	if err != nil {
		croc = ""
		fmt.Printf("link: croc is not on PATH: its column is left out\n")
	}
	cc, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	fmt.Printf("link: %d MiB per transfer, median of %d runs, TCP congestion control %s\n", size>>20, runs, strings.TrimSpace(string(cc)))
	for b.Loop() {
		for _, p := range linkProfiles {
			if only := os.Getenv("BENCH_LINK_PROFILE"); only != "" && only != p.name {
				continue
			}
			site := newLinkSite(b, p)
			if croc != "" {
				rc := site.sender.Command(croc, "--pass", "bench", "relay", "--host", site.senderIP)
				rc.Env = []string{"HOME=" + scratch, "XDG_CONFIG_HOME=" + filepath.Join(scratch, ".config")}
				start(b, rc, nil)
			}
			for _, data := range []struct{ name, path string }{{"random", random}, {"text", text}} {
				results := map[string][]transferRun{}
				tools := []string{"tcp", "pcp send", "pcp-pipe"}
				if croc != "" {
					tools = append(tools, "croc")
				}
				if only := os.Getenv("BENCH_LINK_TOOLS"); only != "" {
					// The TCP copy stays: the others are measured against it.
					tools = slices.DeleteFunc(tools, func(tool string) bool { return tool != "tcp" && !slices.Contains(strings.Split(only, ","), tool) })
				}
				for i := range runs {
					for _, tool := range tools {
						out := filepath.Join(scratch, "out")
						os.RemoveAll(out)
						if err := os.Mkdir(out, 0o755); err != nil {
							b.Fatal(err)
						}
						var r transferRun
						got := filepath.Join(out, filepath.Base(data.path))
						switch tool {
						case "tcp":
							r = site.tcpCopy(tcpcopy, data.path, got, 7000+i)
						case "pcp send":
							r = site.pcpSend(data.path, out)
						case "pcp-pipe":
							r = site.pcpPipe(data.path, got)
						case "croc":
							r = site.crocSend(croc, scratch, data.path, out)
						}
						sameFile(b, data.path, got)
						results[tool] = append(results[tool], r)
						fmt.Printf("link: %-4s %-6s run %d %-8s %6.2f s, first byte %.2f s\n", p.name, data.name, i+1, tool, r.total.Seconds(), r.first.Seconds())
					}
				}
				tcp := median(totals(results["tcp"]))
				for _, tool := range tools {
					total, first := median(totals(results[tool])), median(firsts(results[tool]))
					fmt.Printf("link: %-4s %-6s %-8s %6.2f s  %5.2fx TCP  %6.1f Mbit/s  first byte %.2f s\n",
						p.name, data.name, tool, total.Seconds(), tcp.Seconds()/total.Seconds(), float64(size)*8/total.Seconds()/1e6, first.Seconds())
				}
			}
			ab, ba := site.link.Stats()
			fmt.Printf("link: %s frames sender→receiver %+v, receiver→sender %+v\n", p.name, ab, ba)
		}
	}
}

func totals(rs []transferRun) []time.Duration {
	var out []time.Duration
	for _, r := range rs {
		out = append(out, r.total)
	}
	return out
}

func firsts(rs []transferRun) []time.Duration {
	var out []time.Duration
	for _, r := range rs {
		out = append(out, r.first)
	}
	return out
}
