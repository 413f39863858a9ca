package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The mDNS groups and port (RFC 6762).
var (
	mdnsGroup4 = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}
	mdnsGroup6 = &net.UDPAddr{IP: net.ParseIP("ff02::fb"), Port: 5353}
)

// Query intervals of browse: the first query at once, then after 1 s,
// doubling up to 8 s. An announcer that starts later is heard sooner, by
// the announcement it multicasts when it starts.
const (
	firstQueryInterval = time.Second
	maxQueryInterval   = 8 * time.Second
)

// browse asks for service (as "_pcp-7._udp.local.") on every multicast
// interface, again and again, and calls found with the TXT strings of each
// instance of it in every answer that arrives, until ctx ends.
//
// Unlike a resolver that reports each instance name once (zeroconf's), it
// passes on every answer: the instance name is public, so a stranger's
// answer under the real announcer's name, heard first, must not hide the
// real one.
func browse(ctx context.Context, service string, found func(txt []string)) error {
	ifaces := multicastInterfaces()
	if len(ifaces) == 0 {
		return ErrNoMulticast
	}
	var conns []mdnsConn
	c4, err4 := listen4(ifaces)
	if err4 == nil {
		conns = append(conns, c4)
	}
	c6, err6 := listen6(ifaces)
	if err6 == nil {
		conns = append(conns, c6)
	}
	if len(conns) == 0 {
		return fmt.Errorf("listen: %w", errors.Join(err4, err6))
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.Close()
		}
	})
	defer stop()

	q := new(dns.Msg)
	q.SetQuestion(service, dns.TypePTR)
	q.RecursionDesired = false
	query, err := q.Pack()
	if err != nil {
		return fmt.Errorf("pack query: %w", err)
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { receive(c, service, found) })
	}
	interval := firstQueryInterval
	for {
		for _, c := range conns {
			for _, ifi := range ifaces {
				c.send(query, ifi) // an interface that cannot send is no failure of the others
			}
		}
		if sleep(ctx, interval) != nil {
			break
		}
		interval = min(2*interval, maxQueryInterval)
	}
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	return nil
}

// receive reads answers from c until it is closed and passes on the TXT
// strings of each instance of service in them.
func receive(c mdnsConn, service string, found func(txt []string)) {
	buf := make([]byte, 65536)
	suffix := "." + strings.ToLower(service)
	for {
		n, err := c.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// One bad datagram, or an ICMP error: read on, but never spin
			// on an error that stays.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		var m dns.Msg
		if m.Unpack(buf[:n]) != nil || !m.Response {
			continue
		}
		byInstance := map[string][]string{}
		for _, sections := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
			for _, rr := range sections {
				txt, ok := rr.(*dns.TXT)
				if !ok || txt.Hdr.Ttl == 0 || !strings.HasSuffix(strings.ToLower(txt.Hdr.Name), suffix) {
					continue
				}
				byInstance[txt.Hdr.Name] = append(byInstance[txt.Hdr.Name], txt.Txt...)
			}
		}
		for _, txt := range byInstance {
			found(txt)
		}
	}
}

// mdnsConn is a socket joined to the mDNS group of one IP version.
type mdnsConn interface {
	send(b []byte, ifi net.Interface) error
	read(b []byte) (int, error)
	Close() error
}

type conn4 struct{ *ipv4.PacketConn }

func listen4(ifaces []net.Interface) (mdnsConn, error) {
	// Bound to a multicast address, the socket may share port 5353 with
	// other mDNS software (Go sets SO_REUSEADDR for it).
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(224, 0, 0, 0), Port: 5353})
	if err != nil {
		return nil, fmt.Errorf("udp4: %w", err)
	}
	pc := ipv4.NewPacketConn(uc)
	joined := 0
	for _, ifi := range ifaces {
		if pc.JoinGroup(&ifi, &net.UDPAddr{IP: mdnsGroup4.IP}) == nil {
			joined++
		}
	}
	if joined == 0 {
		pc.Close()
		return nil, errors.New("udp4: no interface joined the mDNS group")
	}
	pc.SetMulticastTTL(255)
	return conn4{pc}, nil
}

func (c conn4) send(b []byte, ifi net.Interface) error {
	var cm *ipv4.ControlMessage
	switch runtime.GOOS {
	case "linux", "darwin", "ios":
		cm = &ipv4.ControlMessage{IfIndex: ifi.Index}
	default: // no control messages: choose the interface on the socket
		if err := c.SetMulticastInterface(&ifi); err != nil {
			return err
		}
	}
	_, err := c.WriteTo(b, cm, mdnsGroup4)
	return err
}

func (c conn4) read(b []byte) (int, error) {
	n, _, _, err := c.ReadFrom(b)
	return n, err
}

type conn6 struct{ *ipv6.PacketConn }

func listen6(ifaces []net.Interface) (mdnsConn, error) {
	uc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.ParseIP("ff02::"), Port: 5353})
	if err != nil {
		return nil, fmt.Errorf("udp6: %w", err)
	}
	pc := ipv6.NewPacketConn(uc)
	joined := 0
	for _, ifi := range ifaces {
		if pc.JoinGroup(&ifi, &net.UDPAddr{IP: mdnsGroup6.IP}) == nil {
			joined++
		}
	}
	if joined == 0 {
		pc.Close()
		return nil, errors.New("udp6: no interface joined the mDNS group")
	}
	pc.SetMulticastHopLimit(255)
	return conn6{pc}, nil
}

func (c conn6) send(b []byte, ifi net.Interface) error {
	var cm *ipv6.ControlMessage
	switch runtime.GOOS {
	case "linux", "darwin", "ios":
		cm = &ipv6.ControlMessage{IfIndex: ifi.Index}
	default:
		if err := c.SetMulticastInterface(&ifi); err != nil {
			return err
		}
	}
	_, err := c.WriteTo(b, cm, mdnsGroup6)
	return err
}

func (c conn6) read(b []byte) (int, error) {
	n, _, _, err := c.ReadFrom(b)
	return n, err
}

// multicastInterfaces are the interfaces that are up and can multicast.
func multicastInterfaces() []net.Interface {
	all, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var up []net.Interface
	for _, ifi := range all {
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 {
			up = append(up, ifi)
		}
	}
	return up
}
