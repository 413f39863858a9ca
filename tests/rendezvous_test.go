package tests

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/netns"
)

// findRecord is a line of pcp-find --json.
type findRecord struct {
	Peer     string   `json:"peer"`
	Addrs    []string `json:"addrs"`
	Source   string   `json:"source"`
	RTTms    *float64 `json:"rtt_ms"`
	Verified bool     `json:"verified"`
}

func parseFindJSON(t *testing.T, out string) []findRecord {
	t.Helper()
	var recs []findRecord
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r findRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("pcp-find --json printed a line that is not JSON: %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// announcedCode waits for the code that pcp-announce prints alone on its
// first line.
func announcedCode(t *testing.T, p *proc) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if line, _, ok := strings.Cut(p.stdout.String(), "\n"); ok {
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("pcp-announce printed no code within 10s\nstderr:\n%s", p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkMet checks pcp-announce's line for a finder, and pcp-find's record of
// the announcer.
func checkMet(t *testing.T, announceOut string, rec findRecord, source string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(announceOut), "\n")
	if len(lines) != 2 {
		t.Fatalf("pcp-announce printed %d lines, want the code and one peer:\n%s", len(lines), announceOut)
	}
	fields := strings.Fields(lines[1])
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "12D3KooW") {
		t.Fatalf("pcp-announce's peer line is not 'PEERID ADDR...': %q", lines[1])
	}
	for _, a := range fields[1:] {
		if !strings.HasSuffix(a, "/p2p/"+fields[0]) {
			t.Fatalf("pcp-announce printed %q, not a full multiaddr of %s", a, fields[0])
		}
	}
	if !rec.Verified || rec.Source != source || rec.RTTms == nil || *rec.RTTms <= 0 {
		t.Fatalf("pcp-find record %+v: want verified, source %s, a positive rtt_ms", rec, source)
	}
	if len(rec.Addrs) == 0 {
		t.Fatal("pcp-find printed no address")
	}
	for _, a := range rec.Addrs {
		if !strings.HasSuffix(a, "/p2p/"+rec.Peer) {
			t.Fatalf("pcp-find printed %q, not a full multiaddr of %s", a, rec.Peer)
		}
	}
}

// Announce and find through a private DHT of three `pcp node` processes.
func TestAnnounceFindThroughPrivateDHT(t *testing.T) {
	netns.Require(t)
	bootstrap := startDHT(t, 3)
	ann := start(t, command(t, "pcp-announce", "--discovery", "dht", "--bootstrap", bootstrap), nil)
	c := announcedCode(t, ann)
	began := time.Now()
	find := start(t, command(t, "pcp-find", "--discovery", "dht", "--bootstrap", bootstrap, "--json", "--timeout", "30s", c), nil)
	find.expectExit(35*time.Second, 0)
	t.Logf("pcp-find through the DHT: %v from start to authenticated peer", time.Since(began).Round(time.Millisecond))
	ann.expectExit(10*time.Second, 0)
	recs := parseFindJSON(t, find.stdout.String())
	if len(recs) != 1 {
		t.Fatalf("pcp-find --json printed %d records, want 1", len(recs))
	}
	checkMet(t, ann.stdout.String(), recs[0], "dht")
}

// Announce and find over mDNS between two namespaces joined by a veth pair.
func TestAnnounceFindOverMDNSBetweenNamespaces(t *testing.T) {
	netns.Require(t)
	a, b := lan(t, "rendezvous", "10.79.0")
	ann := start(t, a.Command(binary(t, "pcp-announce"), "--discovery", "mdns"), nil)
	c := announcedCode(t, ann)
	began := time.Now()
	find := start(t, b.Command(binary(t, "pcp-find"), "--discovery", "mdns", "--json", "--timeout", "20s", c), nil)
	find.expectExit(25*time.Second, 0)
	t.Logf("pcp-find over mDNS: %v from start to authenticated peer", time.Since(began).Round(time.Millisecond))
	ann.expectExit(10*time.Second, 0)
	recs := parseFindJSON(t, find.stdout.String())
	if len(recs) != 1 {
		t.Fatalf("pcp-find --json printed %d records, want 1", len(recs))
	}
	checkMet(t, ann.stdout.String(), recs[0], "mdns")
	if !strings.Contains(strings.Join(recs[0].Addrs, " "), "/ip4/10.79.0.1/") {
		t.Fatalf("pcp-find did not print the announcer's LAN address: %v", recs[0].Addrs)
	}
}

// A wrong code: pcp-find exits 3 at its timeout and prints nothing as verified; the
// announcer keeps waiting, and the right code still finds it.
func TestFindWrongCode(t *testing.T) {
	netns.Require(t)
	c := newCode(t)
	ann := start(t, command(t, "pcp-announce", "--discovery", "mdns", c), nil)
	wrong := start(t, command(t, "pcp-find", "--discovery", "mdns", "--timeout", "5s", wrongCode(t, c)), nil)
	wrong.expectExit(15*time.Second, 3)
	if out := wrong.stdout.String(); out != "" {
		t.Fatalf("pcp-find with a wrong code printed %q", out)
	}
	ann.waitStderr("wrong code", 5*time.Second)
	if out := ann.stdout.String(); out != "" {
		t.Fatalf("pcp-announce reported a peer that did not know the code: %q", out)
	}
	right := start(t, command(t, "pcp-find", "--discovery", "mdns", "--timeout", "20s", c), nil)
	right.expectExit(25*time.Second, 0)
	ann.expectExit(10*time.Second, 0)
}

// Nothing announced: pcp-find gives up with exit 4 at --timeout, printing nothing.
func TestFindTimeout(t *testing.T) {
	netns.Require(t)
	began := time.Now()
	find := start(t, command(t, "pcp-find", "--discovery", "mdns", "--timeout", "2s", newCode(t)), nil)
	find.expectExit(10*time.Second, 4)
	if took := time.Since(began); took < 2*time.Second || took > 6*time.Second {
		t.Fatalf("pcp-find --timeout 2s took %v", took)
	}
	if out := find.stdout.String(); out != "" {
		t.Fatalf("pcp-find printed %q without finding anything", out)
	}
}

// The composition promise: pcp-find against a waiting pcp-pipe send prints
// addresses that pcp-pipe recv --peer dials, and the sender keeps waiting
// for the real receiver.
func TestFindThenReceiveByPeerAddress(t *testing.T) {
	netns.Require(t)
	c := newCode(t)
	send := start(t, command(t, "pcp-pipe", "send", "--discovery", "mdns", "--code", c), strings.NewReader("found, then received\n"))
	find := start(t, command(t, "pcp-find", "--discovery", "mdns", "--timeout", "20s", c), nil)
	find.expectExit(25*time.Second, 0)
	send.waitStderr("asked only to meet", 5*time.Second)
	addr, _, _ := strings.Cut(find.stdout.String(), "\n")
	recv := start(t, command(t, "pcp-pipe", "recv", "--peer", addr, "--timeout", "20s", c), nil)
	recv.expectExit(25*time.Second, 0)
	send.expectExit(10*time.Second, 0)
	if got := recv.stdout.String(); got != "found, then received\n" {
		t.Fatalf("received %q", got)
	}
}

// --keep answers every finder until --timeout, then exits 0.
func TestAnnounceKeep(t *testing.T) {
	netns.Require(t)
	c := newCode(t)
	ann := start(t, command(t, "pcp-announce", "--discovery", "mdns", "--keep", "--timeout", "6s", c), nil)
	for range 2 {
		start(t, command(t, "pcp-find", "--discovery", "mdns", "--timeout", "20s", c), nil).expectExit(25*time.Second, 0)
	}
	ann.expectExit(15*time.Second, 0)
	if lines := strings.Split(strings.TrimSpace(ann.stdout.String()), "\n"); len(lines) != 2 {
		t.Fatalf("pcp-announce --keep printed %d lines for two finders:\n%s", len(lines), ann.stdout.String())
	}
}

// --unverified lists what discovery sees, even under a code that would not
// authenticate, marked as unverified.
func TestFindUnverified(t *testing.T) {
	netns.Require(t)
	c := newCode(t)
	ann := start(t, command(t, "pcp-announce", "--discovery", "mdns", c), nil)
	find := start(t, command(t, "pcp-find", "--discovery", "mdns", "--unverified", "--timeout", "3s", wrongCode(t, c)), nil)
	find.expectExit(10*time.Second, 0)
	out := find.stdout.String()
	if !strings.HasPrefix(out, "unverified mdns /") {
		t.Fatalf("pcp-find --unverified printed %q, want lines 'unverified mdns ADDR'", out)
	}
	if ann.stdout.String() != "" {
		t.Fatalf("an unverified listing made pcp-announce report a peer: %q", ann.stdout.String())
	}
	json := start(t, command(t, "pcp-find", "--discovery", "mdns", "--unverified", "--json", "--timeout", "2s", c), nil)
	json.expectExit(10*time.Second, 0)
	for _, r := range parseFindJSON(t, json.stdout.String()) {
		if r.Verified || r.RTTms != nil || r.Source != "mdns" {
			t.Fatalf("unverified record %+v", r)
		}
	}
}

// pcp-announce has no data: a pcp-pipe receiver that finds it is refused.
func TestAnnounceRefusesPipe(t *testing.T) {
	netns.Require(t)
	c := newCode(t)
	ann := start(t, command(t, "pcp-announce", "--discovery", "mdns", "--timeout", "20s", c), nil)
	recv := start(t, command(t, "pcp-pipe", "recv", "--discovery", "mdns", "--timeout", "20s", c), nil)
	recv.expectExit(25*time.Second, 1)
	if !strings.Contains(recv.stderr.String(), "refused") {
		t.Fatalf("the receiver was not told it was refused:\n%s", recv.stderr.String())
	}
	if recv.stdout.String() != "" || ann.stdout.String() != "" {
		t.Fatalf("stdout: recv %q, announce %q", recv.stdout.String(), ann.stdout.String())
	}
}
