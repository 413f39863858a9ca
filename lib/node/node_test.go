package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func TestRankTCPFirst(t *testing.T) {
	addrs := []ma.Multiaddr{
		ma.StringCast("/ip4/1.2.3.4/udp/4001/quic-v1"),
		ma.StringCast("/ip4/1.2.3.4/tcp/4001"),
		ma.StringCast("/ip4/5.6.7.8/tcp/4001/p2p/12D3KooWAfzA2AUZ3ByHfmd37sPqjn1yAEceeRgR8dHYQDJRoznP/p2p-circuit"),
	}
	got := map[string]int64{}
	for _, d := range RankTCPFirst(addrs) {
		got[d.Addr.String()] = int64(d.Delay)
	}
	tcp, quic, relay := got[addrs[1].String()], got[addrs[0].String()], got[addrs[2].String()]
	if !(tcp == 0 && quic == int64(QUICDelay) && relay > quic) {
		t.Fatalf("delays: tcp %d, quic %d, relay %d; want tcp 0 < quic %d < relay", tcp, quic, relay, QUICDelay)
	}
}

func TestLoadIdentityIsStableAndPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	k1, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("identity file mode %v, want 0600", info.Mode().Perm())
	}
	k2, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := peer.IDFromPrivateKey(k1)
	id2, _ := peer.IDFromPrivateKey(k2)
	if id1 != id2 {
		t.Fatalf("peer ID changed on reload: %s, then %s", id1, id2)
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, err := LoadIdentity(path); err == nil {
		t.Fatal("a corrupt identity file was accepted")
	}
}

func TestShortID(t *testing.T) {
	id, err := peer.Decode("12D3KooWAfzA2AUZ3ByHfmd37sPqjn1yAEceeRgR8dHYQDJRoznP")
	if err != nil {
		t.Fatal(err)
	}
	if got := ShortID(id); got != "…JRoznP" {
		t.Fatalf("ShortID = %q, want …JRoznP", got)
	}
}
