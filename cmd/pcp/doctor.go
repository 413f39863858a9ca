package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/pcp-dev/pcp/lib/cli"
	"github.com/pcp-dev/pcp/lib/discovery"
	"github.com/pcp-dev/pcp/lib/doctor"
	"github.com/pcp-dev/pcp/lib/node"
)

// doctorFlags are pcp doctor's flags, set into f and asJSON.
func doctorFlags(f *cli.Flags, asJSON *bool) *pflag.FlagSet {
	fs := cli.NewFlagSet("doctor", "pcp doctor [OPTIONS]", os.Stdout)
	f.AddBootstrap(fs)
	fs.DurationVar(&f.Timeout, "timeout", 10*time.Second, "how long to try each bootstrap peer")
	fs.StringSliceVar(&f.Listen, "listen", nil, "listen on these multiaddrs, comma-separated (default: all interfaces, random ports, TCP and QUIC)")
	fs.BoolVar(asJSON, "json", false, "print one JSON object instead of lines")
	cli.Configurable(fs, "bootstrap")
	f.AddVerbosity(fs)
	return fs
}

// diagnose tells how peers elsewhere will reach this machine (see pcp(1),
// DOCTOR).
func diagnose(ctx context.Context, args []string) error {
	var f cli.Flags
	var asJSON bool
	fs := doctorFlags(&f, &asJSON)
	if err := f.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usagef("doctor takes no arguments")
	}
	bootstrap := discovery.DefaultBootstrap()
	if len(f.Bootstrap) > 0 {
		var err error
		if bootstrap, err = discovery.ParseAddrs(f.Bootstrap); err != nil {
			return &cli.UsageError{Err: fmt.Errorf("--bootstrap: %w", err)}
		}
	}
	cfg := node.Config{Listen: f.Listen}
	for _, ai := range bootstrap {
		cfg.QUICFirst = append(cfg.QUICFirst, ai.Addrs...)
	}
	h, err := node.New(cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	r, err := doctor.Check(ctx, h, bootstrap, f.Timeout)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	r.WriteText(os.Stdout)
	return nil
}
