package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/dhtsim"
)

// A transfer's DHT client gives up on a peer that never answers after
// DHTDialTimeout, where go-libp2p (and the simulation) would wait 15 s,
// for a connection and for a stream alike.
func TestDHTDialsAreBounded(t *testing.T) {
	net, err := dhtsim.New(context.Background(), dhtsim.Params{
		Servers: 10, Dead: 0.5, MedianRTT: 10 * time.Millisecond, P90RTT: 20 * time.Millisecond,
		DialTimeout: 15 * time.Second, BucketSize: 20, Seed: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	h, err := net.Client()
	if err != nil {
		t.Fatal(err)
	}
	dead := net.DeadPeers()[0]
	bounded := boundedDials{h}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, dial := range map[string]func() error{
		"connect": func() error { return bounded.Connect(ctx, dead) },
		"stream": func() error {
			_, err := bounded.NewStream(ctx, dead.ID, "/ipfs/kad/1.0.0")
			return err
		},
	} {
		start := time.Now()
		err := dial()
		took := time.Since(start)
		if err == nil || took < DHTDialTimeout-100*time.Millisecond || took > DHTDialTimeout+2*time.Second {
			t.Errorf("%s to a peer that never answers: %v after %v, want an error after %v", name, err, took, DHTDialTimeout)
		}
	}
	live := net.Bootstrap(1)[0]
	if err := bounded.Connect(ctx, live); err != nil {
		t.Errorf("connect to a live server: %v", err)
	}
}
