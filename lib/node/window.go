package node

import (
	"net"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
)

// The receive windows of a receiving host, granted in full from the start.
// go-yamux grows a window from 256 KiB only while a window's worth arrives
// within four round trips, as it measured them when the connection was new
// (and again every 30 s); once a transfer fills the queue of the slowest
// link and the kernel's send buffer, a round trip takes several times that,
// the window stops growing, and the sender waits for window updates with
// the link idle: 80 of 100 Mbit/s at 20 ms, 32 of 50 Mbit/s at 80 ms (make
// bench-link). A window is permission, not memory: the receiver holds only
// what its reader has not taken yet, so a window costs memory (up to its
// size) only when the output is slower than the link, or the reader is
// briefly not scheduled.
const (
	// wideWindow, yamux's largest, is for a peer across the internet: it
	// keeps a path of 1.3 Gbit/s at 100 ms full.
	wideWindow = 16 << 20
	// localWindow is for a peer on this machine or the local network, where
	// a round trip takes a millisecond or less: 10 Gbit/s need 1.25 MB
	// there. More would only buy buffering in the receiver, which on a
	// loopback stream of 0.5 GB/s made its resident set jump by up to 5 MiB
	// whenever its reader was descheduled for 10 ms (make soak).
	localWindow = 4 << 20
)

// fullWindows is yamux as go-libp2p configures it, but with every stream's
// receive window granted in full from the start, at localWindow for a
// connection to a loopback, private (RFC 1918, IPv6 ULA) or link-local
// address and at wideWindow for any other.
type fullWindows struct{ local, wide *yamux.Transport }

func newFullWindows() fullWindows {
	return fullWindows{local: fullWindow(localWindow), wide: fullWindow(wideWindow)}
}

// fullWindow is wholeMessages with its windows at size from the start.
func fullWindow(size uint32) *yamux.Transport {
	cfg := *wholeMessages().Config()
	cfg.MaxStreamWindowSize = size
	cfg.InitialStreamWindowSize = size
	return (*yamux.Transport)(&cfg)
}

// messageSize is the largest yamux message a host sends, four times
// go-yamux's 64 KiB: a stream's data goes to TLS, and so to the socket
// (batchedTLS), in pieces of this size. go-yamux, which every pcp runs,
// takes messages of any size within the window it granted; what pcp sends
// to other peers (the DHT's messages) is far smaller than 64 KiB anyway.
const messageSize = 256 << 10

// wholeMessages is go-libp2p's yamux sending messages of up to messageSize.
func wholeMessages() *yamux.Transport {
	cfg := *yamux.DefaultTransport.Config()
	cfg.MaxMessageSize = messageSize
	return (*yamux.Transport)(&cfg)
}

// NewConn implements network.Multiplexer.
func (w fullWindows) NewConn(c net.Conn, isServer bool, scope network.PeerScope) (network.MuxedConn, error) {
	if IsLocal(c.RemoteAddr()) {
		return w.local.NewConn(c, isServer, scope)
	}
	return w.wide.NewConn(c, isServer, scope)
}

// IsLocal says whether addr is on this machine or the local network. A
// relayed connection, or any address that is not TCP's, is not: yamux
// runs over TCP only (QUIC has its own streams).
func IsLocal(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	return tcp.IP.IsLoopback() || tcp.IP.IsPrivate() || tcp.IP.IsLinkLocalUnicast()
}
