// Command pcp-pipe is an authenticated byte pipe between two peers that
// share a code: `pcp-pipe send` streams stdin, `pcp-pipe recv CODE` writes
// it to stdout. See pcp-pipe(1).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/pcp-dev/pcp/lib/cli"
	"github.com/pcp-dev/pcp/lib/pipe"
	"github.com/pcp-dev/pcp/lib/session"
	"github.com/pcp-dev/pcp/lib/status"
)

const usage = `Usage: pcp-pipe send [OPTIONS]        stream stdin to the peer; prints the code on stderr
       pcp-pipe recv [OPTIONS] CODE   write the peer's stream to stdout
Run "pcp-pipe send --help" or "pcp-pipe recv --help" for the options.`

func main() { os.Exit(cli.Main("pcp-pipe", os.Args[1:], os.Stderr, run)) }

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return cli.Usagef("missing command\n%s", usage)
	}
	switch args[0] {
	case "send":
		return send(ctx, args[1:])
	case "recv", "receive":
		return recv(ctx, args[1:])
	case "--version":
		fmt.Println(cli.Version("pcp-pipe"))
		return nil
	case "-h", "--help", "help":
		fmt.Println(usage)
		return nil
	}
	return cli.Usagef("unknown command %q\n%s", args[0], usage)
}

func send(ctx context.Context, args []string) error {
	var f cli.Flags
	fs := cli.NewFlagSet("send", "pcp-pipe send [OPTIONS] < DATA", os.Stdout)
	f.AddCode(fs, false)
	f.AddWords(fs)
	f.AddNetwork(fs, 0)
	f.AddTransfer(fs, "pcp-pipe")
	if err := f.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.Usagef("send takes no arguments (the data comes on stdin)")
	}
	f.StdinIsData = true
	log := f.Logger("pcp-pipe", os.Stderr)
	s, err := f.Start(ctx, log)
	if err != nil {
		return err
	}
	defer s.Close()
	c, err := f.AnnounceCode("pcp-pipe", "pcp-pipe recv", os.Stderr)
	if err != nil {
		return err
	}
	progress := f.Progress("sending")
	res, err := s.Send(ctx, c, pipe.Header{Kind: pipe.KindRaw, Size: -1}, os.Stdin, f.Timeout, session.SendOptions{Options: pipe.Options{Progress: progress.Of(cli.StdinSize())}})
	progress.Finish()
	if err != nil {
		return err
	}
	log.Infof("sent %s in %v; the receiver confirmed it", status.Size(res.Bytes), res.Transfer.Round(time.Millisecond))
	return nil
}

func recv(ctx context.Context, args []string) error {
	var f cli.Flags
	fs := cli.NewFlagSet("recv", "pcp-pipe recv [OPTIONS] CODE > DATA", os.Stdout)
	f.AddCode(fs, true)
	noSync := fs.Bool("no-fsync", false, "acknowledge before an output file is on stable storage (faster; a crash may lose it)")
	f.AddPeer(fs)
	f.AddNetwork(fs, 10*time.Minute)
	f.AddTransfer(fs, "pcp-pipe")
	if err := f.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	c, err := f.FindCode(ctx, "pcp-pipe", fs.Args())
	if err != nil {
		return err
	}
	f.Receives = true
	log := f.Logger("pcp-pipe", os.Stderr)
	s, err := f.Start(ctx, log)
	if err != nil {
		return err
	}
	defer s.Close()
	progress := f.Progress("receiving")
	opt := pipe.Options{Progress: progress.Bytes}
	if !*noSync {
		opt.Commit = pipe.SyncCommit(os.Stdout, log.Debugf)
	}
	res, err := s.Receive(ctx, c, os.Stdout, f.Timeout, opt)
	progress.Finish()
	if err != nil {
		return err
	}
	log.Infof("received %s in %v; digest verified", status.Size(res.Bytes), res.Transfer.Round(time.Millisecond))
	return nil
}
