package main

import (
	"context"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/pcp-dev/pcp/lib/cli"
	"github.com/pcp-dev/pcp/lib/pipe"
	"github.com/pcp-dev/pcp/lib/session"
	"github.com/pcp-dev/pcp/lib/status"
)

// sendFlags are pcp-pipe send's flags, set into f.
func sendFlags(f *cli.Flags) *pflag.FlagSet {
	fs := cli.NewFlagSet("send", "pcp-pipe send [OPTIONS] < DATA", os.Stdout)
	f.AddCode(fs, false)
	f.AddWords(fs)
	f.AddNetwork(fs, 0)
	f.AddTransfer(fs, "pcp-pipe")
	return fs
}

func send(ctx context.Context, args []string) error {
	var f cli.Flags
	fs := sendFlags(&f)
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

// recvFlags are pcp-pipe recv's flags, set into f and noSync.
func recvFlags(f *cli.Flags, noSync *bool) *pflag.FlagSet {
	fs := cli.NewFlagSet("recv", "pcp-pipe recv [OPTIONS] CODE > DATA", os.Stdout)
	f.AddCode(fs, true)
	fs.BoolVar(noSync, "no-fsync", false, "acknowledge before an output file is on stable storage (faster; a crash may lose it)")
	f.AddPeer(fs)
	f.AddNetwork(fs, 10*time.Minute)
	f.AddTransfer(fs, "pcp-pipe")
	return fs
}

func recv(ctx context.Context, args []string) error {
	var f cli.Flags
	var noSync bool
	fs := recvFlags(&f, &noSync)
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
	if !noSync {
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
