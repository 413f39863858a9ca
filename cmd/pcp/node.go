package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/pcp-dev/pcp/lib/cli"
	"github.com/pcp-dev/pcp/lib/discovery"
	"github.com/pcp-dev/pcp/lib/node"
)

// nodeListen is where a node listens by default: fixed ports, so that its
// multiaddrs stay valid across restarts (with --identity).
var nodeListen = []string{"/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1", "/ip6/::/udp/4001/quic-v1"}

// nodeFlags are pcp node's flags, set into f, limits and noRelay.
func nodeFlags(f *cli.Flags, limits *node.RelayLimits, noRelay *bool) *pflag.FlagSet {
	fs := cli.NewFlagSet("node", "pcp node [OPTIONS]", os.Stdout)
	fs.StringSliceVar(&f.Listen, "listen", nodeListen, "listen on these multiaddrs, comma-separated")
	fs.StringSliceVar(&f.Bootstrap, "bootstrap", nil, "other DHT servers to join, comma-separated full multiaddrs (default: none, a new network)")
	fs.StringVar(&f.Identity, "identity", "", "keep the node's key in `FILE` (created if missing) for a stable peer ID")
	cli.FileValue(fs, "identity")
	fs.BoolVar(noRelay, "no-relay", false, "do not relay for peers behind NAT")
	fs.Int64Var(&limits.Data, "relay-data", limits.Data, "bytes each relayed connection may carry each way (0: no limit)")
	fs.DurationVar(&limits.Duration, "relay-duration", limits.Duration, "how long a relayed connection may last (0: no limit)")
	f.AddVerbosity(fs)
	return fs
}

func serveNode(ctx context.Context, args []string) error {
	var f cli.Flags
	limits := node.DefaultRelayLimits()
	var noRelay bool
	fs := nodeFlags(&f, &limits, &noRelay)
	if err := f.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usagef("node takes no arguments")
	}
	log := f.Logger("pcp node", os.Stderr)
	bootstrap, err := discovery.ParseAddrs(f.Bootstrap)
	if err != nil {
		return &cli.UsageError{Err: fmt.Errorf("--bootstrap: %w", err)}
	}
	if limits.Data < 0 || limits.Duration < 0 {
		return cli.Usagef("--relay-data and --relay-duration must not be negative")
	}
	cfg := node.Config{Listen: f.Listen, NATService: true, OwnPorts: true}
	if !noRelay {
		cfg.Relay = &limits
	}
	if f.Identity != "" {
		if cfg.Identity, err = node.LoadIdentity(f.Identity); err != nil {
			return err
		}
	}
	h, err := node.New(cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	d, err := discovery.StartDHT(ctx, h, true, bootstrap, log)
	if err != nil {
		return err
	}
	defer d.Close()
	for _, a := range node.FullAddrs(h) {
		fmt.Println(a)
	}
	log.Infof("serving the DHT (relay: %v) as %s until interrupted", !noRelay, h.ID())
	<-ctx.Done()
	return nil
}
