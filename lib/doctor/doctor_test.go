package doctor

import (
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

// The NAT follows from the addresses the peers observed.
func TestNATKind(t *testing.T) {
	local := map[string]bool{"192.168.1.2": true, "11.0.20.2": true}
	for _, tc := range []struct {
		observed []string
		want     string
	}{
		{[]string{"/ip4/11.0.20.2/tcp/4001", "/ip4/11.0.20.2/tcp/4001"}, NATNone},
		{[]string{"/ip4/11.0.1.2/tcp/5000", "/ip4/11.0.1.2/tcp/5000", "/ip4/11.0.1.2/udp/6000/quic-v1"}, NATCone},
		{[]string{"/ip4/11.0.1.2/tcp/5000", "/ip4/11.0.1.2/tcp/5001"}, NATSymmetric},
		{[]string{"/ip4/11.0.1.2/tcp/5000", "/ip4/11.0.1.2/udp/6000/quic-v1"}, NATUnknown}, // one peer per transport
		{[]string{"/ip4/11.0.1.2/udp/6000/quic-v1", "/ip4/11.0.1.2/udp/6001/quic-v1"}, NATSymmetric},
		{[]string{"/ip6/2001:db8::1/udp/6000/quic-v1", "/ip6/2001:db8::1/udp/6000/quic-v1"}, NATCone},
		{[]string{"/ip4/11.0.1.2/tcp/5000"}, NATUnknown},
		{nil, NATUnknown},
	} {
		var addrs []ma.Multiaddr
		for _, s := range tc.observed {
			addrs = append(addrs, ma.StringCast(s))
		}
		if got := natKind(addrs, local); got != tc.want {
			t.Errorf("natKind(%v) = %s, want %s", tc.observed, got, tc.want)
		}
	}
	for nat, reach := range map[string]string{NATNone: ReachDirect, NATCone: ReachPunched, NATSymmetric: ReachRelay, NATUnknown: ReachUnknown} {
		if got, text := verdict(nat, 1); got != reach || text == "" {
			t.Errorf("verdict(%s) = %s, %q; want %s", nat, got, text, reach)
		}
	}
}
