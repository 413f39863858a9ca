// Package doctor tells, before a code is shared, how peers elsewhere will
// reach this machine: the interfaces mDNS can use, the bootstrap peers
// reached and how fast, the address each of them sees this machine at,
// what that says of the NAT (none, one that keeps a port whoever is
// called, or one that picks a new port for each), the relays among them,
// and a verdict. It is what `pcp doctor` prints.
package doctor

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

// NAT kinds, as Report.NAT says them.
const (
	NATNone      = "none"      // the peers see an address of this machine's own
	NATCone      = "cone"      // the same public port whoever is called: hole punching works
	NATSymmetric = "symmetric" // a new public port for each peer called: hole punching fails
	NATUnknown   = "unknown"   // fewer than two peers said
)

// Reach kinds, as Report.Reach says them.
const (
	ReachDirect  = "direct"
	ReachPunched = "hole-punching"
	ReachRelay   = "relay"
	ReachUnknown = "unknown"
)

// relayHop is the protocol of a circuit relay (v2) that serves others.
const relayHop protocol.ID = "/libp2p/circuit/relay/0.2.0/hop"

// Report is what Check found.
type Report struct {
	// Interfaces are the network interfaces mDNS can use: up, multicast,
	// not loopback, with an address.
	Interfaces []Interface `json:"mdns_interfaces"`
	// Bootstrap is each bootstrap peer tried.
	Bootstrap []Peer `json:"bootstrap"`
	// NAT is NATNone, NATCone, NATSymmetric or NATUnknown.
	NAT string `json:"nat"`
	// Relays are the bootstrap peers that relay for others.
	Relays []string `json:"relays"`
	// ClockOffset says that the offset to the peers' clocks is not measured:
	// libp2p's protocols carry no time.
	ClockOffset string `json:"clock_offset"`
	// Reach is ReachDirect, ReachPunched, ReachRelay or ReachUnknown.
	Reach string `json:"reach"`
	// Verdict says Reach, and what to do, in a sentence.
	Verdict string `json:"verdict"`
}

// Interface is a network interface and its addresses.
type Interface struct {
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
}

// Peer is what one bootstrap peer told.
type Peer struct {
	ID string `json:"id"`
	// Reached is whether a connection was made; Took how long it took.
	Reached bool    `json:"reached"`
	TookMS  float64 `json:"took_ms"`
	// Observed is the address the peer sees this machine's connection come
	// from ("" when it did not say).
	Observed string `json:"observed,omitempty"`
	// Relay is whether the peer relays for others.
	Relay bool   `json:"relay"`
	Error string `json:"error,omitempty"`
}

// Check connects h to each of bootstrap, within timeout each, and reports.
func Check(ctx context.Context, h host.Host, bootstrap []peer.AddrInfo, timeout time.Duration) (Report, error) {
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		return Report{}, fmt.Errorf("watch identify: %w", err)
	}
	defer sub.Close()
	var mu sync.Mutex
	identified := make(map[peer.ID]event.EvtPeerIdentificationCompleted)
	arrived := make(chan struct{}, 1)
	go func() {
		for e := range sub.Out() {
			ev := e.(event.EvtPeerIdentificationCompleted)
			mu.Lock()
			identified[ev.Peer] = ev
			mu.Unlock()
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
	}()
	peers := make([]Peer, len(bootstrap))
	var wg sync.WaitGroup
	for i, ai := range bootstrap {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			p := Peer{ID: ai.ID.String()}
			if err := h.Connect(cctx, ai); err != nil {
				p.Error = err.Error()
			} else {
				p.Reached, p.TookMS = true, float64(time.Since(start).Microseconds())/1000
			}
			peers[i] = p
		})
	}
	wg.Wait()
	// Identify follows each connection within a round trip or two.
	unidentified := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i, p := range peers {
			if _, ok := identified[bootstrap[i].ID]; p.Reached && !ok {
				return true
			}
		}
		return false
	}
	deadline := time.After(min(timeout, 5*time.Second))
