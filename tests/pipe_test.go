package tests

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/node"
)

// Three `pcp node` processes form a private DHT; sender and receiver find
// each other through it alone (--discovery dht), and the bytes arrive whole.
func TestTransferThroughPrivateDHT(t *testing.T) {
	netns.Require(t)
	bootstrap := startDHT(t, 3)
	c := newCode(t)
	data := randomBytes(t, 8<<20)

	send := start(t, command(t, "pcp-pipe", "send", "--discovery", "dht", "--bootstrap", bootstrap, "--code", c, "-v"), bytes.NewReader(data))
	// The receiver takes the bootstrap list from the environment.
	rc := command(t, "pcp-pipe", "recv", "--discovery", "dht", "-v", c)
	rc.Env = []string{"PCP_BOOTSTRAP=" + bootstrap}
	recv := start(t, rc, nil)
	recv.expectExit(30*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	if !bytes.Equal(recv.stdout.Bytes(), data) {
		t.Fatalf("received %d bytes that differ from the %d sent", len(recv.stdout.Bytes()), len(data))
	}
	if !strings.Contains(recv.stderr.String(), "found by dht") {
		t.Fatalf("the receiver did not report finding the peer through the DHT:\n%s", recv.stderr.String())
	}
	if len(send.stdout.Bytes()) != 0 {
		t.Fatalf("send wrote to stdout: %q", send.stdout.String())
	}
}

// mDNS between two hosts of a LAN: two namespaces joined by a veth pair,
// with nothing but multicast DNS to find each other.
func TestTransferOverMDNSBetweenNamespaces(t *testing.T) {
	netns.Require(t)
	a, b := lan(t, "lan", "10.77.0")
	send, recv := pipeOverMDNS(t, a, b, 2<<20)
	stderr := recv.stderr.String()
	if !strings.Contains(stderr, "found by mdns") {
		t.Fatalf("the receiver did not report finding the peer by mDNS:\n%s", stderr)
	}
	if !strings.Contains(stderr, "10.77.0.1") && !strings.Contains(send.stderr.String(), "10.77.0.2") {
		t.Logf("note: the status lines do not name the LAN address")
	}
	// On the local network the data takes a lane of its own (lib/lane).
	for _, side := range []*proc{send, recv} {
		if !strings.Contains(side.stderr.String(), "data over a lane of its own") {
			t.Fatalf("a side did not say that the data took a lane:\n%s", side.stderr.String())
		}
	}
}

// A receiver whose firewall drops every new TCP connection from outside
// (its own connection to the sender goes out): the sender cannot reach the
// lane it offers, says so with -v, and sends over the libp2p stream; the
// bytes arrive intact.
func TestLaneBlockedByAFirewall(t *testing.T) {
	netns.Require(t)
	needIPTables(t)
	a, b := lan(t, "lanefw", "10.78.0")
	for _, tables := range []string{"iptables", "ip6tables"} {
		b.Run(t, tables, "-A", "INPUT", "-i", "eth0", "-p", "tcp", "--syn", "-j", "DROP")
	}
	send, recv := pipeOverMDNS(t, a, b, 4<<20)
	if s := send.stderr.String(); !strings.Contains(s, "no lane for the data") || strings.Contains(s, "data over a lane of its own") {
		t.Fatalf("the sender did not say that it could not reach the lane:\n%s", s)
	}
	if s := recv.stderr.String(); strings.Contains(s, "data over a lane of its own") {
		t.Fatalf("the receiver says that the data took a lane:\n%s", s)
	}
}

// pipeOverMDNS sends size random bytes with pcp-pipe -v from a to b, which
// find each other by mDNS, and checks that both exit 0 and that the bytes
// arrive intact.
func pipeOverMDNS(t *testing.T, a, b *netns.Namespace, size int) (send, recv *proc) {
	t.Helper()
	c := newCode(t)
	data := randomBytes(t, size)
	send = start(t, a.Command(binary(t, "pcp-pipe"), "send", "--discovery", "mdns", "--code", c, "-v"), bytes.NewReader(data))
	recv = start(t, b.Command(binary(t, "pcp-pipe"), "recv", "--discovery", "mdns", "--timeout", "20s", "-v", c), nil)
	recv.expectExit(30*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	if !bytes.Equal(recv.stdout.Bytes(), data) {
		t.Fatalf("received %d bytes that differ from the %d sent", len(recv.stdout.Bytes()), len(data))
	}
	return send, recv
}

// A wrong code: the receiver says so at once, exits 3 at its timeout, and
// writes nothing; the sender keeps waiting and the right receiver still gets
// the data.
func TestWrongCode(t *testing.T) {
	netns.Require(t)
	c := newCode(t)
	send := start(t, command(t, "pcp-pipe", "send", "--discovery", "mdns", "--code", c), strings.NewReader("the right data\n"))

	// The sender on the channel might be a stranger: the receiver looks on
	// until its timeout, saying so at once.
	wrong := start(t, command(t, "pcp-pipe", "recv", "--discovery", "mdns", "--timeout", "5s", wrongCode(t, c)), nil)
	wrong.waitStderr("does not know this code; looking on", 5*time.Second)
	wrong.expectExit(15*time.Second, 3)
	if n := len(wrong.stdout.Bytes()); n != 0 {
		t.Fatalf("a receiver with the wrong code wrote %d bytes to stdout", n)
	}
	if !strings.Contains(wrong.stderr.String(), "code did not match") {
		t.Fatalf("the wrong-code message does not say the code did not match:\n%s", wrong.stderr.String())
	}
	send.waitStderr("wrong code", 5*time.Second)

	right := start(t, command(t, "pcp-pipe", "recv", "--discovery", "mdns", "--timeout", "20s", c), nil)
	right.expectExit(25*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	if got := right.stdout.String(); got != "the right data\n" {
		t.Fatalf("the right receiver got %q", got)
	}
}

// endlessTransfer starts a sender of endless data and its receiver over
// mDNS, and returns once the receiver has written n bytes.
func endlessTransfer(t *testing.T, n int) (send, recv *proc) {
	netns.Require(t)
	c := newCode(t)
	// A peer that vanishes is waited for 3 s, not the default 2 minutes.
	send = start(t, command(t, "pcp-pipe", "send", "--discovery", "mdns", "--reconnect", "3s", "--code", c), slowReader{t.Context()})
	recv = start(t, command(t, "pcp-pipe", "recv", "--discovery", "mdns", "--reconnect", "3s", "--timeout", "20s", c), nil)
	recv.waitStdout(n, 20*time.Second)
	return send, recv
}

// A sender killed in the middle of the stream: the receiver must fail with
// the integrity status (or 1), never 0, within seconds.
func TestSenderKilledMidStream(t *testing.T) {
	send, recv := endlessTransfer(t, 256<<10)
	send.cmd.Process.Kill()
	killed := time.Now()
	status := recv.wait(15 * time.Second)
	if status != 5 && status != 1 {
		t.Fatalf("the receiver exited %d after the sender was killed, want 5 (or 1)\nstderr:\n%s", status, recv.stderr.String())
	}
	t.Logf("receiver exited %d, %v after the kill: %s", status, time.Since(killed).Round(time.Millisecond), strings.TrimSpace(recv.stderr.String()))
}

// A receiver killed in the middle: the sender must not report success.
func TestReceiverKilledMidStream(t *testing.T) {
	send, recv := endlessTransfer(t, 256<<10)
	recv.cmd.Process.Kill()
	if status := send.wait(15 * time.Second); status == 0 {
		t.Fatalf("the sender exited 0 although the receiver was killed\nstderr:\n%s", send.stderr.String())
	}
}

// SIGINT: the interrupted side exits 130 and the peer hears why.
func TestInterruptTellsThePeer(t *testing.T) {
	send, recv := endlessTransfer(t, 64<<10)
	send.cmd.Process.Signal(syscall.SIGINT)
	send.expectExit(5*time.Second, 130)
	if status := recv.wait(5 * time.Second); status == 0 {
		t.Fatalf("the receiver exited 0 after the sender was interrupted")
	}
	if !strings.Contains(recv.stderr.String(), "interrupted") {
		t.Fatalf("the receiver was not told that the sender was interrupted:\n%s", recv.stderr.String())
	}
}

// SIGINT on the receiver: it exits 130, and the sender fails, told why.
func TestInterruptedReceiverTellsTheSender(t *testing.T) {
	send, recv := endlessTransfer(t, 64<<10)
	recv.cmd.Process.Signal(syscall.SIGINT)
	recv.expectExit(5*time.Second, 130)
	if status := send.wait(5 * time.Second); status == 0 || status == 130 {
		t.Fatalf("the sender exited %d after the receiver was interrupted, want a failure", status)
	}
	if !strings.Contains(send.stderr.String(), "interrupted") {
		t.Fatalf("the sender was not told that the receiver was interrupted:\n%s", send.stderr.String())
	}
}

// recv --peer dials a known address and skips discovery.
func TestPeerAddressSkipsDiscovery(t *testing.T) {
	netns.Require(t)
	dir := t.TempDir()
	identity := filepath.Join(dir, "sender.key")
	key, err := node.LoadIdentity(identity)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	c := newCode(t)
	// The sender announces nowhere: only --peer can find it.
	send := start(t, command(t, "pcp-pipe", "send", "--discovery", "dht", "--bootstrap", "", "--code", c,
		"--identity", identity, "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)), strings.NewReader("direct\n"))
	addr := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, id)
	recv := start(t, command(t, "pcp-pipe", "recv", "--peer", addr, "--timeout", "20s", c), nil)
	recv.expectExit(25*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	if got := recv.stdout.String(); got != "direct\n" {
		t.Fatalf("received %q", got)
	}
	if !strings.Contains(recv.stderr.String(), "reached at the --peer address") {
		t.Fatalf("the receiver did not say it used --peer:\n%s", recv.stderr.String())
	}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// --timeout with nobody on the other side: exit 4, on both sides, on time.
func TestTimeoutWithoutPeer(t *testing.T) {
	netns.Require(t)
	for _, side := range [][]string{
		{"recv", "--discovery", "mdns", "--timeout", "2s", newCode(t)},
		{"send", "--discovery", "mdns", "--timeout", "2s", "--code", newCode(t)},
	} {
		began := time.Now()
		p := start(t, command(t, "pcp-pipe", side...), nil)
		p.expectExit(10*time.Second, 4)
		if took := time.Since(began); took < 2*time.Second || took > 6*time.Second {
			t.Fatalf("%s with --timeout 2s took %v", side[0], took)
		}
		if !strings.Contains(p.stderr.String(), "timeout") && !strings.Contains(p.stderr.String(), "in time") {
			t.Fatalf("%s: the message does not say that time ran out:\n%s", side[0], p.stderr.String())
		}
	}
}

// The composition promise: tar c dir | pcp-pipe send, pcp-pipe recv | tar x.
func TestTarPipeline(t *testing.T) {
	netns.Require(t)
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "tree", "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "tree", "a.txt"), []byte("alpha\n"), 0o644)
	os.WriteFile(filepath.Join(src, "tree", "sub", "b.bin"), randomBytes(t, 1<<20), 0o600)
	dst := t.TempDir()
	c := newCode(t)
	pipe := binary(t, "pcp-pipe")
	send := start(t, exec.Command("bash", "-c", `set -o pipefail; tar -C "$1" -c tree | "$2" send --discovery mdns --code "$3"`, "-", src, pipe, c), nil)
	recv := start(t, exec.Command("bash", "-c", `set -o pipefail; "$2" recv --discovery mdns --timeout 20s "$3" | tar -C "$1" -x`, "-", dst, pipe, c), nil)
	recv.expectExit(30*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	diff, err := exec.Command("diff", "-r", filepath.Join(src, "tree"), filepath.Join(dst, "tree")).CombinedOutput()
	if err != nil {
		t.Fatalf("the extracted tree differs: %v\n%s", err, diff)
	}
}

// Usage errors exit 2 with one clear line; --help exits 0; nothing on stdout.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"recv", "bubbel-enemy-result"}, "did you mean"},
		{[]string{"recv", "able-able"}, "too few words"},
		{[]string{"recv"}, "missing CODE"},
		{[]string{"send", "--words", "2"}, "too few words"},
		{[]string{"send", "--discovery", "carrier-pigeon"}, "discovery"},
		{[]string{"recv", "--timeout", "soon", "able-able-able"}, "timeout"},
		{[]string{"fly"}, "unknown command"},
		{[]string{"recv", "--peer", "", "able-able-able"}, "--peer"},
	}
	for _, tt := range tests {
		p := start(t, command(t, "pcp-pipe", tt.args...), nil)
		p.expectExit(10*time.Second, 2)
		if !strings.Contains(p.stderr.String(), tt.want) {
			t.Errorf("pcp-pipe %v: stderr %q does not mention %q", tt.args, p.stderr.String(), tt.want)
		}
		if len(p.stdout.Bytes()) != 0 {
			t.Errorf("pcp-pipe %v wrote to stdout: %q", tt.args, p.stdout.String())
		}
	}
	for _, args := range [][]string{{"send", "--help"}, {"recv", "--help"}, {"--help"}} {
		p := start(t, command(t, "pcp-pipe", args...), nil)
		p.expectExit(10*time.Second, 0)
		if !strings.Contains(p.stdout.String(), "Usage: pcp-pipe") {
			t.Errorf("pcp-pipe %v printed no usage: %q", args, p.stdout.String())
		}
	}
}

// With no bootstrap peer answering, the user hears about it within 15 s,
// and mDNS still finds the peer.
func TestDeadBootstrapFallsBackToMDNS(t *testing.T) {
	netns.Require(t)
	dead := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/12D3KooWAfzA2AUZ3ByHfmd37sPqjn1yAEceeRgR8dHYQDJRoznP", freePort(t))
	c := newCode(t)
	send := start(t, command(t, "pcp-pipe", "send", "--bootstrap", dead, "--code", c), strings.NewReader("via mdns\n"))
	send.waitStderr("no bootstrap peer answered", 15*time.Second)
	recv := start(t, command(t, "pcp-pipe", "recv", "--bootstrap", dead, "--timeout", "30s", c), nil)
	recv.expectExit(35*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	if got := recv.stdout.String(); got != "via mdns\n" {
		t.Fatalf("received %q", got)
	}
}

// A peer that vanishes without closing anything (its network is cut): the
// heartbeats stop, and both sides give up within seconds after their
// reconnect window, never with 0.
func TestVanishedNetwork(t *testing.T) {
	netns.Require(t)
	a, b := lan(t, "cut", "10.78.0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newCode(t)
	send := start(t, a.Command(binary(t, "pcp-pipe"), "send", "--discovery", "mdns", "--reconnect", "3s", "--code", c), slowReader{ctx})
	recv := start(t, b.Command(binary(t, "pcp-pipe"), "recv", "--discovery", "mdns", "--reconnect", "3s", "--timeout", "20s", c), nil)
	recv.waitStdout(256<<10, 20*time.Second)
	// Dropping every packet leaves both TCP endpoints open and silent.
	a.Run(t, "ip", "link", "set", "eth0", "down")
	cut := time.Now()
	if status := recv.wait(20 * time.Second); status != 5 {
		t.Fatalf("the receiver exited %d after the network was cut, want 5\nstderr:\n%s", status, recv.stderr.String())
	}
	t.Logf("the receiver gave up %v after the cut", time.Since(cut).Round(time.Millisecond))
	if status := send.wait(20 * time.Second); status == 0 {
		t.Fatalf("the sender exited 0 after the network was cut")
	}
	t.Logf("the sender gave up %v after the cut: %s", time.Since(cut).Round(time.Millisecond), send.stderr.String())
}

// Scripts set everything through the environment; a flag or argument beats
// its variable.
func TestEnvironmentVariables(t *testing.T) {
	netns.Require(t)
	c := newCode(t)
	sc := command(t, "pcp-pipe", "send")
	sc.Env = []string{"PCP_CODE=" + c, "PCP_DISCOVERY=mdns"}
	send := start(t, sc, strings.NewReader("from the environment\n"))
	// A stale PCP_CODE and a bad PCP_TIMEOUT yield to the argument and the flag.
	rc := command(t, "pcp-pipe", "recv", "--timeout", "20s", c)
	rc.Env = []string{"PCP_CODE=" + wrongCode(t, c), "PCP_DISCOVERY=mdns", "PCP_TIMEOUT=bogus"}
	recv := start(t, rc, nil)
	recv.expectExit(25*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	if got := recv.stdout.String(); got != "from the environment\n" {
		t.Fatalf("received %q", got)
	}

	lone := command(t, "pcp-pipe", "recv", newCode(t))
	lone.Env = []string{"PCP_DISCOVERY=mdns", "PCP_TIMEOUT=1s"}
	began := time.Now()
	start(t, lone, nil).expectExit(10*time.Second, 4)
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("PCP_TIMEOUT=1s was not used: recv took %v", took)
	}
}

// A receiver whose output is closed (| head -c 1000) stops at once and
// says why, and the sender is told the same; both exit 1, neither hangs.
func TestClosedOutputStopsBothSides(t *testing.T) {
	netns.Require(t)
	c := newCode(t)
	data := randomBytes(t, 32<<20)
	send := start(t, command(t, "pcp-pipe", "send", "--discovery", "mdns", "--code", c), bytes.NewReader(data))
	recv := start(t, exec.Command("bash", "-c", `set -o pipefail; "$1" recv --discovery mdns --timeout 20s "$2" | head -c 1000 > /dev/null`, "-", binary(t, "pcp-pipe"), c), nil)
	recv.expectExit(30*time.Second, 1)
	send.expectExit(10*time.Second, 1)
	for who, stderr := range map[string]string{"receiver": recv.stderr.String(), "sender": send.stderr.String()} {
		if !strings.Contains(stderr, "the receiver's output was closed after") {
			t.Errorf("the %s does not say that the output was closed:\n%s", who, stderr)
		}
	}
}

// A receiver whose disk fills up (a 1 MiB tmpfs) stops and says so, and
// the sender is told the same; both exit 1.
func TestFullDiskStopsBothSides(t *testing.T) {
	netns.Require(t)
	c := newCode(t)
	send := start(t, command(t, "pcp-pipe", "send", "--discovery", "mdns", "--code", c), bytes.NewReader(randomBytes(t, 4<<20)))
	dir := t.TempDir()
	// A mount namespace of its own: the tmpfs goes away with the command.
	sh := `mount -t tmpfs -o size=1m pcp-test "$3" && "$1" recv --discovery mdns --timeout 20s "$2" > "$3/out"`
	recv := start(t, exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-c", sh, "-", binary(t, "pcp-pipe"), c, dir), nil)
	recv.expectExit(30*time.Second, 1)
	send.expectExit(10*time.Second, 1)
	for who, stderr := range map[string]string{"receiver": recv.stderr.String(), "sender": send.stderr.String()} {
		if !strings.Contains(stderr, "the receiver's disk is full") {
			t.Errorf("the %s does not say that the disk is full:\n%s", who, stderr)
		}
	}
}

// Mistakes in how a command is called, and a peer that is not pcp, end
// with the documented status and a message in pcp's words: a malformed
// --listen is a usage error (2); an --output that does not exist says so
// (2); --peer at a libp2p host that does not speak pcp says that at once
// (4), without sending the user to --timeout.
func TestCallMistakesAndStrangers(t *testing.T) {
	netns.Require(t)
	p := start(t, command(t, "pcp-pipe", "send", "--discovery", "mdns", "--listen", "/ip4/not-an-address/tcp/1", "--code", newCode(t)), strings.NewReader("x"))
	p.expectExit(10*time.Second, 2)
	if !strings.Contains(p.stderr.String(), `--listen "/ip4/not-an-address/tcp/1"`) {
		t.Errorf("a malformed --listen: %q", p.stderr.String())
	}

	missing := filepath.Join(t.TempDir(), "missing")
	p = start(t, command(t, "pcp", "receive", "--discovery", "mdns", "--yes", "--output", missing, newCode(t)), nil)
	p.expectExit(10*time.Second, 2)
	if !strings.Contains(p.stderr.String(), "--output "+missing+": no such folder") {
		t.Errorf("a missing --output: %q", p.stderr.String())
	}

	_, node := nodeFirstLine(t, "--listen", "/ip4/127.0.0.1/tcp/0")
	begin := time.Now()
	p = start(t, command(t, "pcp-pipe", "recv", "--peer", node, "--timeout", "30s", newCode(t)), nil)
	p.expectExit(20*time.Second, 4)
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("--peer at a host that is not pcp took %v to give up", took)
	}
	if s := p.stderr.String(); !strings.Contains(s, "the peer found does not speak pcp") || strings.Contains(s, "--timeout") {
		t.Errorf("--peer at a host that is not pcp: %q", s)
	}
}

// A second receiver of a code whose sender is busy with the first is told
// so at once and exits 1, instead of searching until its timeout; the
// first transfer goes on undisturbed.
func TestBusySenderTellsTheSecondReceiver(t *testing.T) {
	netns.Require(t)
	c := newCode(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	send := start(t, command(t, "pcp-pipe", "send", "--discovery", "mdns", "--code", c), slowReader{ctx})
	first := start(t, command(t, "pcp-pipe", "recv", "--discovery", "mdns", "--timeout", "20s", c), nil)
	first.waitStdout(64<<10, 20*time.Second)

	begin := time.Now()
	second := start(t, command(t, "pcp-pipe", "recv", "--discovery", "mdns", "--timeout", "60s", c), nil)
	second.expectExit(20*time.Second, 1)
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("the second receiver took %v to learn that the sender is busy", took)
	}
	if !strings.Contains(second.stderr.String(), "the sender is already sending to another receiver") {
		t.Errorf("the second receiver said %q", second.stderr.String())
	}
	if len(second.stdout.Bytes()) != 0 {
		t.Errorf("the second receiver wrote %d bytes", len(second.stdout.Bytes()))
	}
	stop() // the sender's input ends: the first transfer completes
	first.expectExit(20*time.Second, 0)
	send.expectExit(10*time.Second, 0)
}

// Once the peers have met (here over mDNS), the DHT keeps quiet about its
// bootstrap peers, which do not answer: no warning lands in the middle of
// a transfer that works.
func TestNoDHTWarningAfterThePeersMet(t *testing.T) {
	netns.Require(t)
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", freePort(t), id)
	c := newCode(t)
	ctx, stop := context.WithTimeout(context.Background(), 12*time.Second)
	defer stop()
	args := []string{"--discovery", "mdns,dht", "--bootstrap", dead, "--code", c}
	send := start(t, command(t, "pcp-pipe", append([]string{"send"}, args...)...), slowReader{ctx})
	recv := start(t, command(t, "pcp-pipe", append([]string{"recv", "--timeout", "30s"}, args...)...), nil)
	recv.waitStdout(64<<10, 10*time.Second)
	recv.expectExit(30*time.Second, 0) // the input ends after 12 s, past the 10 s warning
	send.expectExit(10*time.Second, 0)
	for name, p := range map[string]*proc{"sender": send, "receiver": recv} {
		if s := p.stderr.String(); strings.Contains(s, "bootstrap peer") {
			t.Errorf("the %s warned about the DHT after the peers met:\n%s", name, s)
		}
	}
}

// A DHT-only search whose bootstrap peers never answer says so, not that
// the code or the clocks may be wrong.
func TestDHTWithoutBootstrapSaysSo(t *testing.T) {
	netns.Require(t)
	dead := "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWHFrmLWTTDD4NodngtRMEVYgxrsTTj5nabBTsfKLzswtB"
	recv := start(t, command(t, "pcp-pipe", "recv", "--discovery", "dht", "--bootstrap", dead, "--timeout", "3s", newCode(t)), nil)
	recv.expectExit(15*time.Second, 4)
	stderr := recv.stderr.String()
	if !strings.Contains(stderr, "no bootstrap peer of the DHT answered, so it was not searched") || strings.Contains(stderr, "clocks") {
		t.Fatalf("the receiver does not say that the DHT could not be searched:\n%s", stderr)
	}
}
