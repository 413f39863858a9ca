package main

import (
	"context"
	"os"
	"time"

	"github.com/pcp-dev/pcp/lib/cli"
	"github.com/pcp-dev/pcp/lib/files"
)

func send(ctx context.Context, args []string) error {
	var f cli.Flags
	var opt files.SendOptions
	fs := cli.NewFlagSet("send", "pcp send [OPTIONS] PATH...", os.Stdout)
	f.AddCode(fs)
	f.AddWords(fs)
	fs.IntVar(&opt.Level, "compress", 1, "zstd level: 1 (fastest) to 4 (smallest); 0 sends plain tar")
	fs.StringVar(&opt.Name, "name", "", "the name of the data read from stdin (the path -)")
	f.AddNetwork(fs, 0)
	if err := f.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return cli.Usagef("nothing to send: give one or more paths, or - for stdin")
	}
	if opt.Level < 0 || opt.Level > 4 {
		return cli.Usagef("--compress must be 0 to 4")
	}
	log := f.Logger("pcp", os.Stderr)
	s, err := f.Start(ctx, log)
	if err != nil {
		return err
	}
	defer s.Close()
	c, err := f.AnnounceCode("pcp", "pcp receive", os.Stderr)
	if err != nil {
		return err
	}
	progress := f.Progress("sending")
	opt.Timeout, opt.Progress = f.Timeout, progress.Update
	res, err := files.Send(ctx, s, c, fs.Args(), os.Stdin, opt)
	progress.Finish()
	if err != nil {
		return err
	}
	log.Infof("sent %s in %v (%s/s) over %s; the receiver confirmed it", cli.Size(res.Bytes), res.Transfer.Round(time.Millisecond), cli.Size(rate(res)), res.Peer.Transport())
	return nil
}

func rate(r files.Result) int64 {
	if r.Transfer <= 0 {
		return 0
	}
	return int64(float64(r.Bytes) / r.Transfer.Seconds())
}