wait:
	for unidentified() {
		select {
		case <-arrived:
		case <-deadline:
			break wait
		case <-ctx.Done():
			return Report{}, ctx.Err()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	r := Report{Interfaces: mdnsInterfaces(), ClockOffset: "not measured: libp2p's protocols carry no time"}
	var observed []ma.Multiaddr
	for i, p := range peers {
		ev, ok := identified[bootstrap[i].ID]
		if !ok {
			continue
		}
		if ev.ObservedAddr != nil {
			peers[i].Observed = ev.ObservedAddr.String()
			observed = append(observed, ev.ObservedAddr)
		}
		if slices.Contains(ev.Protocols, relayHop) {
			peers[i].Relay = true
			r.Relays = append(r.Relays, p.ID)
		}
	}
	r.Bootstrap = peers
	r.NAT = natKind(observed, localIPs())
	r.Reach, r.Verdict = verdict(r.NAT, len(r.Relays))
	return r, nil
}

// natKind tells the NAT from the addresses peers observed: an address of
// this machine's own means none; else two peers that saw different ports
// of one transport mean a symmetric NAT, and the same port a cone.
func natKind(observed []ma.Multiaddr, local map[string]bool) string {
	ports := map[string]map[int]bool{} // by transport
	count := map[string]int{}
	for _, a := range observed {
		ip, t, port, ok := endpoint(a)
		if !ok {
			continue
		}
		if local[ip] {
			return NATNone
		}
		if ports[t] == nil {
			ports[t] = map[int]bool{}
		}
		ports[t][port] = true
		count[t]++
	}
	for _, ps := range ports {
		if len(ps) > 1 {
			return NATSymmetric
		}
	}
	for _, n := range count {
		if n > 1 {
			return NATCone
		}
	}
	return NATUnknown
}

// endpoint is the IP, transport (tcp or udp) and port of a.
func endpoint(a ma.Multiaddr) (ip, transport string, port int, ok bool) {
	ip, err := a.ValueForProtocol(ma.P_IP4)
	if err != nil {
		if ip, err = a.ValueForProtocol(ma.P_IP6); err != nil {
			return "", "", 0, false
		}
	}
	for _, t := range []struct {
		code int
		name string
	}{{ma.P_TCP, "tcp"}, {ma.P_UDP, "udp"}} {
		if v, err := a.ValueForProtocol(t.code); err == nil {
			if port, err = strconv.Atoi(v); err == nil {
				return net.ParseIP(ip).String(), t.name, port, true
			}
		}
	}
	return "", "", 0, false
}

// verdict says how peers elsewhere reach this machine, given the NAT and
// the relays found.
func verdict(nat string, relays int) (reach, text string) {
	switch nat {
	case NATNone:
		return ReachDirect, "peers elsewhere can reach you directly (unless a firewall drops what they send)"
	case NATCone:
		return ReachPunched, "peers elsewhere can reach you by hole punching, when their NAT allows"
	case NATSymmetric:
		text := "only through a relay: start `pcp node --relay-data 0 --relay-duration 0` somewhere reachable, or accept relayed data with --allow-relay"
		if relays == 0 {
			text += " (no bootstrap peer relays)"
		}
		return ReachRelay, text
	}
	return ReachUnknown, "not known: fewer than two bootstrap peers said where they see you from"
}

// localIPs are the addresses of this machine's interfaces.
func localIPs() map[string]bool {
	ips := map[string]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ips[n.IP.String()] = true
		}
	}
	return ips
}

// mdnsInterfaces lists the interfaces that mDNS can use.
func mdnsInterfaces() []Interface {
	ifs, _ := net.Interfaces()
	var out []Interface
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagMulticast == 0 || i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := i.Addrs()
		var as []string
		for _, a := range addrs {
			as = append(as, a.String())
		}
		if len(as) > 0 {
			sort.Strings(as)
			out = append(out, Interface{Name: i.Name, Addrs: as})
		}
	}
	return out
}

// WriteText writes r for a person to read, a finding a line.
func (r Report) WriteText(w io.Writer) {
	if len(r.Interfaces) == 0 {
		fmt.Fprintln(w, "mDNS: no interface to use (up, multicast, not loopback): peers on the LAN cannot find you")
	}
	for _, i := range r.Interfaces {
		fmt.Fprintf(w, "mDNS: %s (%s)\n", i.Name, strings.Join(i.Addrs, ", "))
	}
	for _, p := range r.Bootstrap {
		short := p.ID[max(0, len(p.ID)-6):]
		switch {
		case !p.Reached:
			fmt.Fprintf(w, "bootstrap …%s: not reached: %s\n", short, p.Error)
		case p.Observed == "":
			fmt.Fprintf(w, "bootstrap …%s: reached in %.0f ms; it did not say where it sees you from\n", short, p.TookMS)
		default:
			fmt.Fprintf(w, "bootstrap …%s: reached in %.0f ms; sees you at %s%s\n", short, p.TookMS, p.Observed, map[bool]string{true: "; relays for others"}[p.Relay])
		}
	}
	nat := map[string]string{
		NATNone:      "none: the peers see an address of this machine",
		NATCone:      "one that keeps your public port whoever you call (cone)",
		NATSymmetric: "one that picks a new public port for each peer you call (symmetric)",
		NATUnknown:   "not known",
	}[r.NAT]
	fmt.Fprintf(w, "NAT: %s\n", nat)
	fmt.Fprintf(w, "relays among the bootstrap peers: %d\n", len(r.Relays))
	fmt.Fprintf(w, "clock offset: %s\n", r.ClockOffset)
	fmt.Fprintf(w, "verdict: %s\n", r.Verdict)
}
