// Command pcp-announce announces a code's channel and waits for peers that
// prove they know the code; it prints each one on stdout. See
// pcp-announce(1).
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/pcp-dev/pcp/lib/cli"
	"github.com/pcp-dev/pcp/lib/rendezvous"
)

func main() { os.Exit(cli.Main("pcp-announce", os.Args[1:], os.Stderr, run)) }

// flags are pcp-announce's flags, set into f and keep.
func flags(f *cli.Flags, keep *bool) *pflag.FlagSet {
	fs := cli.NewFlagSet("pcp-announce", "pcp-announce [OPTIONS] [CODE]", os.Stdout)
	f.AddCode(fs, true)
	f.AddWords(fs)
	fs.BoolVar(keep, "keep", false, "keep answering peers after the first, until --timeout or interrupted")
	f.AddNetwork(fs, 0)
	return fs
}

func run(ctx context.Context, args []string) error {
	var f cli.Flags
	var keep bool
	fs := flags(&f, &keep)
	if cli.IsCompletion(args) {
		return cli.Complete(cli.Command{Name: "pcp-announce", Flags: fs}, args, os.Stdout)
	}
	if err := f.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	c, given, err := f.ReadCode(fs.Args())
	if err != nil {
		return err
	}
	s, err := f.Start(ctx, f.Logger("pcp-announce", os.Stderr))
	if err != nil {
		return err
	}
	defer s.Close()
	if !given {
		if c, err = f.NewCode(); err != nil {
			return err
		}
		fmt.Println(c) // alone on the first line, for scripts
	}
	_, err = s.Announce(ctx, c, f.Timeout, keep, func(p *rendezvous.Peer) {
		var addrs []string
		for _, a := range p.Addrs(s.Host) {
			addrs = append(addrs, a.String())
		}
		fmt.Println(p.ID, strings.Join(addrs, " "))
	})
	return err
}
