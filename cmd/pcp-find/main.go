// Command pcp-find finds the peer that announces a code's channel,
// authenticates with it both ways, and prints its addresses. See
// pcp-find(1).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/pcp-dev/pcp/lib/cli"
	"github.com/pcp-dev/pcp/lib/discovery"
)

// record is one line of --json output.
type record struct {
	Peer     string   `json:"peer"`
	Addrs    []string `json:"addrs"`
	Source   string   `json:"source"`
	RTTms    *float64 `json:"rtt_ms,omitempty"`
	Verified bool     `json:"verified"`
}

func main() { os.Exit(cli.Main("pcp-find", os.Args[1:], os.Stderr, run)) }

// flags are pcp-find's flags, set into f, asJSON and unverified.
func flags(f *cli.Flags, asJSON, unverified *bool) *pflag.FlagSet {
	fs := cli.NewFlagSet("pcp-find", "pcp-find [OPTIONS] CODE", os.Stdout)
	f.AddCode(fs, true)
	fs.BoolVar(asJSON, "json", false, "print JSON lines: peer, addrs, source, rtt_ms, verified")
	fs.BoolVar(unverified, "unverified", false, "list every discovery candidate until --timeout, without authenticating (a diagnostic)")
	f.AddNetwork(fs, 10*time.Minute)
	return fs
}

func run(ctx context.Context, args []string) error {
	var f cli.Flags
	var asJSON, unverified bool
	fs := flags(&f, &asJSON, &unverified)
	if cli.IsCompletion(args) {
		return cli.Complete(cli.Command{Name: "pcp-find", Flags: fs}, args, os.Stdout)
	}
	if err := f.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	c, err := f.FindCode(ctx, "pcp-find", fs.Args())
	if err != nil {
		return err
	}
	s, err := f.Start(ctx, f.Logger("pcp-find", os.Stderr))
	if err != nil {
		return err
	}
	defer s.Close()
	// Each record is one write, so that `| head -1` cannot cut it in two.
	print := func(r record) {
		var b bytes.Buffer
		if asJSON {
			json.NewEncoder(&b).Encode(r)
		}
		for _, a := range r.Addrs {
			switch {
			case asJSON:
			case r.Verified:
				fmt.Fprintln(&b, a)
			default:
				fmt.Fprintf(&b, "unverified %s %s\n", r.Source, a)
			}
		}
		os.Stdout.Write(b.Bytes())
	}
	if unverified {
		_, err := s.Candidates(ctx, c, f.Timeout, func(cand discovery.Candidate) {
			r := record{Peer: cand.ID.String(), Source: cand.Source}
			for _, a := range cand.Addrs {
				r.Addrs = append(r.Addrs, fmt.Sprintf("%s/p2p/%s", a, cand.ID))
			}
			print(r)
		})
		return err
	}
	p, err := s.Find(ctx, c, f.Timeout)
	if err != nil {
		return err
	}
	r := record{Peer: p.ID.String(), Source: p.Source, Verified: true}
	for _, a := range p.Addrs(s.Host) {
		r.Addrs = append(r.Addrs, a.String())
	}
	ms := float64(p.RTT.Microseconds()) / 1000
	r.RTTms = &ms
	print(r)
	return nil
}
