// Package route settles which connection carries two authenticated peers'
// data: the one they met on when it is direct; when they met through a
// relay, a direct connection made by hole punching; and the relay itself
// only when the relay allows a transfer and both users agree.
//
// When the peers met through a relay, the finder waits for a direct
// connection and opens a data stream (Protocol) on it; the announcer takes
// that stream only from the authenticated peer, and only over a direct
// connection. If no direct connection comes, the finder either asks on the
// authenticated stream to go on through the relay (REQUEST "relay",
// answered ACCEPT or REJECT) or ends it with an ERROR frame that says why.
package route

import (
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"

	"github.com/pcp-dev/pcp/lib/node"
)

// Protocol is the data stream a finder opens on a direct connection when the
// peers met through a relay.
const Protocol protocol.ID = "/pcp/data/1.0.0"

const (
	// PunchWait bounds the finder's wait for a direct connection after
	// meeting through a relay. go-libp2p makes 3 hole punching attempts;
	// when they fail they take about 15 s.
	PunchWait = 20 * time.Second
	// ConsentWait bounds the wait for a user's answer to whether the data
	// may go through the relay, and the announcer's wait for that decision.
	ConsentWait = 2 * time.Minute
	// maxAttempts is how many failed hole punches mean it will not work.
	maxAttempts = 3
)

// Kind says how a connection reaches the peer.
type Kind int

// The kinds of path between two peers.
const (
	LAN     Kind = iota // a direct connection to a private or loopback address
	Direct              // a direct connection to a public address
	Punched             // a direct connection made by hole punching
	Relayed             // through a relay
)

// Path describes the connection that carries the data.
type Path struct {
	Kind      Kind
	Transport string        // "tcp" or "quic"; "relayed" for Relayed
	Relay     peer.ID       // the relay, for Relayed
	Punch     time.Duration // for Punched: how long the peers waited for it
	SameHost  bool          // both peers run on this machine (node.SameHost)
}

// Of describes the path of connection c.
func Of(c network.Conn) Path {
	a := c.RemoteMultiaddr()
	p := Path{Kind: Direct, Transport: node.Transport(c), SameHost: node.SameHost(c.LocalMultiaddr(), a)}
	switch {
	case node.IsRelayed(a):
		p.Kind, p.Relay = Relayed, node.RelayOf(a)
	case node.IsLAN(a):
		p.Kind = LAN
	}
	return p
}

func (p Path) String() string {
	switch p.Kind {
	case LAN:
		return "over the LAN (" + p.Transport + ")"
	case Punched:
		return fmt.Sprintf("directly after hole punching (%s, %v)", p.Transport, p.Punch.Round(time.Millisecond))
	case Relayed:
		return "through relay " + node.ShortID(p.Relay)
	}
	return "directly (" + p.Transport + ")"
}

// NoDirectError reports that no direct connection could be made and the
// data did not go through the relay either.
type NoDirectError struct {
	Reason  string // why there is no direct connection
	Refusal string // why the relay was not used
	// Peer is the peer's own account, when the peer decided.
	Peer string

	answered bool // the peer refused our request: nothing to tell it
}

func (e *NoDirectError) Error() string {
	if e.Peer != "" {
		return "the peer reports: " + e.Peer
	}
	return "no direct connection to the peer (" + e.Reason + "), and " + e.Refusal
}

// Tracker records go-libp2p's hole punching events per peer. It is the
// host's holepunch.EventTracer (node.NAT.Tracer). A nil *Tracker records
// nothing.
type Tracker struct {
	mu    sync.Mutex
	peers map[peer.ID]*punches
}

type punches struct {
	failed int
	gaveUp bool     // a protocol error: go-libp2p tries no more
	last   string   // the last error
	addrs  []string // the peer's addresses that the last attempt dialled
}

// String summarizes the attempts for a -v status line.
func (p punches) String() string {
	if p.failed == 0 && !p.gaveUp {
		return "no failed attempt"
	}
	return fmt.Sprintf("%d failed attempts to %v, the last: %s", p.failed, p.addrs, brief(p.last))
}

// NewTracker returns an empty Tracker.
func NewTracker() *Tracker { return &Tracker{peers: map[peer.ID]*punches{}} }

// Trace implements holepunch.EventTracer.
func (t *Tracker) Trace(e *holepunch.Event) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[e.Remote]
	if p == nil {
		p = &punches{}
		t.peers[e.Remote] = p
	}
	switch ev := e.Evt.(type) {
	case *holepunch.StartHolePunchEvt:
		p.addrs = ev.RemoteAddrs
	case *holepunch.EndHolePunchEvt:
		if !ev.Success {
			p.failed++
			p.last = ev.Error
		}
	case *holepunch.ProtocolErrorEvt:
		p.gaveUp, p.last = true, ev.Error
	}
}

// state returns what is known of the hole punches with id.
func (t *Tracker) state(id peer.ID) punches {
	if t == nil {
		return punches{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[id]; p != nil {
		return *p
	}
	return punches{}
}
